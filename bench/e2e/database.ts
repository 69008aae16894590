/**
 * The bridge's database in the end-to-end benchmark: SQLite (a file in the world's temporary
 * directory, as before) and PostgreSQL (a server started for the run by test/support/postgres.ts,
 * with PostgreSQL's default settings: durability on, as an operator runs it).
 *
 * `BENCH_E2E_DATABASES=sqlite,postgres` chooses; by default both when PostgreSQL's server binaries
 * are installed, else SQLite alone with a note on stderr.
 */
import { readdirSync, readFileSync } from 'node:fs';

import { postgresBinDir } from '../../test/support/postgres.js';

export type DatabaseId = 'sqlite' | 'postgres';
export const DATABASES: readonly DatabaseId[] = ['sqlite', 'postgres'];

/** As the table names them. */
export const DATABASE_NAMES: Record<DatabaseId, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' };

function postgresInstalled(): boolean {
  try {
    postgresBinDir();
    return true;
  } catch {
    return false;
  }
}

/** The databases to measure, in order (SQLite first when chosen, so its figures come first). */
export function chosenDatabases(
  env: string | undefined,
  note: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): DatabaseId[] {
  if (env !== undefined && env.trim() !== '') {
    const wanted = env.split(',').map((d) => d.trim().toLowerCase());
    const unknown = wanted.filter((d) => !(DATABASES as readonly string[]).includes(d));
    if (unknown.length > 0) {
      throw new Error(
        `BENCH_E2E_DATABASES: unknown database(s) ${unknown.join(', ')}; known: ${DATABASES.join(', ')}`,
      );
    }
    return DATABASES.filter((d) => wanted.includes(d));
  }
  if (postgresInstalled()) return [...DATABASES];
  note(
    'e2e: PostgreSQL server binaries not found (/usr/lib/postgresql/<version>/bin, or PG_BIN): measuring ' +
      'the bridge on SQLite only; scripts/install-system-deps.sh installs them',
  );
  return ['sqlite'];
}

/** utime, stime, cutime, cstime of a process (clock ticks), and its parent's pid. */
function statOf(pid: number): { ticks: number; children: number; ppid: number } | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // After "pid (comm) ": state 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
    return {
      ticks: Number(fields[11]) + Number(fields[12]),
      children: Number(fields[13]) + Number(fields[14]),
      ppid: Number(fields[1]),
    };
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds of a PostgreSQL server: the postmaster and its live children (the bridge's backends,
 * the WAL writer, the checkpointer...), plus what its exited children used (the kernel adds it to
 * the parent's cutime/cstime once reaped). NaN when the process is gone.
 */
export function serverCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const root = statOf(pid);
  if (root === undefined) return Number.NaN;
  let ticks = root.ticks + root.children;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const child = statOf(Number(name));
    if (child?.ppid === pid) ticks += child.ticks + child.children;
  }
  return ticks / 100;
}
