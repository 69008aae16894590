/**
 * Runs the emulator from its configuration: loads the keys, the providers' JWKS and starts the
 * gateway (emulator/gateway.ts) and the media service (emulator/media.ts). Used by
 * `interop-bridge emulator` and, in-process, by tests and the demo.
 */
import { xeddsaVerify } from '../src/signal/curve.js';
import { NativeUser } from './native-user.js';
import { mkdirSync, readFileSync } from 'node:fs';
import { InteropError } from '../src/errors.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import type { XEdDSAVerify } from '../src/protocol/enlistment.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../src/protocol/jwt.js';
import { AdminServer } from './admin.js';
import type { LoadedEmulatorConfig } from './config.js';
import { Emulator, type EmulatorOptions, type GatewayIdentity } from './gateway.js';
import {
  loadKeys,
  rootKeyBase64,
  rootKeyFingerprint,
  rotateKeys,
  type EmulatorKeys,
  type LoadedEmulatorKeys,
} from './keys.js';
import { MediaServer, MediaTokens } from './media.js';
import { ProviderRegistry } from './providers.js';

export interface StartEmulatorOptions {
  loaded: LoadedEmulatorConfig;
  logger: Logger;
  /** The enlistment signature verifier (the Signal layer's XEdDSA); without it enlistment answers 501. */
  verifyXEdDSA?: XEdDSAVerify;
  /** Passed to the provider registry (tests lower it). */
  minJwksRefetchSeconds?: number;
}

/** What the startup log line says, also returned for tests and the demo. */
export interface EmulatorSummary {
  gatewayId: string;
  gateway: { host: string; port: number };
  media: { host: string; port: number; hosts: string[] };
  providers: string[];
  /** The admin HTTP API, when enabled (never its token). */
  admin?: { host: string; port: number; auth: 'bearer token' | 'loopback only' };
  rootKey: string;
  rootKeyFingerprint: string;
  staticKey: string;
  leafNotAfter: string;
  dataDir: string;
}

export class RunningEmulator {
  #keys: LoadedEmulatorKeys;
  #gateway: Emulator;
  /** How the gateway was started, to start it again in place (restartGateway). */
  readonly #gatewayOptions: EmulatorOptions;
  #admin: AdminServer | undefined;
  /** Serializes restarts and stop. */
  #lifecycle: Promise<unknown> = Promise.resolve();
  #stopped = false;

  private constructor(
    gateway: Emulator,
    gatewayOptions: EmulatorOptions,
    readonly media: MediaServer,
    readonly mediaTokens: MediaTokens,
    readonly providers: ProviderRegistry,
    readonly loaded: LoadedEmulatorConfig,
    private readonly log: Logger,
    keys: LoadedEmulatorKeys,
  ) {
    this.#gateway = gateway;
    this.#gatewayOptions = gatewayOptions;
    this.#keys = keys;
  }

  /** The gateway now running: a new object after `restartGateway()`, so read it each time. */
  get gateway(): Emulator {
    return this.#gateway;
  }

  /** The admin HTTP API, unless `admin.enabled` is false. */
  get admin(): AdminServer | undefined {
    return this.#admin;
  }

  /** Starts everything; on failure whatever had started is stopped again. */
  static async start(options: StartEmulatorOptions): Promise<RunningEmulator> {
    const { loaded } = options;
    const { config } = loaded;
    const log = componentLogger(options.logger, 'emulator-main');

    const keys = loadKeys(loaded.paths.dataDir);
    for (const warning of keys.warnings) log.warn(warning);

    mkdirSync(loaded.paths.dataDir, { recursive: true, mode: 0o700 });
    const providers = await ProviderRegistry.create(loaded.providers, {
      logger: componentLogger(options.logger, 'providers'),
      ...(options.minJwksRefetchSeconds !== undefined
        ? { minRefetchSeconds: options.minJwksRefetchSeconds }
        : {}),
    });
    const mediaTokens = new MediaTokens({ ttlSeconds: config.media.auth_ttl_seconds });
    let media: MediaServer | undefined;
    let gateway: Emulator | undefined;
    try {
      media = await MediaServer.start({
        host: config.media.host,
        port: config.media.port,
        storeDir: loaded.paths.media,
        maxBytes: config.media.max_bytes,
        tokens: mediaTokens,
        providers,
        logger: componentLogger(options.logger, 'media'),
        ...(config.media.public_host !== undefined ? { publicHost: config.media.public_host } : {}),
        publicScheme: config.media.public_scheme,
        fetchTimeoutMs: config.media.fetch_timeout_seconds * 1000,
      });
      const gatewayOptions: EmulatorOptions = {
        host: config.gateway.host,
        port: config.gateway.port,
        gatewayId: config.gateway.gateway_id,
        identity: identityOf(keys),
        providers,
        databaseFile: loaded.paths.database,
        media: mediaTokens,
        offlineRetentionSeconds: config.emulator.offline_retention_seconds,
        prekeyLowWater: config.emulator.prekey_low_water,
        maxFrameSize: config.gateway.max_frame_bytes,
        handshakeTimeoutMs: config.gateway.handshake_timeout_seconds * 1000,
        logger: options.logger,
        verifyXEdDSA: options.verifyXEdDSA ?? xeddsaVerify,
        // One native signing key for the process, so native users' tokens survive a gateway restart.
        nativeSigningKey: await nativeSigningKey(),
      };
      gateway = await Emulator.start(gatewayOptions);
      const running: RunningEmulator = new RunningEmulator(
        gateway,
        gatewayOptions,
        media,
        mediaTokens,
        providers,
        loaded,
        log,
        keys,
      );
      // The gateway holds the pictures; read it each time, as it is a new object after a restart.
      media.servePictures({ picture: (id, account) => running.gateway.picture(id, account) });
      if (config.admin.enabled) {
        running.#admin = await AdminServer.start({
          target: running.#adminTarget(),
          host: config.admin.host,
          port: config.admin.port,
          ...(config.admin.token !== undefined ? { token: config.admin.token } : {}),
          logger: options.logger,
        });
      }
      await running.#startNatives(options.logger);
      log.info(running.summary(), 'gateway emulator started');
      return running;
    } catch (err) {
      await gateway?.stop();
      await media?.stop();
      providers.close();
      throw err;
    }
  }

  #natives: NativeUser[] = [];

  /** The native users of the configuration, connected with their behaviour (echo or answer). */
  get natives(): readonly NativeUser[] {
    return this.#natives;
  }

  async #startNatives(logger: Logger): Promise<void> {
    for (const n of this.loaded.config.native_users) {
      this.#configureProfile(n);
      await this.connectNative(n.phone, n.behaviour, { delayMs: n.delay_ms, answers: n.answers }, logger);
    }
  }

  /**
   * A configured native user's push name, about text and picture, set as the user would (contacts
   * are notified); what is already so stays as it is, so a restart announces nothing.
   */
  #configureProfile(n: { phone: string; name?: string; about?: string; picture?: string }): void {
    const jid = this.gateway.createNativeUser(n.phone);
    if (n.name !== undefined) this.gateway.profileRequest(jid, { op: 'push_name_set', name: n.name });
    if (n.about !== undefined) this.gateway.profileRequest(jid, { op: 'status_set', status: n.about });
    if (n.picture !== undefined) {
      this.gateway.profileRequest(jid, { op: 'picture_set', image: readFileSync(n.picture) });
    }
  }

  /**
   * Connects a native user (the configuration's, or one the admin API asks for) with a behaviour:
   * echo (every content kind echoed), answer (read, type, then the next answer) or silent.
   */
  async connectNative(
    phone: string,
    behaviour: 'echo' | 'answer' | 'silent',
    options: { delayMs?: number; answers?: readonly string[] } = {},
    logger: Logger = this.log,
  ): Promise<NativeUser> {
    const user = await NativeUser.connect({
      emulator: this.gateway,
      phone,
      rootPublicKey: this.#keys.rootPublicKey,
      logger: componentLogger(logger, 'native-user'),
    });
    this.#natives.push(user);
    const delayMs = options.delayMs ?? 0;
    if (behaviour === 'echo') user.echo(delayMs);
    if (behaviour === 'answer') {
      let next = 0;
      const given = options.answers ?? [];
      const answers = given.length > 0 ? given : ['Nice to hear from you!', 'Sure, talk later.'];
      user.respond(() => answers[next++ % answers.length], delayMs);
    }
    this.log.info({ jid: user.jid, behaviour }, 'native user connected');
    return user;
  }

  /** The connected native user with this number, if the emulator runs one. */
  native(phone: string): NativeUser | undefined {
    return this.#natives.find((n) => n.jid === `${phone.slice(1)}@wa.interop`);
  }

  get keys(): EmulatorKeys {
    return this.#keys;
  }

  summary(): EmulatorSummary {
    return {
      gatewayId: this.gateway.gatewayId,
      gateway: { host: this.gateway.host, port: this.gateway.port },
      media: { host: this.loaded.config.media.host, port: this.media.port, hosts: this.media.hosts },
      providers: this.providers.providerIds(),
      ...(this.#admin
        ? {
            admin: {
              host: this.#admin.host,
              port: this.#admin.port,
              auth: this.#admin.authenticates ? ('bearer token' as const) : ('loopback only' as const),
            },
          }
        : {}),
      rootKey: rootKeyBase64(this.#keys),
      rootKeyFingerprint: rootKeyFingerprint(this.#keys.rootPublicKey),
      staticKey: Buffer.from(this.#keys.staticKey.publicKey).toString('base64'),
      leafNotAfter: new Date(this.#keys.leaf.notAfter * 1000).toISOString(),
      dataDir: this.loaded.paths.dataDir,
    };
  }

  /**
   * Re-reads the keys (after `interop-bridge emulator rotate`, on SIGHUP) and gives new
   * connections the new identity; open connections keep theirs. On failure the current keys stay.
   */
  reloadKeys(): EmulatorKeys {
    const keys = loadKeys(this.loaded.paths.dataDir);
    for (const warning of keys.warnings) this.log.warn(warning);
    if (!Buffer.from(keys.rootPublicKey).equals(Buffer.from(this.#keys.rootPublicKey))) {
      throw new InteropError(
        'emulator_root_changed',
        'the keys on disk have another root key than the running emulator: bridges pinned to the old root ' +
          'would fail; restart the emulator deliberately after "emulator init --force"',
      );
    }
    this.gateway.setIdentity(identityOf(keys));
    this.#keys = keys;
    this.log.info(
      {
        staticKey: Buffer.from(keys.staticKey.publicKey).toString('base64'),
        leafSerial: keys.leaf.serial,
        leafNotAfter: new Date(keys.leaf.notAfter * 1000).toISOString(),
      },
      'gateway keys reloaded',
    );
    return keys;
  }

  /** In-process rotation: a new static key and leaf on disk, then picked up at once. */
  rotateKeys(validityDays = this.loaded.config.certificates.validity_days): EmulatorKeys {
    rotateKeys(this.loaded.paths.dataDir, { validityDays });
    return this.reloadKeys();
  }

  /**
   * Stops the gateway listener (closing every connection) and starts it again on the same port,
   * database, keys and native signing key: queued messages survive (they are in SQLite), clients
   * reconnect as after a real restart. Faults set on the old gateway are gone (a fresh process).
   */
  restartGateway(): Promise<Emulator> {
    const restart = this.#lifecycle.then(async () => {
      if (this.#stopped) {
        throw new InteropError(
          'emulator_stopped',
          'the emulator is stopping: start it again instead of restarting',
        );
      }
      const port = this.#gateway.port;
      await this.#gateway.stop();
      try {
        this.#gateway = await Emulator.start({
          ...this.#gatewayOptions,
          port,
          identity: identityOf(this.#keys),
        });
      } catch (err) {
        throw new InteropError(
          'emulator_restart_failed',
          `the gateway stopped but could not listen again on port ${port}: ${(err as Error).message}; ` +
            'restart the emulator process',
          { cause: err },
        );
      }
      this.log.info({ port: this.#gateway.port }, 'gateway restarted');
      return this.#gateway;
    });
    this.#lifecycle = restart.catch(() => undefined);
    return restart;
  }

  /** Stops the admin API, the gateway (closing every connection), the media service and JWKS refreshes. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.providers.close();
    await this.#lifecycle;
    await Promise.all(this.#natives.splice(0).map((n) => n.close()));
    await Promise.all([this.#admin?.stop(), this.#gateway.stop(), this.media.stop()]);
  }

  #adminTarget() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the target reads the current state each time
    const running = this;
    return {
      get gateway() {
        return running.gateway;
      },
      get keys() {
        return running.keys;
      },
      dataDir: this.loaded.paths.dataDir,
      restartGateway: () => this.restartGateway(),
      rotateKeys: (validityDays?: number) => this.rotateKeys(validityDays),
      connectNative: (phone: string, behaviour: 'echo' | 'answer' | 'silent') =>
        this.connectNative(phone, behaviour),
      native: (phone: string) => this.native(phone),
    };
  }
}

function nativeSigningKey(): Promise<ProviderPrivateJwk> {
  return generateProviderKey('EdDSA', 'wa-native-1');
}

export function identityOf(keys: EmulatorKeys): GatewayIdentity {
  return { staticKey: keys.staticKey, certChain: keys.certChain };
}

/** Where SIGHUP comes from: the process, or an EventEmitter in tests (Jest's `process` gets no signals). */
export interface HangupSource {
  on(event: 'SIGHUP', listener: () => void): unknown;
  off(event: 'SIGHUP', listener: () => void): unknown;
}

export interface ServeOptions {
  /** Replaces the wait for SIGINT/SIGTERM; resolves with the reason to stop. */
  waitForStop?: (() => Promise<string>) | undefined;
  hangups?: HangupSource;
}

/**
 * Runs until SIGINT or SIGTERM (resolving with the signal's name); SIGHUP reloads the keys (after
 * `interop-bridge emulator rotate`). A failed reload is logged and the current keys stay in use.
 */
export async function serveUntilSignal(
  running: RunningEmulator,
  log: Logger,
  options: ServeOptions = {},
): Promise<string> {
  const hangups = options.hangups ?? process;
  const onHup = () => {
    try {
      running.reloadKeys();
    } catch (err) {
      log.error(
        { code: (err as InteropError).code },
        `SIGHUP: keys not reloaded, the current ones stay in use: ${(err as Error).message}`,
      );
    }
  };
  hangups.on('SIGHUP', onHup);
  try {
    return await (options.waitForStop ?? waitForTermination)();
  } finally {
    hangups.off('SIGHUP', onHup);
  }
}

function waitForTermination(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      // A second signal while shutting down means "now".
      process.once(signal, () => process.exit(1));
      resolve(signal);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
  });
}
