/**
 * The Matrix demo's own Synapse: the homeserver scripts/install-synapse.sh installs into `.synapse/`
 * in the checkout (or the Python that SYNAPSE_PYTHON names), started in its own process group on
 * loopback from a generated homeserver.yaml (server name `localhost`, SQLite, password login on,
 * registration closed, rate limits at Synapse's defaults, the bridge's registration loaded, the
 * appservice extensions end-to-end encryption needs on, as docs/MATRIX.md gives them), and
 * a local account made through the shared registration secret, as `register_new_matrix_user` does.
 *
 * Its own process group: a Ctrl-C in the terminal reaches the demo only, which stops the bridge
 * first and Synapse after it (SIGTERM to the group, SIGKILL after 10 s).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The checkout: demo/ in the sources, dist/demo/ when built. */
const ROOT =
  [path.resolve(here, '..'), path.resolve(here, '../..')].find((d) =>
    existsSync(path.join(d, 'package.json')),
  ) ?? path.resolve(here, '../..');

const STARTUP_TIMEOUT_MS = 60_000;

/** The Python that runs Synapse: SYNAPSE_PYTHON, or the virtual environment install-synapse.sh makes. */
export function synapsePython(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['SYNAPSE_PYTHON'];
  return configured !== undefined && configured !== ''
    ? configured
    : path.join(ROOT, '.synapse', 'bin', 'python');
}

export class SynapseError extends Error {
  override readonly name = 'SynapseError';
}

export interface DemoSynapse {
  readonly serverName: string;
  /** The homeserver URL a client is given. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Its config, database, media store and log. */
  readonly dir: string;
  readonly logFile: string;
  /** Registers a user through the shared registration secret; returns the user id. */
  register(localpart: string, password: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartSynapseOptions {
  dir: string;
  serverName: string;
  appserviceFiles: readonly string[];
  /** The port to ask for when free (else any free port). */
  preferredPort?: number;
}

export async function startSynapse(o: StartSynapseOptions): Promise<DemoSynapse> {
  const python = synapsePython();
  if (!existsSync(python)) throw new SynapseError(`Synapse is not installed (no ${python})`);
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const preferred = o.preferredPort;
  if (preferred !== undefined && (await portIsFree(preferred))) {
    try {
      return await launch(python, o, preferred);
    } catch (err) {
      // Someone took the port between the check and Synapse's start: any free port will do.
      if (!(err instanceof SynapseError) || (await portIsFree(preferred))) throw err;
    }
  }
  return launch(python, o, await freePort());
}

async function launch(python: string, o: StartSynapseOptions, port: number): Promise<DemoSynapse> {
  const secret = randomBytes(24).toString('hex');
  const configFile = path.join(o.dir, 'homeserver.yaml');
  const logFile = path.join(o.dir, 'homeserver.log');
  const url = `http://127.0.0.1:${port}`;
  // Secrets (registration shared secret, macaroon key, form secret): owner-only.
  writeFileSync(configFile, stringify(homeserverConfig(o, port, secret)), { mode: 0o600 });
  writeFileSync(path.join(o.dir, 'signing.key'), signingKey(), { mode: 0o600 });
  writeFileSync(path.join(o.dir, 'log.config'), logConfig(logFile));

  const out = openSync(path.join(o.dir, 'stderr.log'), 'a');
  let child: ChildProcess;
  try {
    child = spawn(python, ['-m', 'synapse.app.homeserver', '-c', configFile], {
      cwd: o.dir,
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
  } finally {
    closeSync(out);
  }
  const proc = child;
  let exited: string | undefined;
  const gone = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${String(code)}`}`;
      resolve();
    });
    proc.once('error', (err) => {
      exited = `could not be started: ${err.message}`;
      resolve();
    });
  });
  const pid = proc.pid ?? 0;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (exited === undefined && pid !== 0) {
        signalGroup(pid, 'SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, 10_000)))]);
        clearTimeout(timer);
      }
      signalGroup(pid, 'SIGKILL'); // anything it left in its group
      await gone;
    })());
  const tail = () => {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    return `${read(path.join(o.dir, 'stderr.log'))}${read(logFile)}`.slice(-3000);
  };

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (exited !== undefined) throw new SynapseError(`Synapse ${exited} during start-up:\n${tail()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Synapse did not answer ${url}/health within ${STARTUP_TIMEOUT_MS} ms:\n${tail()}`);
    }
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }

  return {
    serverName: o.serverName,
    url,
    port,
    pid,
    dir: o.dir,
    logFile,
    stop,
    register: (localpart, password) => register(url, secret, localpart, password),
  };
}

/** What an operator of a small private server writes, on loopback. */
function homeserverConfig(o: StartSynapseOptions, port: number, secret: string): Record<string, unknown> {
  return {
    server_name: o.serverName,
    public_baseurl: `http://127.0.0.1:${port}/`,
    pid_file: path.join(o.dir, 'homeserver.pid'),
    listeners: [
      {
        port,
        bind_addresses: ['127.0.0.1'],
        type: 'http',
        tls: false,
        x_forwarded: false,
        resources: [{ names: ['client'], compress: false }],
      },
    ],
    database: { name: 'sqlite3', args: { database: path.join(o.dir, 'homeserver.db') } },
    log_config: path.join(o.dir, 'log.config'),
    media_store_path: path.join(o.dir, 'media_store'),
    signing_key_path: path.join(o.dir, 'signing.key'),
    registration_shared_secret: secret,
    macaroon_secret_key: randomBytes(24).toString('hex'),
    form_secret: randomBytes(24).toString('hex'),
    report_stats: false,
    enable_registration: false,
    password_config: { enabled: true },
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    presence: { enabled: true },
    app_service_config_files: [...o.appserviceFiles],
    // For the bridge's encrypted rooms (docs/MATRIX.md's block for homeserver.yaml): to-device
    // events, one-time key counts and device lists in appservice transactions (MSC2409, MSC3202).
    // The bridge's devices without a login (MSC4190) need only its registration's flag.
    experimental_features: {
      msc2409_to_device_messages_enabled: true,
      msc3202_transaction_extensions: true,
    },
  };
}

/** Synapse's signing key file: `ed25519 <version> <unpadded base64 seed>`. */
function signingKey(): string {
  const { privateKey } = generateKeyPairSync('ed25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  return `ed25519 a_demo ${der
    .subarray(der.length - 32)
    .toString('base64')
    .replace(/=+$/, '')}\n`;
}

function logConfig(file: string): string {
  return stringify({
    version: 1,
    formatters: { precise: { format: '%(asctime)s %(levelname)s %(name)s %(message)s' } },
    handlers: { file: { class: 'logging.FileHandler', formatter: 'precise', filename: file } },
    loggers: { synapse: { level: 'WARNING' } },
    root: { level: 'WARNING', handlers: ['file'] },
    disable_existing_loggers: false,
  });
}

/** `/_synapse/admin/v1/register` with the shared secret's HMAC, as `register_new_matrix_user` does. */
async function register(url: string, secret: string, username: string, password: string): Promise<string> {
  const endpoint = `${url}/_synapse/admin/v1/register`;
  const { nonce } = (await (await fetch(endpoint)).json()) as { nonce: string };
  const mac = createHmac('sha1', secret).update(`${nonce}\0${username}\0${password}\0notadmin`).digest('hex');
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ nonce, username, password, admin: false, mac }),
  });
  const body = (await res.json()) as { user_id?: string; access_token?: string };
  if (!res.ok || body.user_id === undefined) {
    throw new Error(`registering ${username} on Synapse failed: ${res.status} ${JSON.stringify(body)}`);
  }
  // The registration's own session is not needed: the user logs in with the password.
  if (body.access_token !== undefined) {
    await fetch(`${url}/_matrix/client/v3/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${body.access_token}` },
    }).catch(() => undefined);
  }
  return body.user_id;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid === 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone
  }
}

export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
