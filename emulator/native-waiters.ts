/** What a native user's tests wait for: messages and receipts, already there or still to come. */
import { InteropError } from '../src/errors.js';

export type Waiter<T> = { match: (x: T) => boolean; resolve: (x: T) => void };

/** Adds `item` to `list` and resolves every waiter it matches. */
export function deliver<T>(list: T[], waiters: Waiter<T>[], item: T): void {
  list.push(item);
  for (let i = waiters.length - 1; i >= 0; i--) {
    const w = waiters[i] as Waiter<T>;
    if (w.match(item)) {
      waiters.splice(i, 1);
      w.resolve(item);
    }
  }
}

export function waitFor<T>(
  list: T[],
  waiters: Waiter<T>[],
  match: (x: T) => boolean,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const found = list.find(match);
  if (found !== undefined) return Promise.resolve(found);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const i = waiters.indexOf(waiter);
      if (i >= 0) waiters.splice(i, 1);
      reject(new InteropError('native_wait_timeout', `no ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    const waiter: Waiter<T> = {
      match,
      resolve: (x) => {
        clearTimeout(timer);
        resolve(x);
      },
    };
    waiters.push(waiter);
  });
}
