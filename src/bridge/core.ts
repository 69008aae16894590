/**
 * The bridge core: puppets (enlisted local users), the durable outbox and inbox, and routing between
 * the adapters and one gateway connection per puppet. It knows neither Matrix nor XMPP.
 *
 * One `Bridge` serves both adapters: `attach(adapter)` returns the `BridgeCore` that adapter calls,
 * bound to its network; incoming traffic goes to the adapter of the puppet's network.
 */
import type { Logger } from '../observability/logger.js';
import { componentLogger } from '../observability/logger.js';
import { ConnectionGate } from '../gateway/gate.js';
import { enlistmentStatement } from '../protocol/enlistment.js';
import { generateKeyPair } from '../protocol/noise/index.js';
import { parseJid, toUserJid } from '../protocol/stanza/index.js';
import {
  createSignalIdentity,
  xeddsaSign,
  SignalSessionManager,
  type IdentityPolicy,
  type SignalBackend,
} from '../signal/index.js';
import type { Network, Puppet, Store } from '../store/repositories.js';
import { accountIdFor, receiptOutboxId, wireIdFor } from './account.js';
import type { Adapter, BridgeCore } from './adapter.js';
import { BridgeError } from './errors.js';
import type { OutgoingEvent } from './events.js';
import type { MediaHandler } from './media.js';
import { encodePayload, RECEIPT_KIND, type ReceiptPayload } from './outbox.js';
import { accountJidOf, PuppetRuntime, puppetConnection, type GatewaySettings } from './puppet.js';
import type { BridgeMetrics } from '../observability/metrics.js';

export type Lifecycle = 'always' | 'presence';

export interface BridgeOptions {
  store: Store;
  /** The Signal state of one puppet (SqliteSignalBackend on the store's database). */
  signalBackend: (puppetId: number) => SignalBackend;
  gateway: GatewaySettings;
  /** `always`: connected while enlisted. `presence`: connected while the local user is online. */
  lifecycle?: Lifecycle;
  identityPolicy?: IdentityPolicy;
  media?: MediaHandler;
  logger?: Logger;
  /** One-time prekeys published at enlistment and kept topped up. Default 100. */
  preKeys?: number;
  /** Prometheus metrics (messages, latency, connection states); none when unset. */
  metrics?: BridgeMetrics;
  /** How long enlistment and opt-out wait for the gateway. Default 30 s. */
  gatewayWaitMs?: number;
}

const DEVICE = 0;
/** The longest text accepted for sending, in UTF-16 code units (the gatekeeper's own limit is 65,536 characters). */
export const MAX_TEXT_LENGTH = 65_536;

export class Bridge {
  private readonly adapters = new Map<Network, Adapter>();
  private readonly runtimes = new Map<string, PuppetRuntime>();
  private readonly online = new Set<string>();
  private readonly log: Logger | undefined;
  private readonly lifecycle: Lifecycle;
  private started = false;

  private readonly options: BridgeOptions;

  constructor(options: BridgeOptions) {
    this.options = options;
    this.log = options.logger ? componentLogger(options.logger, 'bridge') : undefined;
    this.lifecycle = options.lifecycle ?? 'always';
    // Every puppet dials through one gate, so a start or a gateway restart is not a stampede.
    if (!options.gateway.connection?.gate) {
      this.options = {
        ...options,
        gateway: {
          ...options.gateway,
          connection: { ...options.gateway.connection, gate: new ConnectionGate() },
        },
      };
    }
  }

  /**
   * Connects the adapter for its network: incoming traffic of that network's puppets goes to it,
   * and it gets (through `adapter.attach`) the core it calls, which is also returned.
   */
  attach(adapter: Adapter): BridgeCore {
    this.adapters.set(adapter.network, adapter);
    const core = this.coreFor(adapter.network);
    adapter.attach(core);
    return core;
  }

  private coreFor(network: Network): BridgeCore {
    const { store } = this.options;
    return {
      submit: (event) => this.submit(network, event),
      setOnline: (localUser, online) => this.setOnline(localUser, online),
      enlist: (localUser) => this.enlist(network, localUser),
      optOut: (localUser) => this.optOut(localUser),
      lookup: (localUser, phone) => this.lookup(localUser, phone),
      safetyNumber: (localUser, remote) => {
        const runtime = this.runtimeOf(localUser);
        return runtime.safetyNumber(toUserJid(remote), () => this.waitUntilConnected(runtime, localUser));
      },
      confirmIdentity: (localUser, remote) => {
        this.runtimeOf(localUser).confirmIdentity(toUserJid(remote));
        return Promise.resolve();
      },
      status: (localUser) => this.status(localUser),
      isEnlisted: (localUser) => {
        const p = store.puppets.byLocalId(localUser);
        return p !== undefined && p.state === 'enlisted' && p.network === network;
      },
      enlistedUsers: () =>
        store.puppets
          .list()
          .filter((p) => p.network === network && p.state === 'enlisted')
          .map((p) => p.localId),
    };
  }

  /**
   * Starts every enlisted puppet (lifecycle `always`: all of them connect; `presence`: those whose
   * users are online) and resumes interrupted enlistments and opt-outs.
   */
  async start(): Promise<void> {
    this.started = true;
    let n = 0;
    for (const puppet of this.options.store.puppets.list()) {
      // Thousands of puppets: let the event loop breathe between slices of set-up work.
      if (++n % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
      if (puppet.state === 'enlisted') {
        this.runtimeFor(puppet);
        this.applyLifecycle(puppet.localId);
      } else if (puppet.state === 'enlisting') {
        void this.enlist(puppet.network, puppet.localId).catch((err: unknown) =>
          this.log?.warn({ user: puppet.localId, err: (err as Error).message }, 'resumed enlistment failed'),
        );
      } else {
        void this.optOut(puppet.localId).catch((err: unknown) =>
          this.log?.warn({ user: puppet.localId, err: (err as Error).message }, 'resumed opt-out failed'),
        );
      }
    }
  }

  /** Disconnects every puppet. Nothing queued is lost: it is in the store. */
  async stop(): Promise<void> {
    this.started = false;
    await Promise.all([...this.runtimes.values()].map((r) => r.stop()));
    this.runtimes.clear();
  }

  private adapterOf(network: Network): Adapter | undefined {
    return this.adapters.get(network);
  }

  private runtimeFor(puppet: Puppet): PuppetRuntime {
    let runtime = this.runtimes.get(puppet.localId);
    if (!runtime) {
      runtime = new PuppetRuntime({
        puppet,
        store: this.options.store,
        signalBackend: this.options.signalBackend(puppet.id),
        gateway: this.options.gateway,
        identityPolicy: this.options.identityPolicy ?? 'trust_on_first_use',
        adapter: () => this.adapterOf(puppet.network),
        media: this.options.media,
        log: this.log?.child({ puppet: puppet.accountId }),
        metrics: this.options.metrics,
        preKeyTarget: this.options.preKeys ?? 100,
      });
      this.runtimes.set(puppet.localId, runtime);
    }
    return runtime;
  }

  private runtimeOf(localUser: string): PuppetRuntime {
    const runtime = this.runtimes.get(localUser);
    if (!runtime) {
      throw new BridgeError(
        'bridge_not_enlisted',
        `${localUser} has not opted in to interoperability: enlist first`,
      );
    }
    return runtime;
  }

  private applyLifecycle(localUser: string): void {
    const runtime = this.runtimes.get(localUser);
    if (!runtime || !this.started) return;
    if (this.lifecycle === 'always' || this.online.has(localUser)) runtime.start();
    else void runtime.disconnect();
  }

  setOnline(localUser: string, online: boolean): void {
    if (online) this.online.add(localUser);
    else this.online.delete(localUser);
    const runtime = this.runtimes.get(localUser);
    if (!runtime) return;
    if (this.lifecycle === 'always' && runtime.connection.isConnected) {
      runtime.connection.send({ kind: 'presence', type: online ? 'available' : 'unavailable' });
    }
    this.applyLifecycle(localUser);
  }

  // ---------------------------------------------------------------------------------------------
  // Puppets

  /**
   * Creates the puppet (account id, Signal identity and prekeys, Noise key; state `enlisting`),
   * connects with connect reason ENLISTMENT, sends `<enlist>` with the XEdDSA proof, publishes its
   * prekeys, and marks it `enlisted`; then connects it for good. Re-running it after a crash
   * resumes with the keys already stored. Idempotent for an enlisted user.
   */
  enlist(network: Network, localUser: string): Promise<void> {
    // One enlistment per user at a time: a second request (a double click, two clients) waits for
    // the first instead of opening a second enlisting connection that the gateway would refuse.
    const running = this.enlisting.get(localUser);
    if (running) return running;
    const work = this.enlistOnce(network, localUser).finally(() => this.enlisting.delete(localUser));
    this.enlisting.set(localUser, work);
    return work;
  }

  private readonly enlisting = new Map<string, Promise<void>>();

  private async enlistOnce(network: Network, localUser: string): Promise<void> {
    const { store } = this.options;
    if (localUser.trim() === '') throw new BridgeError('bridge_bad_local_user', 'the local user is empty');
    let puppet = store.puppets.byLocalId(localUser);
    if (puppet?.state === 'enlisted') {
      this.runtimeFor(puppet);
      this.applyLifecycle(localUser);
      return;
    }
    if (puppet?.state === 'opting_out') {
      throw new BridgeError(
        'bridge_enlist_failed',
        `${localUser} is being opted out: wait until that has finished, then enlist again`,
      );
    }
    if (!puppet) {
      const identity = createSignalIdentity();
      const noise = generateKeyPair();
      puppet = store.puppets.create({
        localId: localUser,
        network,
        accountId: accountIdFor(network, localUser),
        deviceId: DEVICE,
        registrationId: identity.registrationId,
        identityPublic: identity.identityPublic,
        identityPrivate: identity.identityPrivate,
        noisePublic: noise.publicKey,
        noisePrivate: noise.privateKey,
      });
    }
    const accountJid = accountJidOf(puppet.accountId, this.options.gateway.providerId);
    const signal = new SignalSessionManager(this.options.signalBackend(puppet.id), {
      localUser: accountJid,
    });
    const preKeys = this.options.preKeys ?? 100;
    signal.setUp({ preKeys });

    const connection = puppetConnection(puppet, store, this.options.gateway, {
      enlisting: true,
      log: this.log,
    });
    try {
      await this.waitConnected(connection, localUser);
      const t = Math.floor(Date.now() / 1000);
      const signature = xeddsaSign(
        puppet.identityPrivate,
        enlistmentStatement(accountJid, t, puppet.identityPublic),
      );
      await connection.request({ op: 'enlist', t, identityKey: puppet.identityPublic, signature });
      const upload = signal.prekeyUpload(preKeys);
      await connection.request({ op: 'prekey_upload', ...upload });
      signal.markPrekeysUploaded(upload.preKeys.map((k) => k.id));
    } catch (err) {
      throw err instanceof BridgeError
        ? err
        : new BridgeError(
            'bridge_enlist_failed',
            `enlisting ${localUser} at the gateway failed (${(err as Error).message}): try again; the keys are kept`,
            { cause: err },
          );
    } finally {
      await connection.stop();
    }
    store.puppets.setState(puppet.id, 'enlisted');
    const enlisted = store.puppets.byId(puppet.id) as Puppet;
    this.log?.info({ user: localUser, account: accountJid }, 'puppet enlisted');
    const runtime = this.runtimeFor(enlisted);
    runtime.notify({ kind: 'enlisted' });
    this.applyLifecycle(localUser);
  }

  private waitConnected(connection: ReturnType<typeof puppetConnection>, localUser: string): Promise<void> {
    const waitMs = this.options.gatewayWaitMs ?? 30_000;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new BridgeError(
            'bridge_enlist_failed',
            `could not reach the gateway within ${waitMs} ms to enlist ${localUser}: check gateway.host/port and try again`,
          ),
        );
      }, waitMs);
      const onConnected = () => {
        cleanup();
        resolve();
      };
      const onState = (state: string, detail?: string) => {
        if (state !== 'refused') return;
        cleanup();
        reject(
          new BridgeError(
            'bridge_enlist_failed',
            `the gateway refused ${localUser}'s enlistment connection (${detail ?? 'no reason'})`,
          ),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        connection.off('connected', onConnected);
        connection.off('state', onState);
      };
      connection.on('connected', onConnected);
      connection.on('state', onState);
      connection.start();
    });
  }

  /**
   * Opts the user out: `<unenlist/>` at the gateway (which drops the account, its keys and its
   * queue), then deletes the puppet and everything it owns. The state `opting_out` is stored
   * first, so a crash in between finishes the opt-out at the next start.
   */
  async optOut(localUser: string): Promise<void> {
    const { store } = this.options;
    const puppet = store.puppets.byLocalId(localUser);
    if (!puppet) return;
    store.puppets.setState(puppet.id, 'opting_out');
    const runtime = this.runtimeFor({ ...puppet, state: 'opting_out' });
    runtime.outbox.stop();
    runtime.incoming.stop();
    runtime.start();
    try {
      await this.waitUntilConnected(runtime, localUser);
      await runtime.connection.request({ op: 'unenlist' });
    } catch (err) {
      throw new BridgeError(
        'bridge_opt_out_failed',
        `opting ${localUser} out at the gateway failed (${(err as Error).message}): it will be retried at the next start, or call optOut again`,
        { cause: err },
      );
    }
    const adapter = this.adapterOf(puppet.network);
    await runtime.stop();
    this.runtimes.delete(localUser);
    store.puppets.delete(puppet.id);
    this.online.delete(localUser);
    this.log?.info({ user: localUser }, 'puppet opted out and deleted');
    try {
      adapter?.notify(localUser, { kind: 'opted_out' });
    } catch {
      // must not throw; nothing to do if it does
    }
  }

  private async waitUntilConnected(runtime: PuppetRuntime, localUser: string): Promise<void> {
    if (runtime.connection.isConnected) return;
    const waitMs = this.options.gatewayWaitMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        runtime.connection.off('connected', onConnected);
        reject(
          new BridgeError(
            'bridge_not_connected',
            `${localUser}'s puppet did not connect to the gateway within ${waitMs} ms`,
          ),
        );
      }, waitMs);
      const onConnected = () => {
        clearTimeout(timer);
        resolve();
      };
      runtime.connection.once('connected', onConnected);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Outgoing

  async submit(network: Network, event: OutgoingEvent): Promise<void> {
    const { store } = this.options;
    const puppet = store.puppets.byLocalId(event.localUser);
    if (!puppet || puppet.state !== 'enlisted' || puppet.network !== network) {
      throw new BridgeError(
        'bridge_not_enlisted',
        `${event.localUser} has not opted in to interoperability: enlist first`,
      );
    }
    let remote: string;
    try {
      remote = toUserJid(event.remote);
      if (parseJid(remote).user === undefined) throw new Error('no user part');
    } catch (err) {
      throw new BridgeError(
        'bridge_bad_remote',
        `"${event.remote}" is not a contact's JID (such as 4915112345678@wa.interop): ${(err as Error).message}`,
      );
    }
    const runtime = this.runtimeFor(puppet);
    const e = event.event;
    if (e.type === 'typing' || e.type === 'presence') {
      // Live only: worth nothing later, so never queued.
      if (!runtime.connection.isConnected) return;
      runtime.connection.send(
        e.type === 'typing'
          ? { kind: 'chatstate', to: remote, state: e.typing ? 'composing' : 'paused' }
          : { kind: 'presence', type: e.available ? 'available' : 'unavailable', to: remote },
      );
      return;
    }
    if (e.type === 'receipt') {
      store.atomically(() => {
        const portal = store.portals.ensure(puppet.id, remote);
        for (const target of e.targets) {
          const messageId = store.messages.byLocal(portal.id, target)?.remoteId ?? target;
          const payload: ReceiptPayload = {
            receipt: e.receipt === 'read' ? 'read' : 'delivery',
            messageId,
            to: remote,
          };
          store.outbox.enqueue({
            id: receiptOutboxId(puppet.accountId, payload.receipt, remote, messageId),
            puppetId: puppet.id,
            portalId: portal.id,
            kind: RECEIPT_KIND,
            payload: encodePayload(payload),
          });
        }
      });
      runtime.outbox.kick();
      return;
    }
    const textLength =
      e.type === 'message'
        ? e.body.kind === 'text'
          ? e.body.text.length
          : (e.body.caption?.length ?? 0)
        : e.type === 'edit'
          ? e.body.text.length
          : 0;
    if (textLength > MAX_TEXT_LENGTH) {
      throw new BridgeError(
        'bridge_text_too_long',
        `the message is ${textLength} characters long; the interop network takes at most ${MAX_TEXT_LENGTH}: send it in parts`,
      );
    }
    const id = wireIdFor(puppet.accountId, event.localId);
    const accountJid = accountJidOf(puppet.accountId, this.options.gateway.providerId);
    store.atomically(() => {
      const portal = store.portals.ensure(puppet.id, remote);
      store.outbox.enqueue({
        id,
        puppetId: puppet.id,
        portalId: portal.id,
        kind: e.type,
        payload: encodePayload({ ...event, remote }),
      });
      store.messages.put({ portalId: portal.id, remoteId: id, localId: event.localId, sender: accountJid });
    });
    this.options.metrics?.outgoing('queued');
    runtime.outbox.kick();
  }

  // ---------------------------------------------------------------------------------------------
  // Queries

  async lookup(localUser: string, phone: string): Promise<{ reachable: boolean; jid?: string }> {
    const runtime = this.runtimeOf(localUser);
    // Right after enlistment (or a reconnect) the puppet may still be dialling: a user who types
    // "start-chat" at once waits for it rather than getting an error.
    await this.waitUntilConnected(runtime, localUser);
    const contact = phone.startsWith('+') ? phone : `+${phone}`;
    const answer = await runtime.connection.request({ op: 'usync_query', contacts: [contact] });
    const entry = answer.body.op === 'usync_result' ? answer.body.entries[0] : undefined;
    if (!entry?.onNetwork) return { reachable: false };
    return { reachable: true, ...(entry.jid ? { jid: entry.jid } : {}) };
  }

  status(localUser: string): { enlisted: boolean; connection: string; queued: number } {
    const puppet = this.options.store.puppets.byLocalId(localUser);
    if (!puppet) return { enlisted: false, connection: 'none', queued: 0 };
    const runtime = this.runtimes.get(localUser);
    return {
      enlisted: puppet.state === 'enlisted',
      connection: runtime?.connection.state ?? 'idle',
      queued: this.options.store.outbox.countQueued(puppet.id),
    };
  }

  /**
   * The puppet's media credential (`<media_conn>` over its own connection): where the gateway's
   * media service is and the bearer `auth` for it, valid `ttl` seconds. For the MediaHandler, which
   * downloads incoming media as the puppet. Rejects when the puppet is not connected.
   */
  async mediaConn(localUser: string): Promise<{ auth: string; ttl: number; hosts: readonly string[] }> {
    const runtime = this.runtimeOf(localUser);
    await this.waitUntilConnected(runtime, localUser);
    const answer = await runtime.connection.request({ op: 'media_conn' });
    if (answer.body.op !== 'media_conn_result') {
      throw new BridgeError('bridge_not_connected', `the gateway gave ${localUser}'s puppet no media host`);
    }
    return { auth: answer.body.auth, ttl: answer.body.ttl, hosts: answer.body.hosts };
  }

  /** Puppets by gateway connection state (for metrics and the startup summary). */
  connectionStates(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const runtime of this.runtimes.values()) {
      const state = runtime.connection.state;
      counts[state] = (counts[state] ?? 0) + 1;
    }
    return counts;
  }

  /** The runtime of a puppet, for tests and the daemon's status page. */
  puppet(localUser: string): PuppetRuntime | undefined {
    return this.runtimes.get(localUser);
  }
}
