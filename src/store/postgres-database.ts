/**
 * The bridge's database on PostgreSQL (`pg`): a pool for reads, one connection of its own that
 * writes everything in the order it was asked, the numbered migrations in PostgreSQL's dialect
 * (migrations/pg), and the advisory lock that keeps a second bridge process off the database.
 *
 * Writes. Every write goes through one serial queue on one connection, so writes land in the order
 * the process made them, whoever made them (a repository, an atomic unit, the Signal state): a
 * later write never lands before an earlier one it could overwrite, and a foreign key never sees its
 * parent's delete overtaken. Three kinds:
 * - `exec(sql)`: one statement, awaited (the repositories' single writes);
 * - `commit(statements)`: an atomic unit, one transaction, awaited (`Store.atomically`);
 * - `write(sql)`: a loose write (the Signal state's, made synchronously during a ratchet step): it
 *   joins the unit being collected if there is one (`collect`), else a batch that goes out on the
 *   next turn; `settled()` resolves once every write asked so far is durable, and rejects with a
 *   loose write's failure.
 * Reads go to the pool; a read made after an awaited write sees it.
 *
 * Group commit. The writes waiting in the queue when the writer gets to them (units, single
 * statements, loose batches: up to `GROUP_MAX` of them) go in one transaction, so that they share
 * one commit, which is PostgreSQL's flush of its log to disk. Each still resolves only once that
 * commit is done. If anything in the group fails, the group is rolled back and its writes are run
 * again one by one, each as it would have run alone: a failure (a fenced unit, a constraint) is
 * the one write's, never its neighbours'. A group holds its fenced units' lease rows (FOR KEY SHARE,
 * migration 020) until its commit: a change of holder waits for it, the holder's renewal does not.
 */
import pg from 'pg';
import { StoreError } from '../errors.js';
import { readMigrations, type Migration } from './database.js';

export interface Sql {
  readonly text: string;
  readonly values: readonly unknown[];
}
export type Row = Record<string, unknown>;

export const sql = (text: string, ...values: unknown[]): Sql => ({ text, values });

/** A write in the queue: its statements, run as one transaction; resolved with their results. */
interface Unit {
  readonly statements: Sql[];
  resolve(results: pg.QueryResult[]): void;
  reject(err: unknown): void;
}

/** The most writes one commit takes (group commit). */
const GROUP_MAX = 64;

export interface PgConnectOptions {
  /** `postgres://user@host:port/db[?sslmode=...]`. */
  url: string;
  /** From the password file, when the URL has none. */
  password?: string | undefined;
  /** TLS: `disable` (default), `require` (encrypted, not verified), `verify-full` (verified). */
  sslmode?: 'disable' | 'require' | 'verify-full' | undefined;
  /** PEM of the CA to verify the server with (`verify-full`); the system's CAs otherwise. */
  sslRootCert?: string | undefined;
  /** Connections for reads. Default 4. */
  poolSize?: number | undefined;
}

export interface PgOpenOptions extends PgConnectOptions {
  /** The sequence to apply; default the core's own, in PostgreSQL's dialect; false: none. */
  migrations?: readonly Migration[] | false;
}

/** bigint (int8) as a JavaScript number: times in ms, counts, sequence numbers all fit. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text')) as never,
};

/** The core's migrations in PostgreSQL's dialect: the same versions and names as SQLite's. */
export function readPgMigrations(): Migration[] {
  return readMigrations(new URL('./migrations/pg/', import.meta.url).pathname);
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable postgres:// URL)';
  }
}

export function clientConfig(o: PgConnectOptions): pg.ClientConfig {
  const u = new URL(o.url);
  const mode = o.sslmode ?? (u.searchParams.get('sslmode') as PgConnectOptions['sslmode']) ?? 'disable';
  u.searchParams.delete('sslmode');
  const ssl =
    mode === 'disable' || mode === undefined
      ? false
      : mode === 'require'
        ? { rejectUnauthorized: false }
        : { rejectUnauthorized: true, ...(o.sslRootCert ? { ca: o.sslRootCert } : {}) };
  return {
    connectionString: u.toString(),
    ...(o.password !== undefined && !u.password ? { password: o.password } : {}),
    ssl,
    types,
    application_name: 'interop-bridge',
  };
}

/** The advisory lock key of "one bridge process on this database" ('interop-' as 8 bytes). */
const PROCESS_LOCK_KEY = '7598814086052798509';
/** The advisory lock key migrations run under (two `db migrate` at once wait for each other). */
const MIGRATION_LOCK_KEY = '7598814086052798510';

export class PgDatabase {
  private tail: Promise<unknown> = Promise.resolve();
  private loose: Sql[] | undefined;
  /** The writes waiting for the writer, taken together when it gets to them (group commit). */
  private group: Unit[] | undefined;
  private collecting: Sql[] | undefined;
  private looseError: unknown;
  private lockClient: pg.Client | undefined;
  private readonly listeners: pg.Client[] = [];
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly writer: pg.Client,
    private readonly options: PgConnectOptions,
    readonly label: string,
  ) {}

  /** Connects, and applies the pending migrations (refusing a database newer than the code). */
  static async open(options: PgOpenOptions): Promise<PgDatabase> {
    const label = redactUrl(options.url);
    const config = clientConfig(options);
    const writer = new pg.Client(config);
    try {
      await writer.connect();
    } catch (err) {
      await writer.end().catch(() => undefined);
      throw new StoreError(
        'store_open_failed',
        `cannot connect to the database ${label}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    writer.on('error', () => undefined); // reported by the next query on it
    const pool = new pg.Pool({ ...config, max: options.poolSize ?? 4 });
    pool.on('error', () => undefined); // an idle connection lost: the pool replaces it
    const db = new PgDatabase(pool, writer, options, label);
    try {
      if (options.migrations !== false) await db.migrate(options.migrations ?? readPgMigrations());
      return db;
    } catch (err) {
      await db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError(
        'store_open_failed',
        `cannot use the database ${label}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  private async migrate(migrations: readonly Migration[]): Promise<void> {
    const c = this.writer;
    await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await c.query(`CREATE TABLE IF NOT EXISTS schema_version (
        version    integer PRIMARY KEY,
        name       text    NOT NULL,
        applied_at bigint  NOT NULL
      )`);
      const applied = new Set(
        (await c.query<{ version: number }>('SELECT version FROM schema_version')).rows.map((r) => r.version),
      );
      const current = Math.max(0, ...applied);
      const latest = migrations.at(-1)?.version ?? 0;
      if (current > latest) {
        throw new StoreError(
          'store_newer_schema',
          `the database ${this.label} was written by a newer interop-bridge (schema version ${current}; this version knows up to ${latest}): upgrade interop-bridge, or restore a backup taken before the upgrade`,
        );
      }
      for (const m of migrations) {
        if (applied.has(m.version)) continue;
        await c.query('BEGIN');
        try {
          await c.query(m.sql);
          await c.query('INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)', [
            m.version,
            m.name,
            Date.now(),
          ]);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw new StoreError(
            'store_migration_failed',
            `migration ${m.version}_${m.name} failed on ${this.label}: ${(err as Error).message}`,
            { cause: err },
          );
        }
      }
    } finally {
      await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  }

  /**
   * Holds "one bridge process on this database" (`pg_try_advisory_lock` on a connection of its
   * own, kept until `close`, released by the server if the process dies). Refuses at once, saying
   * so, when another process holds it.
   */
  async lockExclusive(): Promise<void> {
    await this.takeProcessLock(
      'pg_try_advisory_lock',
      `the database ${this.label} is in use by another interop-bridge process (it holds the bridge's advisory lock): stop that process first; two processes on one database would connect every puppet twice`,
    );
  }

  /**
   * The workers' side of the same lock (`start --worker`): shared, so any number of workers hold it
   * together (the leases keep them apart), while a process holding it exclusively (one that owns
   * every puppet) keeps them out, and they keep it out.
   */
  async lockShared(): Promise<void> {
    await this.takeProcessLock(
      'pg_try_advisory_lock_shared',
      `the database ${this.label} is in use by an interop-bridge started without --worker (it owns every puppet): stop it before starting workers`,
    );
  }

  private async takeProcessLock(fn: string, refusal: string): Promise<void> {
    if (this.lockClient) return;
    const c = new pg.Client(clientConfig(this.options));
    await c.connect();
    c.on('error', () => undefined);
    const got = (await c.query<{ ok: boolean }>(`SELECT ${fn}($1) AS ok`, [PROCESS_LOCK_KEY])).rows[0]?.ok;
    if (!got) {
      await c.end().catch(() => undefined);
      throw new StoreError('store_in_use', refusal);
    }
    this.lockClient = c;
  }

  /**
   * Calls `onNotify` for every `NOTIFY` on `channel`, on a connection of its own kept until `close`.
   * A hint only: if that connection is lost, notifications stop (callers poll as well).
   */
  async listen(channel: string, onNotify: (payload: string) => void): Promise<void> {
    const c = new pg.Client(clientConfig(this.options));
    await c.connect();
    c.on('error', () => undefined);
    c.on('notification', (n) => {
      if (n.channel === channel) onNotify(n.payload ?? '');
    });
    await c.query(`LISTEN ${c.escapeIdentifier(channel)}`);
    this.listeners.push(c);
  }

  /**
   * The process holding "one bridge process on this database", if one does (for doctor): its
   * backend pid, client address and since when. Needs no lock of its own.
   */
  async lockHolder(): Promise<{ pid: number; client: string; since: Date } | undefined> {
    const key = BigInt(PROCESS_LOCK_KEY);
    const r = await this.queryOne(
      `SELECT a.pid, coalesce(host(a.client_addr), 'local socket') AS client, a.backend_start AS since
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1`,
      [Number(key >> 32n), Number(key & 0xffffffffn)],
    );
    return r && { pid: r.pid as number, client: r.client as string, since: r.since as Date };
  }

  /** This connection's TLS, as the server sees it: undefined when unencrypted. */
  async tls(): Promise<{ version: string; cipher: string } | undefined> {
    const r = await this.queryOne(
      'SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return r?.ssl === true ? { version: r.version as string, cipher: r.cipher as string } : undefined;
  }

  async query(text: string, values: readonly unknown[] = []): Promise<Row[]> {
    return (await this.pool.query(text, values as unknown[])).rows as Row[];
  }

  async queryOne(text: string, values: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.query(text, values))[0];
  }

  /** One statement, after every write asked before it; resolves with its result. */
  async exec(s: Sql): Promise<pg.QueryResult> {
    return (await this.unit([s]))[0]!;
  }

  /** Statements as one transaction, after every write asked before them. */
  async commit(statements: readonly Sql[]): Promise<void> {
    if (statements.length === 0) return this.enqueue(() => Promise.resolve());
    await this.unit([...statements]);
  }

  /** A write into the queue: it joins the group waiting for the writer, or starts the next one. */
  private unit(statements: Sql[]): Promise<pg.QueryResult[]> {
    return new Promise((resolve, reject) => {
      const unit: Unit = { statements, resolve, reject };
      if (this.group && this.group.length < GROUP_MAX && !this.closed) {
        this.loose = undefined; // later loose writes go after this one
        this.group.push(unit);
        return;
      }
      const group = [unit];
      this.enqueue(() => this.runGroup(group)).catch(reject);
      this.group = group; // after enqueue, which closes the group before it
    });
  }

  /** One commit for the group's writes; if any fails, each again on its own. */
  private async runGroup(group: Unit[]): Promise<void> {
    if (this.group === group) this.group = undefined;
    if (this.loose !== undefined && group.some((u) => u.statements === this.loose)) this.loose = undefined;
    if (group.length > 1) {
      const c = this.writer;
      const results: pg.QueryResult[][] = [];
      try {
        await c.query('BEGIN');
        for (const u of group) {
          const mine: pg.QueryResult[] = [];
          for (const s of u.statements) mine.push(await c.query(s.text, s.values as unknown[]));
          results.push(mine);
        }
        await c.query('COMMIT');
        group.forEach((u, i) => u.resolve(results[i]!));
        return;
      } catch {
        await c.query('ROLLBACK').catch(() => undefined);
      }
    }
    for (const u of group) {
      try {
        u.resolve(await this.transaction(u.statements));
      } catch (err) {
        u.reject(err);
      }
    }
  }

  /**
   * `work` as one transaction on the writer, after every write asked before it: its queries (reads
   * and writes) see each other, and it commits when `work` resolves (rolls back if it rejects).
   * For a unit that needs its own results (a count of new rows, the ids it inserted).
   */
  transact<T>(work: (query: (s: Sql) => Promise<pg.QueryResult>) => Promise<T>): Promise<T> {
    return this.enqueue(async () => {
      const c = this.writer;
      await c.query('BEGIN');
      try {
        const result = await work((s) => c.query(s.text, s.values as unknown[]));
        await c.query('COMMIT');
        return result;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** As `commit`, not awaited: a failure is reported by the next `settled()`. */
  commitLoose(statements: readonly Sql[]): void {
    if (statements.length === 0) return;
    this.unit([...statements]).catch((err: unknown) => {
      this.looseError ??= err;
    });
  }

  /**
   * Runs `work` (synchronous) collecting the loose writes it makes, and returns them to commit as
   * one unit; inside another collection, they join that one. Nothing is kept if `work` throws.
   */
  collect(work: () => void): Sql[] {
    if (this.collecting) {
      const outer = this.collecting;
      const mark = outer.length;
      try {
        work();
      } catch (err) {
        outer.length = mark;
        throw err;
      }
      return [];
    }
    const statements: Sql[] = [];
    this.collecting = statements;
    try {
      work();
    } finally {
      this.collecting = undefined;
    }
    return statements;
  }

  /** Whether a unit is being collected (a loose write would join it). */
  get inUnit(): boolean {
    return this.collecting !== undefined;
  }

  /** A loose write: joins the unit being collected, else the next batch (one transaction). */
  write(s: Sql): void {
    if (this.collecting) {
      this.collecting.push(s);
      return;
    }
    if (!this.loose) {
      const batch: Sql[] = [];
      this.unit(batch).catch((err: unknown) => {
        this.looseError ??= err;
      });
      this.loose = batch; // after unit(), which closes the batch before it
    }
    this.loose.push(s);
  }

  /** Resolves once every write asked so far is durable; rejects with a loose write's failure. */
  async settled(): Promise<void> {
    await this.enqueue(() => Promise.resolve());
    if (this.looseError !== undefined) {
      const err = this.looseError;
      this.looseError = undefined;
      throw new StoreError(
        'store_write_failed',
        `a write to ${this.label} failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    if (this.closed)
      return Promise.reject(new StoreError('store_closed', `the database ${this.label} is closed`));
    // Later loose writes go in a batch after this job, never before it; so do later units.
    this.loose = undefined;
    this.group = undefined;
    const run = this.tail.then(job);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async transaction(statements: readonly Sql[]): Promise<pg.QueryResult[]> {
    const c = this.writer;
    if (statements.length <= 1) {
      return statements.length === 0
        ? []
        : [await c.query(statements[0]!.text, statements[0]!.values as unknown[])];
    }
    await c.query('BEGIN');
    try {
      const results: pg.QueryResult[] = [];
      for (const s of statements) results.push(await c.query(s.text, s.values as unknown[]));
      await c.query('COMMIT');
      return results;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  async schemaVersion(): Promise<number> {
    return ((await this.queryOne('SELECT max(version) AS v FROM schema_version'))?.v as number | null) ?? 0;
  }

  /** Lets queued writes finish, then closes every connection (and so releases the process lock). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.enqueue(() => Promise.resolve()).catch(() => undefined);
    this.closed = true;
    await Promise.allSettled([
      this.writer.end(),
      this.pool.end(),
      ...(this.lockClient ? [this.lockClient.end()] : []),
      ...this.listeners.map((c) => c.end()),
    ]);
  }
}
