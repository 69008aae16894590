/**
 * `start --worker`: this process as one worker of several on one PostgreSQL (src/cluster/worker.ts).
 * Its id is `<hostname>:<pid>:<random>` (unique even when a pid is reused); it runs the puppets it
 * holds leases on, through the bridge core (ownership `leased`).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Bridge } from '../src/bridge/core.js';
import type { Leases } from '../src/cluster/leases.js';
import { ClusterWorker } from '../src/cluster/worker.js';
import type { LoadedConfig } from '../src/config/loader.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';

export function workerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

export async function startWorker(
  loaded: LoadedConfig,
  cluster: { leases: Leases; enlistedPuppetIds(): Promise<number[]> },
  bridge: Bridge,
  root: Logger,
): Promise<ClusterWorker> {
  const id = workerId();
  const log = componentLogger(root, 'worker').child({ worker: id });
  const worker = new ClusterWorker({
    id,
    leases: cluster.leases,
    leaseMs: loaded.config.bridge.worker_lease_seconds * 1000,
    log,
    host: {
      candidates: () => cluster.enlistedPuppetIds(),
      adopt: async (puppetId, lease) => {
        await bridge.adopt(puppetId, lease);
      },
      drop: (puppetId) => bridge.relinquish(puppetId),
    },
  });
  await worker.start();
  log.info({ lease_seconds: loaded.config.bridge.worker_lease_seconds }, 'worker started');
  return worker;
}
