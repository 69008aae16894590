/**
 * The Matrix adapter's test set-up: the homeserver (real Synapse behind the validating proxy, one
 * per test file, or the stand-in homeserver for the stand-in's own tests), the gateway emulator
 * with native users, and the bridge (core, media, Matrix adapter) started as the daemon would,
 * restartable on the same database. Every request and event of the bridge is checked against the
 * Matrix specification either way.
 */
import { freePort, until } from '../support/wait.js';
import path from 'node:path';
import {
  createMatrixAdapter,
  openMatrixStore,
  type MatrixAdapter,
  type MatrixAdapterOptions,
} from '../../adapters/matrix/index.js';
import type { BridgeDatabase } from '../../app/database.js';
import { buildDoublePuppetRegistration, buildRegistration } from '../../adapters/matrix/registration.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { Bridge } from '../../src/bridge/core.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { BridgeMediaHandler } from '../../src/bridge/media-handler.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { HttpListener } from '../../src/util/http-listener.js';
import { MediaHost } from '../../src/media/host.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { PayloadVault } from '../../src/store/at-rest.js';
import { FileSealer } from '../../src/util/sealed-file.js';
import { randomBytes } from 'node:crypto';
import { generateProviderKey, mintClientToken, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import type { Store } from '../../src/store/repositories.js';
import type { PostgresServer } from '../support/postgres.js';
import { openTestBridgeDatabase } from '../support/store-backends.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { LocalUser, StandInHomeserver, type ClientEvent } from '../support/homeserver/index.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { SynapseSuite } from '../support/synapse/suite.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import type { SpecProxy } from '../support/synapse/spec-proxy.js';

export const PROVIDER = 'testbridge';
export const SERVER = 'example.test';
export const BOT = `@interop:${SERVER}`;
export const MAX_BYTES = 512 * 1024;

export const AS_TOKEN = 'as-token-for-matrix-tests';
export const HS_TOKEN = 'hs-token-for-matrix-tests';
/** The double-puppet registration's token: Synapse loads it beside the bridge's own. */
export const DOUBLE_PUPPET_TOKEN = 'double-puppet-token-for-matrix-tests';

export interface HarnessOptions {
  permissions?: Record<string, 'none' | 'user' | 'admin'>;
  /** Run against this file's Synapse (see `useSynapse`); the stand-in homeserver otherwise. */
  synapse?: SynapseSuite;
  /** The log of the core, media and adapter (default: silent, or debug on stdout with MATRIX_TEST_LOG). */
  logger?: Logger;
  /** The bridge's database on a new database of this PostgreSQL; a SQLite file otherwise. */
  postgres?: PostgresServer;
  /** `matrix.encryption` (default: off, as in the code's defaults). */
  encryption?: Partial<Config['matrix']['encryption']>;
}

/** What a test's Matrix user does, on either homeserver (the SDK user or the stand-in's LocalUser). */
export type MatrixUser = Pick<
  LocalUser & SdkUser,
  'userId' | 'createDirectRoom' | 'waitFor' | 'sendText' | 'join'
>;

/** The config the Matrix tests run the adapter with (before the homeserver's URL is known). */
function baseConfig(dataDir: string, port: number, permissions: HarnessOptions['permissions']): Config {
  return configSchema.parse({
    bridge: { provider_id: PROVIDER, data_dir: dataDir },
    media: { max_bytes: MAX_BYTES },
    matrix: {
      enabled: true,
      homeserver_url: 'http://127.0.0.1:1',
      server_name: SERVER,
      as_token: AS_TOKEN,
      hs_token: HS_TOKEN,
      double_puppet_as_token: DOUBLE_PUPPET_TOKEN,
      listen_host: '127.0.0.1',
      listen_port: port,
      client_retry: { max_attempts: 8, initial_delay_ms: 20, max_delay_ms: 400 },
      permissions: permissions ?? { [SERVER]: 'user' },
    },
  });
}

/**
 * Starts Synapse for the calling test file (before its first test, stopped after its last) with
 * the bridge's registration; pass the returned getter's value as `synapse` to `MatrixHarness.start`.
 */
export function useSynapse(): () => SynapseSuite {
  let suite: SynapseSuite | undefined;
  beforeAll(async () => {
    const config = baseConfig('/unused', 1, undefined);
    suite = await SynapseSuite.start(
      { asToken: AS_TOKEN, hsToken: HS_TOKEN },
      (port) =>
        buildRegistration(baseConfig('/unused', port, undefined), { asToken: AS_TOKEN, hsToken: HS_TOKEN }),
      SERVER,
      undefined,
      [buildDoublePuppetRegistration(config, DOUBLE_PUPPET_TOKEN)],
    );
  }, 60_000);
  afterAll(async () => {
    await suite?.close();
  });
  return () => {
    if (suite === undefined) throw new Error('Synapse did not start (see beforeAll)');
    return suite;
  };
}

export const ghostOf = (phone: string) => `@wa_${phone.replace('+', '')}:${SERVER}`;

/** A text from anyone in a room (m.room.message), as a user reads it. */
export const bodyOf = (e: ClientEvent) => String(e.content['body'] ?? '');

export class MatrixHarness {
  tmp = tempDir('matrix-');
  /** The at-rest key, as the daemon has one: the same across restarts of the bridge. */
  readonly atRestKey = randomBytes(32);
  private logger: Logger | undefined;
  running!: RunningEmulator;
  root!: Uint8Array;
  signingKey!: ProviderPrivateJwk;
  http!: HttpListener;
  host!: MediaHost;
  media!: BridgeMediaHandler;
  store!: Store;
  database!: BridgeDatabase;
  /** The SQLite file, or the PostgreSQL URL. */
  private databaseAt = '';
  bridge!: Bridge;
  private standIn: StandInHomeserver | undefined;
  synapse: SynapseSuite | undefined;
  config!: Config;
  adapter!: MatrixAdapter;
  /** The core as the adapter holds it (`bridge.attach`'s answer). */
  core!: BridgeCore;
  /**
   * What the appservice listener answers under `/_matrix/provision/` (the provisioning API, once a
   * test mounts one): 404 until then.
   */
  provisioning: (req: IncomingMessage, res: ServerResponse) => Promise<void> = async (_req, res) => {
    res.writeHead(404).end();
  };
  private started = false;
  readonly natives: NativeUser[] = [];

  static async start(options: HarnessOptions = {}): Promise<MatrixHarness> {
    const h = new MatrixHarness();
    await h.init(options);
    return h;
  }

  private async init(options: HarnessOptions): Promise<void> {
    this.databaseAt = options.postgres ? await options.postgres.createDatabase() : this.tmp.file('bridge.db');
    this.signingKey = await generateProviderKey('EdDSA');
    this.http = new HttpListener(createLogger({ level: 'silent' }));
    const address = await this.http.listen('127.0.0.1', 0);
    const listener = `127.0.0.1:${address.port}`;
    this.host = await MediaHost.open({
      dir: path.join(this.tmp.dir, 'media'),
      publicUrl: `http://${listener}`,
      maxBytes: MAX_BYTES,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    this.host.mount(this.http);
    ({ running: this.running, root: this.root } = await startEmulator(this.tmp, {
      provider: { id: PROVIDER, signingKey: this.signingKey, allowedMediaHosts: [listener] },
    }));
    this.synapse = options.synapse;
    this.logger = options.logger;
    const port = this.synapse?.bridgePort ?? (await freePort());
    this.config = baseConfig(this.tmp.dir, port, options.permissions);
    if (options.encryption !== undefined) {
      const matrix = this.config.matrix;
      this.config = {
        ...this.config,
        matrix: { ...matrix, encryption: { ...matrix.encryption, ...options.encryption } },
      };
    }
    let url: string;
    if (this.synapse !== undefined) {
      this.synapse.proxy.reset();
      url = this.synapse.proxy.clientUrl;
    } else {
      const registration = buildRegistration(this.config, { asToken: AS_TOKEN, hsToken: HS_TOKEN });
      this.standIn = await StandInHomeserver.start({ registration, serverName: SERVER });
      url = this.standIn.url;
    }
    this.config = { ...this.config, matrix: { ...this.config.matrix, homeserver_url: url } };
    await this.startBridge();
  }

  /** The stand-in homeserver (only in its own tests). */
  get hs(): StandInHomeserver {
    if (this.standIn === undefined) throw new Error('this test runs on Synapse, not the stand-in');
    return this.standIn;
  }

  /** The validating proxy in front of Synapse. */
  get proxy(): SpecProxy {
    if (this.synapse === undefined) throw new Error('this test runs on the stand-in homeserver');
    return this.synapse.proxy;
  }

  /** No request or event of the bridge departed from the Matrix specification. */
  assertNoViolations(): void {
    if (this.synapse !== undefined) this.synapse.proxy.assertNoViolations();
    else this.hs.assertNoViolations();
  }

  /** The homeserver has nothing more for the bridge (no transaction in flight, none for a moment). */
  transactionsIdle(): Promise<void> {
    return this.synapse !== undefined ? this.synapse.proxy.transactionsIdle() : this.hs.transactionsIdle();
  }

  /**
   * Starts the bridge on the same database; `matrix` overrides the adapter's config for this start,
   * `options` its test settings.
   */
  async startBridge(
    matrix: Partial<Config['matrix']> = {},
    options: MatrixAdapterOptions = {},
  ): Promise<void> {
    const database = await openTestBridgeDatabase(this.databaseAt);
    this.database = database;
    this.store = database.store;
    this.media = await BridgeMediaHandler.open({
      host: this.host,
      mediaConn: (localUser) => this.bridge.mediaConn(localUser),
      receivedDir: path.join(this.tmp.dir, 'media-received'),
      maxBytes: MAX_BYTES,
      sealer: new FileSealer(this.atRestKey),
      ...(this.logger ? { logger: this.logger } : {}),
    });
    this.bridge = new Bridge({
      store: database.store,
      signalBackend: (id) => database.signalBackend(id),
      gateway: emulatorGateway(this.running.gateway, this.root, {
        id: PROVIDER,
        signingKey: this.signingKey,
      }),
      preKeys: 20,
      media: this.media,
      vault: new PayloadVault(this.atRestKey),
      ...(this.logger ? { logger: this.logger } : {}),
    });
    const adapter = createMatrixAdapter(
      {
        config: { ...this.config, matrix: { ...this.config.matrix, ...matrix } },
        dataDir: this.tmp.dir,
        logger:
          this.logger ?? createLogger({ level: process.env['MATRIX_TEST_LOG'] === '1' ? 'debug' : 'silent' }),
        sealer: new FileSealer(this.atRestKey),
        vault: new PayloadVault(this.atRestKey),
        provisioning: (req, res) => this.provisioning(req, res),
      },
      openMatrixStore(database.adapterDb),
      options,
    );
    this.core = this.bridge.attach(adapter);
    try {
      await adapter.start();
    } catch (err) {
      this.media.close();
      await database.close();
      throw err;
    }
    this.adapter = adapter;
    this.started = true;
    await this.bridge.start();
  }

  async stopBridge(): Promise<void> {
    if (this.started) await this.adapter.stop();
    this.started = false;
    await this.bridge.stop();
    this.media.close();
    await this.database.close();
  }

  async native(phone: string): Promise<NativeUser> {
    const u = await NativeUser.connect({ emulator: this.running.gateway, phone, rootPublicKey: this.root });
    this.natives.push(u);
    return u;
  }

  private readonly sdkUsers: SdkUser[] = [];

  /** A new user on the stand-in homeserver. */
  standInUser(localpart: string, displayname?: string): LocalUser {
    return LocalUser.create(this.hs, localpart, displayname);
  }

  /** A new user on Synapse (unique localpart), syncing with matrix-js-sdk as Element does. */
  async user(
    localpart: string,
    displayname?: string,
    options: { exact?: boolean; crypto?: boolean } = {},
  ): Promise<SdkUser> {
    if (this.synapse === undefined) throw new Error('user() is for Synapse: use standInUser()');
    const u = await this.synapse.user(localpart, displayname, options);
    this.sdkUsers.push(u);
    return u;
  }

  /** The user's management room: a direct chat with the bot, which joins and greets. */
  async managementRoom(user: MatrixUser): Promise<string> {
    const roomId = await user.createDirectRoom(BOT);
    await user.waitFor(roomId, (e) => e.sender === BOT && e.type === 'm.room.message');
    return roomId;
  }

  /** Sends a command and resolves with the bot's reply to it. */
  async command(user: MatrixUser, roomId: string, text: string): Promise<string> {
    const id = await user.sendText(roomId, text);
    const reply = await user.waitFor(roomId, (e) => e.sender === BOT && replyTarget(e) === id);
    return bodyOf(reply);
  }

  /** Opts the user in through the bot (login, confirm) and waits for the puppet to connect. */
  async login(user: MatrixUser): Promise<string> {
    const room = await this.managementRoom(user);
    expect(await this.command(user, room, 'login')).toMatch(/login confirm/);
    await this.command(user, room, 'login confirm');
    await user.waitFor(room, (e) => e.sender === BOT && /You are now connected/.test(bodyOf(e)));
    await until(
      () => this.bridge.puppet(user.userId)?.connection.isConnected === true,
      'the puppet to connect',
    );
    return room;
  }

  /**
   * Another device of the local user's interop account (device 1): their phone on the gatekeeper's
   * side, whose messages reach the puppet as copies (`sendFromThisDevice`).
   */
  async companion(user: Pick<MatrixUser, 'userId'>): Promise<NativeUser> {
    const puppet = await this.store.puppets.byLocalId(user.userId);
    if (!puppet) throw new Error(`${user.userId} has no puppet`);
    const u = await NativeUser.connect({
      emulator: this.running.gateway,
      phone: '',
      rootPublicKey: this.root,
      device: 1,
      account: {
        jid: accountJidOf(puppet.accountId, PROVIDER),
        providerId: PROVIDER,
        mintToken: (noiseStaticKey) =>
          mintClientToken({
            privateKey: this.signingKey,
            kid: this.signingKey.kid,
            alg: this.signingKey.alg,
            issuer: PROVIDER,
            subject: puppet.accountId,
            audience: 'emulator.interop',
            noiseStaticKey,
          }),
      },
    });
    this.natives.push(u);
    return u;
  }

  /** The JID a native user sees for the local user's puppet. */
  async jidOf(user: Pick<MatrixUser, 'userId'>): Promise<string> {
    const puppet = await this.store.puppets.byLocalId(user.userId);
    if (!puppet) throw new Error(`${user.userId} has no puppet`);
    return accountJidOf(puppet.accountId, PROVIDER);
  }

  /** Opens a portal with a native user through start-chat and joins it; returns the room. */
  async startChat(user: MatrixUser, management: string, phone: string): Promise<string> {
    const reply = await this.command(user, management, `start-chat ${phone}`);
    // Room ids of room version 12 (Synapse's default) have no `:server` part.
    const roomId = /(![A-Za-z0-9_\-+/=]+(?::[^\s.]+(?:\.[a-z]+)*)?)/.exec(reply)?.[1];
    if (roomId === undefined) throw new Error(`no room in "${reply}"`);
    await user.join(roomId);
    return roomId;
  }

  async close(): Promise<void> {
    await Promise.all(this.natives.splice(0).map((u) => u.close()));
    for (const u of this.sdkUsers.splice(0)) u.stop();
    if (this.started) await this.stopBridge();
    this.host.close();
    await this.http.close();
    await this.running.stop();
    await this.standIn?.close();
    this.tmp.cleanup();
  }
}

export function replyTarget(e: ClientEvent): string | undefined {
  const rel = e.content['m.relates_to'] as { 'm.in_reply_to'?: { event_id?: string } } | undefined;
  return rel?.['m.in_reply_to']?.event_id;
}

export { freePort, until } from '../support/wait.js';
