/**
 * The core's side of several workers on one PostgreSQL (src/cluster/relay.ts, docs/OPERATING.md
 * "Several workers"): what this process's puppets hand the front instead of the adapter, what it
 * does with what the others tell it, and how an adapter's call that needs a puppet's connection
 * reaches the worker that runs the puppet.
 */
import { RelayError, type ClusterRelay, type RelayRequest } from '../cluster/relay.js';
import type { Logger } from '../observability/logger.js';
import type { BridgeMetrics } from '../observability/metrics.js';
import type { PayloadVault } from '../store/at-rest.js';
import type { Network, OwedReceipt, Puppet, Store } from '../store/repositories.js';
import type { Adapter, PuppetReport } from './adapter.js';
import { BridgeError, type BridgeErrorCode } from './errors.js';
import { FrontServices } from './front.js';
import type { MediaHandler } from './media.js';
import type { PuppetRuntime } from './puppet.js';

/** With several workers (src/cluster/): how this process reaches the others. */
export interface ClusterLink {
  readonly relay: ClusterRelay;
  /** The worker holding the puppet's lease now, if any. */
  ownerOf(puppetId: number): Promise<string | undefined>;
  /**
   * Takes the puppet's lease for this worker now (an enlistment here, or a puppet no worker runs);
   * undefined when another worker holds it.
   */
  claim(puppetId: number): Promise<{ name: string; fence: number } | undefined>;
}

/** The local user's typing or presence, sent at once over the puppet's connection (never queued). */
export type LiveEvent =
  | { kind: 'chatstate'; to: string; state: 'composing' | 'paused' }
  | { kind: 'presence'; type: 'available' | 'unavailable'; to: string }
  | { kind: 'online'; online: boolean };

/** What the cluster side needs of the bridge core. */
export interface ClusterHost {
  readonly store: Store;
  readonly log: Logger | undefined;
  readonly providerId: string;
  readonly media: MediaHandler | undefined;
  readonly vault: PayloadVault | undefined;
  readonly metrics: BridgeMetrics | undefined;
  /** The puppet's runtime if this process holds its lease. */
  owned(puppetId: number): PuppetRuntime | undefined;
  ownedBy(localUser: string): PuppetRuntime | undefined;
  /** Throws `bridge_not_enlisted` without a puppet. */
  runtimeOf(localUser: string): PuppetRuntime;
  adopt(puppetId: number, lease: { name: string; fence: number }): Promise<boolean>;
  adapterOf(network: Network): Adapter | undefined;
  kickReceipts(puppet: Puppet, owed: OwedReceipt): void;
  setOnline(localUser: string, online: boolean): void;
  /** Runs a request from another process (`onOwner`'s `op`) on a runtime this process owns. */
  run(op: string, runtime: PuppetRuntime, args: readonly unknown[]): Promise<unknown>;
}

/** How often a worker looks for queued outbox rows of its puppets that no notification announced. */
const OUTBOX_SWEEP_MS = 2_000;
/** Attempts at finding the worker that runs a puppet (it may be moving) before giving up. */
const OWNER_ATTEMPTS = 4;

export class ClusterSide {
  private readonly front: FrontServices;
  private readonly relayAdapters = new Map<Network, Adapter>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly link: ClusterLink,
    private readonly host: ClusterHost,
  ) {
    this.front = new FrontServices({
      store: host.store,
      relay: link.relay,
      providerId: host.providerId,
      adapterOf: (network) => host.adapterOf(network),
      kickReceipts: (puppet, owed) => host.kickReceipts(puppet, owed),
      media: host.media,
      vault: host.vault,
      log: host.log,
      metrics: host.metrics,
    });
  }

  get relay(): ClusterRelay {
    return this.link.relay;
  }

  get isFront(): boolean {
    return this.front.isActive;
  }

  async start(): Promise<void> {
    const { host, front } = this;
    await this.link.relay.start({
      outbox: (ids) => {
        for (const id of ids) host.owned(id)?.sendWaiting();
      },
      inbox: (ids) => front.inbox(ids),
      events: () => front.events(),
      ephemeral: (network, event) => front.ephemeral(network, event),
      live: (puppetId, event) => {
        const runtime = host.owned(puppetId);
        if (runtime) this.applyLive(runtime, event as LiveEvent);
      },
      request: (req) => this.answer(req),
    });
    this.sweepTimer = setInterval(() => void this.sweepOutbox(), OUTBOX_SWEEP_MS);
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    this.front.stop();
    this.link.relay.stop();
  }

  /** This process now runs the adapters: it shows what the workers hand it. */
  startFront(): void {
    this.front.start();
  }

  /** See FrontServices.retryNow. */
  retryDeliveries(puppetId: number): void {
    this.front.retryNow(puppetId);
  }

  /** Takes the puppet's lease for an enlistment here; undefined when another worker has it. */
  claim(puppetId: number): Promise<{ name: string; fence: number } | undefined> {
    return this.link.claim(puppetId);
  }

  /** What a worker's puppet reports to instead of the adapter: the front, through the relay. */
  adapterFor(network: Network): Adapter | undefined {
    const real = this.host.adapterOf(network);
    if (!real) return undefined;
    let relayed = this.relayAdapters.get(network);
    if (!relayed) {
      relayed = relayAdapter(real, this.link.relay, this.host.log);
      this.relayAdapters.set(network, relayed);
    }
    return relayed;
  }

  /** The local user's typing, presence or online state, for the worker that runs the puppet. */
  live(puppet: Puppet, event: LiveEvent): void {
    const runtime = this.host.owned(puppet.id);
    if (runtime) this.applyLive(runtime, event);
    else this.link.relay.live(puppet.id, event);
  }

  /**
   * Runs `here` on the puppet's runtime in the process that owns it: this one, or the worker holding
   * its lease, asked through the relay (`op` and `args` say what to run there). A puppet no worker
   * runs is taken by this one.
   */
  async onOwner<T>(
    localUser: string,
    op: string,
    args: readonly unknown[],
    here: (runtime: PuppetRuntime) => Promise<T>,
  ): Promise<T> {
    const { host, link } = this;
    for (let attempt = 0; attempt < OWNER_ATTEMPTS; attempt++) {
      const puppet = await host.store.puppets.byLocalId(localUser);
      if (!puppet) return here(host.runtimeOf(localUser)); // throws bridge_not_enlisted
      const owned = host.ownedBy(localUser);
      if (owned) return here(owned);
      const owner = await link.ownerOf(puppet.id);
      if (owner === undefined || owner === link.relay.selfId) {
        const lease = await link.claim(puppet.id);
        if (lease) await host.adopt(puppet.id, lease);
        continue;
      }
      try {
        return (await link.relay.request(owner, { op, puppetId: puppet.id, args })) as T;
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (err instanceof RelayError && code.startsWith('cluster_') && code !== 'cluster_stopping') continue;
        throw code.startsWith('bridge_')
          ? new BridgeError(code as BridgeErrorCode, (err as Error).message)
          : err;
      }
    }
    throw new BridgeError(
      'bridge_not_connected',
      `${localUser}'s account is moving between bridge processes: try again in a few seconds`,
    );
  }

  /** The connection state and last problem of a puppet another worker runs (or `idle`, `unknown`). */
  async connectionOf(puppet: Puppet): Promise<{ state: string; lastError?: PuppetReport['lastError'] }> {
    const owner = await this.link.ownerOf(puppet.id);
    if (owner === undefined) return { state: 'idle' };
    try {
      return (await this.link.relay.request(
        owner,
        { op: 'connection', puppetId: puppet.id, args: [] },
        3_000,
      )) as { state: string; lastError?: PuppetReport['lastError'] };
    } catch {
      return { state: 'unknown' };
    }
  }

  /** A request from another process for a puppet this one may own (see `onOwner`). */
  private answer(req: RelayRequest): Promise<unknown> | undefined {
    const runtime = this.host.owned(req.puppetId);
    if (!runtime) return undefined;
    if (req.op === 'connection') {
      return Promise.resolve({ state: runtime.connection.state, lastError: runtime.lastError });
    }
    return this.host.run(req.op, runtime, req.args);
  }

  private applyLive(runtime: PuppetRuntime, event: LiveEvent): void {
    if (event.kind === 'online') this.host.setOnline(runtime.puppet.localId, event.online);
    else if (runtime.connection.isConnected) runtime.connection.send(event);
  }

  /** Queued rows of owned puppets that no notification announced (one was lost): sent now. */
  private async sweepOutbox(): Promise<void> {
    try {
      for (const id of await this.host.store.outbox.puppetsWithQueued()) this.host.owned(id)?.sendWaiting();
    } catch (err) {
      this.host.log?.debug({ err: (err as Error).message }, 'outbox sweep failed');
    }
  }
}

/** What a worker's puppet hands the front instead of the adapter (src/cluster/relay.ts). */
function relayAdapter(real: Adapter, relay: ClusterRelay, log: Logger | undefined): Adapter {
  const network = real.network;
  return {
    network,
    get capabilities() {
      return real.capabilities;
    },
    attach: () => undefined,
    start: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    deliver: () => Promise.reject(new Error('incoming messages are delivered by the front')),
    showEphemeral: (event) => relay.ephemeral(network, event),
    // Recorded for the front, which shows it: a contact's receipt is acknowledged once recorded.
    updateDelivery: (update) => relay.record(network, update.localUser, 'delivery', update),
    notify: (localUser, notice) => {
      relay
        .record(network, localUser, 'notice', notice)
        .catch((err: unknown) => log?.warn({ err: (err as Error).message }, 'notice not relayed'));
    },
  };
}
