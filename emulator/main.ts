/**
 * Runs the emulator from its configuration: loads the keys, the providers' JWKS and starts the
 * gateway (emulator/gateway.ts) and the media service (emulator/media.ts). Used by
 * `interop-bridge emulator` and, in-process, by tests and the demo.
 */
import { mkdirSync } from 'node:fs';
import { InteropError } from '../src/errors.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import type { XEdDSAVerify } from '../src/protocol/enlistment.js';
import type { LoadedEmulatorConfig } from './config.js';
import { Emulator, type GatewayIdentity } from './gateway.js';
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
  rootKey: string;
  rootKeyFingerprint: string;
  staticKey: string;
  leafNotAfter: string;
  dataDir: string;
}

export class RunningEmulator {
  #keys: LoadedEmulatorKeys;
  #stopped = false;

  private constructor(
    readonly gateway: Emulator,
    readonly media: MediaServer,
    readonly mediaTokens: MediaTokens,
    readonly providers: ProviderRegistry,
    readonly loaded: LoadedEmulatorConfig,
    private readonly log: Logger,
    keys: LoadedEmulatorKeys,
  ) {
    this.#keys = keys;
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
      const gateway = await Emulator.start({
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
        ...(options.verifyXEdDSA ? { verifyXEdDSA: options.verifyXEdDSA } : {}),
      });
      const running = new RunningEmulator(gateway, media, mediaTokens, providers, loaded, log, keys);
      log.info(running.summary(), 'gateway emulator started');
      return running;
    } catch (err) {
      await media?.stop();
      providers.close();
      throw err;
    }
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

  /** Stops the gateway (closing every connection), the media service and JWKS refreshes. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.providers.close();
    await Promise.all([this.gateway.stop(), this.media.stop()]);
  }
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
