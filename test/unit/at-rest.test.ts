/**
 * Plaintext only in flight, at the storage level: the at-rest key file, sealing bound to its row,
 * payloads cleared by the statements that record a delivery, secure_delete, and migration 005.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  ensureAtRestKey,
  inboxRowId,
  openPayload,
  outboxRowId,
  PayloadUnreadableError,
  PayloadVault,
  readAtRestKey,
  writeAtRestKey,
} from '../../src/store/at-rest.js';
import { openDatabase, readMigrations } from '../../src/store/database.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { inProcessesAtOnce } from '../support/together.js';
import { tempDir } from '../support/tmp.js';

describe('at-rest key and payload sealing', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('creates a 32-byte key file with mode 0600 once, and refuses to replace it without force', () => {
    const file = path.join(tmp.dir, 'state', 'at-rest.key');
    const first = ensureAtRestKey(file);
    expect(first.created).toBe(true);
    expect(first.key).toHaveLength(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const again = ensureAtRestKey(file);
    expect(again.created).toBe(false);
    expect(Buffer.from(again.key).equals(Buffer.from(first.key))).toBe(true);
    expect(() => writeAtRestKey(file)).toThrow(/already exists: keep it, or pass --force/);
    writeAtRestKey(file, { force: true });
    expect(readFileSync(file).equals(Buffer.from(first.key))).toBe(false);
  });

  it('is the one key for processes starting together on one data_dir, and nothing is left aside', async () => {
    // Workers of one bridge start at once: the key is written aside and linked into place, so none
    // reads it half-written, and one that finds it made meanwhile takes it. The built module, in 8
    // processes, 5 times.
    const module = path.resolve('dist/src/store/at-rest.js');
    const run = (file: string) =>
      inProcessesAtOnce(
        8,
        (f) =>
          `import { ensureAtRestKey as e } from ${JSON.stringify(module)}; process.stdout.write(Buffer.from(e(${f}).key).toString('hex'));`,
        file,
      );
    for (let round = 0; round < 5; round++) {
      const file = path.join(tmp.dir, `race-${round}`, 'at-rest.key');
      const keys = await run(file);
      expect(new Set(keys).size).toBe(1);
      expect(keys[0]).toHaveLength(64);
      expect(readdirSync(path.dirname(file))).toEqual(['at-rest.key']);
    }
  }, 60_000);

  it('refuses a key file of the wrong length, saying what to do', () => {
    const file = tmp.file('at-rest.key', 'short');
    expect(() => readAtRestKey(file)).toThrow(
      /is 5 bytes: an at-rest key is 32 random bytes \(restore it from a backup/,
    );
    expect(() => readAtRestKey(path.join(tmp.dir, 'none.key'))).toThrow(/does not exist: create it with/);
  });

  it('seals with a fresh nonce each time, bound to the row: another row, another key or a changed byte is refused', () => {
    const vault = new PayloadVault(randomBytes(32));
    const plain = Buffer.from('{"secret":"MARKER"}');
    const a = vault.seal(outboxRowId('m1'), plain);
    const b = vault.seal(outboxRowId('m1'), plain);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(Buffer.from(a).includes(Buffer.from('MARKER'))).toBe(false);
    expect(a.length).toBe(1 + 12 + plain.length + 16);
    expect(Buffer.from(vault.open(outboxRowId('m1'), a)).equals(plain)).toBe(true);
    expect(() => vault.open(outboxRowId('m2'), a)).toThrow(PayloadUnreadableError);
    expect(() => vault.open(inboxRowId(1, 'x@wa.interop', 'm1'), a)).toThrow(PayloadUnreadableError);
    expect(() => new PayloadVault(randomBytes(32)).open(outboxRowId('m1'), a)).toThrow(
      /cannot be opened: it was sealed under another at-rest key, or altered/,
    );
    const altered = Buffer.from(a);
    altered[20] = altered[20]! ^ 1;
    expect(() => vault.open(outboxRowId('m1'), altered)).toThrow(PayloadUnreadableError);
    // Written before sealing (JSON) or cleared: read as they are.
    expect(Buffer.from(openPayload(undefined, 'x', plain)).equals(plain)).toBe(true);
    expect(openPayload(vault, 'x', new Uint8Array(0))).toHaveLength(0);
    expect(() => openPayload(undefined, outboxRowId('m1'), a)).toThrow(/the bridge has no at-rest key/);
  });
});

describe('payloads cleared with the state change', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore | undefined;
  beforeEach(() => (tmp = tempDir()));
  afterEach(async () => {
    await store?.close();
    store = undefined;
    tmp.cleanup();
  });

  const setUp = async () => {
    const s = (store = openSqliteStore(path.join(tmp.dir, 'bridge.db')));
    const p = await s.puppets.create({
      localId: '@a:example.org',
      network: 'matrix',
      accountId: 'acct',
      deviceId: 1,
      registrationId: 1,
      identityPublic: new Uint8Array(33),
      identityPrivate: new Uint8Array(32),
      noisePublic: new Uint8Array(32),
      noisePrivate: new Uint8Array(32),
    });
    const portal = await s.portals.ensure(p.id, 'bob@wa.interop');
    return { s, p, portal };
  };

  it('clears an outbox payload when the entry is acknowledged, receipted or fails, keeping its local id', async () => {
    const { s, p, portal } = await setUp();
    const payload = new TextEncoder().encode('{"x":1}');
    for (const id of ['a', 'b', 'c']) {
      await s.outbox.enqueue({
        id,
        puppetId: p.id,
        portalId: portal.id,
        kind: 'message',
        payload,
        localId: `$${id}`,
      });
    }
    expect(s.db.pragma('secure_delete', { simple: true })).toBe(1);
    await s.outbox.advance('a', 'sent');
    await s.outbox.advance('b', 'read'); // a receipt overtaking the ack
    await s.outbox.fail('c', 'no');
    for (const id of ['a', 'b', 'c']) {
      const e = (await s.outbox.get(id))!;
      expect(e.payload).toHaveLength(0);
      expect(e.localId).toBe(`$${id}`);
    }
  });

  it('clears an inbox payload in the unit that marks it delivered', async () => {
    const { s, p, portal } = await setUp();
    await s.inbox.record({
      puppetId: p.id,
      sender: 'bob@wa.interop',
      messageId: 'm',
      portalId: portal.id,
      payload: new Uint8Array([1, 2, 3]),
    });
    await s.atomically((w) => w.markInboxDelivered(p.id, 'bob@wa.interop', 'm'));
    const row = s.db.prepare('SELECT state, length(payload) AS n FROM inbox').get();
    expect(row).toEqual({ state: 'delivered', n: 0 });
    expect(await s.inbox.has(p.id, 'bob@wa.interop', 'm')).toBe(true); // still deduplicates
  });

  it('migration 005 clears what was delivered before it and keeps the local ids; waiting rows keep their content', () => {
    const file = path.join(tmp.dir, 'old.db');
    const before = readMigrations().filter((m) => m.version < 5);
    openDatabase(file, { migrations: before }).close();
    const raw = new Database(file);
    raw.exec(`INSERT INTO puppets (id, local_id, network, account_id, registration_id, identity_public,
        identity_private, noise_public, noise_private, created_at, updated_at)
      VALUES (1, '@a:example.org', 'matrix', 'acct', 1, x'00', x'00', x'00', x'00', 0, 0);
      INSERT INTO portals (id, puppet_id, remote_jid, created_at) VALUES (1, 1, 'bob@wa.interop', 0);`);
    const json = (text: string) => Buffer.from(JSON.stringify({ localId: `$${text}`, event: { text } }));
    const put = raw.prepare(
      'INSERT INTO outbox (id, puppet_id, portal_id, seq, kind, payload, state, created_at, updated_at) VALUES (?, 1, 1, ?, ?, ?, ?, 0, 0)',
    );
    put.run('d', 1, 'message', json('MARKER-delivered'), 'delivered');
    put.run('q', 2, 'message', json('waiting'), 'queued');
    put.run('r', 3, 'receipt', Buffer.from('{"receipt":"delivery"}'), 'sent');
    raw
      .prepare(
        "INSERT INTO inbox (puppet_id, sender, message_id, portal_id, payload, state, received_at) VALUES (1, 'bob@wa.interop', ?, 1, ?, ?, 0)",
      )
      .run('in1', Buffer.from('MARKER-incoming'), 'delivered');
    raw.close();

    const db = openDatabase(file); // the core's migrations, 005 among them
    const rows = db.prepare('SELECT id, length(payload) AS n, local_id FROM outbox ORDER BY id').all();
    expect(rows).toEqual([
      { id: 'd', n: 0, local_id: '$MARKER-delivered' },
      { id: 'q', n: json('waiting').length, local_id: '$waiting' },
      { id: 'r', n: 0, local_id: null },
    ]);
    expect(db.prepare('SELECT length(payload) FROM inbox').pluck().get()).toBe(0);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    expect(readFileSync(file).includes(Buffer.from('MARKER-incoming'))).toBe(false);
    expect(readFileSync(file).includes(Buffer.from('"text":"MARKER-delivered"'))).toBe(false);
  });

  it('scrub truncates the WAL', async () => {
    const { s } = await setUp();
    expect(statSync(path.join(tmp.dir, 'bridge.db-wal')).size).toBeGreaterThan(0);
    await s.scrub();
    expect(statSync(path.join(tmp.dir, 'bridge.db-wal')).size).toBe(0);
  });
});
