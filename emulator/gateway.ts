/**
 * The gateway emulator: a standalone interop gateway that behaves as the gatekeeper's would.
 * Accepts TCP connections, runs the server side of the Noise handshake with its certificate chain,
 * authenticates each client's provider-signed JWT (native users' tokens are signed by the built-in
 * provider `wa`, whose key the emulator holds), enforces enlistment and one connection per
 * (account, device), and then serves the prekey server, the directory and the relay.
 *
 * Usable in-process: `await Emulator.start(options)`; `stop()` closes everything. The key files,
 * configuration, CLI, provider JWKS loading and media endpoints are wired around it by other
 * modules through the small interfaces below.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { InteropError } from '../src/errors.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import { authenticateClient, AuthFailure, ConnectReason, type AccountCheck } from '../src/protocol/auth.js';
import {
  createRootKey,
  decodeCertChain,
  createIntermediateKey,
  encodeCertChain,
  issueIntermediate,
  issueLeaf,
} from '../src/protocol/cert-chain.js';
import type { XEdDSAVerify } from '../src/protocol/enlistment.js';
import { serverHandshake } from '../src/protocol/handshake/index.js';
import type { ProviderPrivateJwk, TokenKeyResolver } from '../src/protocol/jwt.js';
import type { KeyPair } from '../src/protocol/noise/index.js';
import { DEFAULT_STANZA_LIMITS, MAX_DEVICE, type StanzaLimits } from '../src/protocol/stanza/index.js';
import { DEFAULT_MAX_FRAME_SIZE } from '../src/protocol/transport/frame-codec.js';
import { NOISE_TAG_SIZE } from '../src/protocol/transport/noise-socket.js';
import { Connections, type Core, type CoreSettings, type MediaAuthority } from './core.js';
import { accountOf, createNativeUser } from './directory.js';
import { FaultState, type FaultControls } from './faults.js';
import { NATIVE_PROVIDER_ID, NativeTokenIssuer, type NativeClientPayloadInput } from './native-auth.js';
import { PersistentReplayGuard } from './replay-guard.js';
import { Session } from './session.js';
import { EmulatorStore, type AccountRow, type QueueItem } from './store.js';
import type { StoredGroup } from './group-store.js';
import { handleGroupRequest, type GroupRequest } from './groups.js';
import { handleProfileRequest, type ProfileRequest } from './profiles.js';
import type { StoredProfile } from './profile-store.js';

export type { MediaAuthority } from './core.js';
export type { FaultControls } from './faults.js';
export { NATIVE_PROVIDER_ID, type NativeClientPayloadInput } from './native-auth.js';
export type { AccountRow, QueueItem } from './store.js';
export type { StoredGroup } from './group-store.js';
export type { StoredProfile } from './profile-store.js';
export type { ProfileRequest } from './profiles.js';

/** The providers the emulator knows; implemented from configuration by the provider module. */
export interface ProviderDirectory {
  /** (kid, {alg, iss}) -> the provider's verification key. */
  keyResolver: TokenKeyResolver;
  isKnownProvider(providerId: string): boolean;
}

/** The gateway's Noise static key and the certificate chain whose leaf names it. */
export interface GatewayIdentity {
  staticKey: KeyPair;
  certChain: Uint8Array;
}

export interface EmulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** The JWT audience. */
  gatewayId: string;
  identity: GatewayIdentity;
  providers: ProviderDirectory;
  /** The emulator's SQLite file: accounts, keys, offline queue. Created mode 0600. */
  databaseFile: string;
  media?: MediaAuthority;
  /** How long undelivered messages, receipts and seen message ids are kept (default 30 days). */
  offlineRetentionSeconds?: number;
  /** A device is told to upload more one-time prekeys when its stock falls below this (default 10). */
  prekeyLowWater?: number;
  /** Most one-time prekeys kept per device (default 2000). */
  maxPreKeysPerDevice?: number;
  maxFrameSize?: number;
  handshakeTimeoutMs?: number;
  logger?: Logger;
  /**
   * Verifies the XEdDSA signature of an `<enlist>`. Without one, enlistment is answered with error
   * 501. Wire in the Signal layer's verifier (src/signal/curve.ts).
   */
  verifyXEdDSA?: XEdDSAVerify;
  /** The signing key of the built-in native provider `wa` (a fresh one per process when absent). */
  nativeSigningKey?: ProviderPrivateJwk;
  /** Seconds since the epoch; the system clock by default (tests move it to check retention). */
  clock?: () => number;
}

export const DEFAULT_OFFLINE_RETENTION_SECONDS = 30 * 24 * 3600;
export const DEFAULT_PREKEY_LOW_WATER = 10;
export const DEFAULT_MAX_PREKEYS_PER_DEVICE = 2000;
const PURGE_INTERVAL_MS = 60_000;

export interface EmulatorStats {
  accounts: number;
  connections: number;
  queued: number;
  /**
   * The most authenticated connections one account ever had live at the same moment (1 when every
   * account was only ever connected once at a time; a replaced connection counts until it closed).
   */
  maxSimultaneousPerAccount: number;
  /** The accounts that were ever connected more than once at the same moment. */
  connectedTwice: string[];
}

export class Emulator {
  readonly gatewayId: string;
  readonly faults: FaultControls;
  readonly #server: net.Server;
  readonly #core: Core;
  readonly #faultState: FaultState;
  readonly #natives: NativeTokenIssuer;
  readonly #replayGuard: PersistentReplayGuard;
  readonly #sockets = new Set<net.Socket>();
  readonly #options: EmulatorOptions;
  readonly #limits: StanzaLimits;
  readonly #log: Logger;
  #identity: GatewayIdentity;
  #purgeTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Live authenticated connections per account, and the most each ever had at once. */
  readonly #live = new Map<string, number>();
  readonly #peak = new Map<string, number>();

  private constructor(options: EmulatorOptions, natives: NativeTokenIssuer, store: EmulatorStore) {
    this.#options = options;
    this.gatewayId = options.gatewayId;
    this.#identity = options.identity;
    this.#natives = natives;
    this.#log = options.logger ? componentLogger(options.logger, 'emulator') : pino({ level: 'silent' });
    const maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.#limits = { ...DEFAULT_STANZA_LIMITS, maxBytes: Math.max(0, maxFrameSize - NOISE_TAG_SIZE) };
    this.#faultState = new FaultState();
    const settings: CoreSettings = {
      offlineRetentionSeconds: options.offlineRetentionSeconds ?? DEFAULT_OFFLINE_RETENTION_SECONDS,
      prekeyLowWater: options.prekeyLowWater ?? DEFAULT_PREKEY_LOW_WATER,
      maxPreKeysPerDevice: options.maxPreKeysPerDevice ?? DEFAULT_MAX_PREKEYS_PER_DEVICE,
    };
    const clock = options.clock ?? (() => Math.floor(Date.now() / 1000));
    this.#core = {
      store,
      connections: new Connections(),
      faults: this.#faultState,
      settings,
      log: this.#log,
      media: options.media,
      verifyXEdDSA: options.verifyXEdDSA,
      now: clock,
    };
    this.#replayGuard = new PersistentReplayGuard(store, clock());
    this.faults = this.#faultControls();
    this.#server = net.createServer((conn) => this.#accept(conn));
  }

  /** Opens the database, listens, and resolves once connections are accepted. */
  static async start(options: EmulatorOptions): Promise<Emulator> {
    const natives = await NativeTokenIssuer.create(options.gatewayId, options.nativeSigningKey);
    const store = new EmulatorStore(options.databaseFile);
    const emulator = new Emulator(options, natives, store);
    try {
      await new Promise<void>((resolve, reject) => {
        emulator.#server.once('error', reject);
        emulator.#server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
          emulator.#server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      store.close();
      throw err;
    }
    emulator.#purge();
    emulator.#purgeTimer = setInterval(() => emulator.#purge(), PURGE_INTERVAL_MS);
    emulator.#purgeTimer.unref();
    emulator.#log.info({ port: emulator.port }, 'gateway emulator listening');
    return emulator;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get host(): string {
    return (this.#server.address() as AddressInfo).address;
  }

  /** Key rotation without downtime: new connections use `identity`, open ones keep going. */
  setIdentity(identity: GatewayIdentity): void {
    this.#identity = identity;
    this.#log.info('gateway identity rotated');
  }

  get identity(): GatewayIdentity {
    return this.#identity;
  }

  // --- accounts and native users -----------------------------------------------------------------

  /** Creates a native (gatekeeper) user by E.164 number, idempotently; returns its JID. */
  createNativeUser(phone: string): string {
    return createNativeUser(this.#core, phone);
  }

  /** The handshake payload a native user's client sends: its JWT is signed by the built-in `wa` provider. */
  nativeClientPayload(input: NativeClientPayloadInput): Promise<Uint8Array> {
    return this.#natives.clientPayload(input);
  }

  /** A native user's token alone (for clients that build their own payload). */
  nativeToken(phone: string, noiseStaticKey: Uint8Array): Promise<string> {
    return this.#natives.mintToken(phone, noiseStaticKey);
  }

  accounts(): AccountRow[] {
    return this.#core.store.accounts();
  }

  /** What waits in the offline queue (for one account's devices, or all). */
  queued(accountJid?: string): QueueItem[] {
    return this.#core.store.queued(accountJid);
  }

  /**
   * Acts on groups as `account` would through its device (the same checks, error codes and
   * notifications; `to` as a `w:g2` iq's): the admin API's groups. Throws RelayRefusal with the code.
   */
  groupRequest(
    account: string,
    to: string | undefined,
    body: GroupRequest,
  ): ReturnType<typeof handleGroupRequest> {
    return handleGroupRequest(this.#core, account, to, body);
  }

  /**
   * Acts on profiles as `account` would (PROTOCOL.md 5.8: the same checks, codes and
   * notifications; every device of the account hears of the change): the admin API's and the
   * configuration's profiles. Throws RelayRefusal with the code.
   */
  profileRequest(account: string, body: ProfileRequest): ReturnType<typeof handleProfileRequest> {
    return handleProfileRequest(this.#core, { account }, body);
  }

  /** What the gateway holds about an account's profile. */
  profile(jid: string): StoredProfile {
    return this.#core.store.profiles.profile(jid);
  }

  /**
   * The current picture with this id, and whether `account` may see it (for the media service's
   * `GET /pp/<id>`): a user's by any account, a group's by its participants.
   */
  picture(id: string, account: string): { image: Uint8Array; allowed: boolean } | undefined {
    if (this.#stopped) return undefined;
    const found = this.#core.store.profiles.pictureById(id);
    if (!found) return undefined;
    const group = this.#core.store.groups.get(found.owner);
    const allowed = group === undefined || group.participants.some((p) => p.jid === account);
    return { image: found.image, allowed };
  }

  /** Every group's metadata (never a message). */
  groups(): StoredGroup[] {
    return this.#core.store.groups.all();
  }

  /** Live connections as device JIDs. */
  connectedDevices(): string[] {
    return this.#core.connections.all().map((c) => c.deviceJid);
  }

  stats(): EmulatorStats {
    return {
      accounts: this.#core.store.accounts().length,
      connections: this.#core.connections.all().length,
      queued: this.#core.store.queued().length,
      maxSimultaneousPerAccount: Math.max(0, ...this.#peak.values()),
      connectedTwice: [...this.#peak].filter(([, n]) => n > 1).map(([jid]) => jid),
    };
  }

  /** Stops listening, closes every connection and the database. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#purgeTimer);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#core.connections.all()) c.close('emulator stopping');
    for (const s of this.#sockets) s.destroy();
    await closed;
    this.#core.store.close();
    this.#log.info('gateway emulator stopped');
  }

  // --- connections ---------------------------------------------------------------------------------

  #accept(conn: net.Socket): void {
    if (this.#stopped || this.#faultState.refusing) {
      conn.destroy();
      return;
    }
    this.#sockets.add(conn);
    // Stanzas are small and latency matters: no Nagle delay (a real gateway sets TCP_NODELAY too).
    conn.setNoDelay(true);
    conn.on('close', () => this.#sockets.delete(conn));
    conn.on('error', () => undefined); // reported through the transport's close reason
    void this.#serve(conn).catch((err: unknown) => {
      this.#log.error({ err }, 'connection handler failed');
      conn.destroy();
    });
  }

  async #serve(conn: net.Socket): Promise<void> {
    const identity = this.#identity;
    const certChain = this.#faultState.certChainOverride ?? identity.certChain;
    let hs;
    try {
      hs = await serverHandshake(conn, {
        staticKey: identity.staticKey,
        certChain,
        ...(this.#options.maxFrameSize === undefined ? {} : { maxFrameSize: this.#options.maxFrameSize }),
        ...(this.#options.handshakeTimeoutMs === undefined
          ? {}
          : { timeoutMs: this.#options.handshakeTimeoutMs }),
      });
    } catch (err) {
      this.#log.info({ code: codeOf(err), remote: conn.remoteAddress }, 'handshake failed');
      return;
    }

    const store = this.#core.store;
    const providers = this.#options.providers;
    const natives = this.#natives;
    const keyResolver: TokenKeyResolver = (kid, ctx) =>
      ctx.iss === NATIVE_PROVIDER_ID ? natives.keyResolver(kid, ctx) : providers.keyResolver(kid, ctx);
    let enlisted = false;
    const check: AccountCheck = (client) => {
      const account = accountOf(client.claims);
      if (client.device > MAX_DEVICE) {
        throw new AuthFailure(
          'account_invalid',
          `device ${client.device} is above the maximum of ${MAX_DEVICE}`,
        );
      }
      const row = store.account(account.jid);
      if (row) {
        enlisted = true;
        return;
      }
      if (account.native) {
        throw new AuthFailure(
          'account_not_enlisted',
          `there is no native user ${account.jid} on this gateway`,
        );
      }
      if (client.payload.connectReason !== ConnectReason.ENLISTMENT) {
        throw new AuthFailure(
          'account_not_enlisted',
          `${account.jid} has not opted in: connect with connect_reason ENLISTMENT (6) and send <enlist>`,
        );
      }
    };

    let client;
    try {
      client = await authenticateClient(
        hs.socket,
        hs.payload,
        hs.clientStaticKey,
        {
          keyResolver,
          issuer: (iss) => iss === NATIVE_PROVIDER_ID || providers.isKnownProvider(iss),
          audience: this.gatewayId,
          replayCache: this.#replayGuard,
        },
        check,
        this.#core.now,
      );
    } catch (err) {
      this.#log.info({ reason: (err as { reason?: string }).reason ?? codeOf(err) }, 'client refused');
      return;
    }

    const account = accountOf(client.claims);
    const session = new Session(
      this.#core,
      hs.socket,
      { jid: account.jid, device: client.device, enlisted },
      this.#limits,
    );
    if (enlisted) store.registerDevice(account.jid, client.device);
    const live = (this.#live.get(account.jid) ?? 0) + 1;
    this.#live.set(account.jid, live);
    if (live > (this.#peak.get(account.jid) ?? 0)) this.#peak.set(account.jid, live);
    const replaced = this.#core.connections.add(session);
    replaced?.close('replaced by a new connection of the same device');
    this.#log.info(
      {
        account: account.jid,
        device: client.device,
        pattern: hs.pattern,
        enlisted,
        replaced: replaced !== undefined,
      },
      'client connected',
    );
    try {
      await session.run();
    } finally {
      const left = (this.#live.get(account.jid) ?? 1) - 1;
      if (left > 0) this.#live.set(account.jid, left);
      else this.#live.delete(account.jid);
      this.#core.connections.delete(session);
      this.#log.info({ account: account.jid, device: client.device }, 'client disconnected');
    }
  }

  #purge(): void {
    try {
      const purged = this.#core.store.purgeExpired(this.#core.now());
      if (purged.queue > 0) this.#log.info(purged, 'expired queue items dropped');
    } catch (err) {
      this.#log.error({ err }, 'purge failed');
    }
  }

  #faultControls(): FaultControls {
    const state = this.#faultState;
    const core = this.#core;
    return {
      dropNext: (jid, count) => state.setDrop(jid, count),
      delay: (jid, ms) => state.setDelay(jid, ms),
      replayLastDelivered: (jid) => {
        for (const c of core.connections.of(jid)) {
          const last = c.lastDelivered;
          if (last) {
            c.sendBytes(last);
            return true;
          }
        }
        return false;
      },
      presentCertificateChain: (chain) => {
        state.certChainOverride = chain;
      },
      presentForeignCertificate: () => {
        state.certChainOverride = foreignCertChain(
          this.#identity.staticKey.publicKey,
          this.#identity.certChain,
        );
      },
      refuseConnections: (refuse) => {
        state.refusing = refuse;
      },
      disconnect: (jid) => {
        const conns = core.connections.of(jid);
        for (const c of conns) c.close('fault: disconnect');
        return conns.length;
      },
      reset: () => state.reset(),
    };
  }
}

/** A chain for `key` with the same validity as the real one, but signed by a fresh root nobody pinned. */
function foreignCertChain(key: Uint8Array, real: Uint8Array): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  let window = { notBefore: now - 3600, notAfter: now + 86400 };
  try {
    const decoded = decodeCertChain(real);
    window = {
      notBefore: Number(decoded.leaf.details.notBefore),
      notAfter: Number(decoded.leaf.details.notAfter),
    };
  } catch {
    // the real chain is not decodable: keep the default window
  }
  const root = createRootKey();
  const inter = createIntermediateKey();
  const intermediate = issueIntermediate({
    rootPrivateKey: root.privateKey,
    serial: 1,
    key: inter.publicKey,
    ...window,
  });
  const leaf = issueLeaf({
    intermediatePrivateKey: inter.privateKey,
    serial: 2,
    issuerSerial: 1,
    key,
    ...window,
  });
  return encodeCertChain({ leaf, intermediate });
}

function codeOf(err: unknown): string {
  return err instanceof InteropError ? err.code : 'unexpected';
}
