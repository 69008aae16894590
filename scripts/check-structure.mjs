// The structure rules `npm run lint` checks beside ESLint (docs/ARCHITECTURE.md): no import cycle
// between production files, and no production file over 600 lines (generated code aside).
// Usage: node scripts/check-structure.mjs [root]   (exit 1 and a list of problems when broken)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PRODUCTION = ['app', 'src', 'adapters', 'emulator'];
export const MAX_LINES = 600;
const GENERATED = /(^|\/)src\/protocol\/gen\//;
const IMPORT =
  /(?:^|[^\w.])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) walk(file, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(file);
  }
  return out;
}

/** Production source files of the tree at `root`, as paths relative to it. */
export function productionFiles(root) {
  return PRODUCTION.flatMap((top) => {
    try {
      return walk(path.join(root, top), []);
    } catch {
      return [];
    }
  })
    .map((f) => path.relative(root, f).split(path.sep).join('/'))
    .filter((f) => !GENERATED.test(f))
    .sort();
}

/** The relative imports of one file (type-only ones included: they tie the files together too). */
export function importsOf(root, file) {
  const text = readFileSync(path.join(root, file), 'utf8');
  const found = new Set();
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (!spec?.startsWith('.')) continue;
    const target = path.posix
      .normalize(path.posix.join(path.posix.dirname(file), spec))
      .replace(/\.js$/, '.ts');
    found.add(target);
  }
  return [...found];
}

/** Every import cycle (strongly connected component of more than one file, or a file importing itself). */
export function importCycles(root, files = productionFiles(root)) {
  const known = new Set(files);
  const graph = new Map(files.map((f) => [f, importsOf(root, f).filter((t) => known.has(t))]));
  // Tarjan's algorithm, iterative enough for a few hundred files.
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const cycles = [];
  const connect = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)) {
      if (!idx.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v).includes(v)) cycles.push(component.sort());
    }
  };
  for (const f of files) if (!idx.has(f)) connect(f);
  return cycles;
}

/** Production files over MAX_LINES lines, with their counts. */
export function oversizeFiles(root, files = productionFiles(root)) {
  return files
    .map((f) => ({ file: f, lines: readFileSync(path.join(root, f), 'utf8').split('\n').length - 1 }))
    .filter((f) => f.lines > MAX_LINES);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
  const files = productionFiles(root);
  const problems = [
    ...importCycles(root, files).map((c) => `import cycle: ${c.join(' -> ')}`),
    ...oversizeFiles(root, files).map(
      (f) => `${f.file} has ${f.lines} lines (at most ${MAX_LINES}): split it by concern`,
    ),
  ];
  if (problems.length > 0) {
    for (const p of problems) console.error(p);
    process.exit(1);
  }
  console.log(`structure: ${files.length} production files, no import cycle, none over ${MAX_LINES} lines`);
}
