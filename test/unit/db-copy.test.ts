/**
 * `interop-bridge db copy --from sqlite:<file> --to postgres://...` on a real SQLite file and a real
 * PostgreSQL: every table arrives row for row and byte for byte (Signal state, queued outbox and
 * pending inbox rows with their sealed payloads, the adapters' tables), the ids go on from where
 * they were, and it refuses a source in use, a target that is not empty, and bad arguments, each
 * with a clear message and nothing written. (The daemon carrying a conversation on across the
 * switch: test/integration/db-copy-daemon.test.ts.)
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openMatrixStore } from '../../adapters/matrix/index.js';
import { openXmppStore } from '../../adapters/xmpp/index.js';
import { EXIT } from '../../app/cli.js';
import { cliOutput } from '../support/cli.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import { lockSqliteDatabase } from '../../src/store/process-lock.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { NewPuppet } from '../../src/store/repositories.js';
import { usePostgres } from '../support/postgres.js';
import { tempDir, type TempDir } from '../support/tmp.js';

const puppet = (n: number): NewPuppet => ({
  localId: `user${n}@example.org`,
  network: 'xmpp',
  accountId: `acct-${n}`,
  deviceId: 1,
  registrationId: 1000 + n,
  identityPublic: randomBytes(33),
  identityPrivate: randomBytes(32),
  noisePublic: randomBytes(32),
  noisePrivate: randomBytes(32),
});

const postgres = usePostgres();
let tmp: TempDir;
beforeEach(() => (tmp = tempDir()));
afterEach(() => tmp.cleanup());

const cli = cliOutput;

/** A SQLite bridge database with rows in every table. */
async function filledSqlite(): Promise<string> {
  const file = path.join(tmp.dir, 'bridge.db');
  const store = openSqliteStore(file, { migrations: bridgeMigrations() });
  const [a, b] = [await store.puppets.create(puppet(1)), await store.puppets.create(puppet(2))];
  await store.puppets.setGatewayStatic(a.id, randomBytes(32));
  await store.puppets.delete((await store.puppets.create(puppet(3))).id); // a gap in the ids
  const portal = await store.portals.ensure(a.id, '4915100000001@wa.interop');
  await store.portals.ensure(b.id, '4915100000002@wa.interop');
  await store.outbox.enqueue({
    id: 'o1',
    puppetId: a.id,
    portalId: portal.id,
    kind: 'text',
    payload: randomBytes(80),
    localId: 'l1',
  });
  await store.outbox.enqueue({
    id: 'o2',
    puppetId: a.id,
    portalId: portal.id,
    kind: 'text',
    payload: randomBytes(80),
  });
  await store.outbox.advance('o1', 'delivered');
  await store.inbox.record({
    puppetId: a.id,
    sender: 's',
    messageId: 'm1',
    portalId: portal.id,
    payload: randomBytes(60),
  });
  await store.inbox.record({
    puppetId: a.id,
    sender: 's',
    messageId: 'm2',
    portalId: portal.id,
    payload: randomBytes(60),
  });
  await store.inbox.markDelivered(a.id, 's', 'm1');
  await store.messages.put({ portalId: portal.id, remoteId: 'r2', localId: 'l2', sender: 's' });
  await store.messages.put({ portalId: portal.id, remoteId: 'r1', localId: 'l1', sender: 's' });
  const db = store.db;
  db.prepare('INSERT INTO signal_prekeys VALUES (?, ?, ?, ?, ?)').run(
    a.id,
    7,
    randomBytes(33),
    randomBytes(32),
    1,
  );
  db.prepare('INSERT INTO signal_signed_prekeys VALUES (?, ?, ?, ?, ?, ?)').run(
    a.id,
    1,
    randomBytes(33),
    randomBytes(32),
    randomBytes(64),
    5,
  );
  db.prepare('INSERT INTO signal_sessions VALUES (?, ?, ?, ?)').run(
    a.id,
    '4915100000001.1',
    randomBytes(300),
    6,
  );
  db.prepare('INSERT INTO signal_identities VALUES (?, ?, ?, ?, ?, ?)').run(
    a.id,
    '4915100000001',
    randomBytes(33),
    'trusted',
    1,
    2,
  );
  db.prepare('INSERT INTO signal_key_counters VALUES (?, ?, ?)').run(a.id, 40, 2);
  db.prepare('INSERT INTO signal_sender_keys VALUES (?, ?, ?, ?, ?, ?)').run(
    a.id,
    '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
    '4915100000001',
    1,
    randomBytes(120),
    7,
  );
  await store.groups.put({
    puppetId: a.id,
    groupJid: '120363001@g.wa.interop',
    version: 2,
    info: '{"subject":"s"}',
    active: false,
  });
  await store.groups.addKeyHolders(a.id, '120363001@g.wa.interop', ['4915100000001:1@s.wa.interop']);
  const matrix = openMatrixStore({ kind: 'sqlite', db });
  await matrix.recordTransaction('t1', [{ key: '$e1', roomId: '!r', kind: 'event', payload: { body: 'x' } }]);
  await matrix.putRoom({
    roomId: '!r',
    kind: 'portal',
    localUser: '@u:x',
    remoteJid: '4915100000001@wa.interop',
  });
  await matrix.putGhost('@wa_1:x', '4915100000001@wa.interop');
  await matrix.putReaction('!r', '$re', '$s1', '👍');
  await matrix.setDoublePuppet('@u:x', true);
  // The Matrix crypto store's sealed rows (adapters/matrix/crypto/): copied as bytes, never opened.
  db.prepare('INSERT INTO matrix_crypto_idb_schema VALUES (?, ?)').run(
    'ghost-1::matrix-sdk-crypto',
    randomBytes(80),
  );
  db.prepare('INSERT INTO matrix_crypto_idb VALUES (?, ?, ?, ?)').run(
    'ghost-1::matrix-sdk-crypto',
    1,
    'core',
    randomBytes(200),
  );
  const xmpp = openXmppStore({ kind: 'sqlite', db });
  const { run } = (await xmpp.beginRun()).run;
  await xmpp.ensureContact('user1@example.org', '+4915100000001', '4915100000001@wa.interop', 'Bob');
  await xmpp.writeJournal({
    run,
    append: [{ localUser: 'user1@example.org', contact: 'c', localId: 'x1', stanza: '<m/>', receivedAt: 9 }],
    settle: [],
  });
  await store.close();
  return file;
}

/** Every row of every table, comparable: bytes as hex, sorted. */
function sqliteRows(file: string): Map<string, string[]> {
  const db = new Database(file, { readonly: true });
  const tables = db
    .prepare(
      `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version'`,
    )
    .pluck()
    .all() as string[];
  const out = new Map(
    // The leases and relay events (empty on SQLite: one process) are not copied: the workers' live state.
    tables
      .filter((t) => t !== 'leases' && t !== 'relay_events')
      .map((t) => [t, rowsOf(db.prepare(`SELECT * FROM ${t}`).all() as Record<string, unknown>[])]),
  );
  db.close();
  return out;
}

const rowsOf = (rows: Record<string, unknown>[], columns?: readonly string[]): string[] =>
  rows
    .map((r) =>
      JSON.stringify(
        Object.entries(r)
          .filter(([k]) => columns === undefined || columns.includes(k))
          .sort(([x], [y]) => x.localeCompare(y))
          .map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('hex') : v]),
      ),
    )
    .sort();

describe('db copy from SQLite to PostgreSQL', () => {
  it('copies every table row for row, ids going on after the copied ones, and prints what it copied', async () => {
    const file = await filledSqlite();
    const before = sqliteRows(file);
    const url = await postgres().createDatabase();
    writeFileSync(path.join(tmp.dir, 'pw'), 'unused-under-trust\n', { mode: 0o600 });
    const { code, out } = await cli([
      'db',
      'copy',
      '--from',
      `sqlite:${file}`,
      '--to',
      url,
      '--password-file',
      path.join(tmp.dir, 'pw'),
    ]);
    expect(out).toMatch(
      new RegExp(
        `^copied sqlite:${file} to ${url} \\(schema version \\d+\\): \\d+ rows in ${before.size} tables`,
      ),
    );
    expect(code).toBe(EXIT.ok);
    expect(out).toContain('  signal_sessions: 1\n');
    expect(out).toContain('  outbox: 2\n');
    expect(out).toContain('  xmpp_journal: 1\n');
    expect(out).not.toContain('  leases:'); // the workers' live state: not copied
    expect(out).not.toContain('  relay_events:');

    const pg = await PgDatabase.open({ url, migrations: false });
    for (const [table, rows] of before) {
      const sqliteColumns =
        rows.length > 0 ? (JSON.parse(rows[0]!) as [string, unknown][]).map(([k]) => k) : [];
      const got = rowsOf(await pg.query(`SELECT * FROM ${table}`), sqliteColumns);
      expect({ table, rows: got }).toEqual({ table, rows });
      expect(rows.length).toBeGreaterThan(0); // every table had something to copy
    }
    // message_map's order (SQLite's rowid) is PostgreSQL's seq.
    expect((await pg.query('SELECT local_id FROM message_map ORDER BY seq')).map((r) => r.local_id)).toEqual([
      'l2',
      'l1',
    ]);
    await pg.close();

    // The copy runs: new rows take ids after the highest copied (2; SQLite too would give 3 again).
    const store = await openPostgresStore({ url, migrations: bridgeMigrations('postgres') });
    expect((await store.puppets.create(puppet(4))).id).toBe(3);
    await store.inbox.record({
      puppetId: 1,
      sender: 's',
      messageId: 'm3',
      portalId: 1,
      payload: randomBytes(8),
    });
    expect((await store.inbox.pending(1)).map((e) => e.messageId)).toEqual(['m2', 'm3']);
    const xmpp = openXmppStore({ kind: 'postgres', pg: store.pg });
    expect((await xmpp.beginRun()).previous?.run).toBe(1);
    expect((await xmpp.journaled()).map((j) => j.localId)).toEqual(['x1']);
    await store.close();
  });

  it('refuses while a bridge holds the source, and a target that is not empty; nothing written', async () => {
    const file = await filledSqlite();
    const url = await postgres().createDatabase();
    const lock = lockSqliteDatabase(file);
    const busy = await cli(['db', 'copy', '--from', `sqlite:${file}`, '--to', url]);
    lock.release();
    expect(busy.code).toBe(EXIT.failure);
    expect(busy.out).toMatch(/in use by another interop-bridge process .*stop that process first/);

    const store = await openPostgresStore({ url, migrations: bridgeMigrations('postgres') });
    await store.puppets.create(puppet(9));
    await store.close();
    const full = await cli(['db', 'copy', '--from', `sqlite:${file}`, '--to', url]);
    expect(full.code).toBe(EXIT.failure);
    expect(full.out).toMatch(
      /the target postgres:\/\/.* is not empty \(rows in puppets\): db copy fills a new, empty database only/,
    );
    const pg = await PgDatabase.open({ url, migrations: false });
    expect((await pg.queryOne('SELECT count(*) AS n FROM puppets'))!.n).toBe(1);
    await pg.close();
  });

  it('says what is wrong with its arguments', async () => {
    const url = await postgres().createDatabase();
    const notSqlite = await cli(['db', 'copy', '--from', 'bridge.db', '--to', url]);
    expect(notSqlite).toEqual({
      code: EXIT.usage,
      out: expect.stringMatching(/^--from: expected sqlite:<file>/),
    });
    const missing = await cli(['db', 'copy', '--from', `sqlite:${tmp.dir}/none.db`, '--to', url]);
    expect(missing.out).toMatch(/--from: there is no database at .*none\.db/);
    const notPg = await cli(['db', 'copy', '--from', `sqlite:${tmp.dir}/none.db`, '--to', 'mysql://x']);
    expect(notPg).toEqual({ code: EXIT.usage, out: expect.stringMatching(/^--to: expected postgres:\/\//) });
    const noPw = await cli([
      'db',
      'copy',
      '--from',
      'sqlite:x',
      '--to',
      url,
      '--password-file',
      '/nonexistent/pw',
    ]);
    expect(noPw.out).toMatch(/^--password-file: cannot read \/nonexistent\/pw/);
    const down = await cli([
      'db',
      'copy',
      '--from',
      `sqlite:${await filledSqlite()}`,
      '--to',
      'postgres://bridge@127.0.0.1:1/x',
    ]);
    expect(down.code).toBe(EXIT.failure);
    expect(down.out).toMatch(/cannot connect to the database postgres:\/\/bridge@127\.0\.0\.1:1\/x/);
  });
});
