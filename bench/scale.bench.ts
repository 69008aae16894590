/**
 * Scale: N enlisted puppets, each with its own gateway connection, against the emulator running in
 * a child process. Set-up (not timed) enlists N puppets through the real path (Signal identity,
 * prekeys, an ENLISTMENT connection, `<enlist>`, `prekey_upload`), then stops that bridge and
 * closes its store. One round runs the measured bridge in a fresh process (bench/scale/bridge-child.ts,
 * as a daemon restarting on that store would):
 *
 *   1. collect the heap, read RSS (the baseline: modules loaded, store open, no puppet running);
 *   2. `bridge.start()` and time until every puppet is connected (the rate is connections/s);
 *   3. collect again and read RSS: (after - baseline) / N is the memory per connected puppet;
 *   4. restart the emulator process (SIGTERM, spawn again on the same port) and time until every
 *      puppet has connected again, counting the bridge's connection attempts per second.
 *
 * The emulator counts no attempts, so they are counted on the bridge side: every `connecting`
 * state of a `GatewayConnection` is one TCP connect.
 */
import { noopAdapter } from './scale/noop-adapter.js';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { QUICK, type BenchCase, type Benchmark, type RoundReport } from './harness.js';
import { cpuSecondsOf, ownCpuSeconds } from './proc.js';
import type { BridgeChildSpec, ChildMessage, ParentMessage } from './scale/bridge-child.js';
import { builtFile, EmulatorChild } from './scale/emulator-child.js';
import { Bridge } from '../src/bridge/core.js';
import { generateProviderKey, publicJwks } from '../src/protocol/jwt.js';
import { SqliteSignalBackend } from '../src/signal/index.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';

const PROVIDER = 'scalebench';
/** One-time prekeys per puppet: few, to keep set-up affordable (upkeep tops up below a fifth). */
const PRE_KEYS = 5;
/** Enlistments in flight at once during set-up. */
const ENLIST_CONCURRENCY = 32;
/** How long a phase may take before the round gives up and reports what it has. */
const PHASE_LIMIT_MS = QUICK ? 60_000 : 240_000;
/** The bridge's default largest reconnect delay (src/gateway/connection.ts). */
const MAX_BACKOFF_S = 60;

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;
const log = (line: string): void => {
  if (!QUICK) process.stderr.write(`    scale: ${line}\n`);
};

const secs = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' / ');
const problems = (p: Record<string, number>): string =>
  Object.entries(p)
    .map(([code, k]) => `${code} ×${k}`)
    .join(', ') || 'none';

/** The measured bridge process (bench/scale/bridge-child.ts) and its messages. */
class BridgeChild {
  private readonly inbox: ChildMessage[] = [];
  private waiter: (() => void) | undefined;
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m) => {
      this.inbox.push(m as ChildMessage);
      this.waiter?.();
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static start(specFile: string): BridgeChild {
    return new BridgeChild(
      fork(builtFile('bench/scale/bridge-child.js'), [specFile], {
        // BENCH_SCALE_CPU_PROF=<dir>: a CPU profile of the measured bridge (see docs/BENCHMARKS.md).
        execArgv: [
          '--expose-gc',
          ...(process.env.BENCH_SCALE_CPU_PROF
            ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SCALE_CPU_PROF}`]
            : []),
        ],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
  }

  async next<T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> {
    for (;;) {
      const m = this.inbox.shift();
      if (m) {
        if (m.type !== type) throw new Error(`the bridge child said ${m.type}, expected ${type}`);
        return m as Extract<ChildMessage, { type: T }>;
      }
      if (this.child.exitCode !== null)
        throw new Error(`the bridge child exited with ${this.child.exitCode}`);
      await Promise.race([
        new Promise<void>((resolve) => (this.waiter = resolve)),
        this.exited.then(() => undefined),
      ]);
    }
  }

  tell(message: ParentMessage): void {
    this.child.send(message);
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

class ScaleRun {
  private dir = '';
  private specFile = '';
  private emulator: EmulatorChild | undefined;

  constructor(private readonly n: number) {}

  /** The emulator child, and N puppets enlisted by a bridge in this process (then closed). */
  async setup(): Promise<void> {
    this.dir = mkdtempSync(path.join(tmpdir(), 'interop-scale-'));
    const signingKey = await generateProviderKey('EdDSA');
    const emulator = await EmulatorChild.launch({
      dir: this.dir,
      providerId: PROVIDER,
      jwks: publicJwks([signingKey]),
    });
    this.emulator = emulator;
    const storeFile = path.join(this.dir, 'bridge.db');
    const store = openSqliteStore(storeFile);
    const gateway = {
      host: '127.0.0.1',
      port: emulator.port,
      rootPublicKey: emulator.rootPublicKey,
      gatewayId: emulator.gatewayId,
      providerId: PROVIDER,
      signingKey,
      // Pinned, as `gateway.static_key` in a bridge's configuration: IK from the first connection.
      staticKey: emulator.staticKey,
    };
    const bridge = new Bridge({
      store,
      signalBackend: (id) => new SqliteSignalBackend(store.db, id),
      gateway,
      preKeys: PRE_KEYS,
      lifecycle: 'always',
    });
    bridge.attach(noopAdapter);

    const started = performance.now();
    const cpu0 = ownCpuSeconds();
    const emuCpu0 = cpuSecondsOf(emulator.pid);
    let next = 0;
    let lastReport = started;
    const worker = async () => {
      while (next < this.n) {
        await bridge.enlist('matrix', `@scale${next++}:bench.example`);
        if (performance.now() - lastReport > 15_000) {
          lastReport = performance.now();
          log(`enlisted ${next} of ${this.n}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(ENLIST_CONCURRENCY, this.n) }, worker));
    const seconds = (performance.now() - started) / 1000;
    log(
      `set-up: ${this.n} puppets enlisted in ${seconds.toFixed(1)} s (${(this.n / seconds).toFixed(0)}/s; ` +
        `this process's CPU ${(ownCpuSeconds() - cpu0).toFixed(1)} s, emulator CPU ${(cpuSecondsOf(emulator.pid) - emuCpu0).toFixed(1)} s)`,
    );
    // The set-up bridge was never started: its puppets never connected for good. Close it all.
    await bridge.stop();
    await store.close();

    const spec: BridgeChildSpec = {
      storeFile,
      port: emulator.port,
      rootPublicKey: Buffer.from(emulator.rootPublicKey).toString('base64'),
      staticKey: Buffer.from(emulator.staticKey).toString('base64'),
      gatewayId: emulator.gatewayId,
      providerId: PROVIDER,
      signingKey,
      preKeys: PRE_KEYS,
      phaseLimitMs: PHASE_LIMIT_MS,
      settleMs: QUICK ? 200 : 3000,
    };
    this.specFile = path.join(this.dir, 'bridge-child.json');
    writeFileSync(this.specFile, JSON.stringify(spec));
  }

  async round(): Promise<RoundReport> {
    const emulator = this.emulator as EmulatorChild;
    const n = this.n;
    const emuCpu0 = cpuSecondsOf(emulator.pid);
    const child = BridgeChild.start(this.specFile);
    try {
      const up = (await child.next('connected')).report;
      const startEmuCpu = cpuSecondsOf(emulator.pid) - emuCpu0;
      const { before, after } = up.memory as { before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage };
      const gatewayView = await emulator.stats();
      const startAttempts = up.attemptsPerSecond.reduce((a, b) => a + b, 0);
      log(
        `start: ${up.connected} of ${n} connected in ${up.seconds.toFixed(2)} s (bridge CPU ${up.cpuSeconds.toFixed(1)} s, ` +
          `emulator CPU ${startEmuCpu.toFixed(1)} s; ${startAttempts} attempts, per second: ${up.attemptsPerSecond.join(' ')}; ` +
          `problems: ${problems(up.problems)}; first / 10% / 50% / 90% / last connected at ${secs(up.connectedAt)} s; ` +
          `event loop delay max ${up.loopDelayMaxMs.toFixed(0)} ms, p99 ${up.loopDelayP99Ms.toFixed(0)} ms)`,
      );
      log(
        `memory: RSS ${mib(before.rss)} -> ${mib(after.rss)} MiB, heap used ${mib(before.heapUsed)} -> ` +
          `${mib(after.heapUsed)} MiB, external ${mib(before.external)} -> ${mib(after.external)} MiB ` +
          `(array buffers ${mib(before.arrayBuffers)} -> ${mib(after.arrayBuffers)} MiB); ` +
          `emulator RSS ${mib(emulator.rss())} MiB, it counts ${gatewayView.connections} connections`,
      );

      // Restart the emulator process on the same port while the child watches.
      child.tell({ type: 'restart' });
      await child.next('watching');
      const t1 = performance.now();
      await emulator.stop();
      const downAt = performance.now();
      await emulator.start();
      const upAt = performance.now();
      const emuCpu1 = cpuSecondsOf(emulator.pid);
      const back = (await child.next('back')).report;
      const restartEmuCpu = cpuSecondsOf(emulator.pid) - emuCpu1;
      const attempts = back.attemptsPerSecond.reduce((a, b) => a + b, 0);
      const peak = Math.max(0, ...back.attemptsPerSecond);
      log(
        `restart: emulator stopped in ${((downAt - t1) / 1000).toFixed(2)} s, listening again after ` +
          `${((upAt - t1) / 1000).toFixed(2)} s; ${back.connected} of ${n} back after ${back.seconds.toFixed(2)} s ` +
          `(bridge CPU ${back.cpuSeconds.toFixed(1)} s, emulator CPU since its start ${restartEmuCpu.toFixed(1)} s); ` +
          `${attempts} attempts, per second: ${back.attemptsPerSecond.join(' ')}; problems: ${problems(back.problems)}; ` +
          `first / 10% / 50% / 90% / last back at ${secs(back.connectedAt)} s; ` +
          `event loop delay max ${back.loopDelayMaxMs.toFixed(0)} ms, p99 ${back.loopDelayP99Ms.toFixed(0)} ms`,
      );
      const finalView = await emulator.stats();
      child.tell({ type: 'stop' });
      await child.exited;

      return {
        ops: up.connected,
        seconds: up.seconds,
        metrics: {
          puppets: n,
          connected: up.connected,
          time_until_all_connected_s: round2(up.seconds),
          time_until_half_connected_s: round2(up.connectedAt[2] ?? Number.NaN),
          start_connect_attempts: startAttempts,
          start_handshake_timeouts: up.problems['handshake_timeout'] ?? 0,
          start_bridge_cpu_s: round2(up.cpuSeconds),
          start_emulator_cpu_s: round2(startEmuCpu),
          start_event_loop_delay_max_ms: Math.round(up.loopDelayMaxMs),
          rss_before_start_mib: mib(before.rss),
          rss_connected_mib: mib(after.rss),
          rss_per_puppet_kib: round2((after.rss - before.rss) / n / 1024),
          heap_per_puppet_kib: round2((after.heapUsed - before.heapUsed) / n / 1024),
          external_per_puppet_kib: round2((after.external - before.external) / n / 1024),
          emulator_rss_mib: mib(emulator.rss()),
          emulator_connections: gatewayView.connections,
          reconnect_connected_again: back.connected,
          reconnect_emulator_down_s: round2((upAt - t1) / 1000),
          reconnect_time_until_all_back_s: round2(back.seconds),
          reconnect_time_until_half_back_s: round2(back.connectedAt[2] ?? Number.NaN),
          reconnect_attempts: attempts,
          reconnect_peak_attempts_per_s: peak,
          reconnect_spread_rate_per_s: round2(n / MAX_BACKOFF_S),
          reconnect_bridge_cpu_s: round2(back.cpuSeconds),
          reconnect_emulator_cpu_s: round2(restartEmuCpu),
          reconnect_event_loop_delay_max_ms: Math.round(back.loopDelayMaxMs),
          reconnect_emulator_connections: finalView.connections,
        },
      };
    } finally {
      child.kill();
    }
  }

  async teardown(): Promise<void> {
    await this.emulator?.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

function scaleCase(n: number): BenchCase {
  let run: ScaleRun | undefined;
  return {
    name: `${n.toLocaleString('en-US')} puppets`,
    setup: async () => {
      run = new ScaleRun(n);
      await run.setup();
    },
    round: () => (run as ScaleRun).round(),
    teardown: async () => {
      await run?.teardown();
      run = undefined;
    },
  };
}

/** BENCH_SCALE_SIZES=200,2000 runs other sizes (for profiling); the goals name 10,000. */
const sizes = process.env.BENCH_SCALE_SIZES
  ? process.env.BENCH_SCALE_SIZES.split(',').map(Number)
  : QUICK
    ? [20]
    : [1_000, 10_000];

const scale: Benchmark = {
  name: 'scale',
  description:
    'enlisted puppets connected to the emulator (a child process), the bridge in a fresh process: connections/s from start until all are connected; memory per puppet; reconnect after an emulator restart',
  unit: 'connections',
  samples: 1,
  warmup: 0,
  cases: sizes.map(scaleCase),
  goals: [
    {
      case: /^10,000 /,
      metric: 'time_until_all_connected_s',
      atMost: 60,
      text: '10,000 puppets connected within 60 s',
    },
    {
      case: /^10,000 /,
      metric: 'rss_connected_mib',
      atMost: 1024,
      text: '10,000 puppets in under 1 GiB (RSS)',
    },
  ],
};

export default scale;
