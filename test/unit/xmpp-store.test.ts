/**
 * The XMPP adapter's storage on SQLite (`SqliteXmppStore`): contacts keep their subscription state
 * across look-ups, delivery records make a redelivery recognisable, and unregistering forgets
 * everything of the user.
 */
import { bridgeMigrations } from '../../app/migrations.js';
import path from 'node:path';
import { SqliteXmppStore } from '../../adapters/xmpp/index.js';
import { openDatabase } from '../../src/store/database.js';
import type { Db } from '../../src/store/sql.js';
import { tempDir } from '../support/tmp.js';

const ALICE = 'alice@example.org';
const BOB = '+4915112345678';
const BOB_REMOTE = '4915112345678@wa.interop';
const DAY = 24 * 3600 * 1000;

describe('SqliteXmppStore', () => {
  const tmp = tempDir('xmpp-store-');
  let db: Db;
  let clock: number;
  let store: SqliteXmppStore;

  beforeEach(() => {
    db = openDatabase(path.join(tmp.dir, `${Date.now()}-${Math.random()}.db`), {
      migrations: bridgeMigrations(),
    });
    clock = 10 * DAY;
    store = new SqliteXmppStore(db, () => clock);
  });

  afterEach(() => db.close());
  afterAll(() => tmp.cleanup());

  test('a contact found again keeps its subscription state and its name', async () => {
    await store.ensureContact(ALICE, BOB, BOB_REMOTE, 'Bob');
    await store.setSubscription(ALICE, BOB, { subTo: true, asked: true });
    const again = await store.ensureContact(ALICE, BOB, BOB_REMOTE);
    expect(again).toEqual({
      localUser: ALICE,
      contact: BOB,
      remote: BOB_REMOTE,
      name: 'Bob',
      subTo: true,
      subFrom: false,
      asked: true,
    });
    expect(await store.contactByRemote(ALICE, BOB_REMOTE)).toEqual(again);
    expect(await store.contacts(ALICE)).toEqual([again]);
    expect(await store.contact('carol@example.org', BOB)).toBeUndefined();
  });

  test('a subscription change sets only the flags it names', async () => {
    await store.ensureContact(ALICE, BOB, BOB_REMOTE);
    await store.setSubscription(ALICE, BOB, { subTo: true, subFrom: true, asked: true });
    await store.setSubscription(ALICE, BOB, { subFrom: false });
    await store.setSubscription(ALICE, BOB, {});
    expect(await store.contact(ALICE, BOB)).toMatchObject({ subTo: true, subFrom: false, asked: true });
  });

  test('an event delivered twice keeps the stanza id of the first delivery, until the record is pruned', async () => {
    expect(await store.deliveredStanza(ALICE, BOB_REMOTE, 'm1')).toBeUndefined();
    await store.markDelivered(ALICE, BOB_REMOTE, 'm1', 'wa-1');
    await store.markDelivered(ALICE, BOB_REMOTE, 'm1', 'wa-other');
    expect(await store.deliveredStanza(ALICE, BOB_REMOTE, 'm1')).toBe('wa-1');
    clock += 2 * DAY;
    await store.markDelivered(ALICE, BOB_REMOTE, 'm2', 'wa-2');
    expect(await store.pruneDelivered(DAY)).toBe(1);
    expect(await store.deliveredStanza(ALICE, BOB_REMOTE, 'm1')).toBeUndefined();
    expect(await store.deliveredStanza(ALICE, BOB_REMOTE, 'm2')).toBe('wa-2');
  });

  test("unregistering forgets the user's contacts and delivery records, and no one else's", async () => {
    await store.ensureContact(ALICE, BOB, BOB_REMOTE);
    await store.markDelivered(ALICE, BOB_REMOTE, 'm1', 'wa-1');
    await store.ensureContact('carol@example.org', BOB, BOB_REMOTE);
    await store.forgetUser(ALICE);
    expect(await store.contacts(ALICE)).toEqual([]);
    expect(await store.deliveredStanza(ALICE, BOB_REMOTE, 'm1')).toBeUndefined();
    expect(await store.contact('carol@example.org', BOB)).toBeDefined();
  });
});
