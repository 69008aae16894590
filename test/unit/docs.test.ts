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
  it('is a YAML block the Matrix tests run Synapse with: the registration file, presence on', async () => {
    const { documentedSynapseConfig } = await import('../support/synapse/synapse.js');
    const config = documentedSynapseConfig();
    expect(config['app_service_config_files']).toEqual(['/etc/matrix-synapse/interop-bridge.yaml']);
    expect(config['presence']).toEqual({ enabled: true });
    expect(Object.keys(config).sort()).toEqual(['app_service_config_files', 'presence']);
  });
});
