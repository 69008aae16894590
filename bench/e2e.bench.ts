/**
 * End to end over loopback with durable stores: a Matrix user (stand-in homeserver) -> bridge ->
 * emulator -> native user, the reverse, the same two directions through a real Prosody with a real
 * @xmpp/client user, and as the baseline native user -> emulator -> native user (no bridge), in the
 * same run and under the same load, so the bridge's own cost is visible.
 *
 * Processes (a choice, see bench/e2e/world.ts): the bridge is the daemon itself
 * (`interop-bridge start`) in a child process, on SQLite in a temporary directory (WAL), so its
 * event loop is its own, as in production, and its CPU time is read from /proc. This process is
 * "the outside world": the gateway emulator and the native users, the stand-in homeserver and its
 * users, the XMPP client users; Prosody is its own process. The world in one process keeps one clock
 * for send and receive (no cross-process skew) and costs the bridged paths and the baseline alike;
 * on this 2-core machine the bridge and the world each get about one core. The stand-in homeserver
 * runs with its spec validation off (`validate: false`): a real homeserver does not spend that CPU
 * on the bridge's behalf (BENCH_E2E_VALIDATE=1 turns it on).
 *
 * Each round of a case:
 *   1. latency: 100 msgs/s for a few seconds, round-robin over the conversations; p50/p99/max of
 *      send-to-receive as the receiving user observes it;
 *   2. throughput: every conversation sends as fast as its client can, at most WINDOW messages in
 *      flight per conversation; the rate is messages / (first send .. last receive).
 * Both check that every conversation arrives complete and in order; a violation fails the round.
 *
 * BENCH_E2E_CPU_PROF=<dir> writes a CPU profile of the bridge process (see docs/BENCHMARKS.md).
 */

import { QUICK, type BenchCase, type Benchmark, type RoundReport } from './harness.js';
import { cpuSecondsOf, ownCpuSeconds } from './proc.js';
import { flood, paced, percentile } from './e2e/load.js';
import { World, type PathId } from './e2e/world.js';

const CONVERSATIONS = QUICK ? 2 : 4;
/** The steady rate for latency, and for how long. */
const LATENCY_RATE = 100;
const LATENCY_SECONDS = QUICK ? 0.3 : 4;
/** Messages per conversation in the throughput phase, and the most in flight per conversation. */
const FLOOD_PER_CONVERSATION = QUICK ? 10 : 500;
const WINDOW = 50;
/** The throughput phase sends for at most this long (a slow path must not stretch the run). */
const FLOOD_MAX_SECONDS = QUICK ? 10 : 8;

const NAMES: Record<PathId, string> = {
  baseline: 'baseline: native -> emulator -> native',
  'matrix-to-native': 'Matrix -> bridge -> native',
  'native-to-matrix': 'native -> bridge -> Matrix',
  'xmpp-to-native': 'XMPP (Prosody) -> bridge -> native',
  'native-to-xmpp': 'native -> bridge -> XMPP (Prosody)',
};

const r2 = (x: number): number => Math.round(x * 100) / 100;

let world: Promise<World> | undefined;
const getWorld = (): Promise<World> =>
  (world ??= World.start({
    conversations: CONVERSATIONS,
    validate: process.env.BENCH_E2E_VALIDATE === '1',
    ...(process.env.BENCH_E2E_CPU_PROF ? { cpuProfileDir: process.env.BENCH_E2E_CPU_PROF } : {}),
  }));

/** The baseline's latest medians, for the bridge's share in the bridged cases. */
const baseline: { p50: number[]; p99: number[]; rate: number[] } = { p50: [], p99: [], rate: [] };
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

function e2eCase(path: PathId, last: boolean): BenchCase {
  let w: World | undefined;
  return {
    name: NAMES[path],
    baseline: path === 'baseline',
    setup: async () => {
      w = await getWorld();
    },
    round: async (): Promise<RoundReport> => {
      const wd = w as World;
      const bridgeCpu0 = cpuSecondsOf(wd.daemonPid);
      const ownCpu0 = ownCpuSeconds();
      const lat = await paced(wd, path, CONVERSATIONS, LATENCY_RATE, LATENCY_SECONDS);
      const bridgeCpu1 = cpuSecondsOf(wd.daemonPid);
      const ownCpu1 = ownCpuSeconds();
      const thr = await flood(wd, path, CONVERSATIONS, FLOOD_PER_CONVERSATION, WINDOW, FLOOD_MAX_SECONDS);
      const bridgeCpu2 = cpuSecondsOf(wd.daemonPid);
      const ownCpu2 = ownCpuSeconds();
      const p50 = percentile(lat.latencies, 0.5);
      const p99 = percentile(lat.latencies, 0.99);
      const rate = thr.messages / thr.seconds;
      const metrics: Record<string, number> = {
        p50_ms: r2(p50),
        p99_ms: r2(p99),
        max_ms: r2(Math.max(...lat.latencies)),
        flood_p50_ms: r2(percentile(thr.latencies, 0.5)),
        flood_p99_ms: r2(percentile(thr.latencies, 0.99)),
        world_cpu_ms_per_msg_at_100: r2(((ownCpu1 - ownCpu0) * 1000) / lat.messages),
        world_cpu_ms_per_msg_flood: r2(((ownCpu2 - ownCpu1) * 1000) / thr.messages),
        world_cpu_utilisation_flood: r2((ownCpu2 - ownCpu1) / thr.seconds),
      };
      if (path === 'baseline') {
        baseline.p50.push(p50);
        baseline.p99.push(p99);
        baseline.rate.push(rate);
      } else {
        metrics['bridge_cpu_ms_per_msg_at_100'] = r2(((bridgeCpu1 - bridgeCpu0) * 1000) / lat.messages);
        metrics['bridge_cpu_ms_per_msg_flood'] = r2(((bridgeCpu2 - bridgeCpu1) * 1000) / thr.messages);
        metrics['bridge_cpu_utilisation_flood'] = r2((bridgeCpu2 - bridgeCpu1) / thr.seconds);
        // What one core of the bridge would sustain at that cost (the flood is bound by whichever
        // process saturates first; on 2 cores that is often the world, not the bridge).
        metrics['bridge_msgs_per_cpu_second'] = Math.round(thr.messages / (bridgeCpu2 - bridgeCpu1));
        if (baseline.p50.length > 0) {
          // The share of the latency the bridge adds (the rest is what the baseline path costs too).
          metrics['bridge_share_of_p50_pct'] = Math.round((100 * (p50 - median(baseline.p50))) / p50);
          metrics['bridge_share_of_p99_pct'] = Math.round((100 * (p99 - median(baseline.p99))) / p99);
          metrics['rate_vs_baseline'] = r2(rate / median(baseline.rate));
        }
      }
      return { ops: thr.messages, seconds: thr.seconds, metrics };
    },
    teardown: async () => {
      if (!last) return;
      const started = world;
      world = undefined;
      await (await started?.catch(() => undefined))?.close();
    },
  };
}

const ALL_PATHS: PathId[] = [
  'baseline',
  'matrix-to-native',
  'native-to-matrix',
  'xmpp-to-native',
  'native-to-xmpp',
];
/** BENCH_E2E_PATHS=matrix-to-native,... runs only those paths (the baseline always runs first). */
const chosen = process.env.BENCH_E2E_PATHS?.split(',').map((p) => p.trim());
const paths: PathId[] = chosen ? ALL_PATHS.filter((p) => p === 'baseline' || chosen.includes(p)) : ALL_PATHS;

const e2e: Benchmark = {
  name: 'e2e',
  description: `end to end over loopback with durable stores, ${CONVERSATIONS} ordered conversations in parallel: sustained rate (at most ${WINDOW} in flight per conversation, ${FLOOD_MAX_SECONDS} s of sending at most); latency at a steady ${LATENCY_RATE} msgs/s`,
  unit: 'msgs',
  // BENCH_E2E_ROUNDS=1 for a quicker look (profiling, experiments).
  samples: Number(process.env.BENCH_E2E_ROUNDS ?? 3),
  warmup: 1,
  cases: paths.map((p, i) => e2eCase(p, i === paths.length - 1)),
  goals: [
    { case: /bridge/, atLeast: 1000, text: '1,000 msgs/s sustained' },
    { case: /bridge/, metric: 'p99_ms', atMost: 20, text: 'p99 under 20 ms at 100 msgs/s' },
  ],
};

export default e2e;
