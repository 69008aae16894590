import type { AddressInfo } from 'node:net';
import type { LoadedConfig } from './config/loader.js';
import { HttpListener, sendJson } from './http-listener.js';
import { componentLogger, type Logger } from './observability/logger.js';
import { generateProviderKey, publicJwks, type ProviderPrivateJwk } from './protocol/jwt.js';
import { readProviderKey, writeProviderKey } from './provider-keys.js';
import type { Store } from './store/repositories.js';
import { openSqliteStore } from './store/sqlite-store.js';
import { VERSION } from './version.js';

export const JWKS_PATH = '/_interop/jwks.json';
export const HEALTH_PATH = '/health';

export interface Daemon {
  readonly store: Store;
  readonly http: AddressInfo;
  /** Stops accepting work, lets what is in flight finish, then closes the database. */
  stop(): Promise<void>;
}

/**
 * Starts the bridge daemon. Later layers (gateway connections, adapters) hang off this; today it
 * opens the store, makes sure the provider has a signing key, and serves health and the JWKS.
 */
export async function startDaemon(loaded: LoadedConfig, root: Logger): Promise<Daemon> {
  const log = componentLogger(root, 'daemon');
  const { config, paths } = loaded;
  const store = openSqliteStore(paths.database);
  let http: HttpListener | undefined;
  try {
    const signingKey = await ensureProviderKey(paths.signingKey, log);
    const jwks = publicJwks([signingKey]);

    http = new HttpListener(componentLogger(root, 'http'));
    http.route('GET', JWKS_PATH, (_req, res) => sendJson(res, 200, jwks));
    http.route('GET', HEALTH_PATH, (_req, res) =>
      sendJson(res, 200, {
        status: 'ok',
        version: VERSION,
        puppets: store.puppets.list().length,
        outbox_queued: store.outbox.countQueued(),
      }),
    );
    const address = await http.listen(config.bridge.http.host, config.bridge.http.port);

    const publicUrl = config.bridge.http.public_url ?? `http://${address.address}:${address.port}`;
    log.info(
      {
        version: VERSION,
        config: loaded.source,
        database: paths.database,
        schema_version: store.schemaVersion(),
        provider_id: config.bridge.provider_id,
        puppets: store.puppets.list().length,
        http: `${address.address}:${address.port}`,
        jwks_url: `${publicUrl.replace(/\/$/, '')}${JWKS_PATH}`,
        gateway: config.gateway.root_key
          ? `${config.gateway.host}:${config.gateway.port}`
          : 'not configured (gateway.root_key unset)',
        matrix: config.matrix.enabled ? config.matrix.homeserver_url : 'disabled',
        xmpp: config.xmpp.enabled
          ? `${config.xmpp.component_domain} via ${config.xmpp.server_host}:${config.xmpp.server_port}`
          : 'disabled',
      },
      'interop-bridge started',
    );

    const listener = http;
    return {
      store,
      http: address,
      async stop() {
        log.info('stopping: no new work accepted');
        await listener.close();
        store.close();
        log.info('stopped: database closed');
      },
    };
  } catch (err) {
    await http?.close();
    store.close();
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
  writeProviderKey(file, jwk);
  log.info({ file, kid: jwk.kid }, 'created the provider signing key');
  return jwk;
}
