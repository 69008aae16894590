/**
 * The project's layer boundaries as an ESLint rule (`layers/boundaries`): each import is resolved
 * against the importing file, and the pair of folders must be one the architecture allows
 * (docs/ARCHITECTURE.md, "Layers and what each may import"). Relative imports only: packages from
 * node_modules are every layer's to use.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** What an adapter may import from the core: the contract and the small shared terms. */
const ADAPTER_MAY_IMPORT_FROM_SRC = [
  'src/bridge/adapter.ts',
  'src/bridge/events.ts',
  'src/bridge/markup.ts',
  'src/bridge/geo.ts',
  'src/bridge/phone.ts',
  'src/bridge/commands.ts',
  'src/config/',
  'src/observability/',
  'src/util/',
  'src/errors.ts',
  'src/version.ts',
  // An adapter's tables on either backend: the database handle types, prepared statements, migrations.
  'src/store/sql.ts',
];

const TOP_LEVEL = ['src', 'adapters', 'emulator', 'app', 'demo', 'test', 'bench', 'scripts', 'eslint'];

/** Why `from` (a repository path) may not import `to`, or undefined when it may. */
export function violation(from, to) {
  const [fromTop, fromSecond] = from.split('/');
  const [toTop, toSecond] = to.split('/');
  if (!TOP_LEVEL.includes(toTop)) return undefined;
  switch (fromTop) {
    case 'src':
      if (toTop !== 'src') {
        return `the core (src/) never imports ${toTop}/: the composition root (app/) wires it to adapters and the emulator`;
      }
      return undefined;
    case 'adapters':
      if (toTop === 'adapters') {
        return toSecond === fromSecond
          ? undefined
          : `one adapter never imports another (adapters/${fromSecond} -> adapters/${toSecond}): shared terms belong in src/bridge or src/util`;
      }
      if (toTop === 'src') {
        return ADAPTER_MAY_IMPORT_FROM_SRC.some(
          (allowed) => to === allowed || (allowed.endsWith('/') && to.startsWith(allowed)),
        )
          ? undefined
          : `an adapter imports only the bridge contract (src/bridge/adapter, events, markup, geo, phone, commands), config, observability, util, errors, version and src/store/sql.ts: ask the core through BridgeCore`;
      }
      return `an adapter never imports ${toTop}/`;
    case 'emulator':
      if (toTop === 'emulator') return undefined;
      if (toTop === 'src' && !['bridge', 'store'].includes(toSecond ?? '')) return undefined;
      if (to === 'src/store/database.ts' || to === 'src/store/sql.ts') return undefined;
      return `the emulator is the gateway's side of the wire: it uses src/protocol, src/signal, src/media and utilities, never ${to}`;
    case 'app':
      if (['test', 'bench', 'demo', 'scripts', 'eslint'].includes(toTop))
        return `the composition root never imports ${toTop}/`;
      return undefined;
    default:
      return undefined;
  }
}

function resolveSpecifier(file, spec) {
  if (!spec.startsWith('.')) return undefined;
  const abs = path.resolve(path.dirname(file), spec);
  const rel = path.relative(ROOT, abs).split(path.sep).join('/');
  if (rel.startsWith('..')) return undefined;
  // Sources import './x.js' for './x.ts'.
  return rel.replace(/\.js$/, '.ts');
}

const boundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'Keeps imports inside the layer boundaries of docs/ARCHITECTURE.md' },
    schema: [],
  },
  create(context) {
    const file = context.filename;
    const from = path.relative(ROOT, file).split(path.sep).join('/');
    if (from.startsWith('..')) return {};
    const check = (node, source) => {
      if (!source || typeof source.value !== 'string') return;
      const to = resolveSpecifier(file, source.value);
      if (to === undefined) return;
      const why = violation(from, to);
      if (why) context.report({ node: source, message: `layer boundary: ${from} imports ${to}: ${why}` });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
    };
  },
};

export default { rules: { boundaries } };
