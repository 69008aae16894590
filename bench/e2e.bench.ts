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
 * Databases: the bridged paths run on SQLite, then again on PostgreSQL (a server started for the
 * run with PostgreSQL's default settings, durability on: bench/e2e/database.ts), each in a world of
 * its own started when its first case begins and closed after its last, so one world runs at a time.
 * The baseline runs once, in the first database's world, and both databases' cases are compared with
 * it. The SQLite cases keep their names; the PostgreSQL ones end in " [PostgreSQL]", and report the
 * server's CPU beside the bridge's (on SQLite that work is in the bridge's process).
 * BENCH_E2E_DATABASES=sqlite,postgres chooses (default: both when PostgreSQL is installed).
 *
 * BENCH_E2E_CPU_PROF=<dir> writes a CPU profile of the bridge process (see docs/BENCHMARKS.md).
 */

import { QUICK, type BenchCase, type Benchmark, type RoundReport } from './harness.js';
import { cpuSecondsOf, ownCpuSeconds } from './proc.js';
import { chosenDatabases, DATABASE_NAMES, type DatabaseId } from './e2e/database.js';
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

/** A case's name: the path's, and on a database other than SQLite, the database's. */
const caseName = (path: PathId, database: DatabaseId): string =>
  database === 'sqlite' || path === 'baseline' ? NAMES[path] : `${NAMES[path]} [${DATABASE_NAMES[database]}]`;

const r2 = (x: number): number => Math.round(x * 100) / 100;

/** One world per database, one at a time. */
const worlds = new Map<DatabaseId, Promise<World>>();
const getWorld = (database: DatabaseId): Promise<World> => {
  let world = worlds.get(database);
  if (world === undefined) {
    world = World.start({
      conversations: CONVERSATIONS,
      validate: process.env.BENCH_E2E_VALIDATE === '1',
      database,
      ...(process.env.BENCH_E2E_CPU_PROF ? { cpuProfileDir: process.env.BENCH_E2E_CPU_PROF } : {}),
    });
    worlds.set(database, world);
  }
  return world;
};
const closeWorld = async (database: DatabaseId): Promise<void> => {
  const started = worlds.get(database);
  worlds.delete(database);
  await (await started?.catch(() => undefined))?.close();
};

/** Printed when the benchmark runs (not when run.ts merely lists the benchmarks). */
const notes: string[] = [];

/** The baseline's latest medians, for the bridge's share in the bridged cases. */
const baseline: { p50: number[]; p99: number[]; rate: number[] } = { p50: [], p99: [], rate: [] };
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

function e2eCase(path: PathId, database: DatabaseId, last: boolean): BenchCase {
  let w: World | undefined;
  return {
    name: caseName(path, database),
    baseline: path === 'baseline',
    setup: async () => {
      for (const line of notes.splice(0)) process.stderr.write(`${line}\n`);
      w = await getWorld(database);
    },
    round: async (): Promise<RoundReport> => {
      const wd = w as World;
      const bridgeCpu0 = cpuSecondsOf(wd.daemonPid);
      const dbCpu0 = wd.databaseCpuSeconds();
      const ownCpu0 = ownCpuSeconds();
      const lat = await paced(wd, path, CONVERSATIONS, LATENCY_RATE, LATENCY_SECONDS);
      const bridgeCpu1 = cpuSecondsOf(wd.daemonPid);
      const dbCpu1 = wd.databaseCpuSeconds();
      const ownCpu1 = ownCpuSeconds();
      const thr = await flood(wd, path, CONVERSATIONS, FLOOD_PER_CONVERSATION, WINDOW, FLOOD_MAX_SECONDS);
      const bridgeCpu2 = cpuSecondsOf(wd.daemonPid);
      const dbCpu2 = wd.databaseCpuSeconds();
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
        if (database === 'postgres') {
          // The server's processes (the bridge's backends, the WAL writer...): on SQLite this work
          // is inside the bridge's own CPU time, so bridge + server is the like-for-like figure.
          metrics['postgres_cpu_ms_per_msg_at_100'] = r2(((dbCpu1 - dbCpu0) * 1000) / lat.messages);
          metrics['postgres_cpu_ms_per_msg_flood'] = r2(((dbCpu2 - dbCpu1) * 1000) / thr.messages);
          metrics['postgres_cpu_utilisation_flood'] = r2((dbCpu2 - dbCpu1) / thr.seconds);
          metrics['bridge_and_postgres_msgs_per_cpu_second'] = Math.round(
            thr.messages / (bridgeCpu2 - bridgeCpu1 + dbCpu2 - dbCpu1),
          );
        }
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
      if (last) await closeWorld(database);
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

/**
 * BENCH_E2E_DATABASES=sqlite,postgres: the bridge's stores, in order; a wrong value fails the
 * benchmark when it runs (not every benchmark that run.ts loads).
 */
let databases: DatabaseId[] = [];
let databasesError: Error | undefined;
try {
  databases = chosenDatabases(process.env.BENCH_E2E_DATABASES, (line) => notes.push(line));
} catch (err) {
  databasesError = err instanceof Error ? err : new Error(String(err));
}

/** The baseline in the first database's world, then every database's bridged paths. */
const cases: BenchCase[] = databasesError
  ? [
      {
        name: 'e2e',
        setup: () => {
          throw databasesError;
        },
        round: () => 0,
      },
    ]
  : databases.flatMap((database, d) => {
      const mine = paths.filter((p) => p !== 'baseline' || d === 0);
      return mine.map((p, i) => e2eCase(p, database, i === mine.length - 1));
    });

const onWhat =
  databases.length === 0
    ? ''
    : `; the bridge on ${databases.map((d) => DATABASE_NAMES[d]).join(' and on ')}` +
      (databases.includes('postgres') ? ' (PostgreSQL at its default settings, durability on)' : '');

const e2e: Benchmark = {
  name: 'e2e',
  description: `end to end over loopback with durable stores, ${CONVERSATIONS} ordered conversations in parallel: sustained rate (at most ${WINDOW} in flight per conversation, ${FLOOD_MAX_SECONDS} s of sending at most); latency at a steady ${LATENCY_RATE} msgs/s${onWhat}`,
  unit: 'msgs',
  // BENCH_E2E_ROUNDS=1 for a quicker look (profiling, experiments).
  samples: Number(process.env.BENCH_E2E_ROUNDS ?? 3),
  warmup: 1,
  cases,
  // Issue 22's targets (the earlier ones, 1,000 msgs/s sustained and p99 under 20 ms, were
  // replaced by these: the first measured the world's limit on this machine more than the bridge).
  goals: [
    {
      case: /bridge/,
      metric: 'bridge_msgs_per_cpu_second',
      atLeast: 4000,
      text: '4,000 msgs per bridge CPU-second (flood)',
    },
    {
      case: /bridge/,
      metric: 'rate_vs_baseline',
      atLeast: 0.95,
      text: 'sustained rate at least 0.95x the no-bridge baseline',
    },
    { case: /bridge/, metric: 'p99_ms', atMost: 10, text: 'p99 at most 10 ms at 100 msgs/s' },
  ],
};

export default e2e;
