import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { LoadedConfig } from '../src/config/loader.js';
import { ConnectionGate } from '../src/gateway/gate.js';
import { HttpListener, sendJson } from '../src/util/http-listener.js';
import { componentLogger, type Logger } from '../src/observability/logger.js';
import { BridgeMetrics, METRICS_CONTENT_TYPE } from '../src/observability/metrics.js';
import { generateProviderKey, publicJwks, type ProviderPrivateJwk } from '../src/protocol/jwt.js';
import { readProviderKey, writeProviderKey } from '../src/provider-keys.js';
import { Bridge } from '../src/bridge/core.js';
import { BridgeError } from '../src/bridge/errors.js';
import { BridgeMediaHandler } from '../src/bridge/media-handler.js';
import { MediaHost } from '../src/media/host.js';
import { ensureAtRestKey, PayloadVault } from '../src/store/at-rest.js';
import { FileSealer } from '../src/util/sealed-file.js';
import type { Store } from '../src/store/repositories.js';
import { openBridgeDatabase } from './database.js';
import { startWorker } from './worker.js';
import type { ClusterWorker, FrontRole } from '../src/cluster/worker.js';
import { DaemonProvisioning } from './provisioning.js';
import type { ProvisionedNetwork } from '../src/provisioning/api.js';
import { VERSION } from '../src/version.js';
import { createMatrixAdapter, openMatrixStore, type MatrixAdapter } from '../adapters/matrix/index.js';
import { createXmppAdapter, openXmppStore, type XmppAdapter } from '../adapters/xmpp/index.js';

export const JWKS_PATH = '/_interop/jwks.json';
export const HEALTH_PATH = '/health';
export const METRICS_PATH = '/metrics';

export interface Daemon {
  readonly store: Store;
  readonly http: AddressInfo;
  /** The bridge core, when the gateway is configured (`gateway.root_key` set); adapters attach to it. */
  readonly bridge: Bridge | undefined;
  readonly metrics: BridgeMetrics;
  /** Stops accepting work, lets what is in flight finish, then closes the database. */
  stop(): Promise<void>;
}

/**
 * Starts the bridge daemon. Later layers (gateway connections, adapters) hang off this; today it
 * opens the store, makes sure the provider has a signing key, and serves health and the JWKS.
 */
export async function startDaemon(
  loaded: LoadedConfig,
  root: Logger,
  options: { worker?: boolean } = {},
): Promise<Daemon> {
  const log = componentLogger(root, 'daemon');
  const { config, paths } = loaded;
  // The key waiting content is sealed with; created at the first start (before the database, so
  // a key file that cannot be written stops the start before anything is stored).
  const atRest = ensureAtRestKey(paths.atRestKey);
  if (atRest.created) {
    log.info(
      { file: paths.atRestKey },
      'created the at-rest key (messages waiting for delivery are sealed with it): include it in backups',
    );
  }
  // Files that wait (the adapters' spools, the XMPP adapter's served files) are sealed with it too.
  const sealer = new FileSealer(atRest.key);
  // Small contents that wait (the core's outbox and inbox rows, the XMPP journal's stanzas).
  const vault = new PayloadVault(atRest.key);
  // The one-process lock is taken here: a second start on a database in use refuses.
  // (A worker, `--worker`, shares it with the other workers instead: leases keep them apart.)
  const database = await openBridgeDatabase(loaded, options);
  const store = database.store;
  let http: HttpListener | undefined;
  let bridge: Bridge | undefined;
  let host: MediaHost | undefined;
  let media: BridgeMediaHandler | undefined;
  let matrix: MatrixAdapter | undefined;
  let xmpp: XmppAdapter | undefined;
  let worker: ClusterWorker | undefined;
  // For the front role's `lost`, which comes after this function returned.
  let stopAll: (() => Promise<void>) | undefined;
  try {
    const signingKey = await ensureProviderKey(paths.signingKey, log);
    const jwks = publicJwks([signingKey]);

    const metrics = new BridgeMetrics({ queueMaxAgeSeconds: config.bridge.queue_max_age_hours * 3600 });
    metrics.observe({
      outboxQueued: () => store.outbox.countQueued(),
      inboxPending: () => store.inbox.countPending(),
      puppets: () => store.puppets.count(),
      connectionStates: () => bridge?.connectionStates() ?? {},
      oldestQueuedAt: () => store.outbox.oldestQueuedAt(),
      localServers: async () => ({
        ...(matrix ? { matrix: matrix.homeserverUp } : {}),
        ...(xmpp ? { xmpp: xmpp.link.status === 'online' } : {}),
      }),
      worker: () => worker && { id: worker.id, puppets: worker.owned().length, front: worker.isFront },
    });
    http = new HttpListener(componentLogger(root, 'http'));
    http.route('GET', JWKS_PATH, (_req, res) => sendJson(res, 200, jwks));
    http.route('GET', HEALTH_PATH, async (_req, res) =>
      sendJson(res, 200, {
        status: 'ok',
        version: VERSION,
        puppets: await store.puppets.count(),
        outbox_queued: await store.outbox.countQueued(),
        inbox_pending: await store.inbox.countPending(),
        gateway: config.gateway.root_key ? (bridge?.connectionStates() ?? {}) : 'not configured',
        ...(worker
          ? { worker: { id: worker.id, puppets: worker.owned().length, front: worker.isFront } }
          : {}),
      }),
    );
    http.route('GET', METRICS_PATH, async (_req, res) => {
      const text = await metrics.render();
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text);
    });
    const address = await http.listen(config.bridge.http.host, config.bridge.http.port);
    const publicUrl = config.bridge.http.public_url ?? `http://${address.address}:${address.port}`;

    if (config.gateway.root_key) {
      // Outgoing files are hosted here for the gateway's proxy; incoming ones land beside them.
      host = await MediaHost.open({
        dir: path.join(paths.dataDir, 'media'),
        publicUrl,
        maxBytes: config.media.max_bytes,
        logger: componentLogger(root, 'media'),
      });
      host.mount(http);
      media = await BridgeMediaHandler.open({
        host,
        mediaConn: (localUser) => {
          if (!bridge) {
            throw new BridgeError('bridge_not_connected', 'the bridge core is not running yet: try again');
          }
          return bridge.mediaConn(localUser);
        },
        receivedDir: path.join(paths.dataDir, 'media-received'),
        maxBytes: config.media.max_bytes,
        sealer,
        logger: componentLogger(root, 'media'),
      });
      bridge = new Bridge({
        store,
        signalBackend: (puppetId, lease) => database.signalBackend(puppetId, lease),
        senderKeyBackend: (puppetId, lease) => database.senderKeyBackend(puppetId, lease),
        gateway: {
          host: config.gateway.host,
          port: config.gateway.port,
          rootPublicKey: Buffer.from(config.gateway.root_key, 'base64'),
          gatewayId: config.gateway.gateway_id,
          providerId: config.bridge.provider_id,
          signingKey,
          ...(config.gateway.static_key
            ? { staticKey: Buffer.from(config.gateway.static_key, 'base64') }
            : {}),
          connection: {
            keepaliveMs: config.gateway.keepalive_seconds * 1000,
            handshakeTimeoutMs: config.gateway.handshake_timeout_seconds * 1000,
            maxFrameSize: config.gateway.max_frame_bytes,
            gate: new ConnectionGate({
              maxConcurrent: config.gateway.max_concurrent_handshakes,
              perSecond: config.gateway.max_connects_per_second,
            }),
            reconnect: {
              initialDelayMs: config.gateway.reconnect.initial_delay_ms,
              maxDelayMs: config.gateway.reconnect.max_delay_ms,
            },
          },
        },
        lifecycle: config.bridge.lifecycle,
        identityPolicy: config.bridge.identity_change_policy,
        preKeys: config.signal.prekey_batch_size,
        media,
        metrics,
        logger: root,
        vault,
        queueMaxAgeMs: config.bridge.queue_max_age_hours * 3600_000,
        ...(database.cluster ? { ownership: 'leased' as const } : {}),
      });
      // The provisioning API (docs/provisioning.openapi.yaml), for the networks enabled below.
      const provisioning = new DaemonProvisioning(
        config,
        paths.provisioningSecret,
        componentLogger(root, 'provisioning'),
      );
      const provisioned: ProvisionedNetwork[] = [];
      /**
       * Attached to the core (and so to the provisioning API), then started; with several workers,
       * started only while this process holds the front lease (see below).
       */
      const core = bridge;
      const clustered = database.cluster !== undefined;
      const attachAndStart = async (adapter: MatrixAdapter | XmppAdapter): Promise<void> => {
        const attached = core.attach(adapter);
        provisioned.push({
          network: adapter.network,
          core: attached,
          hooks: () => adapter.provisioning,
          capabilities: adapter.capabilities,
        });
        if (!clustered) await adapter.start();
      };
      // Adapters attach before the core starts, so pending incoming messages find them.
      if (config.matrix.enabled) {
        const m = createMatrixAdapter(
          { config, logger: root, dataDir: paths.dataDir, sealer, vault, provisioning: provisioning.handle },
          openMatrixStore(database.adapterDb),
        );
        matrix = m;
        await attachAndStart(m);
      }
      if (config.xmpp.enabled) {
        const x = createXmppAdapter(
          { config, logger: root, dataDir: paths.dataDir, http, publicUrl, sealer, vault },
          openXmppStore(database.adapterDb),
        );
        xmpp = x;
        await attachAndStart(x);
      }
      provisioning.serve(http, provisioned);
      await bridge.start();
      if (database.cluster) {
        const adapters = [matrix, xmpp].filter((a): a is MatrixAdapter | XmppAdapter => a !== undefined);
        // Without an adapter there is nothing to run in front: no worker takes the lease.
        const front: FrontRole | undefined =
          adapters.length === 0
            ? undefined
            : {
                acquired: async () => {
                  for (const a of adapters) await a.start();
                  core.startFront();
                },
                // Its adapters may still be talking to the local servers as if alone: this process goes,
                // and the worker that took the lease runs them (systemd starts this one again, as a standby).
                lost: () => {
                  log.error(
                    'this process lost the front lease: stopping, so that only the new front runs the adapters',
                  );
                  void Promise.race([stopAll?.(), new Promise((r) => setTimeout(r, 5_000).unref())]).finally(
                    () => process.exit(75),
                  );
                },
              };
        worker = await startWorker(loaded, database.cluster, bridge, root, front);
      }
    } else if (config.matrix.enabled || config.xmpp.enabled) {
      log.warn(
        'gateway.root_key is not set: the Matrix and XMPP adapters are not started (they need the gateway); set it and restart',
      );
    }

    log.info(
      {
        version: VERSION,
        config: loaded.source,
        database: database.label,
        ...(worker ? { worker: worker.id } : {}),
        schema_version: await store.schemaVersion(),
        provider_id: config.bridge.provider_id,
        puppets: await store.puppets.count(),
        http: `${address.address}:${address.port}`,
        jwks_url: `${publicUrl.replace(/\/$/, '')}${JWKS_PATH}`,
        gateway: config.gateway.root_key
          ? `${config.gateway.host}:${config.gateway.port}`
          : 'not configured (gateway.root_key unset)',
        matrix: matrix?.address
          ? `${config.matrix.homeserver_url} (bot @${config.matrix.bot_localpart}:${config.matrix.server_name}, appservice listener ${matrix.address.address}:${matrix.address.port})`
          : 'disabled',
        xmpp: xmpp
          ? `${config.xmpp.component_domain} via ${config.xmpp.server_host}:${config.xmpp.server_port} (${xmpp.link.status})`
          : 'disabled',
        metrics_url: `http://${address.address}:${address.port}${METRICS_PATH}`,
      },
      'interop-bridge started',
    );
    // A second line once the puppets have had time to connect: how many made it, and what the
    // others are doing (the metrics and /health say the same, live).
    const summary = bridge
      ? setTimeout(() => {
          const states = bridge?.connectionStates() ?? {};
          const total = Object.values(states).reduce((a, b) => a + b, 0);
          log.info(
            { puppets: total, connected: states['connected'] ?? 0, states },
            `gateway: ${states['connected'] ?? 0} of ${total} puppets connected`,
          );
        }, 10_000).unref()
      : undefined;

    const listener = http;
    const core = bridge;
    const clusterWorker = worker;
    const adapters = { matrix, xmpp };
    const mediaHost = host;
    const mediaHandler = media;
    const daemon: Daemon = {
      store,
      http: address,
      bridge: core,
      metrics,
      async stop() {
        clearTimeout(summary);
        log.info('stopping: no new work accepted');
        await listener.close();
        await adapters.matrix?.stop();
        await adapters.xmpp?.stop();
        // A worker disconnects its puppets and releases their leases: the others take them at once.
        await clusterWorker?.stop();
        await core?.stop();
        mediaHandler?.close();
        mediaHost?.close();
        await database.close();
        log.info('stopped: database closed');
      },
    };
    stopAll = () => daemon.stop();
    return daemon;
  } catch (err) {
    await matrix?.stop().catch(() => undefined);
    await xmpp?.stop().catch(() => undefined);
    await worker?.stop().catch(() => undefined);
    await bridge?.stop();
    media?.close();
    host?.close();
    await http?.close();
    await database.close();
    throw err;
  }
}

async function ensureProviderKey(file: string, log: Logger): Promise<ProviderPrivateJwk> {
  try {
    return readProviderKey(file);
  } catch (err) {
    if ((err as { code?: string }).code !== 'provider_key_missing') throw err;
  }
  const jwk = await generateProviderKey('EdDSA');
  try {
    writeProviderKey(file, jwk);
  } catch (err) {
    // Another process starting on the same data_dir made it first: theirs is the key.
    if ((err as { code?: string }).code === 'provider_key_exists') return readProviderKey(file);
    throw err;
  }
  log.info({ file, kid: jwk.kid }, 'created the provider signing key');
  return jwk;
}
