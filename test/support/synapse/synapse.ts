/**
 * A real Synapse for the Matrix tests: started on loopback from the virtual environment that
 * scripts/install-synapse.sh makes (.synapse/ in the checkout), with a generated homeserver.yaml
 * (SQLite, the bridge's registration in `app_service_config_files`, rate limits left at Synapse's
 * defaults), restartable and killable on the same data, and test users registered through the
 * shared registration secret as an operator's `register_new_matrix_user` does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { freePort } from '../wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The checkout's root, from test/support/synapse or dist/test/support/synapse. */
const root = [path.resolve(here, '../../..'), path.resolve(here, '../../../..')].find((d) =>
  existsSync(path.join(d, 'package.json')),
)!;

/** The Python of Synapse's virtual environment, or a clear error naming the install script. */
export function synapsePython(): string {
  const python = process.env['SYNAPSE_PYTHON'] ?? path.join(root, '.synapse/bin/python');
  if (!existsSync(python)) {
    throw new Error(
      `Synapse is not installed (no ${python}): run scripts/install-synapse.sh (npm test's set-up does)`,
    );
  }
  return python;
}

export interface SynapseOptions {
  /** Where the homeserver keeps its config, database, media and log. */
  readonly dir: string;
  readonly serverName?: string;
  /** Registration files (YAML) of the application services to load. */
  readonly appserviceFiles?: readonly string[];
  /** Extra homeserver.yaml settings, merged over the generated ones. */
  readonly extra?: Record<string, unknown>;
}

export interface RegisteredUser {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
  readonly password: string;
}

/** The rest of a homeserver.yaml for a small server on loopback (what `generate-config` would write). */
export function homeserverConfig(
  dir: string,
  serverName: string,
  port: number,
  secret: string,
): Record<string, unknown> {
  return {
    server_name: serverName,
    public_baseurl: `http://127.0.0.1:${port}/`,
    pid_file: path.join(dir, 'homeserver.pid'),
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
    database: { name: 'sqlite3', args: { database: path.join(dir, 'homeserver.db') } },
    log_config: path.join(dir, 'log.config'),
    media_store_path: path.join(dir, 'media_store'),
    signing_key_path: path.join(dir, 'signing.key'),
    registration_shared_secret: secret,
    macaroon_secret_key: randomBytes(24).toString('hex'),
    form_secret: randomBytes(24).toString('hex'),
    report_stats: false,
    enable_registration: false,
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    // The tests' users are clients driven faster than people type: Synapse's default limits
    // (0.2 messages a second after a burst of 10) would have them wait seconds on 429s. The bridge's
    // own users are the appservice's, exempt as the documented registration makes them.
    rc_message: { per_second: 1000, burst_count: 1000 },
  };
}

/**
 * The `homeserver.yaml` settings docs/MATRIX.md gives operators (the YAML block after its
 * `synapse-config` marker): the tests run Synapse with exactly these, so the documented snippet is
 * the tested one.
 */
export function documentedSynapseConfig(): Record<string, unknown> {
  const doc = readFileSync(path.join(root, 'docs/MATRIX.md'), 'utf8');
  const m = /<!-- synapse-config:[^>]*-->\s*```yaml\n([\s\S]*?)```/.exec(doc);
  if (m === null) throw new Error('docs/MATRIX.md has no synapse-config block');
  const text = m[1]!.replace(/^ {3}/gm, '');
  return parse(text) as Record<string, unknown>;
}

/** Synapse's signing key file: `ed25519 <version> <unpadded base64 seed>`. */
function signingKey(): string {
  const { privateKey } = generateKeyPairSync('ed25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = der.subarray(der.length - 32);
  return `ed25519 a_test ${seed.toString('base64').replace(/=+$/, '')}\n`;
}

const LOG_CONFIG = (file: string) =>
  stringify({
    version: 1,
    formatters: { precise: { format: '%(asctime)s %(levelname)s %(name)s %(message)s' } },
    handlers: { file: { class: 'logging.FileHandler', formatter: 'precise', filename: file } },
    loggers: { synapse: { level: process.env['SYNAPSE_LOG'] ?? 'WARNING' } },
    root: { level: process.env['SYNAPSE_LOG'] ?? 'WARNING', handlers: ['file'] },
    disable_existing_loggers: false,
  });

export class Synapse {
  readonly serverName: string;
  readonly dir: string;
  readonly port: number;
  private readonly secret: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private users = 0;

  private constructor(dir: string, serverName: string, port: number, secret: string) {
    this.dir = dir;
    this.serverName = serverName;
    this.port = port;
    this.secret = secret;
  }

  static async start(options: SynapseOptions): Promise<Synapse> {
    const serverName = options.serverName ?? 'example.test';
    mkdirSync(options.dir, { recursive: true });
    const port = await freePort();
    const secret = randomBytes(24).toString('hex');
    const config = {
      ...homeserverConfig(options.dir, serverName, port, secret),
      ...documentedSynapseConfig(),
      app_service_config_files: [...(options.appserviceFiles ?? [])],
      ...options.extra,
    };
    writeFileSync(path.join(options.dir, 'homeserver.yaml'), stringify(config), { mode: 0o600 });
    writeFileSync(path.join(options.dir, 'signing.key'), signingKey(), { mode: 0o600 });
    writeFileSync(path.join(options.dir, 'log.config'), LOG_CONFIG(path.join(options.dir, 'homeserver.log')));
    const synapse = new Synapse(options.dir, serverName, port, secret);
    await synapse.launch();
    return synapse;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get configFile(): string {
    return path.join(this.dir, 'homeserver.yaml');
  }

  /** The homeserver's own log (WARNING and above; SYNAPSE_LOG=INFO for more). */
  log(): string {
    const file = path.join(this.dir, 'homeserver.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  private async launch(): Promise<void> {
    const child = spawn(synapsePython(), ['-m', 'synapse.app.homeserver', '-c', this.configFile], {
      cwd: this.dir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`Synapse exited at start (${child.exitCode}): ${stderr}\n${this.log().slice(-2000)}`);
      }
      try {
        const res = await fetch(`${this.url}/health`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`Synapse did not answer /health within 60 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops Synapse (SIGTERM, as systemd does) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
  }

  /** Ends Synapse at once (SIGKILL): what it had not written is lost, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    child.kill('SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  /** Starts Synapse again on the same port and data, after a `stop` or a `kill`. */
  async relaunch(): Promise<void> {
    if (this.child !== undefined) throw new Error('Synapse is running: stop or kill it first');
    await this.launch();
  }

  /** Stops and starts Synapse again on the same port and data. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async close(): Promise<void> {
    await this.stop();
  }

  /**
   * Registers a user through the shared registration secret (`/_synapse/admin/v1/register`, the
   * way `register_new_matrix_user` does). Localparts get a suffix unique to this server, so tests
   * sharing one Synapse never meet each other's users.
   */
  async registerUser(
    localpart: string,
    options: { admin?: boolean; exact?: boolean } = {},
  ): Promise<RegisteredUser> {
    const username = options.exact === true ? localpart : `${localpart}-${++this.users}`;
    const password = randomBytes(12).toString('hex');
    const endpoint = `${this.url}/_synapse/admin/v1/register`;
    const { nonce } = (await (await fetch(endpoint)).json()) as { nonce: string };
    const admin = options.admin === true;
    const mac = createHmac('sha1', this.secret)
      .update(`${nonce}\0${username}\0${password}\0${admin ? 'admin' : 'notadmin'}`)
      .digest('hex');
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nonce, username, password, admin, mac }),
    });
    const body = (await res.json()) as Record<string, string>;
    if (!res.ok) throw new Error(`registering ${username} failed: ${res.status} ${JSON.stringify(body)}`);
    return {
      userId: body['user_id']!,
      accessToken: body['access_token']!,
      deviceId: body['device_id']!,
      password,
    };
  }
}
