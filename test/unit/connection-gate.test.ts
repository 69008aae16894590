import { ConnectionGate } from '../../src/gateway/gate.js';

const flush = () => new Promise((r) => setImmediate(r));

describe('the connection gate', () => {
  it('lets at most maxConcurrent attempts dial at once; a release admits the next', async () => {
    let now = 0;
    const gate = new ConnectionGate({ maxConcurrent: 3, perSecond: 1000, now: () => now });
    now = 10_000; // plenty of tokens
    const admitted: (() => void)[] = [];
    for (let i = 0; i < 10; i++) void gate.acquire().then((release) => admitted.push(release));
    await flush();
    expect(admitted).toHaveLength(3);
    expect(gate.waiting).toBe(7);
    admitted[0]!();
    admitted[0]!(); // releasing twice counts once
    await flush();
    expect(admitted).toHaveLength(4);
    expect(gate.active).toBe(3);
  });

  it('admits at most perSecond new attempts per second of the clock', async () => {
    let now = 0;
    const gate = new ConnectionGate({ maxConcurrent: 10_000, perSecond: 100, now: () => now });
    let admitted = 0;
    for (let i = 0; i < 1000; i++) void gate.acquire().then((release) => (admitted++, release()));
    await flush();
    expect(admitted).toBe(10); // a tenth of a second's worth at start, not a stampede
    now += 1000;
    void gate.acquire().then((release) => (admitted++, release())); // any call refills the bucket
    await flush();
    expect(admitted).toBe(110);
  });

  it('drops a waiting attempt whose connection is stopped', async () => {
    const gate = new ConnectionGate({ maxConcurrent: 1, perSecond: 1000 });
    const first = await gate.acquire();
    const controller = new AbortController();
    const waiting = gate.acquire(controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'gateway_connection_stopped' });
    expect(gate.waiting).toBe(0);
    first();
  });
});
