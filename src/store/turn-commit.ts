/**
 * Group commit on SQLite: the writes of one turn of the event loop share one transaction.
 *
 * A commit's cost is mostly writing the pages it changed to the WAL, and concurrent messages change
 * the same pages (the last leaf of the inbox, the outbox and their indexes). Each writer that takes
 * part calls `join()` before it writes: the first opens the turn's transaction (`BEGIN IMMEDIATE`)
 * and schedules its commit with `setImmediate`, which runs once the current turn's I/O callbacks
 * and their microtasks are done. A writer's atomic unit runs inside it as a savepoint (better-sqlite3
 * nests transactions so), so a unit that throws leaves nothing and the others are kept.
 *
 * Durability is unchanged for whoever waits for it: `durable()` resolves once everything written so
 * far is committed, and every promise a store gives for a write resolves only then, so an ack, a
 * send or an answer made after awaiting a write still follows its commit. A synchronous writer that
 * does not wait (the Signal state written during an encryption) must await `durable()` (through its
 * backend's `flush()`) before anything built on the write leaves the process, as on PostgreSQL.
 *
 * A write made while the turn's transaction is open by code that did not join joins it too; when
 * none is open it commits on its own, as before. Inside a synchronous transaction someone else
 * opened, `join()` does nothing: that transaction commits before the writer can await anything.
 */
import type { Db } from './database.js';

const registry = new WeakMap<Db, TurnCommit>();
const settled = Promise.resolve();

export class TurnCommit {
  #open = false;
  #done: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((err: unknown) => void) | undefined;
  /** Commits so far (for tests and the benchmark's counts). */
  commits = 0;

  private constructor(private readonly db: Db) {}

  /** Turns `db`'s writers to group commit (idempotent): the store that opens the file does this. */
  static enable(db: Db): TurnCommit {
    let turn = registry.get(db);
    if (!turn) {
      turn = new TurnCommit(db);
      registry.set(db, turn);
    }
    return turn;
  }

  /** The group commit of `db`, if it was enabled. */
  static of(db: Db): TurnCommit | undefined {
    return registry.get(db);
  }

  /** Whether a turn's transaction is open (writes made now are not yet durable). */
  get open(): boolean {
    return this.#open;
  }

  /** Opens the turn's transaction if none is open, so the writes that follow join it. */
  join(): void {
    if (this.#open || this.db.inTransaction || !this.db.open) return;
    this.db.exec('BEGIN IMMEDIATE');
    this.#open = true;
    setImmediate(this.#flush);
  }

  /** Resolves once everything written so far is committed; rejects if that commit failed. */
  durable(): Promise<void> {
    if (!this.#open) return settled;
    this.#done ??= new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    return this.#done;
  }

  /** `value` once everything written so far is committed. */
  after<T>(value: T): Promise<T> {
    return this.#open ? this.durable().then(() => value) : Promise.resolve(value);
  }

  /** Commits the open turn now: before a checkpoint, a backup or a close. */
  commitNow(): void {
    if (this.#open) this.#flush();
  }

  readonly #flush = (): void => {
    if (!this.#open) return;
    this.#open = false;
    const resolve = this.#resolve;
    const reject = this.#reject;
    this.#done = this.#resolve = this.#reject = undefined;
    try {
      this.db.exec('COMMIT');
      this.commits++;
    } catch (err) {
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // nothing more to undo
      }
      reject?.(err);
      return;
    }
    resolve?.();
  };
}

/**
 * Makes an adapter store's methods take part (SQLite): every method but those named in `skip` (its
 * reads, and its synchronous helpers) joins the turn before it runs, and its promise resolves once
 * the turn has committed. A method not named is taken for a writer: one forgotten in the list waits
 * for a commit, it never answers before one.
 */
export function joinTurns(target: object, db: Db, skip: readonly string[]): void {
  const turn = TurnCommit.of(db);
  if (!turn) return;
  const proto = Object.getPrototypeOf(target) as object;
  const names = Object.getOwnPropertyNames(proto);
  for (const name of skip) {
    if (!names.includes(name)) throw new Error(`joinTurns: ${proto.constructor.name} has no method ${name}`);
  }
  const self = target as Record<string, unknown>;
  for (const name of names) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    const fn = descriptor?.value as unknown;
    if (name === 'constructor' || skip.includes(name) || typeof fn !== 'function') continue;
    self[name] = (...args: unknown[]): Promise<unknown> => {
      turn.join();
      let result: unknown;
      try {
        result = (fn as (...a: unknown[]) => unknown).apply(target, args);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve(result).then((v) => turn.after(v));
    };
  }
}
