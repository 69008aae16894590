/**
 * The XMPP adapter's factory for the wiring in app/ (an `AdapterFactory`): checks the config and
 * builds the component link, the file publisher and the adapter, without I/O. Then, as for every
 * adapter: `bridge.attach(adapter)`, `await adapter.start()`.
 */
import path from 'node:path';
import type { AdapterContext, AdapterFactory } from '../../src/bridge/adapter.js';
import { InteropError } from '../../src/errors.js';
import { componentLogger } from '../../src/observability/logger.js';
import { XmppAdapter } from './adapter.js';
import { ComponentLink } from './component.js';
import { OwnFilePublisher, UploadSlotPublisher, type FilePublisher } from './media.js';
import type { XmppStore } from './store.js';
import type { AdapterDatabase } from '../../src/store/sql.js';
import { PostgresXmppStore } from './postgres-store.js';
import { SqliteXmppStore } from './sqlite-store.js';

export { XmppAdapter, type XmppAdapterEvents } from './adapter.js';
export { ComponentLink } from './component.js';
export { SqliteXmppStore } from './sqlite-store.js';
export { PostgresXmppStore } from './postgres-store.js';
export { xmppMigrations } from './rows.js';
export type { XmppContact, XmppStore } from './store.js';

/** Component link timings that are no config keys; tests shorten them. */
export interface XmppLinkTimings {
  readonly keepaliveMs?: number;
  readonly pingTimeoutMs?: number;
  /** Default: `gateway.reconnect`. */
  readonly reconnect?: { initialDelayMs: number; maxDelayMs: number };
}

/**
 * Makes the XMPP adapter. Throws `xmpp_secret_missing` without a component secret. Files go under
 * `dataDir`, sealed with the context's at-rest key: downloads in xmpp-downloads/ (until sent), and
 * (without `xmpp.upload_service`, when the context has an HTTP listener) the files it serves in
 * xmpp-files/ (for `xmpp.served_file_lifetime_hours`).
 */
export const createXmppAdapter = ((
  context: AdapterContext,
  store: XmppStore,
  timings: XmppLinkTimings = {},
): XmppAdapter => {
  const { config } = context;
  const x = config.xmpp;
  if (x.secret === undefined) {
    throw new InteropError(
      'xmpp_secret_missing',
      'xmpp.secret is not set: give the component secret (or xmpp.secret_file) that the XMPP server has for the component',
    );
  }
  const log = componentLogger(context.logger, 'xmpp');
  const link = new ComponentLink({
    host: x.server_host,
    port: x.server_port,
    domain: x.component_domain,
    secret: x.secret,
    reconnect: timings.reconnect ?? {
      initialDelayMs: config.gateway.reconnect.initial_delay_ms,
      maxDelayMs: config.gateway.reconnect.max_delay_ms,
    },
    ...(timings.keepaliveMs !== undefined ? { keepaliveMs: timings.keepaliveMs } : {}),
    ...(timings.pingTimeoutMs !== undefined ? { pingTimeoutMs: timings.pingTimeoutMs } : {}),
  });
  link.on('offline', (cause) => log.warn({ err: cause?.message }, 'XMPP component link down: reconnecting'));
  link.on('online', () => log.info({ domain: x.component_domain }, 'XMPP component link up'));
  link.on('failure', (err) => log.warn({ err: err.message }, 'XMPP component reconnect refused'));

  let publisher: FilePublisher | undefined;
  let ownFiles: { publisher: OwnFilePublisher; http: NonNullable<AdapterContext['http']> } | undefined;
  if (x.upload_service) {
    publisher = new UploadSlotPublisher(link, x.upload_service);
  } else if (context.http && context.publicUrl) {
    const own = new OwnFilePublisher(
      path.join(context.dataDir, 'xmpp-files'),
      context.publicUrl,
      x.served_file_lifetime_hours * 3_600_000,
      context.sealer,
    );
    ownFiles = { publisher: own, http: context.http };
    publisher = own;
  }
  return new XmppAdapter({
    link,
    store,
    domain: x.component_domain,
    name: x.name,
    maxMediaBytes: config.media.max_bytes,
    allowedFetchHosts: config.media.allowed_fetch_hosts,
    allowedDomains: allowedDomainsOf(x.allowed_domains, x.component_domain),
    admins: x.admins,
    publisher,
    ownFiles,
    downloadDir: path.join(context.dataDir, 'xmpp-downloads'),
    sealer: context.sealer,
    vault: context.vault,
    downloadRetentionMs: (config.bridge.queue_max_age_hours + 24) * 3_600_000,
    logger: log,
  });
}) satisfies AdapterFactory<XmppStore, XmppAdapter>;

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

/** The XMPP adapter's store on the bridge's database, whichever backend it is. */
export const openXmppStore = (on: AdapterDatabase, now?: () => number): XmppStore =>
  on.kind === 'sqlite' ? new SqliteXmppStore(on.db, now) : new PostgresXmppStore(on.pg, now);
