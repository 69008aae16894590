/**
 * Starting the Matrix adapter: the homeserver checks (`/versions`, `whoami` as the bot, the
 * appservice ping), the appservice listener, and the adapter attached to the bridge core. Each
 * failed check says exactly what is wrong and what to do.
 */
import type { Bridge } from '../../src/bridge/core.js';
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/observability/logger.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { MatrixAdapter } from './adapter.js';
import { AppserviceListener } from './appservice.js';
import { describeFailure, RetryingMatrixClient, routeSdkLogs, type RetryPolicy } from './client.js';
import { MatrixAdapterError } from './errors.js';
import { APPSERVICE_ID } from './registration.js';

export { MatrixAdapter } from './adapter.js';
export { MatrixAdapterError } from './errors.js';
export { MatrixStore } from './store.js';
export { withRetry, RetryingMatrixClient } from './client.js';
export type { RetryPolicy } from './client.js';

export interface StartMatrixAdapterOptions {
  readonly config: Config;
  readonly bridge: Bridge;
  readonly store: SqliteStore;
  readonly logger?: Logger | undefined;
  /** The bridge's data directory (`bridge.data_dir`): local users' files wait under matrix-media/. */
  readonly dataDir: string;
  /** Skip the appservice ping (homeservers before Matrix 1.7 lack it). Default false. */
  readonly skipPing?: boolean;
}

export interface RunningMatrixAdapter {
  readonly adapter: MatrixAdapter;
  /** Where the appservice listener is bound. */
  readonly address: { address: string; port: number };
  /** Stops the listener, lets in-flight work finish. The bridge core is stopped by its owner. */
  stop(): Promise<void>;
}

/** Matrix versions that have the authenticated media endpoints the adapter uses. */
const AUTHENTICATED_MEDIA = /^v1\.(1[1-9]|[2-9][0-9])$/;

/**
 * Checks the homeserver, listens for it, attaches the adapter to `bridge` and starts handling
 * transactions (including those recorded before a restart). Call before `bridge.start()` so
 * pending incoming messages find the adapter.
 */
export async function startMatrixAdapter(options: StartMatrixAdapterOptions): Promise<RunningMatrixAdapter> {
  const { config } = options;
  const m = config.matrix;
  const log = options.logger?.child({ component: 'matrix' });
  routeSdkLogs(log);
  if (m.as_token === undefined || m.hs_token === undefined) {
    throw new MatrixAdapterError(
      'matrix_no_tokens',
      'matrix.as_token and matrix.hs_token (or their _file forms) must be set: run "interop-bridge generate-registration" and install the registration on the homeserver',
    );
  }
  const retry: RetryPolicy = {
    maxAttempts: m.client_retry.max_attempts,
    initialDelayMs: m.client_retry.initial_delay_ms,
    maxDelayMs: m.client_retry.max_delay_ms,
  };
  // Startup checks fail fast: a couple of attempts, not the patient policy of normal operation.
  const checker = new RetryingMatrixClient(
    m.homeserver_url,
    m.as_token,
    { maxAttempts: 2, initialDelayMs: 200, maxDelayMs: 1000 },
    log,
  );
  // /versions needs no token: asked without one, so a wrong token is reported by whoami instead.
  await checkVersions(
    new RetryingMatrixClient(
      m.homeserver_url,
      '',
      { maxAttempts: 2, initialDelayMs: 200, maxDelayMs: 1000 },
      log,
    ),
    m.homeserver_url,
    log,
  );
  await checkWhoami(checker, `@${m.bot_localpart}:${m.server_name}`, m.homeserver_url);

  const adapter = new MatrixAdapter({
    config: m,
    store: options.store,
    dataDir: options.dataDir,
    maxMediaBytes: config.media.max_bytes,
    retry,
    logger: log,
  });
  const listener = new AppserviceListener(
    m.hs_token,
    {
      recordTransaction: (txnId, events) => adapter.mstore.recordTransaction(txnId, events),
      afterTransaction: (typing) => {
        adapter.handleTyping(typing);
        adapter.kick();
      },
      queryUser: (userId) => adapter.queryUser(userId),
    },
    log,
  );
  const address = await listener.listen(m.listen_host, m.listen_port);
  try {
    if (options.skipPing !== true) await checkPing(checker, m.listen_host, address.port);
  } catch (err) {
    await listener.close();
    throw err;
  }
  options.bridge.attach(adapter);
  await adapter.start();
  log?.info(
    { homeserver: m.homeserver_url, bot: adapter.botUserId, listen: `${address.address}:${address.port}` },
    'Matrix adapter started',
  );
  return {
    adapter,
    address: { address: address.address, port: address.port },
    async stop() {
      await listener.close();
      await adapter.stop();
    },
  };
}

/** One step of `checkHomeserver`, for `interop-bridge doctor`. */
export interface HomeserverCheck {
  readonly step: 'versions' | 'whoami' | 'ping';
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * The startup checks as a report, for `interop-bridge doctor`: `/versions`, `whoami` as the bot,
 * and the appservice ping (the homeserver calls the bridge back). When the bridge is not running,
 * a temporary listener answers the ping on `matrix.listen_host:listen_port` and refuses any
 * transaction (the homeserver keeps it for the bridge); when the port is taken, the running bridge
 * answers. Stops at the first failing step.
 */
export async function checkHomeserver(config: Config): Promise<HomeserverCheck[]> {
  const m = config.matrix;
  routeSdkLogs(undefined); // matrix-bot-sdk logs failed calls to the console: the report says it all
  const quick: RetryPolicy = { maxAttempts: 1, initialDelayMs: 100, maxDelayMs: 100 };
  const results: HomeserverCheck[] = [];
  const step = async (name: HomeserverCheck['step'], run: () => Promise<string>): Promise<boolean> => {
    try {
      results.push({ step: name, ok: true, detail: await run() });
      return true;
    } catch (err) {
      results.push({ step: name, ok: false, detail: (err as Error).message });
      return false;
    }
  };
  if (m.as_token === undefined || m.hs_token === undefined) {
    return [{ step: 'whoami', ok: false, detail: 'matrix.as_token and matrix.hs_token are not set' }];
  }
  const asToken = m.as_token;
  const hsToken = m.hs_token;
  const bot = `@${m.bot_localpart}:${m.server_name}`;
  if (
    !(await step('versions', async () => {
      await checkVersions(new RetryingMatrixClient(m.homeserver_url, '', quick), m.homeserver_url, undefined);
      return `${m.homeserver_url} is a Matrix homeserver`;
    }))
  )
    return results;
  const client = new RetryingMatrixClient(m.homeserver_url, asToken, quick);
  if (
    !(await step('whoami', async () => {
      await checkWhoami(client, bot, m.homeserver_url);
      return `the homeserver knows the registration: as_token belongs to ${bot}`;
    }))
  )
    return results;
  await step('ping', async () => {
    const listener = new AppserviceListener(hsToken, {
      recordTransaction: () => {
        throw new Error('interop-bridge doctor does not take transactions: the bridge will');
      },
      afterTransaction: () => undefined,
      queryUser: () => Promise.resolve(false),
    });
    let own = true;
    try {
      await listener.listen(m.listen_host, m.listen_port);
    } catch {
      own = false; // the port is taken: the running bridge answers the ping
    }
    try {
      await checkPing(client, m.listen_host, m.listen_port);
    } finally {
      if (own) await listener.close();
    }
    return `the homeserver reached the bridge at http://${m.listen_host}:${m.listen_port}${own ? '' : ' (the running bridge answered)'}`;
  });
  return results;
}

function reasonOf(err: unknown): string {
  const f = describeFailure(err);
  if (f.errcode !== undefined) return `${f.status ?? ''} ${f.errcode}`.trim();
  if (f.status !== undefined) return `HTTP ${f.status}`;
  const e = (err as { cause?: unknown }).cause ?? err;
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message ?? String(e);
}

async function checkVersions(
  client: RetryingMatrixClient,
  url: string,
  log: Logger | undefined,
): Promise<void> {
  let versions: unknown;
  try {
    versions = ((await client.doRequest('GET', '/_matrix/client/versions')) as { versions?: unknown })
      .versions;
  } catch (err) {
    throw new MatrixAdapterError(
      'matrix_homeserver_unreachable',
      `cannot reach the homeserver at ${url} (${reasonOf(err)}): check matrix.homeserver_url and that the homeserver is running`,
      { cause: err },
    );
  }
  if (!Array.isArray(versions) || versions.length === 0) {
    throw new MatrixAdapterError(
      'matrix_not_a_homeserver',
      `${url}/_matrix/client/versions did not list any Matrix version: is matrix.homeserver_url the client-server API of a Matrix homeserver?`,
    );
  }
  if (!versions.some((v) => typeof v === 'string' && AUTHENTICATED_MEDIA.test(v))) {
    log?.warn(
      { versions },
      'the homeserver does not advertise Matrix 1.11 or later: authenticated media may be missing, and files may fail to bridge',
    );
  }
}

async function checkWhoami(client: RetryingMatrixClient, bot: string, url: string): Promise<void> {
  let userId: unknown;
  try {
    userId = ((await client.doRequest('GET', '/_matrix/client/v3/account/whoami')) as { user_id?: unknown })
      .user_id;
  } catch (err) {
    const f = describeFailure(err);
    if (f.status === 401 || f.status === 403) {
      throw new MatrixAdapterError(
        'matrix_as_token_rejected',
        `the homeserver at ${url} does not accept matrix.as_token (${reasonOf(err)}): install the registration file on the homeserver (Synapse: app_service_config_files), restart it, and make sure the bridge reads the same as_token`,
        { cause: err },
      );
    }
    throw new MatrixAdapterError(
      'matrix_whoami_failed',
      `asking the homeserver who the bridge bot is failed (${reasonOf(err)}): check the homeserver's logs`,
      { cause: err },
    );
  }
  if (userId !== bot) {
    throw new MatrixAdapterError(
      'matrix_bot_mismatch',
      `the homeserver says the as_token belongs to ${String(userId)}, but the bridge expects ${bot}: matrix.bot_localpart and matrix.server_name must match the registration's sender_localpart and the homeserver's server name`,
    );
  }
}

async function checkPing(client: RetryingMatrixClient, host: string, port: number): Promise<void> {
  try {
    await client.doRequest('POST', `/_matrix/client/v1/appservice/${APPSERVICE_ID}/ping`, null, {
      transaction_id: `startup-${Date.now()}`,
    });
  } catch (err) {
    const f = describeFailure(err);
    const where = `http://${host}:${port}`;
    const what: Record<string, string> = {
      M_URL_NOT_SET: `the registration on the homeserver has no url: set it to ${where} and restart the homeserver`,
      M_CONNECTION_FAILED: `the homeserver cannot connect to the bridge: the registration's url must reach ${where} from the homeserver (matrix.listen_host/listen_port)`,
      M_CONNECTION_TIMEOUT: `the homeserver's ping to the bridge timed out: check the network between them (the bridge listens on ${where})`,
      M_BAD_STATUS: `the bridge's listener answered the homeserver's ping with an error: the hs_token in the homeserver's registration and matrix.hs_token differ`,
      M_FORBIDDEN: `the registration's id is not "${APPSERVICE_ID}": regenerate it with "interop-bridge generate-registration"`,
    };
    throw new MatrixAdapterError(
      'matrix_ping_failed',
      `the appservice ping failed (${reasonOf(err)}): ${what[f.errcode ?? ''] ?? 'check the homeserver logs'}`,
      { cause: err },
    );
  }
}
