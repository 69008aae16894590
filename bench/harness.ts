/**
 * The benchmark harness. A benchmark is a set of cases measured side by side in one process run
 * (the project and its baselines), so ratios hold on a noisy machine. Each case warms up, then
 * runs `samples` timed rounds; the report gives the median rate and the spread (min..max and the
 * relative median absolute deviation).
 */

/** Set by the test suite (BENCH_QUICK=1), which only checks that benchmarks run: shrink rounds. */
export const QUICK = process.env.BENCH_QUICK === '1';

export interface BenchCase {
  /** Shown in the table, e.g. "interop-bridge (in memory)" or "baseline: libsignal-node". */
  name: string;
  /** True for a baseline (another library or raw primitive), false for the project's own code. */
  baseline?: boolean;
  /** Runs before warm-up; may be slow (key generation, session set-up). */
  setup?: () => void | Promise<void>;
  /**
   * Does some work and returns how many operations it did (messages, handshakes, bytes...), or a
   * `RoundReport` when the round measures more than one rate (see there).
   */
  round: () => number | RoundReport | Promise<number | RoundReport>;
  teardown?: () => void | Promise<void>;
}

/**
 * What a round reports when a single rate is not the whole story (the scale benchmark: time until
 * all connected, memory per puppet, the reconnect after a restart).
 */
export interface RoundReport {
  ops: number;
  /** The seconds the `ops` took, when the round also does untimed work (default: the whole round). */
  seconds?: number;
  /** Further figures of the round, by name (the name says the unit: `rss_per_puppet_kib`). */
  metrics?: Record<string, number>;
}

export interface Benchmark {
  /** Short id used on the command line: `npm run bench -- <name>`. */
  name: string;
  description: string;
  /** What one operation is, plural: "msgs", "handshakes", "bytes". */
  unit: string;
  /**
   * An optional goal per case name pattern, shown in the table: on the median rate, or on the
   * median of one of the case's `metrics` when `metric` is given.
   */
  goals?: { case: RegExp; metric?: string; atLeast?: number; atMost?: number; text: string }[];
  cases: BenchCase[];
  /** Timed rounds per case (default 7) and warm-up rounds (default 2). */
  samples?: number;
  warmup?: number;
}

export interface CaseResult {
  name: string;
  baseline: boolean;
  /** Operations per second for each timed round. */
  rates: number[];
  median: number;
  min: number;
  max: number;
  /** Median absolute deviation divided by the median. */
  relativeSpread: number;
  /** The median of each metric over the timed rounds (only when rounds report metrics). */
  metrics?: Record<string, number>;
  error?: string;
}

export interface BenchmarkResult {
  name: string;
  description: string;
  unit: string;
  startedAt: string;
  node: string;
  cases: CaseResult[];
  goals: { text: string; case: string; met: boolean }[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export async function runBenchmark(
  bench: Benchmark,
  log: (line: string) => void = () => undefined,
): Promise<BenchmarkResult> {
  const samples = QUICK ? 1 : (bench.samples ?? 7);
  const warmup = QUICK ? 0 : (bench.warmup ?? 2);
  const cases: CaseResult[] = [];
  for (const c of bench.cases) {
    log(`  ${bench.name}: ${c.name} ...`);
    const rates: number[] = [];
    const metrics = new Map<string, number[]>();
    let error: string | undefined;
    try {
      await c.setup?.();
      for (let i = 0; i < warmup; i++) await c.round();
      for (let i = 0; i < samples; i++) {
        const start = process.hrtime.bigint();
        const out = await c.round();
        const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
        const report = typeof out === 'number' ? { ops: out } : out;
        rates.push(report.ops / (report.seconds ?? elapsed));
        for (const [k, v] of Object.entries(report.metrics ?? {}))
          metrics.set(k, [...(metrics.get(k) ?? []), v]);
      }
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      await c.teardown?.();
    }
    const m = rates.length ? median(rates) : 0;
    cases.push({
      name: c.name,
      baseline: c.baseline ?? false,
      rates,
      median: m,
      min: rates.length ? Math.min(...rates) : 0,
      max: rates.length ? Math.max(...rates) : 0,
      relativeSpread: m ? median(rates.map((r) => Math.abs(r - m))) / m : 0,
      ...(metrics.size
        ? { metrics: Object.fromEntries([...metrics].map(([k, vs]) => [k, median(vs)])) }
        : {}),
      ...(error ? { error } : {}),
    });
  }
  const goals = (bench.goals ?? []).flatMap((g) =>
    cases
      .filter((c) => g.case.test(c.name))
      .map((c) => {
        const value = g.metric === undefined ? c.median : c.metrics?.[g.metric];
        const met =
          !c.error &&
          value !== undefined &&
          (g.atLeast === undefined || value >= g.atLeast) &&
          (g.atMost === undefined || value <= g.atMost);
        return { text: g.text, case: c.name, met };
      }),
  );
  return {
    name: bench.name,
    description: bench.description,
    unit: bench.unit,
    startedAt: new Date().toISOString(),
    node: process.version,
    cases,
    goals,
  };
}

const fmt = (n: number): string =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)} G`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(2)} M`
      : n >= 1e4
        ? `${(n / 1e3).toFixed(1)} k`
        : n.toFixed(n >= 100 ? 0 : 1);

const fmtMetric = (n: number): string =>
  Number.isInteger(n) ? n.toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 2 });

/** A readable table: rate, spread, and the ratio to the best baseline. */
export function renderTable(r: BenchmarkResult): string {
  const bestBaseline = Math.max(0, ...r.cases.filter((c) => c.baseline && !c.error).map((c) => c.median));
  const rows = r.cases.map((c) => [
    c.name,
    c.error ? 'error' : `${fmt(c.median)} ${r.unit}/s`,
    c.error ? c.error.slice(0, 60) : `${fmt(c.min)}..${fmt(c.max)}  ±${(c.relativeSpread * 100).toFixed(1)}%`,
    !c.error && bestBaseline && !c.baseline ? `${(c.median / bestBaseline).toFixed(2)}x best baseline` : '',
  ]);
  const head = ['case', 'median', 'range  spread', 'vs baselines'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  const out = [
    `${r.name}: ${r.description}`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  for (const c of r.cases) {
    for (const [k, v] of Object.entries(c.metrics ?? {})) out.push(`  ${c.name}: ${k} = ${fmtMetric(v)}`);
  }
  for (const g of r.goals) out.push(`goal ${g.met ? 'met' : 'NOT met'}: ${g.case}: ${g.text}`);
  return out.join('\n');
}
