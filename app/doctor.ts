import Database from 'better-sqlite3';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { isPostgresUrl, type LoadedConfig } from '../src/config/loader.js';
import { StoreError } from '../src/errors.js';
import { lockSqliteDatabase } from '../src/store/process-lock.js';
import { bridgeMigrations } from './migrations.js';
import { providerKeyTooOpen, readProviderKey } from '../src/provider-keys.js';
import { describeExposed, exposedSecretFiles } from '../src/config/secret-files.js';
import { atRestKeyTooOpen, readAtRestKey } from '../src/store/at-rest.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warning or failure. */
  hint?: string;
}

/** Checks what can be checked without changing anything. Reachability checks join as layers land. */
export function runChecks(loaded: LoadedConfig): CheckResult[] {
  return [
    checkDataDir(loaded),
    // PostgreSQL's checks connect: doctor-database.ts (checkPostgres), run by the CLI.
    ...(isPostgresUrl(loaded.config.bridge.database) ? [] : [checkDatabase(loaded)]),
    checkProviderKey(loaded),
    checkAtRestKey(loaded),
    ...checkSecretFiles(loaded),
    checkGateway(loaded),
  ];
}

/** One failed check per secret file open to group or others (the two keys have their own checks). */
function checkSecretFiles(loaded: LoadedConfig): CheckResult[] {
  return exposedSecretFiles(loaded)
    .filter((f) => f.file !== loaded.paths.signingKey && f.file !== loaded.paths.atRestKey)
    .map((f) => ({
      name: 'secret file',
      status: 'fail' as const,
      detail: describeExposed(f).replace(/: run "chmod 600 .*"$/, ''),
      hint: `run "chmod 600 ${f.file}" (start refuses it otherwise)`,
    }));
}

function checkDataDir({ paths }: LoadedConfig): CheckResult {
  const name = 'data directory';
  let dir = paths.dataDir;
  if (!existsSync(dir)) {
    // It will be created: what matters is that its nearest existing parent is writable.
    while (!existsSync(dir)) dir = path.dirname(dir);
    try {
      accessSync(dir, constants.W_OK);
      return { name, status: 'ok', detail: `${paths.dataDir} does not exist yet; it will be created` };
    } catch {
      return {
        name,
        status: 'fail',
        detail: `${paths.dataDir} cannot be created: ${dir} is not writable`,
        hint: 'set bridge.data_dir to a directory the bridge user can write',
      };
    }
  }
  if (!statSync(dir).isDirectory()) {
    return {
      name,
      status: 'fail',
      detail: `${dir} is not a directory`,
      hint: 'set bridge.data_dir to a directory',
    };
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return { name, status: 'fail', detail: `${dir} is not writable`, hint: `chown it to the bridge's user` };
  }
  return { name, status: 'ok', detail: `${dir} is writable` };
}

function checkDatabase({ paths }: LoadedConfig): CheckResult {
  const name = 'database';
  const file = paths.database;
  const latest = bridgeMigrations().length;
  if (!existsSync(file)) {
    return { name, status: 'ok', detail: `${file} does not exist yet; "interop-bridge start" creates it` };
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const integrity = (db.pragma('quick_check', { simple: true }) as string) ?? 'unknown';
    if (integrity !== 'ok') {
      return {
        name,
        status: 'fail',
        detail: `${file} is damaged: ${integrity}`,
        hint: 'restore it from a backup',
      };
    }
    const hasVersions =
      db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").get() !== undefined;
    const version = hasVersions
      ? ((db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0)
      : 0;
    if (version > latest) {
      return {
        name,
        status: 'fail',
        detail: `${file} has schema version ${version}, newer than this interop-bridge knows (${latest})`,
        hint: 'upgrade interop-bridge, or restore a backup taken before the upgrade',
      };
    }
    const mode = statSync(file).mode & 0o777;
    const pending = latest - version;
    return {
      name,
      status: (mode & 0o077) !== 0 ? 'warn' : 'ok',
      detail: `${file}: schema version ${version}${pending > 0 ? ` (${pending} migration(s) will run at start)` : ' (current)'}, ${inUse(file)}, mode ${mode.toString(8)}`,
      ...((mode & 0o077) !== 0
        ? { hint: `others can read it: run "chmod 600 ${file}" (start does this too)` }
        : {}),
    };
  } catch (err) {
    return {
      name,
      status: 'fail',
      detail: `${file} cannot be read as a database: ${(err as Error).message}`,
      hint: 'check bridge.database, or restore the file from a backup',
    };
  } finally {
    db?.close();
  }
}

/** Whether a bridge process holds the database's one-process lock (taken and released at once). */
function inUse(file: string): string {
  try {
    lockSqliteDatabase(file).release();
    return 'no bridge process runs on it';
  } catch (err) {
    if (err instanceof StoreError && err.code === 'store_in_use') return 'in use by a running bridge process';
    throw err;
  }
}

function checkProviderKey({ paths }: LoadedConfig): CheckResult {
  const name = 'provider signing key';
  const file = paths.signingKey;
  if (!existsSync(file)) {
    return {
      name,
      status: 'warn',
      detail: `${file} does not exist yet`,
      hint: '"interop-bridge keys generate" creates it (start does too), and prints the JWKS for the gatekeeper',
    };
  }
  try {
    const jwk = readProviderKey(file);
    if (providerKeyTooOpen(file)) {
      return {
        name,
        status: 'fail',
        detail: `${file} is readable by others`,
        hint: `run "chmod 600 ${file}"`,
      };
    }
    return { name, status: 'ok', detail: `${file}: ${jwk.alg} key, kid ${jwk.kid}` };
  } catch (err) {
    return {
      name,
      status: 'fail',
      detail: (err as Error).message,
      hint: 'replace it with "interop-bridge keys generate --force"',
    };
  }
}

/** The key waiting messages and spooled files are sealed with: 32 bytes, owner-only. */
function checkAtRestKey({ paths }: LoadedConfig): CheckResult {
  const name = 'at-rest key';
  const file = paths.atRestKey;
  if (!existsSync(file)) {
    return {
      name,
      status: 'warn',
      detail: `${file} does not exist yet`,
      hint: '"interop-bridge keys generate --at-rest" creates it (start does too); include it in backups',
    };
  }
  try {
    readAtRestKey(file);
  } catch (err) {
    return {
      name,
      status: 'fail',
      detail: (err as Error).message,
      hint: 'restore it from a backup, or "interop-bridge keys generate --at-rest --force" (what was waiting is then lost)',
    };
  }
  const mode = statSync(file).mode & 0o777;
  if (atRestKeyTooOpen(file)) {
    return {
      name,
      status: 'fail',
      detail: `${file} is open to group or others (mode ${mode.toString(8)})`,
      hint: `run "chmod 600 ${file}" (start refuses it otherwise)`,
    };
  }
  return { name, status: 'ok', detail: `${file}: 32 bytes, mode ${mode.toString(8)}` };
}

function checkGateway({ config }: LoadedConfig): CheckResult {
  const name = 'gateway';
  if (!config.gateway.root_key) {
    return {
      name,
      status: 'warn',
      detail: `gateway.root_key is not set: the bridge will not connect to ${config.gateway.host}:${config.gateway.port}`,
      hint: 'set gateway.root_key to the gateway root key (the emulator prints it at "interop-bridge emulator init")',
    };
  }
  return {
    name,
    status: 'ok',
    detail: `${config.gateway.host}:${config.gateway.port} (gateway id ${config.gateway.gateway_id}), root key pinned`,
  };
}

export function renderReport(source: string, results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = [`interop-bridge doctor: configuration from ${source} is valid`];
  for (const r of results) {
    lines.push(`  ${r.status.padEnd(4)}  ${r.name.padEnd(width)}  ${r.detail}`);
    if (r.hint && r.status !== 'ok') lines.push(`        ${' '.repeat(width)}  -> ${r.hint}`);
  }
  const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
  lines.push(`checks: ${count('ok')} ok, ${count('warn')} with warnings, ${count('fail')} failing`);
  return lines.join('\n');
}
