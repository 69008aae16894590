/**
 * The homeserver checks, each failure saying exactly what is wrong and what to do: `/versions`,
 * `whoami` as the bot, and the appservice ping (the homeserver calls the bridge back). The adapter
 * runs them at start; `interop-bridge doctor` runs them as a report (`checkHomeserver`).
 */
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/observability/logger.js';
import { AppserviceListener } from './appservice.js';
import { describeFailure, RetryingMatrixClient, routeSdkLogs, type RetryPolicy } from './client.js';
import { MatrixAdapterError } from './errors.js';
import { APPSERVICE_ID } from './registration.js';

/** Matrix versions that have the authenticated media endpoints the adapter uses. */
const AUTHENTICATED_MEDIA = /^v1\.(1[1-9]|[2-9][0-9])$/;

/** One step of `checkHomeserver`, for `interop-bridge doctor`. */
export interface HomeserverCheck {
  readonly step: 'versions' | 'whoami' | 'namespace' | 'ping';
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
  await step('namespace', async () => {
    // A ghost's localpart nobody else may take: a homeserver that holds the registration's
    // namespace as exclusive refuses it (Synapse: 400 M_EXCLUSIVE) even before it exists.
    const probe = `${m.ghost_localpart_prefix}0`;
    const res = await fetch(
      `${m.homeserver_url.replace(/\/$/, '')}/_matrix/client/v3/register/available?username=${encodeURIComponent(probe)}`,
    );
    const body = (await res.json().catch(() => ({}))) as { errcode?: string; available?: boolean };
    if (body.errcode === 'M_EXCLUSIVE' || body.errcode === 'M_USER_IN_USE') {
      return `@${probe}:${m.server_name} is reserved for the bridge (its namespace is exclusive)`;
    }
    if (res.ok && body.available === true) {
      throw new Error(
        `the homeserver would let anyone register @${probe}:${m.server_name}: the ghosts' namespace is not exclusive in the registration it loaded`,
      );
    }
    if (res.status === 403) {
      return "not checked live: registration is closed on the homeserver, so nobody can take a ghost's name by registering";
    }
    return `not checked: the homeserver answered ${res.status} ${body.errcode ?? ''}`.trim();
  });
  await step('ping', async () => {
    const listener = new AppserviceListener(hsToken, {
      recordTransaction: () =>
        Promise.reject(new Error('interop-bridge doctor does not take transactions: the bridge will')),
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
      await checkPing(client, m.listen_host, m.listen_port, own ? (id) => listener.heardPing(id) : undefined);
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

/** `/versions`: a Matrix homeserver, with a warning when it lacks authenticated media. */
export async function checkVersions(
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

/** `whoami` with the as_token: the homeserver knows the registration, and its bot is ours. */
export async function checkWhoami(client: RetryingMatrixClient, bot: string, url: string): Promise<void> {
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

/**
 * A ping asked for after the listener refused a transaction (txn-gaps.ts): a successful ping makes
 * Synapse retry its unsent transactions at once.
 */
export async function nudgeRecovery(client: RetryingMatrixClient): Promise<void> {
  await client.doRequest('POST', `/_matrix/client/v1/appservice/${APPSERVICE_ID}/ping`, null, {
    transaction_id: `recover-${Date.now()}`,
  });
}

/** The appservice ping: the homeserver reaches the bridge's listener with the right hs_token. */
export async function checkPing(
  client: RetryingMatrixClient,
  host: string,
  port: number,
  heard?: (transactionId: string) => boolean,
  log?: Logger,
): Promise<void> {
  const transactionId = `startup-${Date.now()}`;
  try {
    await client.doRequest('POST', `/_matrix/client/v1/appservice/${APPSERVICE_ID}/ping`, null, {
      transaction_id: transactionId,
    });
  } catch (err) {
    // The ping did reach the bridge, so the path works; the homeserver answered an error anyway
    // (Synapse does when its own retry of the appservice fires at the same moment: 502).
    if (heard?.(transactionId)) {
      log?.warn(
        { err: reasonOf(err) },
        'the homeserver reported the appservice ping as failed, but it reached the bridge: starting',
      );
      return;
    }
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
