/**
 * What the tests and the benchmark of several workers share (`start --worker` on one PostgreSQL):
 * the shared state directory, a worker's configuration, and puppets enlisted beforehand through the
 * real path by a bridge in the calling process.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { noopAdapter } from '../../bench/scale/noop-adapter.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { Bridge, type BridgeOptions } from '../../src/bridge/core.js';
import type { ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { PostgresSignalBackend } from '../../src/signal/index.js';
import { ensureAtRestKey } from '../../src/store/at-rest.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';

/** The workers' shared `bridge.data_dir`: the provider's signing key and the at-rest key. */
export function writeSharedState(dataDir: string, signingKey: ProviderPrivateJwk): void {
  writeProviderKey(path.join(dataDir, 'provider-signing-key.jwk'), signingKey);
  ensureAtRestKey(path.join(dataDir, 'at-rest.key'));
}

export interface WorkerConfig {
  readonly provider: string;
  readonly dataDir: string;
  /** The PostgreSQL URL. */
  readonly database: string;
  readonly leaseSeconds: number;
  readonly httpPort: number;
  readonly gateway: {
    readonly port: number;
    readonly rootKey: Uint8Array;
    readonly extra?: readonly string[];
  };
  /** More YAML lines, at the top level (`signal:`, `matrix:`, `xmpp:` sections). */
  readonly more?: readonly string[];
}

/** Writes a worker's configuration file (mode 0600). */
export function writeWorkerConfig(file: string, c: WorkerConfig): void {
  writeFileSync(
    file,
    [
      'bridge:',
      `  provider_id: ${c.provider}`,
      `  data_dir: ${c.dataDir}`,
      `  database: "${c.database}"`,
      `  worker_lease_seconds: ${c.leaseSeconds}`,
      `  http: { port: ${c.httpPort} }`,
      'gateway:',
      `  port: ${c.gateway.port}`,
      `  root_key: ${Buffer.from(c.gateway.rootKey).toString('base64')}`,
      ...(c.gateway.extra ?? []).map((l) => `  ${l}`),
      ...(c.more ?? []),
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}

/**
 * Enlists `count` Matrix puppets (`@<prefix><i>:hs.example`) through the real path with a bridge
 * in this process on the database at `url` (migrating it), `concurrency` at a time, then closes it.
 * `progress` is told every 15 s.
 */
export async function enlistPuppets(
  url: string,
  gateway: BridgeOptions['gateway'],
  count: number,
  options: {
    prefix?: string;
    preKeys?: number;
    concurrency?: number;
    progress?: (done: number) => void;
  } = {},
): Promise<void> {
  const store = await openPostgresStore({ url, migrations: bridgeMigrations('postgres') });
  const bridge = new Bridge({
    store,
    signalBackend: (id) => new PostgresSignalBackend(store.pg, id),
    gateway,
    preKeys: options.preKeys ?? 10,
  });
  bridge.attach(noopAdapter);
  let next = 0;
  let reported = Date.now();
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency ?? 6, count) }, async () => {
      while (next < count) {
        await bridge.enlist('matrix', `@${options.prefix ?? 'user'}${next++}:hs.example`);
        if (options.progress && Date.now() - reported > 15_000) {
          reported = Date.now();
          options.progress(next);
        }
      }
    }),
  );
  await bridge.stop();
  await store.close();
}

/** The last warnings and errors in each worker's log, for failure messages. */
export function warningsOf(workers: readonly { readonly log: string }[], lines = 12): string {
  return workers
    .map(
      (w, i) =>
        `--- worker ${i + 1} ---\n` +
        w.log
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l))
          .slice(-lines)
          .join('\n'),
    )
    .join('\n');
}

/** A worker's id, from its log (`(none yet)` before it said it). */
export const workerIdOf = (w: { readonly log: string }): string =>
  /"worker":"([^"]+)"/.exec(w.log)?.[1] ?? '(none yet)';
