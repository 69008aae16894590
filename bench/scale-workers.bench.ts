/**
 * Scale on PostgreSQL with two workers: N enlisted puppets shared by two `interop-bridge start
 * --worker` processes (the built daemon, child processes, no adapters) against the emulator in a
 * child process, on a PostgreSQL started for the run (test/support/postgres.ts). Set-up (not timed)
 * enlists the N puppets through the real path, as bench/scale.bench.ts does on SQLite; `npm run
 * bench -- scale` runs both, so the one-process SQLite figures are beside these.
 *
 * One round:
 *   1. both workers start at once; the time until every puppet is connected at the emulator (its
 *      admin API counts the live connections), and each worker's RSS when it logged "worker
 *      started" and once all are connected: (after - before) / N is the memory per puppet;
 *   2. one worker is SIGKILLed: the time until every puppet is connected again, from the other
 *      (its leases expire after `bridge.worker_lease_seconds`, then it takes them in batches, and
 *      connects them through its connection gate);
 *   3. the emulator's count of accounts ever connected twice at once (must be none).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QUICK, type BenchCase, type Benchmark, type RoundReport } from './harness.js';
import { rssOf } from './proc.js';
import { builtFile, EmulatorChild } from './scale/emulator-child.js';
import { generateProviderKey, publicJwks } from '../src/protocol/jwt.js';
import { enlistPuppets, writeSharedState, writeWorkerConfig } from '../test/support/cluster.js';
import { startPostgres, type PostgresServer } from '../test/support/postgres.js';
import { freePort } from '../test/support/wait.js';

const PROVIDER = 'scaleworkers';
const PRE_KEYS = 5;
const ENLIST_CONCURRENCY = 32;
/** The workers' lease time (s): the failover waits for it. */
const LEASE_S = QUICK ? 2 : 10;
const PHASE_LIMIT_MS = QUICK ? 60_000 : 300_000;

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;
const log = (line: string): void => {
  if (!QUICK) process.stderr.write(`    scale-workers: ${line}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One `start --worker` child, its output kept. */
class Worker {
  log = '';
  rssAtStart = Number.NaN;
  private readonly child: ChildProcess;

  constructor(config: string) {
    this.child = spawn(process.execPath, [builtFile('app/cli.js'), 'start', '--config', config, '--worker'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    const take = (d: Buffer) => {
      const before = this.log.includes('worker started');
      this.log += d.toString();
      if (!before && this.log.includes('worker started')) this.rssAtStart = rssOf(this.child.pid);
    };
    this.child.stdout!.on('data', take);
    this.child.stderr!.on('data', take);
  }

  get rss(): number {
    return rssOf(this.child.pid);
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill(signal);
    await gone;
  }
}

interface ConnectionStats {
  connections: number;
  maxSimultaneousPerAccount?: number;
  connectedTwice?: string[];
}

class WorkersRun {
  private dir = '';
  private emulator: EmulatorChild | undefined;
  private pg: PostgresServer | undefined;
  private url = '';

  constructor(private readonly n: number) {}

  async setup(): Promise<void> {
    this.dir = mkdtempSync(path.join(tmpdir(), 'interop-scale-workers-'));
    this.pg = await startPostgres();
    this.url = await this.pg.createDatabase();
    const signingKey = await generateProviderKey('EdDSA');
    writeSharedState(path.join(this.dir, 'state'), signingKey);
    const emulator = await EmulatorChild.launch({
      dir: this.dir,
      providerId: PROVIDER,
      jwks: publicJwks([signingKey]),
    });
    this.emulator = emulator;
    const started = performance.now();
    await enlistPuppets(
      this.url,
      {
        host: '127.0.0.1',
        port: emulator.port,
        rootPublicKey: emulator.rootPublicKey,
        gatewayId: emulator.gatewayId,
        providerId: PROVIDER,
        signingKey,
        staticKey: emulator.staticKey,
      },
      this.n,
      {
        prefix: 'scale',
        preKeys: PRE_KEYS,
        concurrency: ENLIST_CONCURRENCY,
        progress: (done) => log(`enlisted ${done} of ${this.n}`),
      },
    );
    const seconds = (performance.now() - started) / 1000;
    log(`set-up: ${this.n} puppets enlisted on PostgreSQL in ${seconds.toFixed(1)} s`);
  }

  private async config(i: number): Promise<string> {
    const emulator = this.emulator as EmulatorChild;
    const file = path.join(this.dir, `worker-${i}.yaml`);
    writeWorkerConfig(file, {
      provider: PROVIDER,
      dataDir: path.join(this.dir, 'state'),
      database: this.url,
      leaseSeconds: LEASE_S,
      httpPort: await freePort(),
      gateway: {
        port: emulator.port,
        rootKey: emulator.rootPublicKey,
        extra: [
          `gateway_id: ${emulator.gatewayId}`,
          `static_key: ${Buffer.from(emulator.staticKey).toString('base64')}`,
        ],
      },
      more: ['signal:', '  prekey_batch_size: 10'],
    });
    return file;
  }

  private async stats(): Promise<ConnectionStats> {
    return (await (this.emulator as EmulatorChild).stats()) as ConnectionStats;
  }

  /** Polls the emulator until `n` connections; the seconds it took, or NaN at the phase limit. */
  private async until(n: number, since: number, alive: readonly Worker[]): Promise<number> {
    const deadline = since + PHASE_LIMIT_MS;
    for (;;) {
      const dead = alive.find((w) => w.exited);
      if (dead) throw new Error(`a worker exited:\n${dead.log.slice(-2000)}`);
      const s = await this.stats();
      if (s.connections >= n) return (performance.now() - since) / 1000;
      if (performance.now() > deadline) return Number.NaN;
      await sleep(QUICK ? 50 : 1_000);
    }
  }

  async round(): Promise<RoundReport> {
    const n = this.n;
    const workers = [new Worker(await this.config(1)), new Worker(await this.config(2))];
    try {
      const t0 = performance.now();
      const allUp = await this.until(n, t0, workers);
      const rssAfter = workers.map((w) => w.rss);
      const rssBefore = workers.map((w) => w.rssAtStart);
      const perPuppetKib = (rssAfter[0]! + rssAfter[1]! - rssBefore[0]! - rssBefore[1]!) / n / 1024;
      log(
        `start: ${n} puppets connected from 2 workers in ${allUp.toFixed(2)} s; RSS ${rssBefore.map(mib).join(' + ')} -> ` +
          `${rssAfter.map(mib).join(' + ')} MiB (${perPuppetKib.toFixed(1)} KiB per puppet)`,
      );
      // Failover: one worker dies; its puppets come back from the other.
      const t1 = performance.now();
      await workers[1]!.kill();
      const back = await this.until(n, t1, [workers[0]!]);
      const rssSurvivor = workers[0]!.rss;
      const twice = await this.stats();
      log(
        `failover: worker 2 SIGKILLed, all ${n} connected again after ${back.toFixed(2)} s (lease ${LEASE_S} s); ` +
          `survivor RSS ${mib(rssSurvivor)} MiB; accounts ever connected twice: ${twice.connectedTwice?.length ?? 'n/a'}`,
      );
      return {
        ops: n,
        seconds: allUp,
        metrics: {
          puppets: n,
          workers: 2,
          time_until_all_connected_s: round2(allUp),
          rss_workers_connected_mib: mib(rssAfter[0]! + rssAfter[1]!),
          rss_per_puppet_kib: round2(perPuppetKib),
          lease_s: LEASE_S,
          failover_all_back_s: round2(back),
          failover_beyond_lease_s: round2(back - LEASE_S),
          survivor_rss_mib: mib(rssSurvivor),
          accounts_connected_twice: twice.connectedTwice?.length ?? Number.NaN,
        },
      };
    } finally {
      for (const w of workers) await w.kill();
    }
  }

  async teardown(): Promise<void> {
    await this.emulator?.stop();
    await this.pg?.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

function workersCase(n: number): BenchCase {
  let run: WorkersRun | undefined;
  return {
    name: `${n.toLocaleString('en-US')} puppets, 2 workers`,
    setup: async () => {
      if (n < WANTED && n === FITS) {
        log(
          `${WANTED.toLocaleString('en-US')} puppets need more open files than a process may have here (${fdLimit()}): ${n.toLocaleString('en-US')} instead`,
        );
      }
      run = new WorkersRun(n);
      await run.setup();
    },
    round: () => (run as WorkersRun).round(),
    teardown: async () => {
      await run?.teardown();
      run = undefined;
    },
  };
}

/**
 * The emulator is one process with one file descriptor per connection: it cannot hold more puppets
 * than its open-files limit allows (20,000 on this project's machine, a hard limit that cannot be
 * raised there), less what it needs besides (its database, the admin API, logs).
 */
function fdLimit(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
const WANTED = 20_000;
const FITS = Math.min(WANTED, Math.floor((fdLimit() - 1_000) / 1_000) * 1_000);
/** BENCH_SCALE_WORKERS_SIZES=2000 runs other sizes. */
const sizes = process.env.BENCH_SCALE_WORKERS_SIZES
  ? process.env.BENCH_SCALE_WORKERS_SIZES.split(',').map(Number)
  : QUICK
    ? [20]
    : [FITS];

const scaleWorkers: Benchmark = {
  name: 'scale-workers',
  description:
    'enlisted puppets shared by 2 workers (start --worker) on PostgreSQL against the emulator: time until all are connected, memory per puppet, failover after a SIGKILL of one worker',
  unit: 'connections',
  samples: 1,
  warmup: 0,
  cases: sizes.map(workersCase),
  goals: [
    {
      case: /2 workers/,
      metric: 'accounts_connected_twice',
      atMost: 0,
      text: 'no account ever connected twice at once',
    },
  ],
};

export default scaleWorkers;
