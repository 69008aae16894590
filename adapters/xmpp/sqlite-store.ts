/**
 * `XmppStore` on the bridge's SQLite database (tables of migrations/004_xmpp.sql, beside it).
 * better-sqlite3 is synchronous: each method does its work at once and resolves with the result.
 */
import { preparedStatements, type Db, type Prepared, type Row } from '../../src/store/sql.js';
import { ContactCache } from './contact-cache.js';
import { subscriptionSet, toContact, toJournaled, toRun } from './rows.js';
import type {
  JournalRow,
  JournalSummary,
  JournalWrite,
  SubscriptionChange,
  XmppContact,
  XmppRun,
  XmppStore,
} from './store.js';

export { xmppMigrations } from './rows.js';

export class SqliteXmppStore implements XmppStore {
  private readonly sql: Prepared;
  private readonly cache = new ContactCache();

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.sql = preparedStatements(db);
  }

  contact(localUser: string, contact: string): Promise<XmppContact | undefined> {
    return this.cache.byContact(localUser, contact, () => this.contactNow(localUser, contact));
  }

  contactByRemote(localUser: string, remote: string): Promise<XmppContact | undefined> {
    return this.cache.byRemote(localUser, remote, () => {
      const row = this.sql('SELECT * FROM xmpp_contacts WHERE local_user = ? AND remote = ?').get(
        localUser,
        remote,
      ) as Row | undefined;
      return row ? toContact(row) : undefined;
    });
  }

  async contacts(localUser: string): Promise<XmppContact[]> {
    const rows = this.sql('SELECT * FROM xmpp_contacts WHERE local_user = ? ORDER BY contact').all(
      localUser,
    ) as Row[];
    return rows.map(toContact);
  }

  async ensureContact(
    localUser: string,
    contact: string,
    remote: string,
    name?: string,
  ): Promise<XmppContact> {
    this.sql(
      `INSERT INTO xmpp_contacts (local_user, contact, remote, name, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (local_user, contact) DO UPDATE SET remote = excluded.remote,
         name = COALESCE(excluded.name, xmpp_contacts.name)`,
    ).run(localUser, contact, remote, name ?? null, this.now());
    this.cache.changed();
    return this.contactNow(localUser, contact)!;
  }

  async setProfile(...[localUser, contact, p]: Parameters<XmppStore['setProfile']>): Promise<void> {
    this.cache.changed();
    if (p.photo?.bytes !== undefined || p.photo === undefined) {
      this.sql(
        `UPDATE xmpp_contacts SET name = ?, about = ?, photo_id = ?, photo_hash = ?, photo_type = ?, photo = ?
         WHERE local_user = ? AND contact = ?`,
      ).run(
        p.name,
        p.about,
        p.photo?.id ?? null,
        p.photo?.hash ?? null,
        p.photo?.type ?? null,
        p.photo?.bytes ? Buffer.from(p.photo.bytes) : null,
        localUser,
        contact,
      );
      return;
    }
    this.sql('UPDATE xmpp_contacts SET name = ?, about = ? WHERE local_user = ? AND contact = ?').run(
      p.name,
      p.about,
      localUser,
      contact,
    );
  }

  async contactPhoto(
    localUser: string,
    contact: string,
  ): Promise<{ bytes: Uint8Array; type: string } | undefined> {
    const row = this.sql(
      'SELECT photo, photo_type FROM xmpp_contacts WHERE local_user = ? AND contact = ? AND photo IS NOT NULL',
    ).get(localUser, contact) as { photo: Buffer; photo_type: string | null } | undefined;
    return row ? { bytes: row.photo, type: row.photo_type ?? 'image/jpeg' } : undefined;
  }

  async setSubscription(localUser: string, contact: string, change: SubscriptionChange): Promise<void> {
    const update = subscriptionSet(change, () => '?');
    if (update === undefined) return;
    this.cache.changed();
    this.sql(`UPDATE xmpp_contacts SET ${update.set} WHERE local_user = ? AND contact = ?`).run(
      ...update.values,
      localUser,
      contact,
    );
  }

  async beginRun(): Promise<{ run: XmppRun; previous: XmppRun | undefined }> {
    return this.db.transaction(() => {
      const last = this.sql('SELECT * FROM xmpp_runs ORDER BY run DESC LIMIT 1').get() as Row | undefined;
      const startedAt = this.now();
      const run = Number(
        this.sql('INSERT INTO xmpp_runs (started_at) VALUES (?)').run(startedAt).lastInsertRowid,
      );
      // Only the latest run is ever read.
      this.sql('DELETE FROM xmpp_runs WHERE run < ?').run(last?.run ?? 0);
      return { run: { run, startedAt, stoppedAt: undefined }, previous: last && toRun(last) };
    })();
  }

  async endRun(run: number): Promise<void> {
    this.db.transaction(() => {
      this.sql('UPDATE xmpp_runs SET stopped_at = ? WHERE run = ?').run(this.now(), run);
      this.sql('DELETE FROM xmpp_journal WHERE stanza IS NULL').run();
    })();
  }

  async writeJournal(write: JournalWrite): Promise<number[]> {
    return this.db.transaction(() => {
      const seqs: number[] = [];
      if (write.append.length > 0) {
        const insert = this.sql(
          `INSERT INTO xmpp_journal (run, local_user, contact, local_id, stanza, received_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        );
        for (const a of write.append) {
          seqs.push(
            Number(
              insert.run(write.run, a.localUser, a.contact, a.localId, a.stanza, a.receivedAt)
                .lastInsertRowid,
            ),
          );
        }
      }
      if (write.settle.length > 0) {
        const settle = this.sql('UPDATE xmpp_journal SET stanza = NULL WHERE seq = ?');
        for (const seq of write.settle) settle.run(seq);
      }
      if (write.pruneBelow !== undefined) {
        this.sql('DELETE FROM xmpp_journal WHERE seq < ? AND stanza IS NULL AND run = ?').run(
          write.pruneBelow,
          write.run,
        );
      }
      return seqs;
    })();
  }

  async journaled(): Promise<JournalRow[]> {
    const rows = this.sql(
      'SELECT seq, local_user, local_id, stanza FROM xmpp_journal WHERE stanza IS NOT NULL ORDER BY seq',
    ).all() as Row[];
    return rows.map(toJournaled);
  }

  async journalSummary(beforeRun: number): Promise<JournalSummary[]> {
    const rows = this.sql(
      `SELECT local_user, contact, count(*) AS n, max(seq) AS last FROM xmpp_journal WHERE run < ?
       GROUP BY local_user, contact ORDER BY local_user, contact`,
    ).all(beforeRun) as { local_user: string; contact: string; n: number; last: number }[];
    const at = this.sql('SELECT local_id, received_at FROM xmpp_journal WHERE seq = ?');
    return rows.map((r) => {
      const last = at.get(r.last) as { local_id: string; received_at: number };
      return {
        localUser: r.local_user,
        contact: r.contact,
        count: r.n,
        lastLocalId: last.local_id,
        lastAt: last.received_at,
      };
    });
  }

  async forgetJournal(beforeRun: number): Promise<void> {
    this.sql('DELETE FROM xmpp_journal WHERE run < ? AND stanza IS NULL').run(beforeRun);
  }

  async forgetUser(localUser: string): Promise<void> {
    this.db.transaction(() => {
      this.sql('DELETE FROM xmpp_contacts WHERE local_user = ?').run(localUser);
      this.sql('DELETE FROM xmpp_journal WHERE local_user = ?').run(localUser);
    })();
    this.cache.changed();
  }

  private contactNow(localUser: string, contact: string): XmppContact | undefined {
    const row = this.sql('SELECT * FROM xmpp_contacts WHERE local_user = ? AND contact = ?').get(
      localUser,
      contact,
    ) as Row | undefined;
    return row ? toContact(row) : undefined;
  }
}
