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
import { toUserJid } from '../protocol/stanza/index.js';
import {
  MemorySenderKeyBackend,
  type IdentityPolicy,
  type SenderKeyBackend,
  type SignalBackend,
} from '../signal/index.js';
import type { PayloadVault } from '../store/at-rest.js';
import type { Network, OutboxEntry, OwedReceipt, Puppet, Store } from '../store/repositories.js';
import { Enlistment } from './enlistment.js';
import type { Adapter, BridgeCore, PuppetReport, PuppetStatus } from './adapter.js';
import { BridgeError } from './errors.js';
import type { OutgoingEvent } from './events.js';
import type { MediaHandler } from './media.js';
import { PuppetRuntime, type GatewaySettings } from './puppet.js';
import type { BridgeMetrics } from '../observability/metrics.js';
import { ClusterSide, type ClusterLink } from './cluster.js';
import { submitEvent } from './submit.js';
import { broadcast, puppetReports, type AdminDeps } from './admin.js';
import { coreApi } from './core-api.js';

export type Lifecycle = 'always' | 'presence';

type LeaseOf = () => { name: string; fence: number } | undefined;

export interface BridgeOptions {
  store: Store;
  /** A puppet's Signal state; with `lease` (ownership `leased`), its writes are fenced with it. */
  signalBackend: (puppetId: number, lease?: LeaseOf) => SignalBackend;
  /** Its sender keys (groups), fenced the same way; absent (tests, tools): in memory. */
  senderKeyBackend?: (puppetId: number, lease?: LeaseOf) => SenderKeyBackend;
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
  /** The at-rest key sealing what waits in the outbox and inbox (none in tests and tools). */
  vault?: PayloadVault;
  /** An outgoing message not sent within this long (ms) fails with a notice. Default 7 days. */
  queueMaxAgeMs?: number;
  /**
   * How often (ms) messages over the age limit are failed and the store scrubbed (its WAL
   * checkpointed and truncated). Default 5 minutes.
   */
  maintenanceIntervalMs?: number;
  /**
   * `all` (default): this process runs every enlisted puppet. `leased`: one worker of several
   * (src/cluster/worker.ts): it runs only the puppets it is given (`adopt`) with their leases, and
   * every Signal/inbox commit of a puppet is fenced with the lease it holds.
   */
  ownership?: 'all' | 'leased';
}

export class Bridge {
  private readonly adapters = new Map<Network, Adapter>();
  private readonly runtimes = new Map<string, PuppetRuntime>();
  /** The same runtimes by puppet id (the cluster's notifications name puppets by id). */
  private readonly byPuppetId = new Map<number, PuppetRuntime>();
  /** With several workers (joinCluster). */
  private cluster: ClusterSide | undefined;
  /** With `ownership: 'leased'`: the lease each adopted puppet is held at, by local user. */
  private readonly leases = new Map<string, { name: string; fence: number }>();
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
        const runtime = this.runtimes.get(localUser);
        if (runtime) this.byPuppetId.delete(runtime.puppet.id);
        this.runtimes.delete(localUser);
        this.leases.delete(localUser);
        this.online.delete(localUser);
      },
      applyLifecycle: (localUser) => this.applyLifecycle(localUser),
      adapterOf: (network) => this.runtimeAdapterOf(network),
      runsHere: (puppet) => !this.cluster || this.leases.has(puppet.localId),
      takeOver: async (puppet) => {
        if (!this.cluster || this.leases.has(puppet.localId)) return true;
        const lease = await this.cluster.claim(puppet.id);
        if (!lease) return false; // a worker adopted it first: it resumes the enlistment
        this.leases.set(puppet.localId, lease);
        return true;
      },
    });
  }

  /**
   * Connects the adapter for its network: incoming traffic of that network's puppets goes to it,
   * and it gets (through `adapter.attach`) the core it calls, which is also returned.
   */
  attach(adapter: Adapter): BridgeCore {
    this.adapters.set(adapter.network, adapter);
    const core = coreApi(this, adapter.network, this.options.store, this.options.gateway.providerId);
    adapter.attach(core);
    return core;
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
    // A worker runs only the puppets its leases give it (adopt); resuming an interrupted
    // enlistment or opt-out is left to a process that owns every puppet.
    if (this.options.ownership === 'leased') return;
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
    this.cluster?.stop();
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

  /**
   * A worker's puppet (ownership `leased`): runs it, fenced with `lease`. False if it is not an
   * enlisted puppet (any more).
   */
  async adopt(puppetId: number, lease: { name: string; fence: number }): Promise<boolean> {
    const puppet = await this.options.store.puppets.byId(puppetId);
    if (!puppet) return false;
    this.leases.set(puppet.localId, lease);
    if (puppet.state === 'enlisting' || puppet.state === 'opting_out') {
      // Its worker died half-way (or it waits for one): this one finishes the job.
      const work =
        puppet.state === 'enlisting'
          ? this.enlist(puppet.network, puppet.localId)
          : this.optOut(puppet.localId);
      void work.catch((err: unknown) =>
        this.log?.warn(
          { user: puppet.localId, err: (err as Error).message },
          `resumed ${puppet.state} failed`,
        ),
      );
      return true;
    }
    this.runtimeFor(puppet);
    this.applyLifecycle(puppet.localId);
    return true;
  }

  /** Stops a worker's puppet (its connection closed) when its lease goes to another worker. */
  async relinquish(puppetId: number): Promise<void> {
    for (const [localUser, runtime] of this.runtimes) {
      if (runtime.puppet.id !== puppetId) continue;
      this.runtimes.delete(localUser);
      this.byPuppetId.delete(puppetId);
      // Stopped under its lease: the session writes of what it sent last land (see PuppetRuntime.stop).
      await runtime.stop();
      this.leases.delete(localUser);
    }
  }

  private adapterOf(network: Network): Adapter | undefined {
    return this.adapters.get(network);
  }
  /** What a puppet's runtime reports to: the adapter, or with several workers the front. */
  private runtimeAdapterOf(network: Network): Adapter | undefined {
    return this.cluster ? this.cluster.adapterFor(network) : this.adapters.get(network);
  }

  private runtimeFor(puppet: Puppet): PuppetRuntime {
    let runtime = this.runtimes.get(puppet.localId);
    if (!runtime) {
      // Not held (fence 0 is never a lease's): every fenced write refused.
      const lease =
        this.options.ownership === 'leased'
          ? () => this.leases.get(puppet.localId) ?? { name: `puppet:${puppet.id}`, fence: 0 }
          : undefined;
      runtime = new PuppetRuntime({
        puppet,
        store: this.options.store,
        signalBackend: this.options.signalBackend(puppet.id, lease),
        senderKeyBackend: this.options.senderKeyBackend?.(puppet.id, lease) ?? new MemorySenderKeyBackend(),
        gateway: this.options.gateway,
        identityPolicy: this.options.identityPolicy ?? 'trust_on_first_use',
        adapter: () => this.runtimeAdapterOf(puppet.network),
        media: this.options.media,
        log: this.log?.child({ puppet: puppet.accountId }),
        metrics: this.options.metrics,
        preKeyTarget: this.options.preKeys ?? 100,
        vault: this.options.vault,
        queueMaxAgeMs: this.options.queueMaxAgeMs,
        lease,
        handoff: this.cluster
          ? { inboxRecorded: () => this.cluster?.relay.inboxRecorded(puppet.id) }
          : undefined,
      });
      this.runtimes.set(puppet.localId, runtime);
      this.byPuppetId.set(puppet.id, runtime);
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
    // A worker connects only the puppets it holds.
    if (this.options.ownership === 'leased' && !this.leases.has(localUser)) return;
    if (this.lifecycle === 'always' || this.online.has(localUser)) runtime.start();
    else void runtime.disconnect();
  }

  setOnline(localUser: string, online: boolean): void {
    if (online) this.online.add(localUser);
    else this.online.delete(localUser);
    const cluster = this.cluster;
    if (cluster && !this.leases.has(localUser)) {
      // The worker that runs the puppet applies it.
      void this.options.store.puppets
        .byLocalId(localUser)
        .then((p) => p && cluster.live(p, { kind: 'online', online }))
        .catch(() => undefined);
      return;
    }
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

  /** Resolves once the runtime is connected (or rejects after the gateway wait). For core-api.ts too. */
  waitUntilConnected(runtime: PuppetRuntime): Promise<void> {
    return runtime.untilConnected(this.options.gatewayWaitMs ?? 30_000);
  }

  // ---------------------------------------------------------------------------------------------
  // Outgoing

  /** An adapter's outgoing event, into the outbox (see submit.ts); then its puppet's sender sends it. */
  submit(network: Network, event: OutgoingEvent): Promise<void> {
    return submitEvent(
      {
        store: this.options.store,
        vault: this.options.vault,
        metrics: this.options.metrics,
        providerId: this.options.gateway.providerId,
        kickOutbox: (puppet, portalId, written) => this.kickOutbox(puppet, portalId, written),
        live: (puppet, live) => {
          if (this.cluster) this.cluster.live(puppet, live);
          else {
            const runtime = this.runtimeFor(puppet);
            if (runtime.connection.isConnected) runtime.connection.send(live);
          }
        },
      },
      network,
      event,
    );
  }

  /**
   * New outbox rows of `puppet` (in `portalId`, when the writer says): its sender sends them (here,
   * or in the worker that owns it, which reads all its portals).
   */
  private kickOutbox(puppet: Puppet, portalId?: number, written?: readonly OutboxEntry[]): void {
    if (!this.cluster) {
      this.runtimeFor(puppet).outbox.kick(portalId, written);
      return;
    }
    const owned = this.ownedRuntime(puppet);
    if (owned) owned.outbox.kick(portalId, written);
    else this.cluster.relay.outboxWritten(puppet.id);
  }

  /** A delivery receipt owed by `puppet`'s inbox: its runtime sends it (here, or in the owning worker). */
  private kickReceipts(puppet: Puppet, owed: OwedReceipt): void {
    const owned = this.ownedRuntime(puppet);
    if (owned) owned.kickReceipts(owed);
    else if (this.cluster) this.cluster.relay.outboxWritten(puppet.id);
  }

  /** The puppet's runtime if this process runs it (always, with one process; under its lease, with several). */
  private ownedRuntime(puppet: Pick<Puppet, 'localId'>): PuppetRuntime | undefined {
    if (this.cluster && !this.leases.has(puppet.localId)) return undefined;
    return this.runtimes.get(puppet.localId);
  }

  // ---------------------------------------------------------------------------------------------
  // Queries

  lookup(localUser: string, phone: string): Promise<{ reachable: boolean; jid?: string }> {
    return this.onOwner(localUser, 'lookup', [phone], (runtime) => this.lookupOn(runtime, phone));
  }

  private async lookupOn(
    runtime: PuppetRuntime,
    phone: string,
  ): Promise<{ reachable: boolean; jid?: string }> {
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
    return {
      enlisted: puppet.state === 'enlisted',
      connection: (await this.connectionOf(puppet)).state,
      // Less what this process knows is sent and writes down in a moment (outbox-marks.ts).
      queued: Math.max(
        0,
        (await this.options.store.outbox.countQueued(puppet.id)) -
          (this.runtimes.get(localUser)?.outbox.unwritten() ?? 0),
      ),
    };
  }

  /**
   * The puppet's media credential (`<media_conn>` over its own connection): where the gateway's
   * media service is and the bearer `auth` for it, valid `ttl` seconds. For the MediaHandler, which
   * downloads incoming media as the puppet. Rejects when the puppet is not connected.
   */
  mediaConn(localUser: string): Promise<{ auth: string; ttl: number; hosts: readonly string[] }> {
    return this.onOwner(localUser, 'mediaConn', [], (runtime) => this.mediaConnOn(runtime));
  }

  private async mediaConnOn(
    runtime: PuppetRuntime,
  ): Promise<{ auth: string; ttl: number; hosts: readonly string[] }> {
    const localUser = runtime.puppet.localId;
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
  puppetReports(localUser?: string): Promise<PuppetReport[]> {
    return puppetReports(this.adminDeps(), localUser);
  }

  /** Drops and reopens an enlisted puppet's connection; false when the user has none. */
  async reconnect(localUser: string): Promise<boolean> {
    const puppet = await this.options.store.puppets.byLocalId(localUser);
    if (!puppet || puppet.state !== 'enlisted') return false;
    if (this.cluster) return this.onOwner(localUser, 'reconnect', [], () => this.reconnectHere(puppet));
    return this.reconnectHere(puppet);
  }

  private async reconnectHere(puppet: Puppet): Promise<boolean> {
    const localUser = puppet.localId;
    const runtime = this.runtimeFor(puppet);
    await runtime.disconnect();
    // As the lifecycle says: under `presence` a user who is offline stays disconnected.
    this.applyLifecycle(localUser);
    this.log?.info({ user: localUser }, 'puppet reconnected by an administrator');
    return true;
  }

  /** A `broadcast` notice to every enlisted user, through their network's adapter. */
  broadcast(text: string): Promise<number> {
    return broadcast(this.adminDeps(), text);
  }

  private adminDeps(): AdminDeps {
    return {
      store: this.options.store,
      providerId: this.options.gateway.providerId,
      log: this.log,
      adapterOf: (network) => this.adapterOf(network),
      connectionOf: (puppet) => this.connectionOf(puppet),
    };
  }

  /** Puppets by gateway connection state (for metrics and the startup summary). */
  connectionStates(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const { connection } of this.runtimes.values())
      counts[connection.state] = (counts[connection.state] ?? 0) + 1;
    return counts;
  }

  // ---------------------------------------------------------------------------------------------
  // Several workers (cluster.ts)

  /**
   * Makes this process one of several on one PostgreSQL: its puppets' runtimes report to the front
   * through the relay, and what needs a puppet's connection runs in the worker that owns it. Called
   * once, before `start` and before any puppet is adopted.
   */
  async joinCluster(link: ClusterLink): Promise<void> {
    const owned = (runtime: PuppetRuntime | undefined) =>
      runtime && this.leases.has(runtime.puppet.localId) ? runtime : undefined;
    this.cluster = new ClusterSide(link, {
      store: this.options.store,
      log: this.log,
      providerId: this.options.gateway.providerId,
      media: this.options.media,
      vault: this.options.vault,
      metrics: this.options.metrics,
      owned: (puppetId) => owned(this.byPuppetId.get(puppetId)),
      ownedBy: (localUser) => owned(this.runtimes.get(localUser)),
      runtimeOf: (localUser) => this.runtimeOf(localUser),
      adopt: (puppetId, lease) => this.adopt(puppetId, lease),
      adapterOf: (network) => this.adapterOf(network),
      kickReceipts: (puppet, owed) => this.kickReceipts(puppet, owed),
      setOnline: (localUser, online) => this.setOnline(localUser, online),
      run: (op, runtime, args) => this.runRequest(op, runtime, args),
    });
    await this.cluster.start();
  }

  /** This process now runs the adapters (it holds the front lease): it shows what the workers hand it. */
  startFront(): void {
    this.cluster?.startFront();
  }

  /** The adapter can show what it refused before (`BridgeCore.retryDeliveries`). */
  async retryDeliveries(localUser: string): Promise<void> {
    const puppet = await this.options.store.puppets.byLocalId(localUser);
    if (puppet && this.cluster) this.cluster.retryDeliveries(puppet.id);
    else this.runtimes.get(localUser)?.incoming.delivery.retryNow();
  }

  /** Whether this process is the cluster's front now. */
  get isFront(): boolean {
    return this.cluster?.isFront ?? false;
  }

  /** Runs `here` on the puppet's runtime in the process that owns it (see ClusterSide.onOwner). */
  onOwner<T>(
    localUser: string,
    op: string,
    args: readonly unknown[],
    here: (runtime: PuppetRuntime) => Promise<T>,
  ): Promise<T> {
    return this.cluster ? this.cluster.onOwner(localUser, op, args, here) : here(this.runtimeOf(localUser));
  }

  /** What another process asks of a puppet this one runs (`onOwner` over the relay). */
  private runRequest(op: string, runtime: PuppetRuntime, args: readonly unknown[]): Promise<unknown> {
    const arg = (i: number): string => String(args[i] ?? '');
    switch (op) {
      case 'lookup':
        return this.lookupOn(runtime, arg(0));
      case 'mediaConn':
        return this.mediaConnOn(runtime);
      case 'safetyNumber':
        return runtime.safetyNumber(toUserJid(arg(0)), () => this.waitUntilConnected(runtime));
      case 'confirmIdentity':
        return runtime.confirmIdentity(toUserJid(arg(0)));
      case 'reconnect':
        return this.reconnectHere(runtime.puppet);
      case 'optOut':
        return this.optOut(runtime.puppet.localId);
      default:
        return (
          runtime.groups.onRequest(op, args, () => this.waitUntilConnected(runtime)) ??
          Promise.reject(new Error(`unknown request ${op}`))
        );
    }
  }

  /** Opts out (see `optOut`) in the process that runs the puppet. */
  async optOutAnywhere(localUser: string): Promise<void> {
    if (!this.cluster || !(await this.options.store.puppets.byLocalId(localUser)))
      return this.optOut(localUser);
    await this.onOwner(localUser, 'optOut', [], () => this.optOut(localUser));
  }

  /** The puppet's connection state and last problem, from the process that runs it. */
  private connectionOf(puppet: Puppet): Promise<{ state: string; lastError?: PuppetReport['lastError'] }> {
    const runtime = this.runtimes.get(puppet.localId);
    if (this.cluster && !this.leases.has(puppet.localId)) return this.cluster.connectionOf(puppet);
    return Promise.resolve({ state: runtime?.connection.state ?? 'idle', lastError: runtime?.lastError });
  }

  /** The runtime of a puppet, for tests and the daemon's status page. */
  puppet(localUser: string): PuppetRuntime | undefined {
    return this.runtimes.get(localUser);
  }
}
