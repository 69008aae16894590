/**
 * One enlisted puppet at run time: its gateway connection, its Signal session manager, the outbox
 * sender and the incoming handler, and the routing of every stanza the gateway sends it.
 */
import { showsEphemeral } from './fallbacks.js';
import type { EphemeralEvent } from './events.js';
import { GatewayConnection, type GatewayConnectionOptions } from '../gateway/connection.js';
import type { Logger } from '../observability/logger.js';
import { mintClientToken, type ProviderPrivateJwk } from '../protocol/jwt.js';
import { keyPairFromPrivateKey, type KeyPair } from '../protocol/noise/index.js';
import {
  formatJid,
  parseJid,
  providerServer,
  type NotificationStanza,
  type ReceiptStanza,
  type Stanza,
} from '../protocol/stanza/index.js';
import { signalAddress, userJidOfAddress } from '../signal/address.js';
import {
  SignalSessionManager,
  type IdentityPolicy,
  type SenderKeyBackend,
  type SignalBackend,
} from '../signal/index.js';
import type { PayloadVault } from '../store/at-rest.js';
import type { OwedReceipt, Puppet, Store } from '../store/repositories.js';
import { InboxReceipts } from './inbox-receipts.js';
import type { Adapter } from './adapter.js';
import type { PuppetContext } from './context.js';
import type { BridgeMetrics } from '../observability/metrics.js';
import type { Notice } from './events.js';
import { BridgeError } from './errors.js';
import { isGroupJid, PuppetGroups } from './groups.js';
import { IncomingHandler } from './inbox.js';
import { PuppetProfiles } from './profiles.js';
import type { MediaHandler } from './media.js';
import { OutboxSender, RECEIPT_KIND } from './outbox.js';
import { SessionWriteGate } from './session-gate.js';
import { addressUser, RemoteDevices } from './sessions.js';

/** How to reach and authenticate to the gateway; shared by every puppet. */
export interface GatewaySettings {
  host: string;
  port: number;
  rootPublicKey: Uint8Array;
  /** The JWT audience. */
  gatewayId: string;
  /** This bridge's provider id: the JWT issuer and the accounts' server `<id>.interop`. */
  providerId: string;
  /** The provider's JWT signing key (its public half is in the JWKS the gateway reads). */
  signingKey: ProviderPrivateJwk;
  /** Pinned gateway static key (IK from the first connection); else learnt per puppet. */
  staticKey?: Uint8Array | undefined;
  /** Connection tuning (tests shorten the reconnect delays). */
  connection?: Pick<
    GatewayConnectionOptions,
    'keepaliveMs' | 'handshakeTimeoutMs' | 'requestTimeoutMs' | 'reconnect' | 'maxFrameSize' | 'gate'
  >;
}

export interface PuppetRuntimeOptions {
  puppet: Puppet;
  store: Store;
  signalBackend: SignalBackend;
  senderKeyBackend: SenderKeyBackend;
  gateway: GatewaySettings;
  identityPolicy: IdentityPolicy;
  adapter: () => Adapter | undefined;
  media: MediaHandler | undefined;
  log: Logger | undefined;
  metrics?: BridgeMetrics | undefined;
  /** The end user's IP address, when the adapter knows it. */
  endUserIp?: () => string | undefined;
  /** One-time prekeys kept on the server (replenished below a fifth of this). */
  preKeyTarget?: number;
  /** Seals what waits in the outbox and inbox (none: kept as it is, for tests and tools). */
  vault?: PayloadVault | undefined;
  /** How long an outgoing message may wait before it fails. Default 7 days. */
  queueMaxAgeMs?: number | undefined;
  /** The puppet's lease and this process's fence, with several workers (see SessionWriteGate). */
  lease?: (() => { name: string; fence: number } | undefined) | undefined;
  /**
   * With several workers: recorded incoming messages are delivered by the process running the
   * adapters (src/cluster/relay.ts), which this tells; without, this runtime delivers them.
   */
  handoff?: { inboxRecorded(): void } | undefined;
}

/** How long an outgoing message may wait for its puppet's connection before it fails: 7 days. */
export const DEFAULT_QUEUE_MAX_AGE_MS = 7 * 24 * 3600_000;

export function accountJidOf(accountId: string, providerId: string): string {
  return formatJid({ user: accountId, server: providerServer(providerId) });
}

/** A connection for a puppet, minting a fresh token bound to its Noise key for every attempt. */
export function puppetConnection(
  puppet: Puppet,
  store: Store,
  gateway: GatewaySettings,
  options: { enlisting?: boolean; log?: Logger | undefined; endUserIp?: () => string | undefined },
): GatewayConnection {
  const noiseKey: KeyPair = keyPairFromPrivateKey(Buffer.from(puppet.noisePrivate));
  return new GatewayConnection({
    host: gateway.host,
    port: gateway.port,
    rootPublicKey: gateway.rootPublicKey,
    providerId: gateway.providerId,
    accountId: puppet.accountId,
    device: puppet.deviceId,
    noiseKey,
    serverStaticKey: puppet.gatewayStatic ?? gateway.staticKey,
    onServerStaticKey: (key) => {
      // Pinned for the next connection's IK handshake; without it the next one is XX again.
      store.puppets
        .setGatewayStatic(puppet.id, key)
        .catch((err: unknown) =>
          options.log?.warn({ err: (err as Error).message }, 'gateway key not stored'),
        );
    },
    mintToken: () =>
      mintClientToken({
        privateKey: gateway.signingKey,
        kid: gateway.signingKey.kid,
        alg: gateway.signingKey.alg,
        issuer: gateway.providerId,
        subject: puppet.accountId,
        audience: gateway.gatewayId,
        noiseStaticKey: puppet.noisePublic,
      }),
    ...(options.endUserIp ? { endUserIp: options.endUserIp } : {}),
    ...(options.enlisting ? { enlisting: true } : {}),
    ...(options.log ? { logger: options.log } : {}),
    ...gateway.connection,
  });
}

export class PuppetRuntime {
  readonly ctx: PuppetContext;
  readonly connection: GatewayConnection;
  readonly signal: SignalSessionManager;
  readonly devices: RemoteDevices;
  readonly outbox: OutboxSender;
  readonly incoming: IncomingHandler;
  readonly groups: PuppetGroups;
  readonly profiles: PuppetProfiles;
  /** The delivery receipts the inbox owes, made at the first: an idle puppet (of thousands) holds none. */
  private receiptsMade: InboxReceipts | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly preKeyTarget: number;
  private started = false;
  private lastNotified: string | undefined;
  /** The last gateway connection problem (for the admin commands); kept until the next one. */
  lastError: { readonly code: string; readonly message: string; readonly at: string } | undefined;

  constructor(private readonly options: PuppetRuntimeOptions) {
    const { puppet, store, gateway } = options;
    const accountJid = accountJidOf(puppet.accountId, gateway.providerId);
    this.preKeyTarget = options.preKeyTarget ?? 100;
    const sessionGate = new SessionWriteGate(options.signalBackend, store, options.lease);
    this.signal = new SignalSessionManager(sessionGate, {
      localUser: accountJid,
      policy: options.identityPolicy,
      preKeyTarget: this.preKeyTarget,
      preKeyThreshold: Math.max(1, Math.floor(this.preKeyTarget / 5)),
    });
    this.connection = puppetConnection(puppet, store, gateway, {
      log: options.log,
      ...(options.endUserIp ? { endUserIp: options.endUserIp } : {}),
    });
    this.ctx = {
      puppet,
      accountJid,
      store,
      signal: this.signal,
      sessionGate,
      connection: this.connection,
      adapter: options.adapter,
      media: options.media,
      log: options.log,
      metrics: options.metrics,
      nowSeconds: () => Math.floor(Date.now() / 1000),
      vault: options.vault,
      queueMaxAgeMs: options.queueMaxAgeMs ?? DEFAULT_QUEUE_MAX_AGE_MS,
    };
    this.devices = new RemoteDevices(this.ctx);
    this.groups = new PuppetGroups(
      this.ctx,
      this.devices,
      sessionGate.senderKeys(options.senderKeyBackend),
      () => this.incoming.pump(),
    );
    this.profiles = new PuppetProfiles(this.ctx, async () => {
      const answer = await this.connection.request({ op: 'media_conn' });
      if (answer.body.op !== 'media_conn_result') throw new Error('no media credential from the gateway');
      return { auth: answer.body.auth };
    });
    this.outbox = new OutboxSender(this.ctx, this.devices, this.groups);
    this.incoming = new IncomingHandler(
      this.ctx,
      this.devices,
      (owed) => this.kickReceipts(owed),
      options.handoff,
      this.groups,
    );

    this.signal.onIdentityChange((change) => {
      const remote = userJidOfAddress(change.address);
      let safetyNumber = '';
      try {
        safetyNumber = this.signal.safetyNumber(change.address);
      } catch {
        // no number without a known key: the notice still says that it changed
      }
      this.notify({ kind: 'identity_changed', remote, safetyNumber, blocked: change.trust === 'blocked' });
    });
    this.connection.on('stanza', (s) => this.enqueue(s));
    this.connection.on('problem', (error) => {
      options.metrics?.gatewayFailure(error.code);
      this.lastError = { code: error.code, message: error.message, at: new Date().toISOString() };
    });
    this.connection.on('connected', () => this.onConnected());
    this.connection.on('state', (state, detail) => {
      if (state === 'refused') {
        options.metrics?.gatewayFailure(detail ?? 'refused');
        this.lastError = {
          code: 'refused',
          message: `the gateway refused the account (${detail ?? 'no reason'})`,
          at: new Date().toISOString(),
        };
      }
      if (
        state === 'connected' ||
        state === 'refused' ||
        (state === 'waiting' && this.lastNotified === 'connected')
      ) {
        const shown = state === 'waiting' ? 'disconnected' : state;
        if (shown === this.lastNotified) return;
        this.lastNotified = shown;
        this.notify({ kind: 'connection', state: shown, ...(detail ? { detail } : {}) });
      }
    });
  }

  get puppet(): Puppet {
    return this.options.puppet;
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Connects (and keeps reconnecting); delivers pending inbox entries at once. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.connection.start();
    this.incoming.pump();
  }

  /** Disconnects; what is queued stays queued. */
  async disconnect(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.connection.stop();
  }

  /** Sends the delivery receipt `owed` (handed over by the delivery), or with none, all the inbox owes. */
  kickReceipts(owed?: OwedReceipt): void {
    (this.receiptsMade ??= new InboxReceipts(this.ctx)).kick(owed);
  }

  /** Everything waiting to be sent (another process wrote it, or a notice of it was lost). */
  sendWaiting(): void {
    this.outbox.kick();
    this.kickReceipts();
  }

  async stop(): Promise<void> {
    this.receiptsMade?.stop();
    this.outbox.stop();
    this.incoming.stop();
    await this.disconnect();
    await this.chain;
    await this.outbox.settled();
    await this.receiptsMade?.flush();
    // The Signal state of what it sent last is durable before the caller lets the puppet go (with
    // several workers, before its lease goes to another, which would otherwise reuse its keys).
    await this.ctx.sessionGate.flushed().catch(() => undefined);
  }

  /** Resolves once the puppet is connected; rejects after `waitMs` (`bridge_not_connected`). */
  async untilConnected(waitMs: number): Promise<void> {
    if (this.connection.isConnected) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connection.off('connected', onConnected);
        reject(
          new BridgeError(
            'bridge_not_connected',
            `${this.puppet.localId}'s puppet did not connect to the gateway within ${waitMs} ms`,
          ),
        );
      }, waitMs);
      const onConnected = () => {
        clearTimeout(timer);
        resolve();
      };
      this.connection.once('connected', onConnected);
    });
  }

  notify(notice: Notice): void {
    try {
      this.options.adapter()?.notify(this.puppet.localId, notice);
    } catch (err) {
      this.options.log?.warn({ err: (err as Error).message }, 'adapter.notify threw');
    }
  }

  /** Stanzas are handled one at a time in arrival order (the inbox order is the arrival order). */
  private enqueue(stanza: Stanza): void {
    this.chain = this.chain
      .then(() => this.onStanza(stanza))
      .catch((err: unknown) => {
        this.options.log?.warn({ err: (err as Error).message, kind: stanza.kind }, 'stanza not handled');
      });
  }

  private onConnected(): void {
    this.outbox.onConnected();
    if (this.receiptsMade) this.receiptsMade.onConnected();
    else {
      // A restart: receipts owed before it go out now (one indexed read; most puppets owe none).
      void this.ctx.store.inbox
        .receiptsOwed(this.puppet.id, 0, 1)
        .then((owed) => owed.length > 0 && this.kickReceipts())
        .catch((err: unknown) =>
          this.options.log?.warn({ err: (err as Error).message }, 'owed receipts not read'),
        );
    }
    this.incoming.pump();
    void this.keepPreKeys().catch((err: unknown) =>
      this.options.log?.warn({ err: (err as Error).message }, 'prekey upkeep failed'),
    );
  }

  private async onStanza(stanza: Stanza): Promise<void> {
    switch (stanza.kind) {
      case 'message':
        if (stanza.from !== undefined) {
          // The sender's push name (on 1:1 and group messages): its profile is shown or refreshed.
          const sender = stanza.participant ?? stanza.from;
          if (!isGroupJid(sender)) this.profiles.heardFrom(toUser(sender), stanza.notify);
        }
        return this.incoming.onMessage(stanza);
      case 'ack':
        if (stanza.class === 'message') return this.outbox.onMessageAck(stanza.id, stanza.error);
        if (stanza.class === 'receipt') {
          this.receiptsMade?.onAck(stanza.id);
          return this.outbox.onReceiptAck(stanza.id);
        }
        return;
      case 'receipt': {
        // Acknowledged only once recorded and shown: the gateway keeps it (and delivers it again
        // after a crash) until then. Later stanzas do not wait for the showing.
        const { shown } = await this.onReceipt(stanza);
        const ack = (): void => {
          if (this.connection.isConnected)
            this.connection.send({ kind: 'ack', class: 'receipt', id: stanza.id });
        };
        if (shown) void shown.then(ack, () => undefined);
        else ack();
        return;
      }
      case 'notification':
        return this.onNotification(stanza);
      case 'chatstate':
      case 'presence': {
        if (stanza.from === undefined) return;
        const remote = toUser(stanza.from);
        const adapter = this.options.adapter();
        const event: EphemeralEvent['event'] =
          stanza.kind === 'chatstate'
            ? { type: 'typing', typing: stanza.state === 'composing' }
            : { type: 'presence', available: stanza.type === 'available' };
        if (!adapter || !showsEphemeral(adapter.capabilities, event)) return;
        try {
          adapter.showEphemeral({ localUser: this.puppet.localId, remote, event });
        } catch (err) {
          this.options.log?.warn({ err: (err as Error).message }, 'adapter.showEphemeral threw');
        }
        return;
      }
      default:
        return;
    }
  }

  private async onReceipt(r: ReceiptStanza): Promise<{ shown?: Promise<void> }> {
    if (r.type === 'retry') {
      const entry = await this.ctx.store.outbox.get(r.id);
      if (!entry || entry.puppetId !== this.puppet.id || entry.kind === RECEIPT_KIND || !r.from) return {};
      if (r.retry && r.retry.count > 5) return {};
      const keys = r.retry?.keys;
      const bundle = keys
        ? {
            registrationId: r.retry?.registrationId ?? 0,
            identityKey: keys.identityKey,
            signedPreKey: keys.signedPreKey,
            ...(keys.preKey ? { preKey: keys.preKey } : {}),
          }
        : undefined;
      // In a group, the device that could not read it is the participant (the sender is the group).
      const from = isGroupJid(r.from) ? r.participant : r.from;
      if (!from) return {};
      // Off the stanza chain: it waits for a prekey fetch, and later messages need not wait for it.
      void this.outbox
        .resendAfterRetry(entry, from, bundle ? { bundle } : {})
        .catch((err: unknown) =>
          this.options.log?.warn(
            { id: r.id, err: (err as Error).message },
            'resend after a retry receipt failed',
          ),
        );
      return {};
    }
    // In a group, `participant` is the member's device that sent it: each member's receipt is shown.
    const by = r.from && isGroupJid(r.from) && r.participant ? toUser(r.participant) : undefined;
    return this.outbox.onReceipt(
      r.id,
      r.type === 'read' ? 'read' : 'delivered',
      r.from === undefined ? undefined : toUser(r.from),
      by,
    );
  }

  private async onNotification(n: NotificationStanza): Promise<void> {
    const ack = () => {
      if (this.connection.isConnected) this.connection.send({ kind: 'ack', class: 'notification', id: n.id });
    };
    if (n.type === 'w:gp2') {
      // Acked once recorded: the gateway delivers it again after a crash before that.
      await this.groups.onNotification(n);
      // Members' profiles are read when the puppet meets them (their names are their nicks).
      const b = n.body;
      const joined = b.event === 'participants_changed' && b.action === 'add' ? b.participants : [];
      const meeting = b.event === 'group_created' || joined.includes(this.ctx.accountJid);
      const info = meeting ? await this.groups.info(n.from) : undefined;
      for (const member of info ? info.participants.map((p) => p.jid) : joined)
        this.profiles.heardFrom(member, undefined);
      if (info) this.profiles.groupPicture(n.from, info.pictureId);
      return ack();
    }
    ack();
    if (n.type === 'picture' && n.version !== undefined) await this.groups.onPicture(n);
    if (n.type === 'profile' || n.type === 'picture') return this.profiles.onNotification(n);
    if (n.body.event === 'prekey_low') {
      void this.uploadPreKeys(this.preKeyTarget - n.body.count).catch(() => undefined);
      return;
    }
    // A contact's device has a new identity: its session is useless. Start a new one from its
    // current bundle, which records the new key and tells the user (onIdentityChange).
    const jid = parseJid(n.from);
    if (jid.user === undefined) return;
    const remote = formatJid({ user: jid.user, server: jid.server });
    const device = jid.device ?? 0;
    this.devices.forget(remote);
    void (async () => {
      await this.signal.deleteSession(signalAddress(remote, device));
      await this.devices.rebuild(remote, device);
    })().catch((err: unknown) =>
      this.options.log?.warn({ remote, err: (err as Error).message }, 'could not refresh a changed identity'),
    );
  }

  /** Tops the server's one-time prekeys up and rotates the signed prekey when due. */
  private async keepPreKeys(): Promise<void> {
    await this.signal.prepare();
    const answer = await this.connection.request({ op: 'prekey_count' });
    const count = answer.body.op === 'prekey_count_result' ? answer.body.count : 0;
    const needed = this.signal.preKeysNeeded(count);
    if (this.signal.signedPreKeyRotationDue()) this.signal.rotateSignedPreKey();
    else if (needed === 0) return;
    await this.uploadPreKeys(needed);
  }

  async uploadPreKeys(count: number): Promise<void> {
    await this.signal.prepare();
    const upload = this.signal.prekeyUpload(Math.max(0, count));
    await this.signal.flush();
    await this.connection.request({ op: 'prekey_upload', ...upload });
    this.signal.markPrekeysUploaded(upload.preKeys.map((k) => k.id));
  }

  /** The safety number with a contact (its first device we know). */
  /**
   * The safety number with a contact. Before any message was exchanged no identity key is known:
   * then `connected` is awaited and a session is started from the contact's published keys, as a
   * first message would, so `safety +number` works at once.
   */
  async safetyNumber(remote: string, connected: () => Promise<void>): Promise<string> {
    const known = (): string | undefined => {
      try {
        return this.signal.safetyNumber(addressUser(remote));
      } catch (err) {
        if ((err as { code?: string }).code === 'signal_no_session') return undefined;
        throw err;
      }
    };
    await this.signal.prepare(addressUser(remote));
    const now = known();
    if (now !== undefined) return now;
    await connected();
    await this.devices.ensureSessions(remote, await this.devices.devicesOf(remote));
    await this.signal.prepare(addressUser(remote));
    const fetched = known();
    if (fetched === undefined) {
      throw new BridgeError(
        'bridge_no_identity',
        `${remote} has published no keys the bridge could fetch: there is no safety number yet; try again after a first message`,
      );
    }
    return fetched;
  }

  async confirmIdentity(remote: string): Promise<void> {
    await this.signal.prepare(addressUser(remote));
    for (const address of this.signal.sessionAddresses(addressUser(remote))) {
      if (this.signal.remoteIdentity(address)) this.signal.confirmIdentity(address);
    }
  }
}

function toUser(jid: string): string {
  const { user, server } = parseJid(jid);
  return formatJid({ user, server });
}
