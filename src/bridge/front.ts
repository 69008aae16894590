/**
 * The front of a cluster (src/cluster/relay.ts): the one process that runs the adapters (it holds
 * the `front` lease) shows what the workers hand it. Incoming messages recorded by a puppet's owner
 * are delivered from the inbox here, in order per conversation; the states of sent messages and the
 * notices the workers recorded as relay events are shown, in order per user, then deleted; a
 * contact's typing and presence are shown as they come.
 */
import type { ClusterRelay, RelayEvent } from '../cluster/relay.js';
import type { Logger } from '../observability/logger.js';
import type { BridgeMetrics } from '../observability/metrics.js';
import type { PayloadVault } from '../store/at-rest.js';
import type { Network, OwedReceipt, Puppet, Store } from '../store/repositories.js';
import type { Adapter } from './adapter.js';
import type { DeliveryUpdate, EphemeralEvent, Notice } from './events.js';
import { showsEphemeral } from './fallbacks.js';
import { InboxDelivery } from './inbox.js';
import type { MediaHandler } from './media.js';
import { accountJidOf } from './puppet.js';

/** How often the front looks for work a lost notification did not announce. */
const SWEEP_MS = 2_000;
/** A relay event the adapter could not show is tried again after this long. */
const RETRY_MS = 1_000;

export interface FrontOptions {
  readonly store: Store;
  readonly relay: ClusterRelay;
  readonly providerId: string;
  adapterOf(network: Network): Adapter | undefined;
  /** A delivery receipt is owed by the puppet's inbox: its owner sends it. */
  kickReceipts(puppet: Puppet, owed: OwedReceipt): void;
  readonly media: MediaHandler | undefined;
  readonly vault: PayloadVault | undefined;
  readonly log: Logger | undefined;
  readonly metrics: BridgeMetrics | undefined;
}

export class FrontServices {
  private readonly deliveries = new Map<number, InboxDelivery>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private active = false;
  private eventsRunning = false;
  private eventsAgain = false;

  constructor(private readonly o: FrontOptions) {}

  get isActive(): boolean {
    return this.active;
  }

  /** Starts showing: everything waiting first, then what the workers announce. */
  start(): void {
    if (this.active) return;
    this.active = true;
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    void this.sweep();
  }

  stop(): void {
    this.active = false;
    clearInterval(this.sweepTimer);
    clearTimeout(this.retryTimer);
    for (const d of this.deliveries.values()) d.stop();
    this.deliveries.clear();
  }

  /** The adapter can show what it refused before: the puppet's delivery tries again now. */
  retryNow(puppetId: number): void {
    if (this.active)
      void this.deliveryOf(puppetId).then(
        (d) => d?.retryNow(),
        () => undefined,
      );
  }

  /** Inbox rows were recorded for these puppets. */
  inbox(puppetIds: readonly number[]): void {
    if (!this.active) return;
    for (const id of puppetIds) {
      void this.deliveryOf(id)
        .then((d) => d?.pump())
        .catch((err: unknown) =>
          this.o.log?.warn({ puppet: id, err: (err as Error).message }, 'inbox delivery not started'),
        );
    }
  }

  /** Relay events were recorded. */
  events(): void {
    if (!this.active) return;
    if (this.eventsRunning) {
      this.eventsAgain = true;
      return;
    }
    this.eventsRunning = true;
    void (async () => {
      try {
        do {
          this.eventsAgain = false;
          await this.showEvents();
        } while (this.eventsAgain && this.active);
      } catch (err) {
        this.o.log?.warn({ err: (err as Error).message }, 'relay events not shown');
      } finally {
        this.eventsRunning = false;
      }
    })();
  }

  /** A contact's typing or presence. */
  ephemeral(network: string, event: unknown): void {
    if (!this.active) return;
    const adapter = this.o.adapterOf(network as Network);
    const e = event as EphemeralEvent;
    if (!adapter || !showsEphemeral(adapter.capabilities, e.event)) return;
    try {
      adapter.showEphemeral(e);
    } catch (err) {
      this.o.log?.warn({ err: (err as Error).message }, 'adapter.showEphemeral threw');
    }
  }

  /** What a lost notification would have announced: pending inboxes and relay events. */
  private async sweep(): Promise<void> {
    if (!this.active) return;
    try {
      this.inbox(await this.o.store.inbox.puppetsWithPending());
      this.events();
    } catch (err) {
      this.o.log?.warn({ err: (err as Error).message }, 'front sweep failed');
    }
  }

  private async deliveryOf(puppetId: number): Promise<InboxDelivery | undefined> {
    const known = this.deliveries.get(puppetId);
    if (known) return known;
    const puppet = await this.o.store.puppets.byId(puppetId);
    if (!puppet || !this.active) return undefined;
    const again = this.deliveries.get(puppetId);
    if (again) return again;
    const delivery = new InboxDelivery({
      puppet,
      accountJid: accountJidOf(puppet.accountId, this.o.providerId),
      store: this.o.store,
      adapter: () => this.o.adapterOf(puppet.network),
      media: this.o.media,
      log: this.o.log?.child({ puppet: puppet.accountId }),
      metrics: this.o.metrics,
      vault: this.o.vault,
      kickReceipts: (owed) => this.o.kickReceipts(puppet, owed),
    });
    this.deliveries.set(puppetId, delivery);
    return delivery;
  }

  /** Shows the waiting relay events, in order per user (users in parallel), and deletes them. */
  private async showEvents(): Promise<void> {
    for (;;) {
      const batch = await this.o.relay.pendingEvents(200);
      if (batch.length === 0) return;
      const byUser = new Map<string, RelayEvent[]>();
      for (const e of batch) {
        const key = `${e.network}\n${e.localUser}`;
        byUser.set(key, [...(byUser.get(key) ?? []), e]);
      }
      // Each user's events are handed to the adapter in order at once; what the local network
      // confirmed is deleted, the rest stays and is shown again later (ticks only move forward).
      const shown: number[] = [];
      let stuck = false;
      await Promise.all(
        [...byUser.values()].map(async (events) => {
          const results = await Promise.allSettled(events.map((e) => this.show(e)));
          results.forEach((r, i) => {
            if (r.status === 'fulfilled') shown.push(events[i]!.seq);
            else stuck = true;
          });
        }),
      );
      await this.o.relay.done(shown);
      if (stuck) {
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.events(), RETRY_MS);
        this.retryTimer.unref();
        return;
      }
      if (batch.length < 200) return;
    }
  }

  /** Shows one relay event; rejects when the local network did not take it (it is tried again). */
  private async show(e: RelayEvent): Promise<void> {
    const adapter = this.o.adapterOf(e.network as Network);
    if (!adapter) return; // the network is not bridged any more: nothing to show it on
    try {
      if (e.kind === 'notice') adapter.notify(e.localUser, e.body as Notice);
      else await adapter.updateDelivery(e.body as DeliveryUpdate);
    } catch (err) {
      this.o.log?.info({ user: e.localUser, err: (err as Error).message }, 'relay event not shown yet');
      throw err;
    }
  }
}
