/**
 * The XMPP adapter's repository (tables of src/store/migrations/004_xmpp.sql): the users' contacts
 * with their subscription state, and the stanza ids of delivered incoming events.
 */
import type { Db } from '../../src/store/sql.js';

export interface XmppContact {
  readonly localUser: string;
  /** The contact JID's local part, e.g. `+4915112345678`. */
  readonly contact: string;
  readonly remote: string;
  readonly name: string | null;
  readonly subTo: boolean;
  readonly subFrom: boolean;
  readonly asked: boolean;
}

interface ContactRow {
  local_user: string;
  contact: string;
  remote: string;
  name: string | null;
  sub_to: number;
  sub_from: number;
  asked: number;
}

const toContact = (r: ContactRow): XmppContact => ({
  localUser: r.local_user,
  contact: r.contact,
  remote: r.remote,
  name: r.name,
  subTo: r.sub_to === 1,
  subFrom: r.sub_from === 1,
  asked: r.asked === 1,
});

export class XmppStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  contact(localUser: string, contact: string): XmppContact | undefined {
    const row = this.db
      .prepare('SELECT * FROM xmpp_contacts WHERE local_user = ? AND contact = ?')
      .get(localUser, contact) as ContactRow | undefined;
    return row ? toContact(row) : undefined;
  }

  contactByRemote(localUser: string, remote: string): XmppContact | undefined {
    const row = this.db
      .prepare('SELECT * FROM xmpp_contacts WHERE local_user = ? AND remote = ?')
      .get(localUser, remote) as ContactRow | undefined;
    return row ? toContact(row) : undefined;
  }

  contacts(localUser: string): XmppContact[] {
    return (
      this.db
        .prepare('SELECT * FROM xmpp_contacts WHERE local_user = ? ORDER BY contact')
        .all(localUser) as ContactRow[]
    ).map(toContact);
  }

  /** Creates the contact if missing (keeping its subscription state); returns it. */
  ensureContact(localUser: string, contact: string, remote: string, name?: string): XmppContact {
    this.db
      .prepare(
        `INSERT INTO xmpp_contacts (local_user, contact, remote, name, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (local_user, contact) DO UPDATE SET remote = excluded.remote,
           name = COALESCE(excluded.name, xmpp_contacts.name)`,
      )
      .run(localUser, contact, remote, name ?? null, this.now());
    return this.contact(localUser, contact)!;
  }

  setSubscription(
    localUser: string,
    contact: string,
    change: { subTo?: boolean; subFrom?: boolean; asked?: boolean },
  ): void {
    const set: string[] = [];
    const values: number[] = [];
    const columns = { sub_to: change.subTo, sub_from: change.subFrom, asked: change.asked };
    for (const [column, value] of Object.entries(columns)) {
      if (value === undefined) continue;
      set.push(`${column} = ?`);
      values.push(value ? 1 : 0);
    }
    if (set.length === 0) return;
    this.db
      .prepare(`UPDATE xmpp_contacts SET ${set.join(', ')} WHERE local_user = ? AND contact = ?`)
      .run(...values, localUser, contact);
  }

  /** The stanza id under which an incoming event was shown, if it was. */
  deliveredStanza(localUser: string, remote: string, remoteId: string): string | undefined {
    const row = this.db
      .prepare('SELECT stanza_id FROM xmpp_delivered WHERE local_user = ? AND remote = ? AND remote_id = ?')
      .get(localUser, remote, remoteId) as { stanza_id: string } | undefined;
    return row?.stanza_id;
  }

  markDelivered(localUser: string, remote: string, remoteId: string, stanzaId: string): void {
    this.db
      .prepare(
        `INSERT INTO xmpp_delivered (local_user, remote, remote_id, stanza_id, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING`,
      )
      .run(localUser, remote, remoteId, stanzaId, this.now());
  }

  /** Forgets delivery records older than `maxAgeMs` (redeliveries come within minutes, not weeks). */
  pruneDelivered(maxAgeMs: number): number {
    return this.db.prepare('DELETE FROM xmpp_delivered WHERE created_at < ?').run(this.now() - maxAgeMs)
      .changes;
  }

  /** Removes everything kept for a user (on unregistration). */
  forgetUser(localUser: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM xmpp_contacts WHERE local_user = ?').run(localUser);
      this.db.prepare('DELETE FROM xmpp_delivered WHERE local_user = ?').run(localUser);
    })();
  }
}
