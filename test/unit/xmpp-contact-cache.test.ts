/**
 * The XMPP store's contacts by remote and by JID (adapters/xmpp/contact-cache.ts), on SQLite: read once, then
 * answered from memory; every write to the contacts (made, renamed, subscribed, forgotten) is seen
 * by the next read, and a read that overlapped a write does not keep its answer.
 */
import { bridgeMigrations } from '../../app/migrations.js';
import { ContactCache } from '../../adapters/xmpp/contact-cache.js';
import { SqliteXmppStore } from '../../adapters/xmpp/index.js';
import type { XmppContact } from '../../adapters/xmpp/store.js';
import { openDatabase } from '../../src/store/database.js';
import type { Db } from '../../src/store/sql.js';
import { tempDir } from '../support/tmp.js';

const ALICE = 'alice@example.org';
const BOB_REMOTE = '4915112345678@wa.interop';

describe('contacts by remote, cached by the XMPP store', () => {
  const tmp = tempDir('xmpp-contacts-');
  let db: Db;
  let store: SqliteXmppStore;
  let reads: number;
  let byJid: number;

  beforeEach(() => {
    db = openDatabase(tmp.file(`bridge-${Date.now()}-${Math.random()}.db`), {
      migrations: bridgeMigrations(),
    });
    store = new SqliteXmppStore(db);
    reads = 0;
    byJid = 0;
    const prepare = db.prepare.bind(db);
    db.prepare = ((sql: string) => {
      const stmt = prepare(sql);
      if (!sql.startsWith('SELECT * FROM xmpp_contacts WHERE')) return stmt;
      const get = stmt.get.bind(stmt);
      stmt.get = ((...args: unknown[]) => {
        if (sql.includes('remote = ?')) reads++;
        else byJid++;
        return get(...args);
      }) as typeof stmt.get;
      return stmt;
    }) as typeof db.prepare;
  });
  afterEach(() => db.close());
  afterAll(() => tmp.cleanup());

  it('reads the table once per contact, and sees each kind of write at the next read', async () => {
    expect(await store.contactByRemote(ALICE, BOB_REMOTE)).toBeUndefined();
    expect(await store.contactByRemote(ALICE, BOB_REMOTE)).toBeUndefined();
    expect(reads).toBe(1);

    await store.ensureContact(ALICE, '+4915112345678', BOB_REMOTE, 'Bob');
    expect((await store.contactByRemote(ALICE, BOB_REMOTE))?.contact).toBe('+4915112345678');
    expect((await store.contactByRemote(ALICE, BOB_REMOTE))?.name).toBe('Bob');
    expect(reads).toBe(2);

    await store.setProfile(ALICE, '+4915112345678', { name: 'Robert', about: 'hi' });
    expect((await store.contactByRemote(ALICE, BOB_REMOTE))?.name).toBe('Robert');

    await store.setSubscription(ALICE, '+4915112345678', { subTo: true });
    expect((await store.contactByRemote(ALICE, BOB_REMOTE))?.subTo).toBe(true);

    await store.forgetUser(ALICE);
    expect(await store.contactByRemote(ALICE, BOB_REMOTE)).toBeUndefined();
    expect(reads).toBe(5);
  });

  it('keeps the contacts by JID the same way', async () => {
    await store.ensureContact(ALICE, '+4915112345678', BOB_REMOTE, 'Bob');
    const first = byJid;
    expect((await store.contact(ALICE, '+4915112345678'))?.name).toBe('Bob');
    expect((await store.contact(ALICE, '+4915112345678'))?.name).toBe('Bob');
    expect(byJid - first).toBe(1);
    await store.setProfile(ALICE, '+4915112345678', { name: 'Robert', about: null });
    expect((await store.contact(ALICE, '+4915112345678'))?.name).toBe('Robert');
    expect(await store.contact(ALICE, '+4915100000000')).toBeUndefined();
    await store.ensureContact(ALICE, '+4915100000000', '4915100000000@wa.interop');
    expect((await store.contact(ALICE, '+4915100000000'))?.remote).toBe('4915100000000@wa.interop');
  });

  it('does not keep the answer of a read that overlapped a write', async () => {
    const cache = new ContactCache();
    const before = { contact: '+4915112345678', name: 'Bob' } as XmppContact;
    const after = { contact: '+4915112345678', name: 'Robert' } as XmppContact;
    let release!: () => void;
    const slow = cache.byRemote(ALICE, BOB_REMOTE, async () => {
      await new Promise<void>((resolve) => (release = resolve));
      return before;
    });
    cache.changed(); // a write while the read is out
    release();
    expect(await slow).toBe(before);
    expect(await cache.byRemote(ALICE, BOB_REMOTE, () => after)).toBe(after);
    expect(await cache.byRemote(ALICE, BOB_REMOTE, () => before)).toBe(after);
  });
});
