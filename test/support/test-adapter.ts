/**
 * A test adapter: records everything the core hands it and lets a test wait for it. It can be told
 * to refuse deliveries (as a local server that is down would) and gives each delivery a local id.
 */
import { readFileSync } from 'node:fs';
import type {
  AdapterCapabilities,
  BridgeCore,
  GroupAdapter,
  ProfileAdapter,
} from '../../src/bridge/adapter.js';
import type {
  ContactProfile,
  DeliveryUpdate,
  EphemeralEvent,
  GroupUpdate,
  IncomingEvent,
  Notice,
} from '../../src/bridge/events.js';

/** A network that can show every kind of event, files up to 100 MB. */
export const SHOWS_EVERYTHING: AdapterCapabilities = {
  media: true,
  locations: true,
  replies: true,
  edits: true,
  deletes: true,
  reactions: true,
  readReceipts: true,
  typing: true,
  presence: true,
  maxMediaBytes: 100 * 1024 * 1024,
};

type Waiter = { check: () => boolean; resolve: () => void };

export class TestAdapter implements GroupAdapter, ProfileAdapter {
  readonly network = 'matrix' as const;
  readonly capabilities: AdapterCapabilities;

  /** A network that shows everything, unless `lacks` says otherwise. */
  constructor(lacks: Partial<AdapterCapabilities> = {}) {
    this.capabilities = { ...SHOWS_EVERYTHING, ...lacks };
  }
  readonly delivered: IncomingEvent[] = [];
  readonly deliveryCalls: IncomingEvent[] = [];
  readonly updates: DeliveryUpdate[] = [];
  readonly notices: { localUser: string; notice: Notice }[] = [];
  readonly ephemeral: EphemeralEvent[] = [];
  /**
   * The bytes of each media file delivered, by remote id, read during `deliver` as a real adapter
   * re-uploads them: the core deletes its received file once the delivery is over.
   */
  readonly files = new Map<string, Buffer>();
  /** While set, deliveries are refused (they stay pending in the core). */
  refuse = false;
  private readonly waiters: Waiter[] = [];
  private nextLocal = 1;

  /** The core, once attached. */
  core: BridgeCore | undefined;
  started = false;

  attach(core: BridgeCore): void {
    this.core = core;
  }

  start(): Promise<void> {
    this.started = true;
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.started = false;
    return Promise.resolve();
  }

  /** Awaited on each delivery before it is taken (a test's moment between "taken" and what follows). */
  beforeTaking: ((event: IncomingEvent) => Promise<void>) | undefined;

  async deliver(event: IncomingEvent): Promise<string | undefined> {
    this.deliveryCalls.push(event);
    if (this.refuse) throw new Error('local server unavailable');
    await this.beforeTaking?.(event);
    const e = event.event;
    if (e.type === 'message' && e.body.kind === 'media')
      this.files.set(event.remoteId, readFileSync(e.body.path));
    // Idempotent on remoteId, as the contract asks.
    const seen = this.delivered.findIndex((e) => e.remoteId === event.remoteId && e.remote === event.remote);
    if (seen < 0) this.delivered.push(event);
    this.changed();
    return `$local${seen < 0 ? this.nextLocal++ : seen + 1}`;
  }

  updateDelivery(update: DeliveryUpdate): void {
    this.updates.push(update);
    this.changed();
  }

  /** Group updates in the order the core handed them (a repeated updateId is recorded once). */
  readonly groupUpdates: GroupUpdate[] = [];

  updateGroup(update: GroupUpdate): Promise<void> {
    if (this.refuse) return Promise.reject(new Error('local server unavailable'));
    if (!this.groupUpdates.some((u) => u.updateId === update.updateId)) this.groupUpdates.push(update);
    this.changed();
    return Promise.resolve();
  }

  /** Contacts' profiles in the order the core showed them. */
  readonly profiles: { localUser: string; profile: ContactProfile }[] = [];

  updateProfile(localUser: string, profile: ContactProfile): Promise<void> {
    this.profiles.push({ localUser, profile });
    this.changed();
    return Promise.resolve();
  }

  notify(localUser: string, notice: Notice): void {
    this.notices.push({ localUser, notice });
    this.changed();
  }

  showEphemeral(event: EphemeralEvent): void {
    this.ephemeral.push(event);
    this.changed();
  }

  /** The texts delivered from `remote`, in delivery order. */
  textsFrom(remote: string): string[] {
    return this.delivered
      .filter((e) => e.remote === remote && e.event.type === 'message' && e.event.body.kind === 'text')
      .map((e) => (e.event.type === 'message' && e.event.body.kind === 'text' ? e.event.body.text : ''));
  }

  /** The states reported for one outgoing local id, in order. */
  statesOf(localId: string): string[] {
    return this.updates.filter((u) => u.localId === localId).map((u) => u.state);
  }

  /** Resolves once `check` holds (checked now and after every call into the adapter). */
  until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  private changed(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i] as Waiter;
      if (w.check()) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}
