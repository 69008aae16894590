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
import { parseJid, toUserJid } from '../protocol/stanza/index.js';
import type { IdentityPolicy, SignalBackend } from '../signal/index.js';
import { outboxRowId, sealPayload, type PayloadVault } from '../store/at-rest.js';
import type { Network, Puppet, Store } from '../store/repositories.js';
import { receiptOutboxId, wireIdFor } from './account.js';
import { Enlistment } from './enlistment.js';
import type { Adapter, BridgeCore, PuppetReport, PuppetStatus } from './adapter.js';
import { BridgeError } from './errors.js';
import type { OutgoingEvent } from './events.js';
import type { MediaHandler } from './media.js';
import { encodePayload, RECEIPT_KIND, type ReceiptPayload } from './outbox.js';
import { accountJidOf, PuppetRuntime, type GatewaySettings } from './puppet.js';
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
  /**
   * The operator's at-rest key: seals the content that waits in the outbox and inbox. The daemon
   * always passes one; without it (tests, tools) waiting content is kept as it is.
   */
  vault?: PayloadVault;
  /** An outgoing message not sent within this long (ms) fails with a notice. Default 7 days. */
  queueMaxAgeMs?: number;
  /**
   * How often (ms) messages over the age limit are failed and the store scrubbed (its WAL
   * checkpointed and truncated). Default 5 minutes.
   */
  maintenanceIntervalMs?: number;
}

/** The longest text accepted for sending, in UTF-16 code units (the gatekeeper's own limit is 65,536 characters). */
export const MAX_TEXT_LENGTH = 65_536;

export class Bridge {
  private readonly adapters = new Map<Network, Adapter>();
  private readonly runtimes = new Map<string, PuppetRuntime>();
  private readonly online = new Set<string>();
  private readonly log: Logger | undefined;
  private readonly lifecycle: Lifecycle;
  private started = false;
  private maintenanceTimer: NodeJS.Timeout | undefined;

  private readonly options: BridgeOptions;
  private readonly enlistment: Enlistment;

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
    this.enlistment = new Enlistment({
      store: this.options.store,
      gateway: this.options.gateway,
      log: this.log,
      preKeys: this.options.preKeys ?? 100,
      gatewayWaitMs: this.options.gatewayWaitMs ?? 30_000,
      signalBackend: (puppetId) => this.options.signalBackend(puppetId),
      runtimeFor: (puppet) => this.runtimeFor(puppet),
      forget: (localUser) => {
        this.runtimes.delete(localUser);
        this.online.delete(localUser);
      },
      applyLifecycle: (localUser) => this.applyLifecycle(localUser),
      adapterOf: (network) => this.adapterOf(network),
    });
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
        return runtime.safetyNumber(toUserJid(remote), () => this.waitUntilConnected(runtime));
      },
      confirmIdentity: async (localUser, remote) => {
        await this.runtimeOf(localUser).confirmIdentity(toUserJid(remote));
      },
      status: (localUser) => this.status(localUser),
      isEnlisted: async (localUser) => {
        const p = await store.puppets.byLocalId(localUser);
        return p !== undefined && p.state === 'enlisted' && p.network === network;
      },
      enlistedUsers: async () =>
        (await store.puppets.list())
          .filter((p) => p.network === network && p.state === 'enlisted')
          .map((p) => p.localId),
      puppets: (localUser) => this.puppetReports(localUser),
      reconnect: (localUser) => this.reconnect(localUser),
      broadcast: (text) => this.broadcast(text),
    };
  }

  /**
   * Starts every enlisted puppet (lifecycle `always`: all of them connect; `presence`: those whose
   * users are online) and resumes interrupted enlistments and opt-outs.
   */
  async start(): Promise<void> {
    this.started = true;
    this.maintenanceTimer = setInterval(
      () => void this.maintain(),
      this.options.maintenanceIntervalMs ?? 300_000,
    );
    this.maintenanceTimer.unref();
    let n = 0;
    for (const puppet of await this.options.store.puppets.list()) {
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
    void this.maintain();
  }

  /** Disconnects every puppet. Nothing queued is lost: it is in the store. */
  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.maintenanceTimer);
    await Promise.all([...this.runtimes.values()].map((r) => r.stop()));
    this.runtimes.clear();
    await this.options.store.scrub().catch(() => undefined);
  }

  /**
   * Fails the outgoing messages that waited longer than the age limit (each with its notice to the
   * user), then scrubs the store so that content cleared since the last time is gone from its files.
   */
  async maintain(): Promise<void> {
    try {
      for (const runtime of this.runtimes.values()) await runtime.outbox.expire();
      await this.options.store.scrub();
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'store maintenance failed');
    }
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
        vault: this.options.vault,
        queueMaxAgeMs: this.options.queueMaxAgeMs,
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
  // Puppets (enlistment.ts)

  /** Opts the local user in (see Enlistment.enlist). */
  enlist(network: Network, localUser: string): Promise<void> {
    return this.enlistment.enlist(network, localUser);
  }

  /** Opts the local user out and deletes the puppet (see Enlistment.optOut). */
  optOut(localUser: string): Promise<void> {
    return this.enlistment.optOut(localUser);
  }

  private waitUntilConnected(runtime: PuppetRuntime): Promise<void> {
    return runtime.untilConnected(this.options.gatewayWaitMs ?? 30_000);
  }

  // ---------------------------------------------------------------------------------------------
  // Outgoing

  async submit(network: Network, event: OutgoingEvent): Promise<void> {
    const { store } = this.options;
    const puppet = await store.puppets.byLocalId(event.localUser);
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
      const portal = await store.portals.ensure(puppet.id, remote);
      const messageIds = await Promise.all(
        e.targets.map(
          async (target) => (await store.messages.byLocal(portal.id, target))?.remoteId ?? target,
        ),
      );
      await store.atomically((w) => {
        for (const messageId of messageIds) {
          const payload: ReceiptPayload = {
            receipt: e.receipt === 'read' ? 'read' : 'delivery',
            messageId,
            to: remote,
          };
          w.enqueueOutbox({
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
    const portal = await store.portals.ensure(puppet.id, remote);
    await store.atomically((w) => {
      w.enqueueOutbox({
        id,
        puppetId: puppet.id,
        portalId: portal.id,
        kind: e.type,
        payload: sealPayload(this.options.vault, outboxRowId(id), encodePayload({ ...event, remote })),
        localId: event.localId,
      });
      w.putMessage({ portalId: portal.id, remoteId: id, localId: event.localId, sender: accountJid });
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
    await this.waitUntilConnected(runtime);
    const contact = phone.startsWith('+') ? phone : `+${phone}`;
    const answer = await runtime.connection.request({ op: 'usync_query', contacts: [contact] });
    const entry = answer.body.op === 'usync_result' ? answer.body.entries[0] : undefined;
    if (!entry?.onNetwork) return { reachable: false };
    return { reachable: true, ...(entry.jid ? { jid: entry.jid } : {}) };
  }

  async status(localUser: string): Promise<PuppetStatus> {
    const puppet = await this.options.store.puppets.byLocalId(localUser);
    if (!puppet) return { enlisted: false, connection: 'none', queued: 0 };
    const runtime = this.runtimes.get(localUser);
    return {
      enlisted: puppet.state === 'enlisted',
      connection: runtime?.connection.state ?? 'idle',
      queued: await this.options.store.outbox.countQueued(puppet.id),
    };
  }

  /**
   * The puppet's media credential (`<media_conn>` over its own connection): where the gateway's
   * media service is and the bearer `auth` for it, valid `ttl` seconds. For the MediaHandler, which
   * downloads incoming media as the puppet. Rejects when the puppet is not connected.
   */
  async mediaConn(localUser: string): Promise<{ auth: string; ttl: number; hosts: readonly string[] }> {
    const runtime = this.runtimeOf(localUser);
    await this.waitUntilConnected(runtime);
    const answer = await runtime.connection.request({ op: 'media_conn' });
    if (answer.body.op !== 'media_conn_result') {
      throw new BridgeError('bridge_not_connected', `the gateway gave ${localUser}'s puppet no media host`);
    }
    return { auth: answer.body.auth, ttl: answer.body.ttl, hosts: answer.body.hosts };
  }

  // ---------------------------------------------------------------------------------------------
  // Administration

  /** Every puppet (or `localUser`'s) with its connection, queue and last error, by local user. */
  async puppetReports(localUser?: string): Promise<PuppetReport[]> {
    const { store } = this.options;
    const puppets =
      localUser === undefined
        ? await store.puppets.list()
        : [await store.puppets.byLocalId(localUser)].filter((p): p is Puppet => p !== undefined);
    const reports: PuppetReport[] = [];
    for (const p of puppets) {
      const runtime = this.runtimes.get(p.localId);
      reports.push({
        localUser: p.localId,
        network: p.network,
        state: p.state,
        enlisted: p.state === 'enlisted',
        connection: runtime?.connection.state ?? 'idle',
        queued: await store.outbox.countQueued(p.id),
        inboxPending: await store.inbox.countPending(p.id),
        address: accountJidOf(p.accountId, this.options.gateway.providerId),
        lastError: runtime?.lastError,
      });
    }
    return reports.sort((a, b) => a.localUser.localeCompare(b.localUser));
  }

  /** Drops and reopens an enlisted puppet's connection; false when the user has none. */
  async reconnect(localUser: string): Promise<boolean> {
    const puppet = await this.options.store.puppets.byLocalId(localUser);
    if (!puppet || puppet.state !== 'enlisted') return false;
    const runtime = this.runtimeFor(puppet);
    await runtime.disconnect();
    // As the lifecycle says: under `presence` a user who is offline stays disconnected.
    this.applyLifecycle(localUser);
    this.log?.info({ user: localUser }, 'puppet reconnected by an administrator');
    return true;
  }

  /** A `broadcast` notice to every enlisted user, through their network's adapter. */
  async broadcast(text: string): Promise<number> {
    let n = 0;
    for (const p of await this.options.store.puppets.list()) {
      if (p.state !== 'enlisted') continue;
      const adapter = this.adapterOf(p.network);
      if (!adapter) continue;
      try {
        adapter.notify(p.localId, { kind: 'broadcast', text });
        n++;
      } catch (err) {
        this.log?.warn({ user: p.localId, err: (err as Error).message }, 'broadcast not shown');
      }
    }
    this.log?.info({ users: n }, 'broadcast sent by an administrator');
    return n;
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
