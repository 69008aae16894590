import { Backoff } from '../../src/util/backoff.js';

describe('reconnect backoff', () => {
  it('doubles the bound up to the maximum, with the delay drawn below the bound', () => {
    const top = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, random: () => 0.999999 });
    expect([1, 2, 3, 4, 5, 6].map(() => top.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    const half = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, random: () => 0.5 });
    expect([1, 2, 3].map(() => half.next())).toEqual([50, 100, 200]);
  });

  it('never waits less than a tenth of the initial delay, and starts over after reset', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, random: () => 0 });
    expect(b.next()).toBe(10);
    b.next();
    b.reset();
    expect(b.attempts).toBe(0);
  });
});
