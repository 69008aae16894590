/**
 * The XMPP adapter's entry point for the daemon: builds the component link, the adapter and its
 * store on the bridge's database, attaches it to the core, and connects.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Bridge } from '../../src/bridge/core.js';
import type { Config } from '../../src/config/schema.js';
import { InteropError } from '../../src/errors.js';
import type { HttpListener } from '../../src/util/http-listener.js';
import { componentLogger, type Logger } from '../../src/observability/logger.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { XmppAdapter } from './adapter.js';
import { ComponentLink } from './component.js';
import { OwnFilePublisher, UploadSlotPublisher, type FilePublisher } from './media.js';
import { XmppStore } from './store.js';

export { XmppAdapter } from './adapter.js';
export { ComponentLink } from './component.js';
export { XmppStore } from './store.js';

export interface StartXmppAdapterOptions {
  config: Config;
  bridge: Bridge;
  store: SqliteStore;
  logger: Logger;
  /** `bridge.data_dir`: downloads and (without an upload service) hosted files go under it. */
  dataDir: string;
  /** The daemon's listener, which serves files when no XEP-0363 service is configured. */
  http?: HttpListener | undefined;
  /** The listener's public base URL (`bridge.http.public_url` or its address). */
  publicUrl?: string | undefined;
  /** Link timings, for tests; defaults from `gateway.reconnect` and the link's own defaults. */
  link?: {
    keepaliveMs?: number;
    pingTimeoutMs?: number;
    reconnect?: { initialDelayMs: number; maxDelayMs: number };
  };
}

export interface RunningXmppAdapter {
  readonly adapter: XmppAdapter;
  readonly link: ComponentLink;
  /** Closes the component stream; unconfirmed deliveries are retried by the core after a restart. */
  stop(): Promise<void>;
}

/** Files users shared are kept this long after download (the core may send them after a restart). */
const DOWNLOAD_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Delivery records older than this are pruned. */
const DELIVERED_RETENTION_MS = 30 * 24 * 3600 * 1000;

/**
 * Starts the XMPP adapter. Rejects (with `ComponentSecretRefusedError`, `XmppServerUnreachableError`
 * or `ComponentStreamError`) if the first connection to the server fails; later drops reconnect.
 */
export async function startXmppAdapter(opts: StartXmppAdapterOptions): Promise<RunningXmppAdapter> {
  const { config, store } = opts;
  const x = config.xmpp;
  if (x.secret === undefined) {
    throw new InteropError(
      'xmpp_secret_missing',
      'xmpp.secret is not set: give the component secret (or xmpp.secret_file) that the XMPP server has for the component',
    );
  }
  const log = componentLogger(opts.logger, 'xmpp');
  const link = new ComponentLink({
    host: x.server_host,
    port: x.server_port,
    domain: x.component_domain,
    secret: x.secret,
    reconnect: opts.link?.reconnect ?? {
      initialDelayMs: config.gateway.reconnect.initial_delay_ms,
      maxDelayMs: config.gateway.reconnect.max_delay_ms,
    },
    ...(opts.link?.keepaliveMs !== undefined ? { keepaliveMs: opts.link.keepaliveMs } : {}),
    ...(opts.link?.pingTimeoutMs !== undefined ? { pingTimeoutMs: opts.link.pingTimeoutMs } : {}),
  });
  link.on('offline', (cause) => log.warn({ err: cause?.message }, 'XMPP component link down: reconnecting'));
  link.on('online', () => log.info({ domain: x.component_domain }, 'XMPP component link up'));
  link.on('failure', (err) => log.warn({ err: err.message }, 'XMPP component reconnect refused'));

  let publisher: FilePublisher | undefined;
  let own: OwnFilePublisher | undefined;
  if (x.upload_service) {
    publisher = new UploadSlotPublisher(link, x.upload_service);
  } else if (opts.http && opts.publicUrl) {
    own = new OwnFilePublisher(path.join(opts.dataDir, 'xmpp-files'), opts.publicUrl);
    own.mount(opts.http);
    publisher = own;
  }
  const downloadDir = path.join(opts.dataDir, 'xmpp-downloads');
  await mkdir(downloadDir, { recursive: true, mode: 0o700 });
  await sweepDownloads(downloadDir);

  const xstore = new XmppStore(store.db);
  xstore.pruneDelivered(DELIVERED_RETENTION_MS);
  const adapter = new XmppAdapter({
    link,
    store: xstore,
    domain: x.component_domain,
    name: x.name,
    maxMediaBytes: config.media.max_bytes,
    allowedFetchHosts: config.media.allowed_fetch_hosts,
    allowedDomains: allowedDomainsOf(x.allowed_domains, x.component_domain),
    publisher,
    downloadDir,
    registeredUsers: () =>
      store.puppets
        .list()
        .filter((p) => p.network === 'xmpp' && p.state === 'enlisted')
        .map((p) => p.localId),
    logger: log,
  });
  opts.bridge.attach(adapter);
  await adapter.start();
  const sweeper = setInterval(() => void sweepDownloads(downloadDir).catch(() => undefined), 3_600_000);
  sweeper.unref();
  return {
    adapter,
    link,
    async stop() {
      clearInterval(sweeper);
      own?.close();
      await adapter.stop();
    },
  };
}

/**
 * Who may use the gateway: the configured domains; by default the domain the component belongs to
 * (wa.example.org serves example.org), so other servers' users reaching it over s2s cannot enlist
 * puppets. `"*"` lets anyone the server routes to the component in.
 */
export function allowedDomainsOf(configured: readonly string[], componentDomain: string): string[] {
  if (configured.length > 0) return configured.map((d) => d.toLowerCase());
  const dot = componentDomain.indexOf('.');
  return dot > 0 ? [componentDomain.slice(dot + 1).toLowerCase()] : ['*'];
}

async function sweepDownloads(dir: string): Promise<void> {
  const cutoff = Date.now() - DOWNLOAD_RETENTION_MS;
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    const s = await stat(file).catch(() => undefined);
    if (s && s.mtimeMs < cutoff) await rm(file, { recursive: true, force: true });
  }
}
