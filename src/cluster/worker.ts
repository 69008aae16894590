/**
 * One worker of several on one PostgreSQL (`interop-bridge start --worker`): it owns the puppets it
 * holds `puppet:<id>` leases on, and runs their gateway connections and Signal sessions; no other
 * process does meanwhile.
 *
 * - Alive: the worker holds `worker:<id>`; the live worker leases say how many share the puppets.
 * - Renewal: every lease/3, on a timer of its own (never behind a balancing round), one statement
 *   renews everything it holds. A lease is kept locally only
 *   until a deadline measured from *before* its last successful renewal was sent (3/4 of the lease
 *   time): the database's expiry is later than that, so a worker cut off from the database (or
 *   stalled) has dropped its puppets (disconnected them) before anyone else can take them. A lease
 *   the renewal did not return (expired, or taken) is dropped at once.
 * - Balance: the share is ceil(puppets / live workers). Below it, the worker takes free or expired
 *   puppet leases, a batch per round (their connections then go through the process's connection
 *   gate); above it, it hands a batch of its excess back per round (disconnects, then releases). A
 *   full batch is followed by the next round at once.
 * - A graceful stop disconnects its puppets, then releases every lease and tells the others
 *   (`NOTIFY`): they take them at once. Joining and shedding notify as well; the timed rounds do
 *   the same work when a notification is lost.
 * - Front: one worker at a time also holds the `front` lease and runs the adapters (the appservice
 *   listener, the component stream); the others try to take it every round, so when its holder
 *   dies one of them takes over within the lease time. A holder that loses it stops at once.
 * - Claims: a puppet this process must run now (an enlistment here, a request for a puppet no
 *   worker runs) is taken outside the rounds, and not handed on by balancing for a while.
 */
import type { Logger } from '../observability/logger.js';
import type { HeldLease, Leases } from './leases.js';

/** What the worker drives: the bridge's puppets. */
export interface PuppetHost {
  /** The ids of the puppets to share out (the enlisted ones). */
  candidates(): Promise<number[]>;
  /** Starts the puppet's runtime, fenced with `lease`. */
  adopt(puppetId: number, lease: HeldLease): Promise<void>;
  /** Stops the puppet's runtime (its connection closed) before the lease is let go. */
  drop(puppetId: number): Promise<void>;
}

/** What holding the `front` lease means for this process (the adapters run here). */
export interface FrontRole {
  /** The lease was taken: start the adapters. */
  acquired(): Promise<void>;
  /** The lease was lost (not renewed in time): the adapters must stop at once. */
  lost(): void;
}

export const FRONT_LEASE = 'front';

export interface WorkerOptions {
  id: string;
  leases: Leases;
  host: PuppetHost;
  /** The lease time (ms). */
  leaseMs: number;
  /** Most puppet leases taken or handed back per round. Default 250. */
  batch?: number;
  /** Compete for the `front` lease (run the adapters when holding it). */
  front?: FrontRole | undefined;
  log?: Logger | undefined;
}

interface Held extends HeldLease {
  /** Local time after which this process no longer counts on the lease. */
  deadline: number;
}

export const puppetLease = (puppetId: number): string => `puppet:${puppetId}`;
const puppetIdOf = (name: string): number => Number(name.slice('puppet:'.length));

export class ClusterWorker {
  private self: Held | undefined;
  private frontLease: Held | undefined;
  /** Claimed puppets (by lease name) not handed on by balancing before this time. */
  private readonly pinnedUntil = new Map<string, number>();
  private readonly puppets = new Map<string, Held>();
  /** Puppets being disconnected: their leases are not let go until they are. */
  private readonly dropping = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> = Promise.resolve();
  private renewInFlight = false;
  private watchdog: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;
  /** A round is queued and has not begun: another kick joins it. */
  private queued = false;
  private readonly batch: number;

  constructor(private readonly options: WorkerOptions) {
    this.batch = options.batch ?? 250;
  }

  get id(): string {
    return this.options.id;
  }

  /** The puppets this worker holds now. */
  owned(): number[] {
    return [...this.puppets.keys()].map(puppetIdOf);
  }

  /** Whether this worker holds the front lease (runs the adapters). */
  get isFront(): boolean {
    return this.frontLease !== undefined;
  }

  /**
   * Takes the puppet's lease now if it is free (see Claims above); undefined when another worker
   * holds it. The caller starts the puppet.
   */
  async claim(puppetId: number): Promise<HeldLease | undefined> {
    const name = puppetLease(puppetId);
    const held = this.puppets.get(name);
    if (held) return held;
    if (this.stopped || !this.self) return undefined;
    const sentAt = Date.now();
    const [got] = await this.options.leases.acquire(this.id, [name], this.options.leaseMs);
    if (!got) return undefined;
    this.puppets.set(name, { ...got, deadline: this.deadlineFrom(sentAt) });
    this.pinnedUntil.set(name, Date.now() + 2 * this.options.leaseMs);
    return got;
  }

  /**
   * Takes its worker lease and starts the rounds; the first round runs at once. Another worker's
   * release or arrival (a notification) starts a round at once too.
   */
  async start(): Promise<void> {
    await this.options.leases
      .onChange((what) => {
        if (!what.endsWith(this.id)) this.kick();
      })
      .catch((err: unknown) =>
        this.options.log?.warn(
          { err: (err as Error).message },
          'cannot listen for lease changes: rebalancing on the timed rounds only',
        ),
      );
    await this.join();
    await this.hint(`joined ${this.id}`);
    const every = Math.max(50, Math.floor(this.options.leaseMs / 3));
    this.timer = setInterval(() => this.kick(), every);
    // Renewals on their own timer: a round busy starting hundreds of puppets on a loaded machine
    // must not make them late (a late renewal drops what it holds).
    this.renewTimer = setInterval(() => void this.renewNow(), every);
    this.watchdog = setInterval(() => this.enforceDeadlines(), Math.max(20, Math.floor(every / 5)));
    this.kick();
    await this.round;
  }

  /** Runs a round now, unless one is running. */
  kick(): void {
    if (this.queued) return;
    this.queued = true;
    this.round = this.round.then(() => {
      this.queued = false;
      return this.runRound();
    });
  }

  /** Tells the other workers to rebalance now (a hint: they also do on their timed rounds). */
  private async hint(what: string): Promise<void> {
    await this.options.leases.notify(what).catch(() => undefined);
  }

  /** Disconnects every puppet, then releases every lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.watchdog);
    clearInterval(this.renewTimer);
    await this.round;
    await this.renewing;
    const names = [...this.puppets.keys()];
    await Promise.allSettled(names.map((name) => this.dropLocal(name)));
    const front = this.frontLease ? [this.frontLease.name] : [];
    this.frontLease = undefined;
    await this.options.leases
      .release(this.id, [...names, ...front, ...(this.self ? [this.self.name] : [])])
      .then(() => this.hint(`left ${this.id}`))
      .catch((err: unknown) =>
        this.options.log?.warn({ err: (err as Error).message }, 'could not release the leases (they expire)'),
      );
    this.self = undefined;
  }

  private deadlineFrom(sentAt: number): number {
    return sentAt + Math.floor((this.options.leaseMs * 3) / 4);
  }

  private async join(): Promise<void> {
    const sentAt = Date.now();
    const [got] = await this.options.leases.acquire(this.id, [`worker:${this.id}`], this.options.leaseMs);
    if (!got) throw new Error(`the worker lease worker:${this.id} is held by another process`);
    this.self = { ...got, deadline: this.deadlineFrom(sentAt) };
  }

  private async runRound(): Promise<void> {
    if (this.stopped) return;
    try {
      if (!this.self) await this.join();
      if (!this.stopped) await this.takeFront();
      if (!this.stopped) await this.balance();
    } catch (err) {
      this.options.log?.warn({ err: (err as Error).message }, 'lease round failed');
    }
  }

  /** A standby takes the front lease when it is free, then starts the adapters. */
  private async takeFront(): Promise<void> {
    const front = this.options.front;
    if (!front || this.frontLease || !this.self) return;
    const sentAt = Date.now();
    const [got] = await this.options.leases.acquire(this.id, [FRONT_LEASE], this.options.leaseMs);
    if (!got) return;
    this.frontLease = { ...got, deadline: this.deadlineFrom(sentAt) };
    this.options.log?.info({ fence: got.fence }, 'took the front lease: starting the adapters');
    try {
      await front.acquired();
    } catch (err) {
      this.options.log?.error(
        { err: (err as Error).message },
        'the adapters did not start: handing the front over',
      );
      this.frontLease = undefined;
      await this.options.leases.release(this.id, [FRONT_LEASE]).catch(() => undefined);
      front.lost();
    }
  }

  private loseFront(why: string): void {
    if (!this.frontLease) return;
    this.frontLease = undefined;
    this.options.log?.error(why);
    this.options.front?.lost();
  }

  /** One renewal at a time; one that is due while the last is still out waits for the next tick. */
  private renewNow(): Promise<void> {
    if (this.renewInFlight || this.stopped) return this.renewing;
    this.renewInFlight = true;
    this.renewing = this.renew()
      .catch((err: unknown) =>
        this.options.log?.warn({ err: (err as Error).message }, 'lease renewal failed'),
      )
      .finally(() => {
        this.renewInFlight = false;
      });
    return this.renewing;
  }

  private async renew(): Promise<void> {
    const all = [
      ...(this.self ? [this.self] : []),
      ...(this.frontLease ? [this.frontLease] : []),
      ...this.puppets.values(),
    ];
    const sentAt = Date.now();
    const kept = await this.options.leases.renew(this.id, all, this.options.leaseMs);
    const deadline = this.deadlineFrom(sentAt);
    for (const lease of all) {
      if (kept.has(lease.name)) {
        lease.deadline = deadline;
      } else if (lease === this.frontLease) {
        this.loseFront('the front lease was lost: stopping the adapters');
      } else if (lease === this.self) {
        this.options.log?.warn('the worker lease was lost: dropping every puppet');
        this.self = undefined;
        await Promise.allSettled([...this.puppets.keys()].map((name) => this.dropLocal(name)));
      } else if (this.puppets.get(lease.name) === lease) {
        this.options.log?.warn({ lease: lease.name }, 'a puppet lease was lost: dropping the puppet');
        await this.dropLocal(lease.name);
      }
    }
    // Renewed after the watchdog let it go: hand it back rather than let it sit until expiry.
    const stray = [...kept].filter(
      (n) =>
        n !== this.self?.name && n !== this.frontLease?.name && !this.puppets.has(n) && !this.dropping.has(n),
    );
    if (stray.length > 0) await this.options.leases.release(this.id, stray);
  }

  private async balance(): Promise<void> {
    const { leases, host } = this.options;
    // Held before the candidates are read: a puppet claimed meanwhile (an enlistment here: its row
    // is newer than the list read) is not one that is gone.
    const heldBefore = new Set(this.puppets.keys());
    const [workers, candidates] = await Promise.all([leases.countLive('worker:'), host.candidates()]);
    const wanted = new Set(candidates.map(puppetLease));
    // Puppets gone (opted out) are let go.
    const gone = [...this.puppets.keys()].filter((n) => heldBefore.has(n) && !wanted.has(n));
    const share = Math.ceil(candidates.length / Math.max(1, workers));
    const now = Date.now();
    for (const [name, until] of this.pinnedUntil) if (until <= now) this.pinnedUntil.delete(name);
    const excess = [...this.puppets.keys()]
      .filter((n) => wanted.has(n))
      .slice(share)
      .filter((n) => !this.pinnedUntil.has(n))
      .slice(0, this.batch);
    const shed = [...gone, ...excess];
    if (shed.length > 0) {
      await Promise.allSettled(shed.map((name) => this.dropLocal(name)));
      await leases.release(this.id, shed);
      await this.hint(`released ${this.id}`);
      if (excess.length > 0)
        this.options.log?.info({ released: excess.length, share }, 'handed puppets over to other workers');
      // More to hand back: the next batch at once, not a third of the lease time later.
      if (shed.length >= this.batch) this.kick();
      return;
    }
    const room = Math.min(this.batch, share - this.puppets.size);
    if (room <= 0 || !this.self) return;
    const free = shuffle(candidates.map(puppetLease).filter((n) => !this.puppets.has(n)));
    const sentAt = Date.now();
    const got = await leases.acquire(this.id, free, this.options.leaseMs, room);
    const deadline = this.deadlineFrom(sentAt);
    for (const lease of got) {
      this.puppets.set(lease.name, { ...lease, deadline });
    }
    await Promise.allSettled(
      got.map((lease) =>
        host.adopt(puppetIdOf(lease.name), lease).catch((err: unknown) => {
          this.options.log?.warn(
            { lease: lease.name, err: (err as Error).message },
            'could not start a puppet',
          );
        }),
      ),
    );
    if (got.length > 0)
      this.options.log?.info({ took: got.length, held: this.puppets.size, share }, 'took puppets');
    // A full batch and still below its share: the next batch at once (the connection gate paces
    // the connections themselves), so 10,000 puppets do not wait 200 rounds.
    if (got.length === room && this.puppets.size < share) this.kick();
  }

  /** Drops what is past its local deadline; a lapsed worker lease drops everything. */
  private enforceDeadlines(): void {
    const now = Date.now();
    if (this.frontLease && now > this.frontLease.deadline) {
      this.loseFront('could not renew the front lease in time: stopping the adapters');
    }
    if (this.self && now > this.self.deadline) {
      this.options.log?.warn('could not renew the leases in time: dropping every puppet');
      this.self = undefined;
      for (const name of [...this.puppets.keys()]) void this.dropLocal(name);
      return;
    }
    for (const [name, lease] of this.puppets) if (now > lease.deadline) void this.dropLocal(name);
  }

  private async dropLocal(name: string): Promise<void> {
    if (!this.puppets.delete(name)) return;
    this.dropping.add(name);
    try {
      await this.options.host.drop(puppetIdOf(name));
    } catch (err) {
      this.options.log?.warn({ lease: name, err: (err as Error).message }, 'could not stop a puppet');
    } finally {
      this.dropping.delete(name);
    }
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
