/**
 * The XMPP adapter's table rows as the store's records, and its migrations, for both backends
 * (sqlite-store.ts, postgres-store.ts): SQLite and PostgreSQL answer with the same column names
 * and values (flags are integers 0/1 in both dialects).
 */
import { fileURLToPath } from 'node:url';
import { readMigrations, type Migration, type Row } from '../../src/store/sql.js';
import type { JournaledStanza, JournalSummary, SubscriptionChange, XmppContact, XmppRun } from './store.js';

export const toContact = (r: Row): XmppContact => ({
  localUser: r.local_user as string,
  contact: r.contact as string,
  remote: r.remote as string,
  name: (r.name as string | null) ?? null,
  subTo: r.sub_to === 1,
  subFrom: r.sub_from === 1,
  asked: r.asked === 1,
  about: (r.about as string | null) ?? null,
  photoId: (r.photo_id as string | null) ?? null,
  photoHash: (r.photo_hash as string | null) ?? null,
});

export const toRun = (r: Row): XmppRun => ({
  run: r.run as number,
  startedAt: r.started_at as number,
  stoppedAt: (r.stopped_at as number | null) ?? undefined,
});

export const toJournaled = (r: Row): JournaledStanza => ({
  seq: r.seq as number,
  localUser: r.local_user as string,
  localId: r.local_id as string,
  stanza: r.stanza as string,
});

/** A journal summary row: local_user, contact, n (how many), local_id and received_at of the last. */
export const toJournalSummary = (r: Row): JournalSummary => ({
  localUser: r.local_user as string,
  contact: r.contact as string,
  count: r.n as number,
  lastLocalId: r.local_id as string,
  lastAt: r.received_at as number,
});

const SUBSCRIPTION_COLUMNS = { subTo: 'sub_to', subFrom: 'sub_from', asked: 'asked' } as const;

/**
 * The `SET` of a subscription change: `column = <placeholder>` for each flag it names (`placeholder`
 * numbers them: `?` or `$n`), with the values (0/1); none when it names no flag.
 */
export function subscriptionSet(
  change: SubscriptionChange,
  placeholder: (n: number) => string,
): { set: string; values: number[] } | undefined {
  const set: string[] = [];
  const values: number[] = [];
  for (const [key, column] of Object.entries(SUBSCRIPTION_COLUMNS)) {
    const value = change[key as keyof SubscriptionChange];
    if (value === undefined) continue;
    values.push(value ? 1 : 0);
    set.push(`${column} = ${placeholder(values.length)}`);
  }
  return set.length === 0 ? undefined : { set: set.join(', '), values };
}

/** The migrations of the XMPP adapter's tables (migrations/, beside this file; PostgreSQL's in pg/). */
export function xmppMigrations(dialect: 'sqlite' | 'postgres' = 'sqlite'): Migration[] {
  const dir = dialect === 'sqlite' ? './migrations/' : './migrations/pg/';
  return readMigrations(fileURLToPath(new URL(dir, import.meta.url)));
}
