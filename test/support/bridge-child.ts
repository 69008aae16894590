/**
 * A bridge process for the crash tests (test/integration/bridge-crash.test.ts): the parent kills it
 * with SIGKILL and starts it again, so it must be a separate process. It is compiled on the fly into
 * dist/test/support/ and imports the built core from dist/ (`npm test` builds first).
 *
 * It opens the bridge's SQLite store, starts the `Bridge` against the emulator, and attaches a
 * durable adapter standing in for a homeserver:
 * - incoming events are written to its own SQLite file with UNIQUE(remote, remoteId), so a
 *   redelivery after a crash is a no-op (counted), and the row order is the arrival order;
 * - the outgoing script (`perConversation` texts per conversation) is submitted from the start at
 *   every start, as a homeserver retries a transaction it has no answer for: the core is idempotent
 *   on `localId`. Only submissions not yet answered are paced.
 *
 * argv[2]: the path of a JSON `ChildConfig`. stdout: one JSON line per event (`ready`, `submitted`).
 * SIGTERM: stops the bridge and closes both databases.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Bridge } from '../../src/bridge/core.js';
import type { AdapterCapabilities, GroupAdapter } from '../../src/bridge/adapter.js';
import type { DeliveryUpdate, GroupUpdate, IncomingEvent, Notice } from '../../src/bridge/events.js';
import { createLogger } from '../../src/observability/logger.js';
import type { ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { SqliteSenderKeyBackend, SqliteSignalBackend } from '../../src/signal/index.js';
import { ensureAtRestKey, PayloadVault } from '../../src/store/at-rest.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import pino from 'pino';

export interface ChildConfig {
  storeFile: string;
  adapterFile: string;
  logFile: string;
  gateway: {
    host: string;
    port: number;
    /** base64 */
    rootPublicKey: string;
    gatewayId: string;
    providerId: string;
    signingKey: ProviderPrivateJwk;
  };
  /**
   * The local users and, for each, the native contacts it writes to; and the group it makes with
   * some of them on its first start (written to as one more conversation, `perGroup` texts).
   */
  users: { localUser: string; contacts: string[]; group?: { subject: string; members: string[] } }[];
  perConversation: number;
  perGroup: number;
  /** Pause between two new submissions of one conversation: uniform in [min, max] ms. */
  pace: { min: number; max: number };
}

/** What the script sends: the parent parses the number to check order. */
const outgoingText = (user: number, contact: number, i: number): string => `u${user}c${contact} #${i}`;
const outgoingLocalId = (user: number, contact: number, i: number): string => `$u${user}c${contact}m${i}`;

/** The adapter database, as the parent reads it afterwards. */
const ADAPTER_SCHEMA = `
  CREATE TABLE IF NOT EXISTS delivered (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    local_user TEXT NOT NULL,
    remote TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (remote, remote_id)
  );
  CREATE TABLE IF NOT EXISTS submitted (local_id TEXT PRIMARY KEY);
  CREATE TABLE IF NOT EXISTS failed (local_id TEXT PRIMARY KEY, reason TEXT);
  CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS groups (local_user TEXT PRIMARY KEY, group_jid TEXT NOT NULL);
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class DurableAdapter implements GroupAdapter {
  readonly network = 'matrix' as const;
  readonly capabilities: AdapterCapabilities = {
    media: false,
    locations: false,
    replies: true,
    edits: true,
    deletes: true,
    reactions: true,
    readReceipts: true,
    typing: true,
    presence: true,
    maxMediaBytes: 1024 * 1024,
  };
  private readonly insert;
  private readonly existing;
  private readonly count;
  private readonly fail;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(
      'INSERT INTO delivered (local_user, remote, remote_id, text) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.existing = db.prepare('SELECT seq FROM delivered WHERE remote = ? AND remote_id = ?');
    this.count = db.prepare(
      'INSERT INTO counters (name, n) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = n + 1',
    );
    this.fail = db.prepare('INSERT INTO failed (local_id, reason) VALUES (?, ?) ON CONFLICT DO NOTHING');
  }

  attach(): void {}

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  bump(name: string): void {
    this.count.run(name);
  }

  deliver(event: IncomingEvent): Promise<string | undefined> {
    const e = event.event;
    const text = e.type === 'message' && e.body.kind === 'text' ? e.body.text : `(${e.type})`;
    this.db.transaction(() => {
      const fresh = this.insert.run(event.localUser, event.remote, event.remoteId, text).changes > 0;
      if (!fresh) this.bump('redelivered');
    })();
    const row = this.existing.get(event.remote, event.remoteId) as { seq: number };
    return Promise.resolve(`$in${row.seq}`);
  }

  updateDelivery(update: DeliveryUpdate): void {
    if (update.state === 'failed') this.fail.run(update.localId, update.reason ?? '');
  }

  notify(_localUser: string, _notice: Notice): void {}

  /** A group the user is in: recorded once made, so the script writes to it. */
  updateGroup(update: GroupUpdate): Promise<void> {
    if (update.change.kind === 'created') {
      this.db
        .prepare('INSERT INTO groups (local_user, group_jid) VALUES (?, ?) ON CONFLICT DO NOTHING')
        .run(update.localUser, update.snapshot.group);
    }
    return Promise.resolve();
  }

  groupOf(localUser: string): string | undefined {
    const row = this.db.prepare('SELECT group_jid FROM groups WHERE local_user = ?').get(localUser) as
      { group_jid: string } | undefined;
    return row?.group_jid;
  }

  showEphemeral(): void {}
}

function say(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function main(): Promise<void> {
  const configFile = process.argv[2];
  if (!configFile) throw new Error('usage: bridge-child <config.json>');
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as ChildConfig;

  const adb = new Database(config.adapterFile);
  adb.pragma('journal_mode = WAL');
  adb.pragma('synchronous = NORMAL');
  adb.exec(ADAPTER_SCHEMA);
  const adapter = new DurableAdapter(adb);
  adapter.bump('starts');

  const logger = createLogger({
    level: 'info',
    format: 'json',
    destination: pino.destination({ dest: config.logFile, append: true, sync: true }),
  });
  const store = openSqliteStore(config.storeFile);
  // As the daemon runs: what waits is sealed with an at-rest key that survives the kills.
  const atRest = ensureAtRestKey(path.join(path.dirname(config.storeFile), 'at-rest.key'));
  const bridge = new Bridge({
    store,
    vault: new PayloadVault(atRest.key),
    signalBackend: (id) => new SqliteSignalBackend(store.db, id),
    senderKeyBackend: (id) => new SqliteSenderKeyBackend(store.db, id),
    gateway: {
      host: config.gateway.host,
      port: config.gateway.port,
      rootPublicKey: Buffer.from(config.gateway.rootPublicKey, 'base64'),
      gatewayId: config.gateway.gatewayId,
      providerId: config.gateway.providerId,
      signingKey: config.gateway.signingKey,
      // Short reconnect delays and request timeouts, so a lost answer heals quickly.
      connection: { reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, requestTimeoutMs: 3000 },
    },
    preKeys: 30,
    logger,
  });
  const core = bridge.attach(adapter);

  let stopping = false;
  process.once('SIGTERM', () => {
    stopping = true;
    void bridge
      .stop()
      .then(() => store.close())
      .then(() => {
        adb.close();
        process.exit(0);
      })
      .catch(() => process.exit(1));
  });

  await bridge.start();
  // Enlisting an enlisted user is a no-op; an enlistment a crash interrupted resumes.
  for (const u of config.users) await core.enlist(u.localUser);
  // Each user's group, made once (the parent kills no run before the groups exist).
  for (const u of config.users) {
    if (!u.group || adapter.groupOf(u.localUser) !== undefined) continue;
    if ((await core.groups?.(u.localUser))?.length) continue; // made; its update is on its way
    await core.createGroup?.(u.localUser, u.group.subject, u.group.members);
  }
  for (const u of config.users) {
    while (u.group && adapter.groupOf(u.localUser) === undefined) await sleep(20);
  }
  say({ event: 'ready' });

  const isSubmitted = adb.prepare('SELECT 1 FROM submitted WHERE local_id = ?');
  const markSubmitted = adb.prepare('INSERT INTO submitted (local_id) VALUES (?) ON CONFLICT DO NOTHING');
  // The contacts, then the user's group (as conversation number `contacts.length`).
  const conversations = config.users.flatMap((u, ui) => [
    ...u.contacts.map((remote, ci) => ({ u, ui, remote, ci, count: config.perConversation })),
    ...(u.group
      ? [{ u, ui, remote: adapter.groupOf(u.localUser)!, ci: u.contacts.length, count: config.perGroup }]
      : []),
  ]);
  await Promise.all(
    conversations.map(async ({ u, ui, remote, ci, count }) => {
      for (let i = 0; i < count && !stopping; i++) {
        const localId = outgoingLocalId(ui, ci, i);
        const again = isSubmitted.get(localId) !== undefined;
        await core.submit({
          localId,
          localUser: u.localUser,
          remote,
          event: { type: 'message', body: { kind: 'text', text: outgoingText(ui, ci, i) } },
        });
        if (again) {
          adapter.bump('resubmitted');
          continue;
        }
        markSubmitted.run(localId);
        await sleep(config.pace.min + Math.random() * (config.pace.max - config.pace.min));
      }
    }),
  );
  say({ event: 'submitted' });
}

main().catch((err: unknown) => {
  process.stderr.write(`bridge-child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
