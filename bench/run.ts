/**
 * `npm run bench` runs every benchmark in bench/*.bench.ts; `npm run bench -- <name> [...]` only
 * those named. Results: a table on stdout and JSON in bench/results/<name>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderTable, runBenchmark, type Benchmark } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function loadBenchmarks(dir = here): Promise<Benchmark[]> {
  const files = readdirSync(dir).filter((f) => /\.bench\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'));
  const benches: Benchmark[] = [];
  for (const f of files.sort()) {
    // A file may hold several benchmarks (one per unit): a Benchmark, an array, or a function
    // returning either.
    type Exported = Benchmark | Benchmark[];
    const mod = (await import(path.join(dir, f))) as {
      default?: Exported | (() => Exported | Promise<Exported>);
    };
    const b = typeof mod.default === 'function' ? await mod.default() : mod.default;
    if (b) benches.push(...(Array.isArray(b) ? b : [b]));
  }
  return benches;
}

async function main(argv: string[]): Promise<number> {
  const all = await loadBenchmarks();
  const wanted = argv.filter((a) => !a.startsWith('-'));
  // "noise" selects noise-handshake, noise-transport-64k... (the benchmarks of one file);
  // "=scale" selects scale alone, not scale-workers (how the parent runs each in its own process).
  const selects = (w: string, b: Benchmark) =>
    w.startsWith('=') ? b.name === w.slice(1) : b.name === w || b.name.startsWith(`${w}-`);
  const unknown = wanted.filter((w) => !all.some((b) => selects(w, b)));
  if (unknown.length) {
    process.stderr.write(
      `unknown benchmark(s): ${unknown.join(', ')}; available: ${all.map((b) => b.name).join(', ')}\n`,
    );
    return 2;
  }
  const resultsDir = path.resolve(here, '..', '..', 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const chosen = all.filter((b) => wanted.length === 0 || wanted.some((w) => selects(w, b)));
  if (chosen.length > 1) {
    // One process per benchmark: what one leaves behind (a large heap, sockets, timers of the
    // end-to-end world) must not slow the next. Measured: after e2e in the same process, raw
    // AES-GCM ran ~40% slower and the Signal path ~35% slower. Baselines still run in the same
    // process as the project's cases, so each benchmark's ratios hold.
    for (const bench of chosen) {
      const code = await new Promise<number>((resolve) => {
        const child = spawn(
          process.execPath,
          [...process.execArgv, fileURLToPath(import.meta.url), `=${bench.name}`],
          {
            stdio: 'inherit',
          },
        );
        child.on('exit', (c) => resolve(c ?? 1));
      });
      if (code !== 0) process.stderr.write(`benchmark ${bench.name} exited with ${code}\n`);
    }
    return 0;
  }
  for (const bench of chosen) {
    const result = await runBenchmark(bench, (l) => process.stderr.write(`${l}\n`));
    process.stdout.write(`\n${renderTable(result)}\n`);
    writeFileSync(path.join(resultsDir, `${bench.name}.json`), `${JSON.stringify(result, null, 2)}\n`);
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
