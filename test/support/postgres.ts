/**
 * A real PostgreSQL server for tests: the Debian package's binaries (`postgresql`, installed by
 * scripts/install-system-deps.sh), one server per test file, a fresh database per test.
 *
 * - initdb and postgres refuse to run as root, and the tests run as root (CI, the developers'
 *   machines): the server runs as an unprivileged user, `postgres` (the Debian package creates it)
 *   or else `nobody`, through spawn's `uid`/`gid`, on a data directory chowned to that user inside
 *   a fresh temporary directory. Not root: it runs as the current user.
 * - It listens on 127.0.0.1 on a free port and on a unix socket in the same temporary directory,
 *   with `trust` authentication for the role `bridge` (a superuser: tests create databases), and
 *   durability off (fsync, synchronous_commit, full_page_writes): the tests are about behaviour.
 *   `startPostgres({ durable: true })` (the end-to-end benchmark) leaves every setting at
 *   PostgreSQL's default instead, durability on, as an operator runs it.
 * - `createDatabase()` makes a new database (`CREATE DATABASE ... TEMPLATE template0`) and returns
 *   its URL, so every test starts empty.
 * - Missing binaries fail the test with a message naming the install script: nothing is skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

export interface PostgresServer {
  /** The server's root URL (database `postgres`). */
  readonly url: string;
  readonly port: number;
  /** The unix socket directory. */
  readonly socketDir: string;
  /** The postmaster's process id (its backends are its children), for CPU accounting. */
  readonly pid: number | undefined;
  /** A new empty database; returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** The server's output so far, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

const ROLE = 'bridge';

/** The directory of initdb and postgres: `PG_BIN`, or the newest /usr/lib/postgresql/<v>/bin. */
export function postgresBinDir(): string {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv) return fromEnv;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) {
    throw new Error(
      'PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/<version>/bin: ' +
        'run scripts/install-system-deps.sh (it installs the Debian package postgresql), or set PG_BIN',
    );
  }
  return path.join(root, versions[0]!, 'bin');
}

/** The unprivileged account the server runs as when the tests run as root. */
function serverAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const fields = passwd.find((l) => l.startsWith(`${name}:`))?.split(':');
    if (fields) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error(
    'the tests run as root and there is neither a postgres nor a nobody user to run PostgreSQL as',
  );
}

function run(
  bin: string,
  args: string[],
  account: { uid: number; gid: number } | undefined,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...account, stdio: ['ignore', 'pipe', 'pipe'], env: pgEnv() });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${path.basename(bin)} failed (${code}):\n${out}`)),
    );
  });
}

const pgEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, LANG: 'C', LC_ALL: 'C' });

async function ready(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}):\n${log()}`);
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      await c.end();
      return;
    } catch (err) {
      await c.end().catch(() => undefined);
      if (Date.now() > deadline) {
        throw new Error(`postgres did not accept connections: ${String(err)}\n${log()}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export interface PostgresOptions {
  /**
   * PostgreSQL's default settings (fsync, synchronous_commit and full_page_writes on,
   * shared_buffers and max_connections at their defaults), as in production: for measurements.
   * Default false: durability off, for the tests' speed.
   */
  durable?: boolean;
}

/** The settings the tests run with (durability off), unless `durable`. */
const TEST_SETTINGS = [
  'fsync=off',
  'synchronous_commit=off',
  'full_page_writes=off',
  'max_connections=200',
  'shared_buffers=32MB',
];

/** Starts a server in a fresh temporary directory; `stop()` it in afterAll. */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const account = serverAccount();
  const dir = mkdtempSync(path.join(tmpdir(), 'interop-bridge-pg-'));
  const data = path.join(dir, 'data');
  const socketDir = path.join(dir, 'socket');
  mkdirSync(socketDir);
  if (account) {
    chownSync(dir, account.uid, account.gid);
    chownSync(socketDir, account.uid, account.gid);
  }
  let output = '';
  let child: ChildProcess | undefined;
  const kill = () => child?.exitCode === null && child.kill('SIGQUIT');
  try {
    await run(
      path.join(bin, 'initdb'),
      // --no-sync: initdb's own final flush only (not timed, not the server's durability).
      ['-D', data, '-U', ROLE, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      account,
    );
    const port = await freePort();
    child = spawn(
      path.join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        socketDir,
        '-h',
        '127.0.0.1',
        ...(options.durable ? [] : TEST_SETTINGS.flatMap((setting) => ['-c', setting])),
      ],
      { ...account, stdio: ['ignore', 'pipe', 'pipe'], env: pgEnv() },
    );
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    process.once('exit', kill);
    const url = `postgres://${ROLE}@127.0.0.1:${port}/postgres`;
    await ready(url, child, () => output);
    let n = 0;
    const server = child;
    return {
      url,
      port,
      socketDir,
      pid: server.pid,
      async createDatabase(name = `t${process.pid}_${++n}`) {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          await c.query(`CREATE DATABASE "${name}" TEMPLATE template0`);
        } finally {
          await c.end();
        }
        return `postgres://${ROLE}@127.0.0.1:${port}/${name}`;
      },
      log: () => output,
      async stop() {
        process.off('exit', kill);
        if (server.exitCode === null) {
          const exited = new Promise((r) => server.once('exit', r));
          server.kill('SIGINT'); // fast shutdown: disconnects clients, then exits
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * One server for the calling test file: started before its first test, stopped after its last.
 * Returns a getter (the server exists only once beforeAll ran).
 */
export function usePostgres(): () => PostgresServer {
  // Jest's hooks, as globals: this file is also built (and imported by the benchmarks) without Jest.
  const jest = globalThis as unknown as {
    beforeAll(fn: () => Promise<unknown>): void;
    afterAll(fn: () => Promise<unknown> | undefined): void;
  };
  let server: PostgresServer | undefined;
  jest.beforeAll(async () => (server = await startPostgres()));
  jest.afterAll(() => server?.stop());
  return () => {
    if (server === undefined) throw new Error('PostgreSQL did not start (see beforeAll)');
    return server;
  };
}
