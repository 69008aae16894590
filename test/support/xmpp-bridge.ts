/**
 * The whole XMPP path for integration tests: a real XMPP server (Prosody or ejabberd, with its
 * upload service), the gateway emulator with native users, and the bridge (core, media handler,
 * HTTP listener) with the XMPP adapter made and started the way the daemon does it
 * (`createXmppAdapter`, `bridge.attach`, `start`).
 * The bridge can be stopped and started again on the same database, and the server restarted.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { xml, type Element } from '@xmpp/xml';
import {
  createXmppAdapter,
  openXmppStore,
  type XmppAdapter,
  type XmppStore,
} from '../../adapters/xmpp/index.js';
import type { BridgeDatabase } from '../../app/database.js';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { Bridge, type Lifecycle } from '../../src/bridge/core.js';
import { BridgeMediaHandler } from '../../src/bridge/media-handler.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { HttpListener } from '../../src/util/http-listener.js';
import { MediaHost } from '../../src/media/host.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { PayloadVault } from '../../src/store/at-rest.js';
import { openDatabase } from '../../src/store/database.js';
import type { Db } from '../../src/store/sql.js';
import { FileSealer } from '../../src/util/sealed-file.js';
import type { Store } from '../../src/store/repositories.js';
import { bridgeMigrations } from '../../app/migrations.js';
import type { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { emulatorGateway, startEmulator } from './emulator-process.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { openTestBridgeDatabase } from './store-backends.js';
import { tempDir } from './tmp.js';
import { until } from './wait.js';
import {
  connectUser,
  startXmppServer,
  type TestUser,
  type XmppServer,
  type XmppServerKind,
} from './xmpp-servers.js';

export const DOMAIN = 'wa.localhost';
const SECRET = 'component-secret-for-tests';
const PROVIDER = 'xmpptest';

export interface HarnessOptions {
  lifecycle?: Lifecycle;
  identityPolicy?: 'trust_on_first_use' | 'block_until_confirmed';
  /** Use the server's XEP-0363 service (default) or the bridge's own file host. */
  uploadService?: boolean;
  maxMediaBytes?: number;
  /** `xmpp.allowed_domains`; default the test server's own domain. */
  allowedDomains?: string[];
  /** The log of the core, media and adapter (default: silent, or debug on stdout with XMPP_TEST_LOG). */
  logger?: Logger;
  /** `xmpp.served_file_lifetime_hours`. */
  servedFileLifetimeHours?: number;
  /** The bridge's database: a SQLite file (default) or a real PostgreSQL started for the harness. */
  database?: 'sqlite' | 'postgres';
  /** `xmpp.admins`, given the server's domain (the users are `<prefix><n>@<domain>`). */
  admins?: (domain: string) => string[];
}

export class XmppBridgeHarness {
  readonly tmp = tempDir('interop-bridge-xmpp-');
  /** The at-rest key, as the daemon has one: the same across restarts of the bridge. */
  readonly atRestKey = randomBytes(32);
  server!: XmppServer;
  emulator!: RunningEmulator;
  root!: Uint8Array;
  signingKey!: ProviderPrivateJwk;
  http!: HttpListener;
  mediaHost!: MediaHost;
  media!: BridgeMediaHandler;
  store!: Store;
  database!: BridgeDatabase;
  bridge!: Bridge;
  xmpp!: XmppAdapter;
  /** The core as the adapter holds it (`bridge.attach`'s answer). */
  core!: BridgeCore;
  config!: Config;
  /** How many times the server dropped the component link. */
  linkDrops = 0;
  private listenerUrl = '';
  private postgres: PostgresServer | undefined;
  /** The SQLite file, or the PostgreSQL URL. */
  private databaseAt = '';
  private storeOpen = false;
  private readonly natives: NativeUser[] = [];
  private readonly users: TestUser[] = [];
  private userCount = 0;

  private constructor(
    readonly kind: XmppServerKind,
    readonly options: HarnessOptions,
  ) {}

  static async start(kind: XmppServerKind, options: HarnessOptions = {}): Promise<XmppBridgeHarness> {
    const h = new XmppBridgeHarness(kind, options);
    await h.setUp();
    return h;
  }

  private async setUp(): Promise<void> {
    if (this.options.database === 'postgres') {
      this.postgres = await startPostgres();
      this.databaseAt = await this.postgres.createDatabase();
    } else {
      this.databaseAt = path.join(this.tmp.dir, 'bridge.db');
    }
    this.server = await startXmppServer(this.kind, {
      componentDomain: DOMAIN,
      componentSecret: SECRET,
      httpFileShare: true,
    });
    this.signingKey = await generateProviderKey('EdDSA');
    this.http = new HttpListener(createLogger({ level: 'silent' }));
    const address = await this.http.listen('127.0.0.1', 0);
    this.listenerUrl = `http://127.0.0.1:${address.port}`;
    const maxBytes = this.options.maxMediaBytes ?? 1024 * 1024;
    this.mediaHost = await MediaHost.open({
      dir: path.join(this.tmp.dir, 'media'),
      publicUrl: this.listenerUrl,
      maxBytes,
      ...(this.options.logger ? { logger: this.options.logger } : {}),
    });
    this.mediaHost.mount(this.http);
    ({ running: this.emulator, root: this.root } = await startEmulator(this.tmp, {
      provider: {
        id: PROVIDER,
        signingKey: this.signingKey,
        allowedMediaHosts: [`127.0.0.1:${address.port}`],
      },
    }));
    this.config = configSchema.parse({
      bridge: { provider_id: PROVIDER, lifecycle: this.options.lifecycle ?? 'always' },
      media: {
        max_bytes: maxBytes,
        // The upload service's HTTP port (a bare host would allow port 80 only).
        allowed_fetch_hosts: this.server.httpPort !== undefined ? [`127.0.0.1:${this.server.httpPort}`] : [],
      },
      xmpp: {
        enabled: true,
        server_host: '127.0.0.1',
        server_port: this.server.componentPort,
        component_domain: DOMAIN,
        secret: SECRET,
        allowed_domains: this.options.allowedDomains ?? [this.server.host],
        admins: this.options.admins?.(this.server.host) ?? [],
        ...(this.options.uploadService === false ? {} : { upload_service: this.server.uploadService }),
        ...(this.options.servedFileLifetimeHours !== undefined
          ? { served_file_lifetime_hours: this.options.servedFileLifetimeHours }
          : {}),
      },
    });
    await this.startBridge();
  }

  /** Starts the core and the adapter on the database (a restart when it exists already). */
  async startBridge(): Promise<void> {
    this.database = await openTestBridgeDatabase(this.databaseAt);
    this.store = this.database.store;
    this.storeOpen = true;
    const database = this.database;
    this.media = await BridgeMediaHandler.open({
      host: this.mediaHost,
      mediaConn: (localUser) => this.bridge.mediaConn(localUser),
      receivedDir: path.join(this.tmp.dir, 'media-received'),
      maxBytes: this.config.media.max_bytes,
      sealer: new FileSealer(this.atRestKey),
      ...(this.options.logger ? { logger: this.options.logger } : {}),
    });
    this.bridge = new Bridge({
      store: database.store,
      signalBackend: (id) => database.signalBackend(id),
      gateway: emulatorGateway(this.emulator.gateway, this.root, {
        id: PROVIDER,
        signingKey: this.signingKey,
      }),
      lifecycle: this.options.lifecycle ?? 'always',
      identityPolicy: this.options.identityPolicy ?? 'trust_on_first_use',
      preKeys: 20,
      media: this.media,
      vault: new PayloadVault(this.atRestKey),
      ...(this.options.logger ? { logger: this.options.logger } : {}),
    });
    this.xmpp = createXmppAdapter(
      {
        config: this.config,
        logger:
          this.options.logger ?? createLogger({ level: process.env.XMPP_TEST_LOG ? 'debug' : 'silent' }),
        dataDir: path.join(this.tmp.dir, 'data'),
        http: this.http,
        publicUrl: this.listenerUrl,
        sealer: new FileSealer(this.atRestKey),
        vault: new PayloadVault(this.atRestKey),
      },
      openXmppStore(database.adapterDb),
      { reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, pingTimeoutMs: 3000 },
    );
    this.core = this.bridge.attach(this.xmpp);
    await this.xmpp.start();
    this.xmpp.link.on('offline', () => this.linkDrops++);
    await this.bridge.start();
  }

  /** Outgoing messages of a user still waiting for the gateway's ack (read from the database). */
  async bridgeQueued(localUser: string): Promise<number> {
    const open = this.storeOpen ? this.database : await openTestBridgeDatabase(this.databaseAt);
    try {
      const puppet = await open.store.puppets.byLocalId(localUser);
      return puppet ? await open.store.outbox.countQueued(puppet.id) : 0;
    } finally {
      if (open !== this.database) await open.close();
    }
  }

  async stopBridge(): Promise<void> {
    await this.xmpp.stop();
    await this.bridge.stop();
    this.media.close();
    await this.database.close();
    this.storeOpen = false;
  }

  /** A connection of its own to the bridge's SQLite database (running or not), for assertions and set-ups. */
  openDb(): Db {
    if (this.postgres) throw new Error('openDb: this harness runs on PostgreSQL');
    return openDatabase(this.databaseAt, { migrations: bridgeMigrations() });
  }

  /** The adapter's tables, for assertions. */
  get xmppStore(): XmppStore {
    return openXmppStore(this.database.adapterDb);
  }

  /** A registered, logged-in XMPP user (with its own fresh account on the server). */
  async user(prefix = 'user'): Promise<TestUser> {
    const name = `${prefix}${++this.userCount}`;
    await this.server.register(name, `${name}-pw`);
    const u = await connectUser(this.server, name, `${name}-pw`);
    this.users.push(u);
    return u;
  }

  /** Logs an existing account in again (after a server restart). */
  async reconnectUser(u: TestUser): Promise<TestUser> {
    const name = u.jid.split('@')[0]!;
    await u.stop();
    const again = await connectUser(this.server, name, `${name}-pw`);
    this.users.push(again);
    return again;
  }

  /** A user who registered with XEP-0077 and whose puppet is connected. */
  async registeredUser(prefix = 'user'): Promise<TestUser> {
    const u = await this.user(prefix);
    await register(u);
    await this.connected(u.jid);
    return u;
  }

  async connected(jid: string, timeoutMs = 15_000): Promise<void> {
    await until(
      () => this.bridge.puppet(jid)?.connection.isConnected === true,
      `${jid}'s puppet to connect`,
      timeoutMs,
    );
  }

  async native(phone: string): Promise<NativeUser> {
    const n = await NativeUser.connect({ emulator: this.emulator.gateway, phone, rootPublicKey: this.root });
    this.natives.push(n);
    return n;
  }

  /** The interop JID of a local user's puppet (what native users send to). */
  async puppetJid(localUser: string): Promise<string> {
    const puppet = await this.store.puppets.byLocalId(localUser);
    if (!puppet) throw new Error(`${localUser} has no puppet`);
    return `${puppet.accountId}@${PROVIDER}.interop`;
  }

  async stop(): Promise<void> {
    for (const u of this.users.splice(0)) await u.stop();
    for (const n of this.natives.splice(0)) await n.close();
    await this.stopBridge().catch(() => undefined);
    this.mediaHost.close();
    await this.http.close();
    await this.emulator.stop();
    await this.server.stop();
    await this.postgres?.stop();
    this.tmp.cleanup();
  }
}

/** XEP-0077 registration with the component; resolves with the answer. */
export async function register(u: TestUser): Promise<Element> {
  const answer = await u.iq(
    xml('iq', { type: 'set', to: DOMAIN }, xml('query', { xmlns: 'jabber:iq:register' })),
    30_000,
  );
  if (answer.attrs.type !== 'result') throw new Error(`registration failed: ${answer.toString()}`);
  return answer;
}

export function contactJid(phone: string): string {
  return `${phone}@${DOMAIN}`;
}

/** A chat message from a user to a contact, as Conversations sends it. */
export function chat(to: string, body: string, id: string, extra: Element[] = []): Element {
  return xml(
    'message',
    { type: 'chat', to, id },
    xml('body', {}, body),
    xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id }),
    xml('request', { xmlns: 'urn:xmpp:receipts' }),
    xml('markable', { xmlns: 'urn:xmpp:chat-markers:0' }),
    ...extra,
  );
}

export const bodyOf = (m: Element): string => m.getChild('body')?.getText() ?? '';

/** Messages with a body from `from` (a bare contact JID), first copy of each id only. */
export function bodiesFrom(u: TestUser, from: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const m of u.messages) {
    if ((m.attrs.from ?? '').split('/')[0] !== from || m.attrs.type === 'error' || !m.getChild('body'))
      continue;
    const id = m.attrs.id ?? '';
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(bodyOf(m));
  }
  return out;
}

export { until };

export const nativeTexts = (n: NativeUser): string[] =>
  n.received.map((m) => (m.content.kind === 'text' ? m.content.text : `[${m.content.kind}]`));
