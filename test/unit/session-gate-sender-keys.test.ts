/**
 * The session gate holds the sender keys a group decryption moves on, as it holds the 1:1 session:
 * readable at once, written only with the inbox row (one transaction), and nothing of them lands
 * when that commit fails. Else a crash between the two leaves a redelivered group message that can
 * no longer be decrypted (its key spent), and its retry arrives after the messages that followed.
 */
import path from 'node:path';
import { bridgeMigrations } from '../../app/migrations.js';
import { SessionWriteGate } from '../../src/bridge/session-gate.js';
import { SqliteSenderKeyBackend, SqliteSignalBackend } from '../../src/signal/sqlite-store.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../support/tmp.js';

describe('the session gate and sender keys', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  beforeEach(() => {
    tmp = tempDir();
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'), { migrations: bridgeMigrations() });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  const DISTRIBUTION = '0b7c3c4e-2f52-5d4c-9a8e-8f0b1f7f2d10';
  const SENDER = { name: '4915112345678@wa.interop', deviceId: 1 };

  async function setUp() {
    const puppet = await store.puppets.create({
      localId: '@alice:example.org',
      network: 'matrix',
      accountId: 'acct',
      deviceId: 1,
      registrationId: 7,
      identityPublic: new Uint8Array(33).fill(1),
      identityPrivate: new Uint8Array(32).fill(2),
      noisePublic: new Uint8Array(32).fill(3),
      noisePrivate: new Uint8Array(32).fill(4),
    });
    const gate = new SessionWriteGate(new SqliteSignalBackend(store.db, puppet.id), store);
    const stored = new SqliteSenderKeyBackend(store.db, puppet.id);
    const inboxRow = (id: string) => (w: Parameters<NonNullable<Parameters<typeof gate.commit>[0]>>[0]) =>
      w.recordInbox({
        puppetId: puppet.id,
        sender: SENDER.name,
        messageId: id,
        portalId: null,
        payload: new Uint8Array([1]),
      });
    return { puppet, gate, stored, keys: gate.senderKeys(stored), inboxRow };
  }
  const inboxIds = () => store.db.prepare('SELECT message_id FROM inbox ORDER BY message_id').pluck().all();

  it('keeps a held sender key readable but unwritten until the commit, then writes it with the inbox row', async () => {
    const { gate, stored, keys, inboxRow } = await setUp();
    keys.putSenderKey(DISTRIBUTION, SENDER, new Uint8Array([1]));
    gate.hold();
    keys.putSenderKey(DISTRIBUTION, SENDER, new Uint8Array([2]));
    expect(keys.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([2]));
    // The database still has the chain as it was before the decryption.
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([1]));
    await gate.commit(inboxRow('m1'));
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([2]));
    expect(inboxIds()).toEqual(['m1']);
  });

  it('lands nothing of a held sender key when the commit fails, and reads the stored one again', async () => {
    const { gate, stored, keys } = await setUp();
    keys.putSenderKey(DISTRIBUTION, SENDER, new Uint8Array([1]));
    gate.hold();
    keys.putSenderKey(DISTRIBUTION, SENDER, new Uint8Array([2]));
    await expect(
      gate.commit(() => {
        throw new Error('the inbox write fails');
      }),
    ).rejects.toThrow('the inbox write fails');
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([1]));
    expect(keys.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([1]));
    expect(inboxIds()).toEqual([]);
  });

  it('writes at once outside a hold, and a held deletion only with the commit', async () => {
    const { gate, stored, keys } = await setUp();
    keys.putSenderKey(DISTRIBUTION, SENDER, new Uint8Array([3]));
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([3]));
    gate.hold();
    keys.deleteSenderKey(DISTRIBUTION, SENDER);
    expect(keys.getSenderKey(DISTRIBUTION, SENDER)).toBeUndefined();
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toEqual(new Uint8Array([3]));
    await gate.commit();
    expect(stored.getSenderKey(DISTRIBUTION, SENDER)).toBeUndefined();
  });
});
