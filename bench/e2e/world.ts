/**
 * The end-to-end benchmark's world: everything around the bridge, plus the bridge itself as an
 * operator runs it.
 *
 * - The bridge: the daemon (`interop-bridge start --config bridge.yaml`, dist/app/cli.js) in a
 *   child process, with its SQLite store in a temporary directory (WAL, synchronous=NORMAL, as in
 *   production), the Matrix adapter and the XMPP adapter enabled. Or, with `database:
 *   'postgres'`, its store on a PostgreSQL server started for this world (test/support/postgres.ts,
 *   PostgreSQL's default settings: fsync and synchronous_commit on, as in production), its data
 *   directory in a temporary directory too, the bridge connecting over TCP to 127.0.0.1.
 * - This process: the gateway emulator (its own SQLite store) and the native users, the stand-in
 *   Matrix homeserver and its local users, and the @xmpp/client users. One clock for every send and
 *   every receive, so latency is measured where the users are, without clock skew.
 * - Prosody: a real XMPP server (test/support/xmpp-servers.ts), its own process.
 *
 * Each path has `conversations` parallel conversations, each between its own pair of users (one
 * puppet per Matrix or XMPP user, so conversations are independent at the bridge as they are in
 * production).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Element } from '@xmpp/xml';

import { buildRegistration } from '../../adapters/matrix/registration.js';
import { loadConfig } from '../../src/config/loader.js';
import { generateProviderKey } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { NativeUser, type ReceivedMessage } from '../../emulator/native-user.js';
import { LocalUser, StandInHomeserver, type ClientEvent } from '../../test/support/homeserver/index.js';
import { startEmulator, type StartedEmulator } from '../../test/support/emulator-process.js';
import { freePort } from '../../test/support/ports.js';
import { tempDir } from '../../test/support/tmp.js';
import {
  connectUser,
  startProsody,
  type TestUser,
  type XmppServer,
} from '../../test/support/xmpp-servers.js';
import { chat, contactJid, register } from '../../test/support/xmpp-bridge.js';
import { startPostgres, type PostgresServer } from '../../test/support/postgres.js';
import { builtFile } from '../scale/emulator-child.js';
import { serverCpuSeconds, type DatabaseId } from './database.js';

const PROVIDER = 'e2ebench';
const SERVER = 'example.test';
const BOT = `@interop:${SERVER}`;
const DOMAIN = 'wa.localhost';
const SECRET = 'e2e-bench-component-secret';

/** The paths measured; `baseline` is native -> emulator -> native without the bridge. */
export type PathId =
  'baseline' | 'matrix-to-native' | 'native-to-matrix' | 'xmpp-to-native' | 'native-to-xmpp';
export const PATHS: readonly PathId[] = [
  'baseline',
  'matrix-to-native',
  'native-to-matrix',
  'xmpp-to-native',
  'native-to-xmpp',
];

/** Called for every message a receiving user observes: the path, the conversation, the text. */
export type Sink = (path: PathId, conversation: number, text: string) => void;

export interface WorldOptions {
  conversations: number;
  /** The stand-in homeserver checks every request against the spec (default true, as in tests). */
  validate: boolean;
  /** A directory for a CPU profile of the bridge process (`--cpu-prof`). */
  cpuProfileDir?: string;
  /** The bridge's store (default SQLite). */
  database?: DatabaseId;
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`e2e set-up: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A phone number per path and conversation. */
const phone = (block: number, i: number): string =>
  `+49151${String(block).padStart(2, '0')}${String(i).padStart(5, '0')}`;

export class World {
  readonly tmp = tempDir('interop-e2e-');
  emulator!: StartedEmulator;
  prosody!: XmppServer;
  hs!: StandInHomeserver;
  /** The bridge's PostgreSQL server, when `database` is postgres. */
  postgres: PostgresServer | undefined;
  private daemon: ChildProcess | undefined;
  private daemonExit: Promise<void> = Promise.resolve();
  httpPort = 0;

  /** Matrix: the local users, their portal rooms, and their native partners. */
  readonly matrixUsers: LocalUser[] = [];
  readonly portals: string[] = [];
  readonly matrixNatives: NativeUser[] = [];
  /** The JID of each Matrix user's puppet, as the native partner sees it. */
  readonly matrixPuppetJids: string[] = [];
  /** XMPP: the users and their native partners. */
  readonly xmppUsers: TestUser[] = [];
  readonly xmppNatives: NativeUser[] = [];
  readonly xmppPuppetJids: string[] = [];
  /** The baseline: native senders and native receivers. */
  readonly baseSenders: NativeUser[] = [];
  readonly baseReceivers: NativeUser[] = [];

  /** Where received messages go (set by the running round). */
  sink: Sink = () => undefined;

  private constructor(readonly options: WorldOptions) {}

  static async start(options: WorldOptions): Promise<World> {
    const w = new World(options);
    try {
      await w.init();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  get daemonPid(): number | undefined {
    return this.daemon?.pid;
  }

  /** CPU seconds of the bridge's PostgreSQL server so far; NaN on SQLite. */
  databaseCpuSeconds(): number {
    return this.postgres ? serverCpuSeconds(this.postgres.pid) : Number.NaN;
  }

  private async init(): Promise<void> {
    const n = this.options.conversations;
    const key = await generateProviderKey('EdDSA');
    this.httpPort = await freePort();
    const matrixPort = await freePort();
    const onPostgres = this.options.database === 'postgres';
    [this.emulator, this.prosody] = await Promise.all([
      startEmulator(this.tmp, {
        provider: { id: PROVIDER, signingKey: key, allowedMediaHosts: [`127.0.0.1:${this.httpPort}`] },
      }),
      startProsody({ componentDomain: DOMAIN, componentSecret: SECRET }),
      onPostgres ? startPostgres({ durable: true }).then((pg) => (this.postgres = pg)) : undefined,
    ]);
    const database = this.postgres ? await this.postgres.createDatabase('interop_bridge') : undefined;
    writeProviderKey(this.tmp.file('state/provider-signing-key.jwk'), key);
    const yaml = (hsUrl: string) =>
      [
        'bridge:',
        `  provider_id: ${PROVIDER}`,
        `  data_dir: ${this.tmp.file('state')}`,
        ...(database ? [`  database: "${database}"`] : []),
        '  http:',
        `    port: ${this.httpPort}`,
        'gateway:',
        `  port: ${this.emulator.running.gateway.port}`,
        `  root_key: ${Buffer.from(this.emulator.root).toString('base64')}`,
        '  reconnect: { initial_delay_ms: 50, max_delay_ms: 500 }',
        'signal:',
        '  prekey_batch_size: 20',
        'matrix:',
        '  enabled: true',
        `  homeserver_url: ${hsUrl}`,
        `  server_name: ${SERVER}`,
        '  as_token: as-token-for-the-e2e-bench',
        '  hs_token: hs-token-for-the-e2e-bench',
        `  listen_port: ${matrixPort}`,
        `  permissions: { "${SERVER}": user }`,
        'xmpp:',
        '  enabled: true',
        `  server_port: ${this.prosody.componentPort}`,
        `  component_domain: ${DOMAIN}`,
        `  secret: ${SECRET}`,
        'logging:',
        '  level: warn',
        '',
      ].join('\n');
    // It holds the tokens and the component secret inline: owner-only, as start requires.
    const configFile = this.tmp.file('bridge.yaml', yaml('http://127.0.0.1:1'), 0o600);
    const loaded = loadConfig({ path: configFile, env: {} });
    this.hs = await StandInHomeserver.start({
      registration: buildRegistration(loaded.config, {
        asToken: loaded.config.matrix.as_token as string,
        hsToken: loaded.config.matrix.hs_token as string,
      }),
      serverName: SERVER,
      validate: this.options.validate,
    });
    writeFileSync(configFile, yaml(this.hs.url), { mode: 0o600 });
    await this.startDaemon(configFile);

    // Receivers: every user hands what it observes to the sink.
    this.hs.onEvent((e: ClientEvent) => this.onMatrixEvent(e));

    // Matrix: log in through the bot, open a portal with the native partner.
    const natives = async (block: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          NativeUser.connect({
            emulator: this.emulator.running.gateway,
            phone: phone(block, i),
            rootPublicKey: this.emulator.root,
          }),
        ),
      );
    this.matrixNatives.push(...(await natives(1)));
    this.xmppNatives.push(...(await natives(2)));
    this.baseSenders.push(...(await natives(3)));
    this.baseReceivers.push(...(await natives(4)));
    this.hookNatives(this.matrixNatives, 'matrix-to-native');
    this.hookNatives(this.xmppNatives, 'xmpp-to-native');
    this.hookNatives(this.baseReceivers, 'baseline');

    for (let i = 0; i < n; i++) await this.loginMatrix(i);
    for (let i = 0; i < n; i++) await this.loginXmpp(i);
    // The baseline's senders learn their partner's devices from a first message.
    for (let i = 0; i < n; i++) {
      const receiver = this.baseReceivers[i] as NativeUser;
      await (this.baseSenders[i] as NativeUser).sendText(receiver.jid, 'hello', { devices: [0] });
      await receiver.waitForMessage((m) => m.content.kind === 'text', 30_000);
      await receiver.sendText(this.baseSenders[i]!.jid, 'hello back', { devices: [0] });
    }
    this.clearReceived();
  }

  private async startDaemon(configFile: string): Promise<void> {
    const log = openSync(this.tmp.file('bridge.log'), 'a');
    const prof = this.options.cpuProfileDir;
    const child = spawn(
      process.execPath,
      [
        ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []),
        builtFile('app/cli.js'),
        'start',
        '--config',
        configFile,
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    this.daemon = child;
    this.daemonExit = new Promise((resolve) => child.once('exit', () => resolve()));
    await until(async () => {
      if (child.exitCode !== null)
        throw new Error(`the bridge exited with ${child.exitCode}: ${this.bridgeLog().slice(-2000)}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.httpPort}/health`);
        await res.arrayBuffer();
        return res.ok;
      } catch {
        return false;
      }
    }, 'the bridge daemon to answer /health');
  }

  bridgeLog(): string {
    try {
      return readFileSync(this.tmp.file('bridge.log'), 'utf8');
    } catch {
      return '';
    }
  }

  private hookNatives(users: NativeUser[], path: PathId): void {
    users.forEach((u, i) => {
      const list = u.received;
      list.push = (...items: ReceivedMessage[]): number => {
        for (const m of items) if (m.content.kind === 'text') this.sink(path, i, m.content.text);
        return Array.prototype.push.apply(list, items);
      };
    });
  }

  private onMatrixEvent(e: ClientEvent): void {
    if (e.type !== 'm.room.message') return;
    const i = this.portals.indexOf(e.room_id);
    if (i < 0 || e.sender === this.matrixUsers[i]?.userId) return;
    this.sink('native-to-matrix', i, String(e.content['body'] ?? ''));
  }

  private async loginMatrix(i: number): Promise<void> {
    const user = LocalUser.create(this.hs, `bench${i}`, `Bench ${i}`);
    this.matrixUsers.push(user);
    const fromBot = (room: string, re: RegExp) =>
      user.waitFor(
        room,
        (e) => e.sender === BOT && e.type === 'm.room.message' && re.test(String(e.content['body'])),
      );
    const management = await user.createDirectRoom(BOT);
    await user.waitFor(management, (e) => e.sender === BOT && e.type === 'm.room.message');
    await user.sendText(management, 'login');
    await fromBot(management, /login confirm/);
    await user.sendText(management, 'login confirm');
    await fromBot(management, /You are now connected/);
    const native = this.matrixNatives[i] as NativeUser;
    await user.sendText(management, `start-chat ${phone(1, i)}`);
    const portal = await user.waitForInvite((e) => e.room_id !== management);
    await user.join(portal);
    // A first message both ways: the puppet's JID for the native, the sessions set up.
    await user.sendText(portal, 'hello');
    const got = await native.waitForMessage((m) => m.content.kind === 'text', 60_000);
    this.matrixPuppetJids[i] = got.from;
    this.portals[i] = portal;
    await native.sendText(got.from, 'hello back');
    await user.waitFor(portal, (e) => e.type === 'm.room.message' && e.sender !== user.userId);
  }

  private async loginXmpp(i: number): Promise<void> {
    const name = `xbench${i}`;
    await this.prosody.register(name, `${name}-password`);
    const user = await connectUser(this.prosody, name, `${name}-password`);
    // As chat clients do (Conversations, Gajim, Dino): small stanzas go out at once, no Nagle delay.
    (user.client as unknown as { socket: Socket | null }).socket?.setNoDelay(true);
    this.xmppUsers.push(user);
    await register(user);
    const contact = contactJid(phone(2, i));
    user.client.on('stanza', (el: Element) => {
      if (el.name !== 'message' || el.attrs.type === 'error') return;
      if ((el.attrs.from ?? '').split('/')[0] !== contact) return;
      const body = el.getChild('body');
      if (body) this.sink('native-to-xmpp', i, body.getText());
    });
    const native = this.xmppNatives[i] as NativeUser;
    // The puppet may still be dialling: the bridge keeps the message until it is connected.
    await user.client.send(chat(contact, 'hello', `hello-${i}`));
    const got = await native.waitForMessage((m) => m.content.kind === 'text', 60_000);
    this.xmppPuppetJids[i] = got.from;
    await native.sendText(got.from, 'hello back');
    await user.waitForMessages(
      (ms) => ms.some((m) => (m.attrs.from ?? '').split('/')[0] === contact),
      60_000,
    );
  }

  /** Drops what the users have received so far (the lists would grow with every round). */
  clearReceived(): void {
    for (const u of [...this.matrixNatives, ...this.xmppNatives, ...this.baseReceivers, ...this.baseSenders])
      u.received.length = 0;
    for (const u of this.xmppUsers) {
      u.messages.length = 0;
      u.stanzas.length = 0;
    }
    this.hs.requests.length = 0;
  }

  /** Sends one message of a path's conversation as its user's client does; resolves once sent. */
  send(path: PathId, i: number, text: string, id: string): Promise<unknown> {
    switch (path) {
      case 'baseline':
        return (this.baseSenders[i] as NativeUser).sendText((this.baseReceivers[i] as NativeUser).jid, text, {
          devices: [0],
        });
      case 'matrix-to-native':
        return (this.matrixUsers[i] as LocalUser).sendText(this.portals[i] as string, text);
      case 'native-to-matrix':
        return (this.matrixNatives[i] as NativeUser).sendText(this.matrixPuppetJids[i] as string, text);
      case 'xmpp-to-native':
        return (this.xmppUsers[i] as TestUser).client.send(chat(contactJid(phone(2, i)), text, id));
      case 'native-to-xmpp':
        return (this.xmppNatives[i] as NativeUser).sendText(this.xmppPuppetJids[i] as string, text);
    }
  }

  async close(): Promise<void> {
    const natives = [...this.matrixNatives, ...this.xmppNatives, ...this.baseSenders, ...this.baseReceivers];
    await Promise.all(natives.map((u) => u.close().catch(() => undefined)));
    await Promise.all(this.xmppUsers.map((u) => u.stop().catch(() => undefined)));
    const child = this.daemon;
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await this.daemonExit;
      clearTimeout(killer);
    }
    await this.hs?.close();
    await this.emulator?.running.stop();
    await this.prosody?.stop();
    await this.postgres?.stop();
    this.tmp.cleanup();
  }
}
