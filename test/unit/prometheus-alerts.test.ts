/**
 * The alerting rules shipped in config/: `promtool check rules` accepts them, `promtool test rules`
 * passes config/prometheus-alerts.test.yml (each alert fires on the series it is meant for and
 * not on a healthy bridge's), and every bridge metric they name is one /metrics exports.
 * promtool comes with Debian's `prometheus` package (scripts/install-system-deps.sh installs it).
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BridgeMetrics } from '../../src/observability/metrics.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const rules = path.join(root, 'config', 'prometheus-alerts.yml');
const rulesTest = path.join(root, 'config', 'prometheus-alerts.test.yml');

function findPromtool(): string | undefined {
  for (const dir of ['/usr/bin', ...(process.env['PATH'] ?? '').split(':')]) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, 'promtool'), constants.X_OK);
      return path.join(dir, 'promtool');
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: path.join(root, 'config'), timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

const promtool = findPromtool();
if (promtool === undefined) {
  process.stderr.write(
    'prometheus-alerts.test.ts: promtool is not installed (apt-get install prometheus, or scripts/install-system-deps.sh): the promtool checks are skipped\n',
  );
}
const withPromtool = promtool === undefined ? it.skip : it;

describe('the Prometheus alerting rules in config/', () => {
  withPromtool('pass promtool check rules', async () => {
    const r = await run(promtool!, ['check', 'rules', rules]);
    expect(r.out).toContain('SUCCESS: 8 rules found');
    expect(r.code).toBe(0);
  });

  withPromtool('pass their unit tests (promtool test rules)', async () => {
    const r = await run(promtool!, ['test', 'rules', rulesTest]);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('name only bridge metrics that /metrics exports', async () => {
    const metrics = new BridgeMetrics({ queueMaxAgeSeconds: 3600 });
    metrics.observe({
      outboxQueued: () => Promise.resolve(0),
      inboxPending: () => Promise.resolve(0),
      puppets: () => Promise.resolve(0),
      connectionStates: () => ({ connected: 1 }),
      oldestQueuedAt: () => Promise.resolve(undefined),
      localServers: () => Promise.resolve({ xmpp: true }),
    });
    const exported = new Set(
      (await metrics.render())
        .split('\n')
        .filter((l) => l.startsWith('# TYPE '))
        .map((l) => l.split(' ')[2]!),
    );
    const named = new Set(readFileSync(rules, 'utf8').match(/interop_bridge_[a-z_]+/g) ?? []);
    expect(named.size).toBeGreaterThanOrEqual(8);
    expect([...named].filter((n) => !exported.has(n))).toEqual([]);
  });
});
