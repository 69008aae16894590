/**
 * `XmppStore` on PostgreSQL (the tables of migrations/pg, the same as SQLite's): reads go to the
 * database's pool, writes through its one ordered writer (a read made after an awaited write sees
 * it); what must be atomic (a run's start, a journal write, forgetting a user) is one transaction.
 */
import { sql, type PgDatabase, type Row, type Sql } from '../../src/store/sql.js';
import { ContactCache } from './contact-cache.js';
import { subscriptionSet, toContact, toJournaled, toJournalSummary, toRun } from './rows.js';
import type {
  JournaledStanza,
  JournalSummary,
  JournalWrite,
  SubscriptionChange,
  XmppContact,
  XmppRun,
  XmppStore,
} from './store.js';

export class PostgresXmppStore implements XmppStore {
  private readonly cache = new ContactCache();

  constructor(
    private readonly db: PgDatabase,
    private readonly now: () => number = Date.now,
  ) {}

  contact(localUser: string, contact: string): Promise<XmppContact | undefined> {
    return this.cache.byContact(localUser, contact, () =>
      this.oneContact('SELECT * FROM xmpp_contacts WHERE local_user = $1 AND contact = $2', [
        localUser,
        contact,
      ]),
    );
  }

  async setProfile(...args: Parameters<XmppStore['setProfile']>): Promise<void> {
    try {
      await this.writeProfile(...args);
    } finally {
      this.cache.changed();
    }
  }

  private async writeProfile(...[localUser, contact, p]: Parameters<XmppStore['setProfile']>): Promise<void> {
    if (p.photo?.bytes !== undefined || p.photo === undefined) {
      await this.db.exec(
        sql(
          `UPDATE xmpp_contacts SET name = $1, about = $2, photo_id = $3, photo_hash = $4, photo_type = $5,
             photo = $6 WHERE local_user = $7 AND contact = $8`,
          p.name,
          p.about,
          p.photo?.id ?? null,
          p.photo?.hash ?? null,
          p.photo?.type ?? null,
          p.photo?.bytes ? Buffer.from(p.photo.bytes) : null,
          localUser,
          contact,
        ),
      );
      return;
    }
    await this.db.exec(
      sql(
        'UPDATE xmpp_contacts SET name = $1, about = $2 WHERE local_user = $3 AND contact = $4',
        p.name,
        p.about,
        localUser,
        contact,
      ),
    );
  }

  async contactPhoto(
    localUser: string,
    contact: string,
  ): Promise<{ bytes: Uint8Array; type: string } | undefined> {
    const rows = await this.db.query(
      'SELECT photo, photo_type FROM xmpp_contacts WHERE local_user = $1 AND contact = $2 AND photo IS NOT NULL',
      [localUser, contact],
    );
    const row = rows[0] as { photo: Buffer; photo_type: string | null } | undefined;
    return row ? { bytes: row.photo, type: row.photo_type ?? 'image/jpeg' } : undefined;
  }

  contactByRemote(localUser: string, remote: string): Promise<XmppContact | undefined> {
    return this.cache.byRemote(localUser, remote, () =>
      this.oneContact('SELECT * FROM xmpp_contacts WHERE local_user = $1 AND remote = $2', [
        localUser,
        remote,
      ]),
    );
  }

  async contacts(localUser: string): Promise<XmppContact[]> {
    return (
      await this.db.query('SELECT * FROM xmpp_contacts WHERE local_user = $1 ORDER BY contact COLLATE "C"', [
        localUser,
      ])
    ).map(toContact);
  }

  async ensureContact(
    localUser: string,
    contact: string,
    remote: string,
    name?: string,
  ): Promise<XmppContact> {
    const r = await this.db.exec(
      sql(
        `INSERT INTO xmpp_contacts (local_user, contact, remote, name, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (local_user, contact) DO UPDATE SET remote = excluded.remote,
           name = COALESCE(excluded.name, xmpp_contacts.name)
         RETURNING *`,
        localUser,
        contact,
        remote,
        name ?? null,
        this.now(),
      ),
    );
    this.cache.changed();
    return toContact(r.rows[0] as Row);
  }

  async setSubscription(localUser: string, contact: string, change: SubscriptionChange): Promise<void> {
    const update = subscriptionSet(change, (n) => `$${n}`);
    if (update === undefined) return;
    const n = update.values.length;
    await this.db.exec(
      sql(
        `UPDATE xmpp_contacts SET ${update.set} WHERE local_user = $${n + 1} AND contact = $${n + 2}`,
        ...update.values,
        localUser,
        contact,
      ),
    );
    this.cache.changed();
  }

  beginRun(): Promise<{ run: XmppRun; previous: XmppRun | undefined }> {
    const startedAt = this.now();
    return this.db.transact(async (query) => {
      const last = (await query(sql('SELECT * FROM xmpp_runs ORDER BY run DESC LIMIT 1'))).rows[0] as
        Row | undefined;
      const inserted = await query(
        sql('INSERT INTO xmpp_runs (started_at) VALUES ($1) RETURNING run', startedAt),
      );
      // Only the latest run is ever read.
      await query(sql('DELETE FROM xmpp_runs WHERE run < $1', (last?.run as number | undefined) ?? 0));
      const run = (inserted.rows[0] as Row).run as number;
      return { run: { run, startedAt, stoppedAt: undefined }, previous: last && toRun(last) };
    });
  }

  endRun(run: number): Promise<void> {
    return this.db.commit([
      sql('UPDATE xmpp_runs SET stopped_at = $1 WHERE run = $2', this.now(), run),
      sql('DELETE FROM xmpp_journal WHERE stanza IS NULL'),
    ]);
  }

  writeJournal(write: JournalWrite): Promise<number[]> {
    const statements: Sql[] = [];
    if (write.settle.length > 0) {
      statements.push(
        sql('UPDATE xmpp_journal SET stanza = NULL WHERE seq = ANY($1::bigint[])', write.settle),
      );
    }
    if (write.pruneBelow !== undefined) {
      statements.push(
        sql(
          'DELETE FROM xmpp_journal WHERE seq < $1 AND stanza IS NULL AND run = $2',
          write.pruneBelow,
          write.run,
        ),
      );
    }
    const a = write.append;
    if (a.length === 0) return this.db.commit(statements).then(() => []);
    return this.db.transact(async (query) => {
      // One statement for the appends; identities are drawn in the order of the rows.
      const r = await query(
        sql(
          `INSERT INTO xmpp_journal (run, local_user, contact, local_id, stanza, received_at)
           SELECT $1, j.local_user, j.contact, j.local_id, j.stanza, j.received_at
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) WITH ORDINALITY
             AS j(local_user, contact, local_id, stanza, received_at, n)
           ORDER BY j.n
           RETURNING seq`,
          write.run,
          a.map((x) => x.localUser),
          a.map((x) => x.contact),
          a.map((x) => x.localId),
          a.map((x) => x.stanza),
          a.map((x) => x.receivedAt),
        ),
      );
      for (const s of statements) await query(s);
      return (r.rows as Row[]).map((row) => row.seq as number).sort((x, y) => x - y);
    });
  }

  async journaled(): Promise<JournaledStanza[]> {
    return (
      await this.db.query(
        'SELECT seq, local_user, local_id, stanza FROM xmpp_journal WHERE stanza IS NOT NULL ORDER BY seq',
      )
    ).map(toJournaled);
  }

  async journalSummary(beforeRun: number): Promise<JournalSummary[]> {
    return (
      await this.db.query(
        `SELECT s.local_user, s.contact, s.n, j.local_id, j.received_at
         FROM (SELECT local_user, contact, count(*) AS n, max(seq) AS last FROM xmpp_journal WHERE run < $1
               GROUP BY local_user, contact) s
         JOIN xmpp_journal j ON j.seq = s.last
         ORDER BY s.local_user COLLATE "C", s.contact COLLATE "C"`,
        [beforeRun],
      )
    ).map(toJournalSummary);
  }

  async forgetJournal(beforeRun: number): Promise<void> {
    await this.db.exec(sql('DELETE FROM xmpp_journal WHERE run < $1 AND stanza IS NULL', beforeRun));
  }

  async forgetUser(localUser: string): Promise<void> {
    await this.db.commit(
      ['xmpp_contacts', 'xmpp_journal'].map((table) =>
        sql(`DELETE FROM ${table} WHERE local_user = $1`, localUser),
      ),
    );
    this.cache.changed();
  }

  private async oneContact(text: string, values: unknown[]): Promise<XmppContact | undefined> {
    const row = await this.db.queryOne(text, values);
    return row && toContact(row);
  }
}
