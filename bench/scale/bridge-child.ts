/**
 * The measured bridge, in a fresh process: a daemon restarting on a store with N enlisted puppets
 * does exactly this, so its memory holds nothing of the set-up (enlisting 10,000 puppets leaves the
 * set-up process's allocator hundreds of MiB larger). Run with --expose-gc by the scale benchmark,
 * which talks to it over the IPC channel:
 *
 *   child  -> { type: 'connected', report }  after start, once all are connected (or the limit)
 *   parent -> { type: 'restart' }            the parent is about to restart the emulator
 *   child  -> { type: 'watching' }
 *   child  -> { type: 'back', report }       once every puppet has connected again (or the limit)
 *   parent -> { type: 'stop' }               the child stops the bridge, closes the store, exits
 */
import { noopAdapter } from './noop-adapter.js';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { Bridge } from '../../src/bridge/core.js';
import type { GatewayConnection } from '../../src/gateway/connection.js';
import type { ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { SqliteSignalBackend } from '../../src/signal/index.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';

/** What the parent writes for the child (a JSON file; keys in base64). */
export interface BridgeChildSpec {
  storeFile: string;
  port: number;
  rootPublicKey: string;
  staticKey: string;
  gatewayId: string;
  providerId: string;
  signingKey: ProviderPrivateJwk;
  preKeys: number;
  phaseLimitMs: number;
  /** Pause before the memory reading, so the post-connect prekey_count exchanges are done. */
  settleMs: number;
}

/** One phase as the child saw it. */
export interface PhaseReport {
  puppets: number;
  /** Puppets connected (start) or connected again (reconnect) by the end of the phase. */
  connected: number;
  seconds: number;
  /** Connect attempts per second since the phase began (index 0: the first second). */
  attemptsPerSecond: number[];
  /** Seconds since the phase began at which 0%, 10%, 50%, 90% and 100% of the puppets had connected. */
  connectedAt: number[];
  problems: Record<string, number>;
  cpuSeconds: number;
  /** The event loop's longest and 99th-percentile delay during the phase, ms. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  memory?: { before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage };
}

export type ChildMessage =
  { type: 'connected'; report: PhaseReport } | { type: 'watching' } | { type: 'back'; report: PhaseReport };
export type ParentMessage = { type: 'restart' } | { type: 'stop' };

const collect = (): void => {
  globalThis.gc?.();
  globalThis.gc?.();
};
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/**
 * Every puppet's connection: which are connected, who connected since the phase began and when,
 * and each connect attempt (each `connecting` state is one TCP connect) by second.
 */
class Watch {
  readonly connected = new Set<string>();
  readonly connectedSince = new Set<string>();
  attemptsPerSecond: number[] = [];
  connectTimes: number[] = [];
  problems: Record<string, number> = {};
  private since = performance.now();
  private cpu0 = cpuSeconds();
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private waiters: (() => void)[] = [];

  constructor() {
    this.loop.enable();
  }

  watch(user: string, conn: GatewayConnection): void {
    // start() yields between slices of puppets: some are connected before they are watched.
    if (conn.isConnected) {
      this.connected.add(user);
      this.connectedSince.add(user);
      this.connectTimes.push(performance.now() - this.since);
    }
    conn.on('state', (state) => {
      if (state === 'connecting') this.attempt();
      else if (state !== 'connected') this.connected.delete(user);
    });
    conn.on('connected', () => {
      this.connected.add(user);
      if (!this.connectedSince.has(user)) {
        this.connectedSince.add(user);
        this.connectTimes.push(performance.now() - this.since);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    conn.on('problem', (err) => {
      this.problems[err.code] = (this.problems[err.code] ?? 0) + 1;
    });
  }

  /** A new phase: counts from zero. */
  begin(): void {
    this.since = performance.now();
    this.cpu0 = cpuSeconds();
    this.attemptsPerSecond = [];
    this.connectTimes = [];
    this.connectedSince.clear();
    this.problems = {};
    this.loop.reset();
  }

  attempt(): void {
    const s = Math.floor((performance.now() - this.since) / 1000);
    while (this.attemptsPerSecond.length <= s) this.attemptsPerSecond.push(0);
    this.attemptsPerSecond[s] = (this.attemptsPerSecond[s] ?? 0) + 1;
  }

  /** Resolves when `done()` holds or the limit passes. */
  async until(done: () => boolean, limitMs: number): Promise<void> {
    const deadline = this.since + limitMs;
    while (!done()) {
      const left = deadline - performance.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  report(puppets: number, connected: number): PhaseReport {
    const t = [...this.connectTimes].sort((a, b) => a - b);
    const at = (q: number) => (t[Math.min(t.length - 1, Math.floor(q * t.length))] ?? Number.NaN) / 1000;
    return {
      puppets,
      connected,
      seconds: (performance.now() - this.since) / 1000,
      attemptsPerSecond: this.attemptsPerSecond,
      connectedAt: [0, 0.1, 0.5, 0.9, 1].map(at),
      problems: this.problems,
      cpuSeconds: cpuSeconds() - this.cpu0,
      loopDelayMaxMs: this.loop.max / 1e6,
      loopDelayP99Ms: this.loop.percentile(99) / 1e6,
    };
  }
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

function nextMessage(): Promise<ParentMessage> {
  return new Promise((resolve) => process.once('message', (m) => resolve(m as ParentMessage)));
}

async function main(specFile: string): Promise<void> {
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as BridgeChildSpec;
  const store = openSqliteStore(spec.storeFile);
  const users = (await store.puppets.list()).filter((p) => p.state === 'enlisted').map((p) => p.localId);
  const n = users.length;
  const bridge = new Bridge({
    store,
    signalBackend: (id) => new SqliteSignalBackend(store.db, id),
    gateway: {
      host: '127.0.0.1',
      port: spec.port,
      rootPublicKey: Buffer.from(spec.rootPublicKey, 'base64'),
      gatewayId: spec.gatewayId,
      providerId: spec.providerId,
      signingKey: spec.signingKey,
      staticKey: Buffer.from(spec.staticKey, 'base64'),
    },
    preKeys: spec.preKeys,
    lifecycle: 'always',
  });
  bridge.attach(noopAdapter);

  // Start: from a collected heap with the store open, until every puppet is connected.
  collect();
  const before = process.memoryUsage();
  const watch = new Watch();
  watch.begin();
  await bridge.start();
  // Attempts that passed the connection gate while start() was still running (it yields between
  // slices) happened before the listeners were attached: count them here.
  watch.attemptsPerSecond = [
    users.filter((u) => {
      const state = bridge.puppet(u)?.connection.state;
      return state !== undefined && state !== 'idle';
    }).length,
  ];
  for (const user of users) {
    const runtime = bridge.puppet(user);
    if (runtime) watch.watch(user, runtime.connection);
  }
  await watch.until(() => watch.connected.size >= n, spec.phaseLimitMs);
  const started = watch.report(n, watch.connected.size);
  await new Promise((r) => setTimeout(r, spec.settleMs));
  collect();
  send({ type: 'connected', report: { ...started, memory: { before, after: process.memoryUsage() } } });

  // Reconnect: the parent restarts the emulator once we watch.
  if ((await nextMessage()).type === 'restart') {
    watch.begin();
    send({ type: 'watching' });
    await watch.until(() => watch.connectedSince.size >= n, spec.phaseLimitMs);
    send({ type: 'back', report: watch.report(n, watch.connectedSince.size) });
    await nextMessage();
  }
  await bridge.stop();
  await store.close();
  process.disconnect?.();
}

const specFile = process.argv[2];
if (specFile) await main(specFile);
