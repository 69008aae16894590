/**
 * The architecture is enforced, not only written down: `npm run lint` fails on an import across a
 * layer boundary (eslint/layers.js), on an import cycle and on a production file over 600 lines
 * (scripts/check-structure.mjs). Each rule is shown failing on a planted file, and main is clean.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
// @ts-expect-error: a plain ESM script without type declarations
import { importCycles, oversizeFiles, productionFiles } from '../../scripts/check-structure.mjs';
import { tempDir } from '../support/tmp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const eslint = new ESLint({ cwd: ROOT });

/** The layer-boundary messages ESLint gives for `code` as if it were the file `file`. */
async function boundaryErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'layers/boundaries').map((m) => m.message);
}

describe('layer boundaries (npm run lint)', () => {
  it.each([
    [
      'src/bridge/planted.ts',
      "import { createXmppAdapter } from '../../adapters/xmpp/index.js';",
      /the core \(src\/\) never imports adapters\//,
    ],
    [
      'src/store/planted.ts',
      "export { startEmulator } from '../../emulator/main.js';",
      /the core \(src\/\) never imports emulator\//,
    ],
    ['src/planted.ts', "const cli = await import('../app/cli.js');", /never imports app\//],
    [
      'adapters/xmpp/planted.ts',
      "import { openSqliteStore } from '../../src/store/sqlite-store.js';",
      /an adapter imports only the bridge contract/,
    ],
    [
      'adapters/matrix/planted.ts',
      "import type { Bridge } from '../../src/bridge/core.js';",
      /only the bridge contract/,
    ],
    [
      'adapters/matrix/planted.ts',
      "import { parseJid } from '../../src/protocol/stanza/index.js';",
      /only the bridge contract/,
    ],
    [
      'adapters/xmpp/planted.ts',
      "import { MatrixAdapter } from '../matrix/adapter.js';",
      /one adapter never imports another/,
    ],
    [
      'emulator/planted.ts',
      "import { Bridge } from '../src/bridge/core.js';",
      /the emulator is the gateway's side/,
    ],
  ])('refuses %s: %s', async (file, code, why) => {
    const errors = await boundaryErrors(file, code);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(why);
  });

  it.each([
    [
      'adapters/xmpp/planted.ts',
      "import type { Adapter } from '../../src/bridge/adapter.js';\nimport { bareJid } from './jids.js';",
    ],
    [
      'adapters/matrix/planted.ts',
      "import { KeyedQueue } from '../../src/util/keyed-queue.js';\nimport { preparedStatements } from '../../src/store/sql.js';",
    ],
    [
      'app/planted.ts',
      "import { createXmppAdapter } from '../adapters/xmpp/index.js';\nimport { Bridge } from '../src/bridge/core.js';",
    ],
    ['emulator/planted.ts', "import { parseJid } from '../src/protocol/stanza/index.js';"],
    [
      'src/bridge/planted.ts',
      "import { parseJid } from '../protocol/stanza/index.js';\nimport pino from 'pino';",
    ],
  ])('allows %s', async (file, code) => {
    expect(await boundaryErrors(file, code)).toEqual([]);
  });
});

describe('structure (npm run lint)', () => {
  it('finds an import cycle and a file over 600 lines in a planted tree', () => {
    const tmp = tempDir();
    try {
      const put = (file: string, text: string) => {
        mkdirSync(path.dirname(path.join(tmp.dir, file)), { recursive: true });
        writeFileSync(path.join(tmp.dir, file), text);
      };
      put('src/a.ts', "import { b } from './b.js';\nexport const a = () => b;\n");
      put('src/b.ts', "import type { c } from './c.js';\nexport const b = 1 as unknown as typeof c;\n");
      put('src/c.ts', "export { a as c } from './a.js';\n");
      put('src/fine.ts', "import { a } from './a.js';\nexport const f = a;\n");
      put('adapters/x/big.ts', 'export const x = 1;\n'.repeat(601));
      expect(importCycles(tmp.dir)).toEqual([['src/a.ts', 'src/b.ts', 'src/c.ts']]);
      expect(oversizeFiles(tmp.dir)).toEqual([{ file: 'adapters/x/big.ts', lines: 601 }]);
    } finally {
      tmp.cleanup();
    }
  });

  it('main has no import cycle and no production file over 600 lines', () => {
    const files = productionFiles(ROOT) as string[];
    expect(files.length).toBeGreaterThan(100);
    expect(importCycles(ROOT, files)).toEqual([]);
    expect(oversizeFiles(ROOT, files)).toEqual([]);
  });
});
