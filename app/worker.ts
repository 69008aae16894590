/**
 * `start --worker`: this process as one worker of several on one PostgreSQL (src/cluster/worker.ts).
 * Its id is `<hostname>:<pid>:<random>` (unique even when a pid is reused); it runs the puppets it
 * holds leases on, through the bridge core (ownership `leased`), and, while it holds the `front`
 * lease, the adapters (`front`); the relay (src/cluster/relay.ts) carries the work between them.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Bridge } from '../src/bridge/core.js';
import { ClusterWorker, puppetLease, type FrontRole } from '../src/cluster/worker.js';
import type { LoadedConfig } from '../src/config/loader.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import type { ClusterDatabase } from './database.js';

export function workerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

export async function startWorker(
  loaded: LoadedConfig,
  cluster: ClusterDatabase,
  bridge: Bridge,
  root: Logger,
  front?: FrontRole,
): Promise<ClusterWorker> {
  const id = workerId();
  const log = componentLogger(root, 'worker').child({ worker: id });
  const worker = new ClusterWorker({
    id,
    leases: cluster.leases,
    leaseMs: loaded.config.bridge.worker_lease_seconds * 1000,
    log,
    front,
    host: {
      candidates: () => cluster.puppetIds(),
      adopt: async (puppetId, lease) => {
        await bridge.adopt(puppetId, lease);
      },
      drop: (puppetId) => bridge.relinquish(puppetId),
    },
  });
  // Before the first round adopts anything: the puppets' runtimes report through the relay.
  await bridge.joinCluster({
    relay: cluster.relay(id, log),
    ownerOf: (puppetId) => cluster.leases.holderOf(puppetLease(puppetId)),
    claim: (puppetId) => worker.claim(puppetId),
  });
  await worker.start();
  log.info({ lease_seconds: loaded.config.bridge.worker_lease_seconds }, 'worker started');
  return worker;
}
