/**
 * The emulator's durable state in its own SQLite file (accounts, device keys, contacts, the
 * offline queue, seen message ids). Synchronous (better-sqlite3): every method is one statement or
 * one transaction, so a message is on disk before the caller acks it.
 *
 * Only public keys, ciphertext and metadata are stored; message payloads are the sender's Signal
 * ciphertext bytes, unchanged.
 */
import { fileURLToPath } from 'node:url';
import { openDatabase, readMigrations, type Db } from '../src/store/database.js';
import { preparedStatements, type Prepared } from '../src/store/sql.js';
import { GroupStore } from './group-store.js';
import { ProfileStore } from './profile-store.js';
import type { EncType, MediaType, PreKey, PreKeyBundle, SignedPreKey } from '../src/protocol/stanza/index.js';

export const EMULATOR_MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

export type AccountKind = 'native' | 'third_party';

export interface AccountRow {
  jid: string;
  kind: AccountKind;
  phone: string | null;
  enlisted_identity_key: Buffer | null;
  created_at: number;
}

export type QueueKind = 'message' | 'receipt' | 'notification';

export interface QueueItem {
  seq: number;
  recipient_jid: string;
  recipient_device: number;
  kind: QueueKind;
  stanza_id: string;
  from_jid: string;
  msg_type: 'text' | 'media' | null;
  t: number;
  enc_type: EncType | null;
  enc_device: number | null;
  media_type: MediaType | null;
  payload: Buffer;
  stored_at: number;
  expires_at: number;
  /** Group messages: the sending device (`from_jid` is the group); group receipts: the receipt's sender. */
  participant: string | null;
  /** Group messages: the sender key for this device, a pairwise pkmsg or msg delivered before the skmsg. */
  pairwise_type: EncType | null;
  pairwise: Buffer | null;
  /** Messages: the sender's push name when the gateway stored the message (delivered as `notify`). */
  notify: string | null;
}

type GroupColumns = 'participant' | 'pairwise_type' | 'pairwise' | 'notify';
export type NewQueueItem = Omit<QueueItem, 'seq' | 'stored_at' | 'expires_at' | GroupColumns> &
  Partial<Pick<QueueItem, GroupColumns>>;

export interface DeviceKeysInput {
  registrationId: number;
  identityKey: Uint8Array;
  signedPreKey: SignedPreKey;
  preKeys: readonly PreKey[];
}

interface DeviceRow {
  registration_id: number | null;
  identity_key: Buffer | null;
  signed_prekey_id: number | null;
  signed_prekey: Buffer | null;
  signed_prekey_signature: Buffer | null;
}

export class EmulatorStore {
  readonly db: Db;
  readonly groups: GroupStore;
  readonly profiles: ProfileStore;
  /** Each statement prepared once (preparing took a tenth of the emulator's CPU under load). */
  readonly #q: Prepared;

  constructor(file: string) {
    this.db = openDatabase(file, { migrations: readMigrations(EMULATOR_MIGRATIONS_DIR) });
    this.#q = preparedStatements(this.db);
    this.groups = new GroupStore(this.db);
    this.profiles = new ProfileStore(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // --- accounts -------------------------------------------------------------------------------

  account(jid: string): AccountRow | undefined {
    return this.#q('SELECT * FROM accounts WHERE jid = ?').get(jid) as AccountRow | undefined;
  }

  accountByPhone(phone: string): AccountRow | undefined {
    return this.#q('SELECT * FROM accounts WHERE phone = ?').get(phone) as AccountRow | undefined;
  }

  accounts(): AccountRow[] {
    return this.#q('SELECT * FROM accounts ORDER BY jid').all() as AccountRow[];
  }

  createNative(jid: string, phone: string, now: number): void {
    this.#q(
      `INSERT INTO accounts (jid, kind, phone, created_at) VALUES (?, 'native', ?, ?) ON CONFLICT (jid) DO NOTHING`,
    ).run(jid, phone, now);
  }

  /** Creates or re-proves a third-party account. */
  enlist(jid: string, identityKey: Uint8Array, now: number): void {
    this.#q(
      `INSERT INTO accounts (jid, kind, enlisted_identity_key, created_at) VALUES (?, 'third_party', ?, ?)
         ON CONFLICT (jid) DO UPDATE SET enlisted_identity_key = excluded.enlisted_identity_key`,
    ).run(jid, Buffer.from(identityKey), now);
  }

  /** Removes an account with its devices, keys, contacts, profile and everything queued for it. */
  removeAccount(jid: string): void {
    this.db.transaction(() => {
      this.#q('DELETE FROM queue WHERE recipient_jid = ?').run(jid);
      this.profiles.forget(jid);
      this.#q('DELETE FROM contacts WHERE subject_jid = ? OR watcher_jid = ?').run(jid, jid);
      this.#q('DELETE FROM accounts WHERE jid = ?').run(jid); // cascades to devices and prekeys
    })();
  }

  // --- devices and keys -----------------------------------------------------------------------

  registerDevice(jid: string, device: number): void {
    this.#q('INSERT INTO devices (account_jid, device) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
      jid,
      device,
    );
  }

  /** All devices that ever connected (for fan-out of receipts and notifications). */
  devices(jid: string): number[] {
    return (
      this.#q('SELECT device FROM devices WHERE account_jid = ? ORDER BY device').all(jid) as {
        device: number;
      }[]
    ).map((r) => r.device);
  }

  /** Devices that published keys: the ones a sender can encrypt to. */
  devicesWithKeys(jid: string): number[] {
    return (
      this.#q(
        'SELECT device FROM devices WHERE account_jid = ? AND identity_key IS NOT NULL ORDER BY device',
      ).all(jid) as { device: number }[]
    ).map((r) => r.device);
  }

  identityKey(jid: string, device: number): Buffer | undefined {
    const row = this.#q('SELECT identity_key FROM devices WHERE account_jid = ? AND device = ?').get(
      jid,
      device,
    ) as { identity_key: Buffer | null } | undefined;
    return row?.identity_key ?? undefined;
  }

  /**
   * Stores a device's upload: replaces registration, identity and signed prekey, adds the one-time
   * prekeys (replacing any with the same id). A new identity key means a reinstalled device, so its
   * old one-time prekeys are dropped first. Returns whether the identity key changed.
   */
  uploadKeys(jid: string, device: number, keys: DeviceKeysInput, now: number): { identityChanged: boolean } {
    return this.db.transaction(() => {
      this.registerDevice(jid, device);
      const previous = this.identityKey(jid, device);
      const identity = Buffer.from(keys.identityKey);
      const identityChanged = previous !== undefined && !previous.equals(identity);
      if (identityChanged) {
        this.#q('DELETE FROM one_time_prekeys WHERE account_jid = ? AND device = ?').run(jid, device);
      }
      this.#q(
        `UPDATE devices SET registration_id = ?, identity_key = ?, signed_prekey_id = ?, signed_prekey = ?,
             signed_prekey_signature = ?, keys_updated_at = ? WHERE account_jid = ? AND device = ?`,
      ).run(
        keys.registrationId,
        identity,
        keys.signedPreKey.id,
        Buffer.from(keys.signedPreKey.publicKey),
        Buffer.from(keys.signedPreKey.signature),
        now,
        jid,
        device,
      );
      const insert = this.#q(
        `INSERT INTO one_time_prekeys (account_jid, device, key_id, public_key) VALUES (?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET public_key = excluded.public_key`,
      );
      for (const k of keys.preKeys) insert.run(jid, device, k.id, Buffer.from(k.publicKey));
      return { identityChanged };
    })();
  }

  preKeyCount(jid: string, device: number): number {
    const row = this.#q(
      'SELECT count(*) AS n FROM one_time_prekeys WHERE account_jid = ? AND device = ?',
    ).get(jid, device) as { n: number };
    return row.n;
  }

  /** The device's bundle, taking (removing) its lowest one-time prekey: each is handed out once. */
  takeBundle(jid: string, device: number): { bundle: PreKeyBundle; remaining: number } | undefined {
    return this.db.transaction(() => {
      const row = this.#q(
        `SELECT registration_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature
           FROM devices WHERE account_jid = ? AND device = ?`,
      ).get(jid, device) as DeviceRow | undefined;
      if (
        !row ||
        row.registration_id === null ||
        row.identity_key === null ||
        row.signed_prekey_id === null ||
        row.signed_prekey === null ||
        row.signed_prekey_signature === null
      )
        return undefined;
      const key = this.#q(
        `SELECT key_id, public_key FROM one_time_prekeys WHERE account_jid = ? AND device = ?
           ORDER BY key_id LIMIT 1`,
      ).get(jid, device) as { key_id: number; public_key: Buffer } | undefined;
      if (key) {
        this.#q('DELETE FROM one_time_prekeys WHERE account_jid = ? AND device = ? AND key_id = ?').run(
          jid,
          device,
          key.key_id,
        );
      }
      const bundle: PreKeyBundle = {
        registrationId: row.registration_id,
        identityKey: row.identity_key,
        signedPreKey: {
          id: row.signed_prekey_id,
          publicKey: row.signed_prekey,
          signature: row.signed_prekey_signature,
        },
        ...(key ? { preKey: { id: key.key_id, publicKey: key.public_key } } : {}),
      };
      return { bundle, remaining: this.preKeyCount(jid, device) };
    })();
  }

  // --- contacts -------------------------------------------------------------------------------

  addContact(subjectJid: string, watcherJid: string): void {
    if (subjectJid === watcherJid) return;
    this.#q('INSERT INTO contacts (subject_jid, watcher_jid) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
      subjectJid,
      watcherJid,
    );
  }

  watchers(subjectJid: string): string[] {
    return (
      this.#q('SELECT watcher_jid FROM contacts WHERE subject_jid = ? ORDER BY watcher_jid').all(
        subjectJid,
      ) as { watcher_jid: string }[]
    ).map((r) => r.watcher_jid);
  }

  // --- queue ----------------------------------------------------------------------------------

  enqueue(item: NewQueueItem, now: number, retentionSeconds: number): number {
    const result = this.#q(
      `INSERT INTO queue (recipient_jid, recipient_device, kind, stanza_id, from_jid, msg_type, t, enc_type,
           enc_device, media_type, payload, stored_at, expires_at, participant, pairwise_type, pairwise, notify)
         VALUES (@recipient_jid, @recipient_device, @kind, @stanza_id, @from_jid, @msg_type, @t, @enc_type,
           @enc_device, @media_type, @payload, @stored_at, @expires_at, @participant, @pairwise_type, @pairwise,
           @notify)`,
    ).run({
      participant: null,
      pairwise_type: null,
      pairwise: null,
      notify: null,
      ...item,
      stored_at: now,
      expires_at: now + retentionSeconds,
    });
    return Number(result.lastInsertRowid);
  }

  /**
   * Accepts a message once per (sender, id): records the id and enqueues its items in one
   * transaction. Returns false (and stores nothing) for a message id already accepted.
   */
  acceptMessage(
    senderJid: string,
    messageId: string,
    items: readonly NewQueueItem[],
    now: number,
    retentionSeconds: number,
  ): boolean {
    return this.db.transaction(() => {
      const seen = this.#q(
        `INSERT INTO seen_messages (sender_jid, message_id, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
      ).run(senderJid, messageId, now + retentionSeconds);
      if (seen.changes === 0) return false;
      for (const item of items) this.enqueue(item, now, retentionSeconds);
      return true;
    })();
  }

  /** Forgets that `senderJid` sent `messageId`, so that its re-encrypted resend is relayed. */
  forgetSeen(senderJid: string, messageId: string): void {
    this.#q('DELETE FROM seen_messages WHERE sender_jid = ? AND message_id = ?').run(senderJid, messageId);
  }

  /** Items for one device after `afterSeq`, in order, not expired. */
  pending(jid: string, device: number, afterSeq: number, now: number, limit = 100): QueueItem[] {
    return this.#q(
      `SELECT * FROM queue WHERE recipient_jid = ? AND recipient_device = ? AND seq > ? AND expires_at > ?
         ORDER BY seq LIMIT ?`,
    ).all(jid, device, afterSeq, now, limit) as QueueItem[];
  }

  queued(jid?: string): QueueItem[] {
    return (
      jid === undefined
        ? this.#q('SELECT * FROM queue ORDER BY seq').all()
        : this.#q('SELECT * FROM queue WHERE recipient_jid = ? ORDER BY seq').all(jid)
    ) as QueueItem[];
  }

  remove(seq: number): void {
    this.#q('DELETE FROM queue WHERE seq = ?').run(seq);
  }

  /** The oldest queued item of this kind and id for the device: what an ack with that id acknowledges. */
  findForAck(jid: string, device: number, kind: QueueKind, stanzaId: string): number | undefined {
    const row = this.#q(
      `SELECT seq FROM queue WHERE recipient_jid = ? AND recipient_device = ? AND kind = ? AND stanza_id = ?
         ORDER BY seq LIMIT 1`,
    ).get(jid, device, kind, stanzaId) as { seq: number } | undefined;
    return row?.seq;
  }

  /** Drops what outlived the retention period. */
  purgeExpired(now: number): { queue: number; seen: number; tokens: number } {
    const queue = this.#q('DELETE FROM queue WHERE expires_at <= ?').run(now).changes;
    const seen = this.#q('DELETE FROM seen_messages WHERE expires_at <= ?').run(now).changes;
    const tokens = this.#q('DELETE FROM used_tokens WHERE expires_at <= ?').run(now).changes;
    return { queue, seen, tokens };
  }

  /** Records an accepted token id until it expires (replay-guard.ts). */
  recordUsedToken(id: string, expiresAt: number): void {
    this.#q(
      'INSERT INTO used_tokens (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at',
    ).run(id, expiresAt);
  }

  /** The token ids accepted before and not yet expired at `now`. */
  usedTokens(now: number): { id: string; expires_at: number }[] {
    return this.#q('SELECT id, expires_at FROM used_tokens WHERE expires_at > ? ORDER BY expires_at').all(
      now,
    ) as { id: string; expires_at: number }[];
  }
}
