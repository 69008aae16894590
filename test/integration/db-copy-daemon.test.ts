/**
 * Moving a running installation from SQLite to PostgreSQL with `db copy`, end to end: the daemon
 * (`interop-bridge start`, built, a child process) bridges an XMPP user on a real Prosody and a
 * native contact (the emulator). A conversation on SQLite, then a message that cannot leave (the
 * gateway refuses the puppet's connections) waits in the outbox; the daemon is stopped, the
 * database copied into a real PostgreSQL, the config switched, the daemon started on PostgreSQL:
 * the waiting message arrives once, the Signal session carries on (the contact sees no new
 * identity, nobody asks for a retry, no session is added), and new messages go both ways.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { EXIT, runCli } from '../../app/cli.js';
import { NativeUser } from '../../emulator/native-user.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { signalAddress } from '../../src/signal/address.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { DaemonChild } from '../support/daemon-child.js';
import { startEmulator, type StartedEmulator } from '../support/emulator-process.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { tempDir } from '../support/tmp.js';
import { freePort, until } from '../support/wait.js';
import { bodiesFrom, chat, contactJid, DOMAIN, nativeTexts, register } from '../support/xmpp-bridge.js';
import { connectUser, startProsody, type TestUser, type XmppServer } from '../support/xmpp-servers.js';

const PROVIDER = 'dbcopy';
const SECRET = 'component-secret-for-db-copy';
const BOB = '+4915100008001';

describe('db copy from SQLite to PostgreSQL under a running conversation (the daemon, Prosody)', () => {
  const tmp = tempDir('db-copy-daemon-');
  let pgServer: PostgresServer;
  let xmpp: XmppServer;
  let emulator: StartedEmulator;
  let daemon: DaemonChild | undefined;
  let alice: TestUser | undefined;
  let bob: NativeUser | undefined;
  let writeConfig: (database: string) => void;
  const dataDir = tmp.file('state');
  const sqliteFile = path.join(dataDir, 'interop-bridge.db');
  const config = tmp.file('bridge.yaml');

  const linkUps = () => (daemon?.log ?? '').split('XMPP component link up').length - 1;
  const startDaemon = async () => {
    const before = linkUps();
    await daemon!.start(() => linkUps() > before, 'the daemon to connect its component');
  };

  beforeAll(async () => {
    pgServer = await startPostgres();
    xmpp = await startProsody({ componentDomain: DOMAIN, componentSecret: SECRET });
    const key = await generateProviderKey('EdDSA');
    emulator = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey: key } });
    writeProviderKey(path.join(dataDir, 'provider-signing-key.jwk'), key);
    const httpPort = await freePort();
    writeConfig = (database) =>
      writeFileSync(
        config,
        [
          'bridge:',
          `  provider_id: ${PROVIDER}`,
          `  data_dir: ${dataDir}`,
          `  database: "${database}"`,
          `  http: { port: ${httpPort} }`,
          'gateway:',
          `  port: ${emulator.running.gateway.port}`,
          `  root_key: ${Buffer.from(emulator.root).toString('base64')}`,
          '  reconnect: { initial_delay_ms: 50, max_delay_ms: 300 }',
          'signal:',
          '  prekey_batch_size: 20',
          'xmpp:',
          '  enabled: true',
          '  server_host: 127.0.0.1',
          `  server_port: ${xmpp.componentPort}`,
          `  component_domain: ${DOMAIN}`,
          `  secret: ${SECRET}`,
          `  allowed_domains: [${xmpp.host}]`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
    writeConfig('interop-bridge.db');
    daemon = new DaemonChild(config);
    await startDaemon();
  }, 120_000);

  afterAll(async () => {
    await daemon?.kill();
    await alice?.stop().catch(() => undefined);
    await bob?.close().catch(() => undefined);
    await emulator?.running.stop();
    await xmpp?.stop();
    await pgServer?.stop();
    tmp.cleanup();
  });

  it('delivers the waiting message after the switch, keeps the Signal session, and talks both ways', async () => {
    bob = await NativeUser.connect({
      emulator: emulator.running.gateway,
      phone: BOB,
      rootPublicKey: emulator.root,
    });
    await xmpp.register('alice', 'alice-pw');
    alice = await connectUser(xmpp, 'alice', 'alice-pw');
    await register(alice);
    const bobJid = contactJid(BOB);
    const fromBob = () => bodiesFrom(alice!, bobJid);

    // A conversation on SQLite: sessions both ways.
    await alice.client.send(chat(bobJid, 'hello on SQLite', 'c-1'));
    await until(() => nativeTexts(bob!).includes('hello on SQLite'), 'the first message at Bob');
    const first = bob.received.find((m) => m.content.kind === 'text')!;
    const puppet = signalAddress(first.from, first.fromDevice);
    await bob.sendText(first.from, 'reply on SQLite', { devices: [first.fromDevice] });
    await until(() => fromBob().includes('reply on SQLite'), 'the reply at Alice');
    const identityBefore = bob.signal.remoteIdentity(puppet)!.identityKey;
    let identityChanges = 0;
    bob.signal.onIdentityChange(() => identityChanges++);
    // The kind of each Signal message Bob decrypts from now on: a new session would be a pkmsg.
    const kinds: string[] = [];
    const decrypt = bob.signal.decrypt.bind(bob.signal);
    bob.signal.decrypt = (address, type, body) => {
      kinds.push(type);
      return decrypt(address, type, body);
    };

    // The puppet cannot reach the gateway: what Alice sends now waits in the outbox.
    const faults = emulator.running.gateway.faults;
    faults.refuseConnections(true);
    expect(faults.disconnect(first.from)).toBeGreaterThan(0);
    await alice.client.send(chat(bobJid, 'waiting through the move', 'c-2'));
    const sqlite = new Database(sqliteFile, { readonly: true });
    const queued = () =>
      (sqlite.prepare("SELECT count(*) AS n FROM outbox WHERE state = 'queued'").get() as { n: number }).n;
    await until(() => queued() === 1, 'the message queued in the outbox');
    expect(await daemon!.stop()).toBe(0);
    const sessions = sqlite.prepare('SELECT address, record FROM signal_sessions ORDER BY address').all();
    expect(sessions.length).toBeGreaterThan(0);
    sqlite.close();

    // The move.
    const url = await pgServer.createDatabase();
    let out = '';
    const code = await runCli(['db', 'copy', '--from', `sqlite:${sqliteFile}`, '--to', url], {
      out: (t) => (out += t),
      err: (t) => (out += t),
      env: {},
    });
    expect({ code, out }).toEqual({ code: EXIT.ok, out: expect.stringContaining('  outbox: ') });
    writeConfig(url);
    faults.refuseConnections(false);
    await startDaemon();
    await until(
      () => /"database":"postgres:\/\/[^"]*"/.test(daemon!.log),
      'the daemon started on PostgreSQL',
    );

    // The waiting message arrives, once; the conversation carries on both ways.
    await until(
      () => nativeTexts(bob!).includes('waiting through the move'),
      'the waiting message at Bob',
      30_000,
    );
    await bob.sendText(first.from, 'reply on PostgreSQL', { devices: [first.fromDevice] });
    await until(() => fromBob().includes('reply on PostgreSQL'), 'the reply at Alice, from PostgreSQL');
    await alice.client.send(chat(bobJid, 'hello on PostgreSQL', 'c-3'));
    await until(() => nativeTexts(bob!).includes('hello on PostgreSQL'), 'a new message at Bob');
    expect(nativeTexts(bob).filter((t) => t === 'waiting through the move')).toHaveLength(1);
    expect(fromBob()).toEqual(['reply on SQLite', 'reply on PostgreSQL']);

    // The same Signal session: no identity change at Bob, no retry either way, no new session.
    expect(identityChanges).toBe(0);
    expect(Buffer.from(bob.signal.remoteIdentity(puppet)!.identityKey)).toEqual(Buffer.from(identityBefore));
    expect(bob.receipts.filter((r) => r.type === 'retry')).toEqual([]);
    expect(kinds.length).toBeGreaterThanOrEqual(2);
    expect(kinds.filter((k) => k !== 'msg')).toEqual([]);
    const pg = await PgDatabase.open({ url, migrations: false });
    const after = await pg.query('SELECT address FROM signal_sessions ORDER BY address');
    expect(after.map((r) => r.address)).toEqual(sessions.map((s) => (s as { address: string }).address));
    // The receipts' `sent` states are written a moment after their acks (outbox-marks.ts).
    await until(
      async () => (await pg.queryOne("SELECT count(*) AS n FROM outbox WHERE state = 'queued'"))!.n === 0,
      'nothing left queued on PostgreSQL',
    );
    await pg.close();
    expect(daemon!.log).not.toContain('waiting through the move');
  }, 120_000);
});
