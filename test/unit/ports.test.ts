import { createServer, type Server } from 'node:net';
import { ephemeralRangeStart, freePort, freePorts } from '../support/ports.js';

const listen = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });

describe("the tests' loopback ports", () => {
  it("come from below the kernel's ephemeral range, distinct, and each can be listened on", async () => {
    const ports = await freePorts(20);
    expect(new Set(ports).size).toBe(20);
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(10_000);
      expect(p).toBeLessThan(ephemeralRangeStart());
    }
    const servers = await Promise.all(ports.map(listen));
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  it('skip a port something already listens on', async () => {
    const taken: Server[] = [];
    try {
      // Occupy the next ports this worker would hand out; the allocator must step past them.
      const probe = await freePort();
      for (let p = probe + 1; p < probe + 4; p++) taken.push(await listen(p).catch(() => createServer()));
      const next = await freePort();
      expect(next).not.toBe(probe);
      for (const s of taken) if (s.listening) expect(next).not.toBe((s.address() as { port: number }).port);
      const server = await listen(next);
      await new Promise((r) => server.close(r));
    } finally {
      await Promise.all(taken.map((s) => new Promise((r) => (s.listening ? s.close(r) : r(undefined)))));
    }
  });
});
