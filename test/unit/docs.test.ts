/**
 * The documentation an operator follows: every relative link leads to a file in the repository,
 * and every `interop-bridge <command>` it tells them to run exists.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../app/cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const docs = [
  'README.md',
  ...readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

describe('documentation', () => {
  it.each(docs)('%s links only to files that exist', (doc) => {
    const text = readFileSync(path.join(root, doc), 'utf8');
    const broken: string[] = [];
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target) || target.startsWith('#') || !/^[\w./-]+(#.*)?$/.test(target)) continue;
      const file = target.split('#')[0]!;
      if (!existsSync(path.resolve(root, path.dirname(doc), file))) broken.push(target);
    }
    expect(broken).toEqual([]);
  });

  it('names only interop-bridge commands that exist', async () => {
    const commands = new Set<string>();
    for (const doc of docs) {
      const text = readFileSync(path.join(root, doc), 'utf8');
      for (const m of text.matchAll(
        /interop-bridge ((?:[a-z][a-z-]+)(?: (?:generate|jwks|init|rotate|run))?)\b/g,
      )) {
        commands.add(m[1]!);
      }
    }
    // Words that follow "interop-bridge" in prose rather than a command.
    const prose = new Set([
      'is',
      'as',
      'to',
      'and',
      'in',
      'doctor-',
      'the',
      'a',
      'turns',
      'with',
      'has',
      'does',
      'itself',
      'was',
      'can',
      'on',
      'knows',
      'ships',
      'runs',
      'will',
    ]);
    expect([...commands]).toEqual(
      expect.arrayContaining(['doctor', 'backup', 'generate-registration', 'keys generate']),
    );
    const missing: string[] = [];
    for (const c of commands) {
      if (prose.has(c.split(' ')[0]!)) continue;
      let out = '';
      const code = await runCli([...c.split(' '), '--help'], {
        out: (t) => (out += t),
        err: (t) => (out += t),
        env: {},
      });
      if (code !== 0) missing.push(c);
    }
    expect(missing).toEqual([]);
  });
});

describe('the Synapse configuration docs/MATRIX.md gives operators', () => {
  it('is a YAML block the Matrix tests run Synapse with: the registration file, presence on, the appservice encryption extensions', async () => {
    const { documentedSynapseConfig } = await import('../support/synapse/synapse.js');
    const config = documentedSynapseConfig();
    expect(config['app_service_config_files']).toEqual(['/etc/matrix-synapse/interop-bridge.yaml']);
    expect(config['presence']).toEqual({ enabled: true });
    expect(config['experimental_features']).toEqual({
      msc2409_to_device_messages_enabled: true,
      msc3202_transaction_extensions: true,
    });
    expect(Object.keys(config).sort()).toEqual([
      'app_service_config_files',
      'experimental_features',
      'presence',
    ]);
  });
});

/**
 * Command blocks a newcomer pastes: a fenced block whose info string is `sh doc-test` is run line
 * by line with bash in a fresh temporary directory holding what a checkout's top level holds
 * (emulator.sample.yaml, config.sample.yaml), with `interop-bridge` being the built CLI
 * (dist/app/cli.js; `npm run build` first). Every line must exit 0, except the long-running ones
 * listed in LONG_RUNNING, skipped for the reason given (each is exercised elsewhere).
 */
const LONG_RUNNING: { pattern: RegExp; reason: string }[] = [
  {
    pattern: /^interop-bridge emulator --config /,
    reason:
      'runs until Ctrl-C, and needs the bridge JWKS the next paragraph sets up; test/integration/emulator-cli.test.ts runs it',
  },
  {
    pattern: /^interop-bridge start\b/,
    reason: 'runs until Ctrl-C; test/support/daemon-child.ts runs it for the crash tests',
  },
  { pattern: /^npm run demo\b/, reason: 'runs until Ctrl-C; test/integration/demo.test.ts runs every mode' },
];

function docTestBlocks(): { doc: string; line: number; commands: string[] }[] {
  const found: { doc: string; line: number; commands: string[] }[] = [];
  for (const doc of docs) {
    const text = readFileSync(path.join(root, doc), 'utf8');
    for (const m of text.matchAll(/^```sh doc-test\n([\s\S]*?)^```/gm)) {
      const commands = m[1]!
        .replace(/\\\n/g, ' ')
        .split('\n')
        .map((l) => l.replace(/\s+#.*$/, '').trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
      found.push({ doc, line: text.slice(0, m.index).split('\n').length, commands });
    }
  }
  return found;
}

describe('command blocks marked `sh doc-test`', () => {
  const blocks = docTestBlocks();

  it('exist (README.md has at least the emulator steps)', () => {
    expect(blocks.map((b) => b.doc)).toContain('README.md');
  });

  it.each(blocks.map((b) => [`${b.doc}:${b.line}`, b] as const))(
    '%s works as written in a fresh directory',
    async (_where, block) => {
      const cli = path.join(root, 'dist', 'app', 'cli.js');
      if (!existsSync(cli)) throw new Error('dist/app/cli.js is missing: run npm run build first');
      const { mkdtempSync, writeFileSync, copyFileSync, chmodSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { spawnSync } = await import('node:child_process');
      const dir = mkdtempSync(path.join(tmpdir(), 'doc-test-'));
      try {
        const bin = path.join(dir, '.bin');
        const { mkdirSync } = await import('node:fs');
        mkdirSync(bin);
        writeFileSync(
          path.join(bin, 'interop-bridge'),
          `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} "$@"\n`,
        );
        chmodSync(path.join(bin, 'interop-bridge'), 0o755);
        for (const f of ['emulator.sample.yaml', 'config.sample.yaml']) {
          copyFileSync(path.join(root, f), path.join(dir, f));
        }
        const failures: string[] = [];
        for (const command of block.commands) {
          if (LONG_RUNNING.some((l) => l.pattern.test(command))) continue;
          const r = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', command], {
            cwd: dir,
            env: { PATH: `${bin}:${process.env['PATH'] ?? ''}`, HOME: dir },
            encoding: 'utf8',
            timeout: 30_000,
          });
          if (r.status !== 0) failures.push(`${command}\n  exit ${String(r.status)}: ${r.stderr}${r.stdout}`);
        }
        expect(failures).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
