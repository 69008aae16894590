/**
 * Groups in the emulator's SQLite file (migration 003): each group's metadata, its participants,
 * the create keys that make a resent create idempotent, and revoked invite codes. Metadata only:
 * group messages are ciphertext in the queue like every other message.
 */
import type { Db } from '../src/store/database.js';
import { preparedStatements, type Prepared } from '../src/store/sql.js';
import type { GroupInfo, GroupParticipant } from '../src/protocol/stanza/index.js';

interface GroupRow {
  jid: string;
  subject: string;
  creator_jid: string;
  creation: number;
  version: number;
  description_id: string | null;
  description: string | null;
  picture_id: string | null;
  announce: number;
  locked: number;
  invite_code: string | null;
}

/** A group as the gateway holds it: the wire's `GroupInfo` plus what only admins see. */
export interface StoredGroup extends GroupInfo {
  readonly inviteCode: string | undefined;
}

export interface NewGroup {
  jid: string;
  subject: string;
  creator: string;
  creation: number;
  announce: boolean;
  locked: boolean;
  /** The creator first: it becomes the first admin. */
  participants: readonly GroupParticipant[];
}

/** What a change may set; absent fields stay. `null` clears an optional one. */
export interface GroupChange {
  subject?: string;
  description?: { id: string; text: string } | null;
  pictureId?: string | null;
  announce?: boolean;
  locked?: boolean;
  inviteCode?: string;
}

export class GroupStore {
  readonly #q: Prepared;

  constructor(private readonly db: Db) {
    this.#q = preparedStatements(db);
  }

  /** Runs `fn` in one transaction: a change, its version and its notifications land together. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  get(jid: string): StoredGroup | undefined {
    const row = this.#q('SELECT * FROM groups WHERE jid = ?').get(jid) as GroupRow | undefined;
    return row && this.#toGroup(row);
  }

  /** Every group `participant` (a user JID) is in, by JID. */
  of(participant: string): StoredGroup[] {
    const rows = this.#q(
      `SELECT g.* FROM groups g JOIN group_participants p ON p.group_jid = g.jid
         WHERE p.participant_jid = ? ORDER BY g.jid`,
    ).all(participant) as GroupRow[];
    return rows.map((r) => this.#toGroup(r));
  }

  all(): StoredGroup[] {
    return (this.#q('SELECT * FROM groups ORDER BY jid').all() as GroupRow[]).map((r) => this.#toGroup(r));
  }

  create(g: NewGroup): void {
    this.#q(
      `INSERT INTO groups (jid, subject, creator_jid, creation, version, announce, locked)
         VALUES (?, ?, ?, ?, 1, ?, ?)`,
    ).run(g.jid, g.subject, g.creator, g.creation, g.announce ? 1 : 0, g.locked ? 1 : 0);
    for (const p of g.participants) this.addParticipant(g.jid, p.jid, p.admin);
  }

  /** The group a creator's earlier create with this key made. */
  byCreateKey(creator: string, key: string): string | undefined {
    const row = this.#q('SELECT group_jid FROM group_create_keys WHERE creator_jid = ? AND key = ?').get(
      creator,
      key,
    ) as { group_jid: string } | undefined;
    return row?.group_jid;
  }

  rememberCreateKey(creator: string, key: string, group: string): void {
    this.#q('INSERT INTO group_create_keys (creator_jid, key, group_jid) VALUES (?, ?, ?)').run(
      creator,
      key,
      group,
    );
  }

  addParticipant(group: string, participant: string, admin = false): void {
    const next = this.#q(
      'SELECT coalesce(max(joined_seq), 0) + 1 AS n FROM group_participants WHERE group_jid = ?',
    ).get(group) as { n: number };
    this.#q(
      'INSERT INTO group_participants (group_jid, participant_jid, admin, joined_seq) VALUES (?, ?, ?, ?)',
    ).run(group, participant, admin ? 1 : 0, next.n);
  }

  removeParticipant(group: string, participant: string): void {
    this.#q('DELETE FROM group_participants WHERE group_jid = ? AND participant_jid = ?').run(
      group,
      participant,
    );
  }

  setAdmin(group: string, participant: string, admin: boolean): void {
    this.#q('UPDATE group_participants SET admin = ? WHERE group_jid = ? AND participant_jid = ?').run(
      admin ? 1 : 0,
      group,
      participant,
    );
  }

  /** Applies a change and counts it in the version; returns the new version. */
  change(group: string, c: GroupChange): number {
    const sets: string[] = ['version = version + 1'];
    const args: (string | number | null)[] = [];
    const set = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      args.push(value);
    };
    if (c.subject !== undefined) set('subject', c.subject);
    if (c.description !== undefined) {
      set('description_id', c.description?.id ?? null);
      set('description', c.description?.text ?? null);
    }
    if (c.pictureId !== undefined) set('picture_id', c.pictureId);
    if (c.announce !== undefined) set('announce', c.announce ? 1 : 0);
    if (c.locked !== undefined) set('locked', c.locked ? 1 : 0);
    this.#q(`UPDATE groups SET ${sets.join(', ')} WHERE jid = ?`).run(...args, group);
    return (this.#q('SELECT version FROM groups WHERE jid = ?').get(group) as { version: number }).version;
  }

  /** Sets the invite code without a version change (codes are not announced). */
  setInviteCode(group: string, code: string): void {
    this.#q('UPDATE groups SET invite_code = ? WHERE jid = ?').run(code, group);
  }

  revokeInviteCode(group: string, code: string): void {
    this.#q('INSERT INTO group_revoked_invites (code, group_jid) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
      code,
      group,
    );
  }

  /** The group an invite code leads to now, or `revoked` for a code that once did. */
  byInviteCode(code: string): { group?: string; revoked: boolean } {
    const live = this.#q('SELECT jid FROM groups WHERE invite_code = ?').get(code) as
      { jid: string } | undefined;
    if (live) return { group: live.jid, revoked: false };
    const revoked = this.#q('SELECT 1 FROM group_revoked_invites WHERE code = ?').get(code);
    return { revoked: revoked !== undefined };
  }

  /** A group whose last participant left ceases to exist (404 from then on). */
  delete(group: string): void {
    this.#q('DELETE FROM groups WHERE jid = ?').run(group);
    this.#q('DELETE FROM pictures WHERE owner_jid = ?').run(group);
  }

  #participants(group: string): GroupParticipant[] {
    const rows = this.#q(
      'SELECT participant_jid, admin FROM group_participants WHERE group_jid = ? ORDER BY joined_seq',
    ).all(group) as { participant_jid: string; admin: number }[];
    return rows.map((r) => ({ jid: r.participant_jid, admin: r.admin === 1 }));
  }

  #toGroup(r: GroupRow): StoredGroup {
    return {
      jid: r.jid,
      subject: r.subject,
      creator: r.creator_jid,
      creation: r.creation,
      version: r.version,
      ...(r.description_id !== null && r.description !== null
        ? { description: { id: r.description_id, text: r.description } }
        : {}),
      announce: r.announce === 1,
      locked: r.locked === 1,
      ...(r.picture_id !== null ? { pictureId: r.picture_id } : {}),
      participants: this.#participants(r.jid),
      inviteCode: r.invite_code ?? undefined,
    };
  }
}
