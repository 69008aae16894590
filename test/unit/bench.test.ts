/** Benchmarks are never pass/fail on speed; the suite only checks that each one runs. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.BENCH_QUICK = '1';
const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench');

describe('benchmarks', () => {
  it('each benchmark runs every case without error and reports a rate', async () => {
    const { loadBenchmarks } = await import('../../bench/run.js');
    const { runBenchmark, renderTable } = await import('../../bench/harness.js');
    const benches = await loadBenchmarks(benchDir);
    for (const bench of benches) {
      const result = await runBenchmark(bench);
      expect(result.cases.filter((c) => c.error)).toEqual([]);
      for (const c of result.cases) expect(c.median).toBeGreaterThan(0);
      expect(renderTable(result)).toContain(bench.name);
    }
  }, 300_000);
});
