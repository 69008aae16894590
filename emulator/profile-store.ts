/**
 * Profiles in the emulator's SQLite file (migration 004): every account's push name and about
 * text, the current picture of each user and group (the JPEG itself, at most 256 KiB), and the
 * 1:1 conversations that decide who hears of a profile change. The gateway's own data: none of
 * it is end-to-end encrypted, as on WhatsApp.
 */
import type { Db } from '../src/store/database.js';
import { preparedStatements, type Prepared } from '../src/store/sql.js';

/** What the gateway holds about one account. */
export interface StoredProfile {
  readonly name?: string | undefined;
  readonly about?: string | undefined;
  readonly pictureId?: string | undefined;
}

/** A stored picture: whose it is and the JPEG. */
export interface StoredPicture {
  readonly owner: string;
  readonly id: string;
  readonly image: Buffer;
}

export class ProfileStore {
  readonly #q: Prepared;

  constructor(private readonly db: Db) {
    this.#q = preparedStatements(db);
  }

  profile(jid: string): StoredProfile {
    const row = this.#q('SELECT push_name, about FROM profiles WHERE account_jid = ?').get(jid) as
      { push_name: string | null; about: string | null } | undefined;
    const pictureId = this.pictureOf(jid)?.id;
    return {
      ...(row?.push_name ? { name: row.push_name } : {}),
      ...(row?.about ? { about: row.about } : {}),
      ...(pictureId ? { pictureId } : {}),
    };
  }

  /** The push name a delivered message carries as `notify`, if the account has one. */
  pushName(jid: string): string | undefined {
    const row = this.#q('SELECT push_name FROM profiles WHERE account_jid = ?').get(jid) as
      { push_name: string | null } | undefined;
    return row?.push_name ?? undefined;
  }

  /** Sets (or with null clears) the push name or the about text of an existing account. */
  set(jid: string, field: 'push_name' | 'about', value: string | null): void {
    this.#q(
      `INSERT INTO profiles (account_jid, ${field}) VALUES (?, ?)
         ON CONFLICT (account_jid) DO UPDATE SET ${field} = excluded.${field}`,
    ).run(jid, value);
  }

  pictureOf(owner: string): StoredPicture | undefined {
    const row = this.#q('SELECT owner_jid, id, image FROM pictures WHERE owner_jid = ?').get(owner) as
      { owner_jid: string; id: string; image: Buffer } | undefined;
    return row && { owner: row.owner_jid, id: row.id, image: row.image };
  }

  /** The picture whose id this is, while it is current. */
  pictureById(id: string): StoredPicture | undefined {
    const row = this.#q('SELECT owner_jid, id, image FROM pictures WHERE id = ?').get(id) as
      { owner_jid: string; id: string; image: Buffer } | undefined;
    return row && { owner: row.owner_jid, id: row.id, image: row.image };
  }

  /** Replaces the owner's picture: the old id is no longer served. */
  setPicture(owner: string, id: string, image: Uint8Array, now: number): void {
    this.#q(
      `INSERT INTO pictures (owner_jid, id, image, set_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (owner_jid) DO UPDATE SET id = excluded.id, image = excluded.image, set_at = excluded.set_at`,
    ).run(owner, id, Buffer.from(image), now);
  }

  /** Removes the owner's picture; returns whether it had one. */
  removePicture(owner: string): boolean {
    return this.#q('DELETE FROM pictures WHERE owner_jid = ?').run(owner).changes > 0;
  }

  /** Records that `a` and `b` exchanged a 1:1 message. */
  recordConversation(a: string, b: string): void {
    if (a === b) return;
    const insert = this.#q(
      'INSERT INTO conversations (account_jid, peer_jid) VALUES (?, ?) ON CONFLICT DO NOTHING',
    );
    insert.run(a, b);
    insert.run(b, a);
  }

  /** The accounts `jid` exchanged a 1:1 message with. */
  conversationPeers(jid: string): string[] {
    return (
      this.#q('SELECT peer_jid FROM conversations WHERE account_jid = ? ORDER BY peer_jid').all(jid) as {
        peer_jid: string;
      }[]
    ).map((r) => r.peer_jid);
  }

  /** Forgets everything about an account (its profile row cascades with the account). */
  forget(jid: string): void {
    this.#q('DELETE FROM pictures WHERE owner_jid = ?').run(jid);
    this.#q('DELETE FROM conversations WHERE account_jid = ? OR peer_jid = ?').run(jid, jid);
  }
}
