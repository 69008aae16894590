import { LazyMap } from './lazy-map.js';

/** Runs tasks one at a time per key, in call order; different keys run concurrently. */
export class KeyedQueue {
  private readonly tails = new LazyMap<string, Promise<unknown>>();

  /** Runs `task` after every task queued earlier under `key` has settled (resolved or rejected). */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with a task queued or running. */
  get size(): number {
    return this.tails.size;
  }

  /** Resolves once every task queued so far has settled. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}
