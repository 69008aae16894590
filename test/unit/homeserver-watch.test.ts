/**
 * The watch that notices the homeserver going away (adapters/matrix/homeserver-watch.ts), against a
 * real HTTP server on loopback: answered, a 5xx, a stop of the server, and its return.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HomeserverWatch } from '../../adapters/matrix/homeserver-watch.js';
import { until } from '../support/wait.js';

let status = 200;
let hung = false;
let asks = 0;
const sockets = new Set<import('node:net').Socket>();

async function serve(port = 0): Promise<Server> {
  const server = createServer((req, res) => {
    asks++;
    if (hung) return;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ versions: ['v1.11'], path: req.url }));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return server;
}

async function close(server: Server): Promise<void> {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
}

test('tells when the homeserver answers, answers 5xx, stops answering, goes away and comes back', async () => {
  status = 200;
  hung = false;
  let server = await serve();
  const port = (server.address() as AddressInfo).port;
  const away: string[] = [];
  let answered = 0;
  const watch = new HomeserverWatch({
    homeserverUrl: `http://127.0.0.1:${port}/`,
    wentAway: (what) => away.push(what),
    answered: () => answered++,
    intervalMs: 20,
    timeoutMs: 200,
  });
  watch.start();
  try {
    await until(() => answered >= 3, 'three answers');
    expect(watch.up).toBe(true);
    expect(away).toEqual([]);
    // One kept-alive connection carries the asks.
    expect(sockets.size).toBe(1);

    status = 502;
    await until(() => away.length >= 1, 'a 502 noticed');
    expect(away[0]).toBe('/versions answered 502');
    expect(watch.up).toBe(false);

    status = 200;
    hung = true;
    away.length = 0;
    await until(() => away.length >= 1, 'no answer noticed');
    expect(away[0]).toMatch(/no answer within 200 ms/);

    hung = false;
    await close(server);
    away.length = 0;
    await until(() => away.length >= 2, 'the server gone noticed');
    expect(away.every((w) => w.startsWith('/versions failed:'))).toBe(true);

    server = await serve(port);
    const before = answered;
    await until(() => answered > before, 'the server back noticed');
    expect(watch.up).toBe(true);
    expect(asks).toBeGreaterThan(5);
  } finally {
    watch.stop();
    await close(server);
  }
});
