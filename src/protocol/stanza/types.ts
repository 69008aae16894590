/**
 * The stanzas of the gateway protocol as TypeScript values: one discriminated union, `Stanza`,
 * discriminated by `kind` (the root element's name). Binary values are Uint8Array; the codec turns them
 * into base64 text. JIDs are opaque strings here (see jid.ts). Unix times are whole seconds.
 */

/** A one-time prekey: a 3-byte id and a 32-byte Curve25519 public key. */
export interface PreKey {
  readonly id: number;
  readonly publicKey: Uint8Array;
}

/** The signed prekey: a one-time prekey plus the 64-byte XEdDSA signature by the identity key. */
export interface SignedPreKey extends PreKey {
  readonly signature: Uint8Array;
}

/** An error answer: an HTTP-like code and an optional human-readable text. */
export interface ErrorInfo {
  readonly code: number;
  readonly text?: string | undefined;
}

/** A device's key bundle as the prekey server hands it out. */
export interface PreKeyBundle {
  readonly registrationId: number;
  readonly identityKey: Uint8Array;
  readonly signedPreKey: SignedPreKey;
  /** Absent when the device has run out of one-time prekeys. */
  readonly preKey?: PreKey | undefined;
}

/** One entry of a key fetch result: the bundle of a device JID, or why there is none. */
export type PreKeyFetchEntry =
  | ({ readonly jid: string } & PreKeyBundle & { readonly error?: undefined })
  | { readonly jid: string; readonly error: ErrorInfo };

/** One looked-up phone number. */
export interface DirectoryEntry {
  /** The number as asked, E.164 with "+". */
  readonly contact: string;
  /** Whether the number belongs to a user of the gatekeeper who can be reached through interop. */
  readonly onNetwork: boolean;
  /** The user's JID, when on the network. */
  readonly jid?: string | undefined;
  /** The user's device numbers, when on the network. */
  readonly devices: readonly number[];
}

/** What an admin does to participants; the same names announce the change. */
export type ParticipantAction = 'add' | 'remove' | 'promote' | 'demote';

/** Who may send (announcement: admins only) and who may edit the group's info (locked: admins only). */
export type GroupSetting = 'announcement' | 'not_announcement' | 'locked' | 'unlocked';

/** A participant of a group. */
export interface GroupParticipant {
  /** The user JID (no device). */
  readonly jid: string;
  readonly admin: boolean;
}

/** The outcome for one JID of a participants request: no error, or why it failed. */
export interface ParticipantResult {
  readonly jid: string;
  /** An error code (404 no such user, 403 not reachable, 409 already in, ...); absent: done. */
  readonly error?: number | undefined;
}

/** A group's state as the gateway holds it. */
export interface GroupInfo {
  /** `<id>@g.wa.interop`. */
  readonly jid: string;
  readonly subject: string;
  /** The user JID of the creator. */
  readonly creator: string;
  /** When the group was created. */
  readonly creation: number;
  /** Starts at 1 and grows by one with every change the gateway announces. */
  readonly version: number;
  readonly description?: { readonly id: string; readonly text: string } | undefined;
  /** Only admins may send. */
  readonly announce: boolean;
  /** Only admins may edit the subject, description and picture. */
  readonly locked: boolean;
  /** The group picture's id, when it has one. */
  readonly pictureId?: string | undefined;
  readonly participants: readonly GroupParticipant[];
}

/** One entry of a profile look-up: what the gateway holds about a user, or why there is nothing. */
export type ProfileEntry =
  | {
      readonly jid: string;
      readonly name?: string | undefined;
      readonly status?: string | undefined;
      readonly pictureId?: string | undefined;
      readonly error?: undefined;
    }
  | { readonly jid: string; readonly error: ErrorInfo };

/** The request or answer an iq carries, discriminated by `op`. Each op fixes the iq's `type` and `xmlns`. */
export type IqBody =
  /** set, encrypt: publish this device's keys (replaces the signed prekey, adds one-time prekeys). */
  | {
      readonly op: 'prekey_upload';
      readonly registrationId: number;
      readonly identityKey: Uint8Array;
      readonly preKeys: readonly PreKey[];
      readonly signedPreKey: SignedPreKey;
    }
  /** get, encrypt: how many one-time prekeys the server still holds for this device. */
  | { readonly op: 'prekey_count' }
  /** result: the answer to prekey_count. */
  | { readonly op: 'prekey_count_result'; readonly count: number }
  /** get, encrypt: the key bundles of these device JIDs. */
  | { readonly op: 'prekey_fetch'; readonly jids: readonly string[] }
  /** result: the answer to prekey_fetch, one entry per asked JID. */
  | { readonly op: 'prekey_fetch_result'; readonly users: readonly PreKeyFetchEntry[] }
  /** get, usync: which of these E.164 numbers are reachable, and their JIDs and devices. */
  | { readonly op: 'usync_query'; readonly contacts: readonly string[] }
  /** result: the answer to usync_query. */
  | { readonly op: 'usync_result'; readonly entries: readonly DirectoryEntry[] }
  /**
   * set, interop: opt this account in to interoperability. `signature` is the 64-byte XEdDSA
   * signature of the identity key over the enlistment statement (defined by the enlistment layer),
   * which includes `t` so that an old proof cannot be replayed.
   */
  | {
      readonly op: 'enlist';
      readonly t: number;
      readonly identityKey: Uint8Array;
      readonly signature: Uint8Array;
    }
  /** set, interop: opt this account out. */
  | { readonly op: 'unenlist' }
  /** get, w:m: where and how to upload media. */
  | { readonly op: 'media_conn' }
  /** result: the answer to media_conn. */
  | {
      readonly op: 'media_conn_result';
      readonly auth: string;
      readonly ttl: number;
      readonly hosts: readonly string[];
    }
  /** set, w:g2, to the group server: create a group with the sender as its first admin. */
  | {
      readonly op: 'group_create';
      readonly subject: string;
      /** Chosen by the creator, stable across resends: a resent create answers with the same group. */
      readonly key: string;
      /** The other participants (user JIDs); the creator is added implicitly. */
      readonly participants: readonly string[];
      readonly announce: boolean;
      readonly locked: boolean;
    }
  /** get, w:g2, to the group: its current state. */
  | { readonly op: 'group_info' }
  /** get, w:g2, to the group server: every group the account participates in. */
  | { readonly op: 'group_list' }
  /** set, w:g2, to the group: add, remove, promote or demote these user JIDs (admins only). */
  | {
      readonly op: 'group_participants';
      readonly action: ParticipantAction;
      readonly participants: readonly string[];
    }
  /** set, w:g2, to the group server: leave this group. */
  | { readonly op: 'group_leave'; readonly group: string }
  /** set, w:g2, to the group: a new subject. */
  | { readonly op: 'group_subject'; readonly subject: string }
  /**
   * set, w:g2, to the group: a new description (`description` absent: delete it). `id` names the new
   * one; `prev` the one it replaces, so that of two concurrent edits the second fails with 409.
   */
  | {
      readonly op: 'group_description';
      readonly id: string;
      readonly prev?: string | undefined;
      readonly description?: string | undefined;
    }
  /** set, w:g2, to the group: who may send (announcement) and who may edit the group's info (locked). */
  | { readonly op: 'group_setting'; readonly setting: GroupSetting }
  /** get, w:g2, to the group: the current invite code (admins only). */
  | { readonly op: 'group_invite' }
  /** set, w:g2, to the group: revoke the invite code and make a new one (admins only). */
  | { readonly op: 'group_invite_reset' }
  /** get, w:g2, to the group server: the group an invite code leads to, without joining. */
  | { readonly op: 'group_invite_info'; readonly code: string }
  /** set, w:g2, to the group server: join the group by its invite code. */
  | { readonly op: 'group_invite_join'; readonly code: string }
  /** result: a group's state (answers create, info, invite info and invite join). */
  | {
      readonly op: 'group_info_result';
      readonly group: GroupInfo;
      /** Only in the answer to a create: the participants that could not be added, and why. */
      readonly failed?: readonly ParticipantResult[] | undefined;
    }
  /** result: the answer to group_list. */
  | { readonly op: 'group_list_result'; readonly groups: readonly GroupInfo[] }
  /** result: the answer to group_participants, one entry per asked JID. */
  | {
      readonly op: 'group_participants_result';
      readonly action: ParticipantAction;
      readonly participants: readonly ParticipantResult[];
    }
  /** result: the answer to group_invite and group_invite_reset. */
  | { readonly op: 'group_invite_result'; readonly code: string }
  /** get, w:profile:picture: where to download the picture of a user or group. */
  | { readonly op: 'picture_get'; readonly target: string }
  /** set, w:profile:picture: a new picture (JPEG) for the account itself, or for the group `target`. */
  | { readonly op: 'picture_set'; readonly target?: string | undefined; readonly image: Uint8Array }
  /** set, w:profile:picture: remove the picture of the account itself, or of the group `target`. */
  | { readonly op: 'picture_remove'; readonly target?: string | undefined }
  /** result: the answer to picture_get and picture_set. */
  | {
      readonly op: 'picture_result';
      /** Changes whenever the picture changes. */
      readonly id: string;
      /** Absolute URL on the media host (section 7 of PROTOCOL.md); download with the media auth. */
      readonly url: string;
      readonly directPath: string;
    }
  /** get, w:profile: the profiles (push name, about, picture id) of these user JIDs. */
  | { readonly op: 'profile_get'; readonly jids: readonly string[] }
  /** result: the answer to profile_get, one entry per asked JID. */
  | { readonly op: 'profile_result'; readonly users: readonly ProfileEntry[] }
  /** set, w:profile: the account's push name. */
  | { readonly op: 'push_name_set'; readonly name: string }
  /** set, status: the account's about text ('' clears it). */
  | { readonly op: 'status_set'; readonly status: string }
  /** get, w:p: keepalive. */
  | { readonly op: 'ping' }
  /** result without content: a set succeeded, a ping is answered. */
  | { readonly op: 'result' }
  /** error: the request failed. */
  | { readonly op: 'error'; readonly error: ErrorInfo };

export type IqOp = IqBody['op'];
export type IqType = 'get' | 'set' | 'result' | 'error';

export interface IqStanza {
  readonly kind: 'iq';
  readonly id: string;
  readonly to?: string | undefined;
  readonly from?: string | undefined;
  readonly body: IqBody;
}

/** Authentication succeeded (sent once after the handshake). */
export interface SuccessStanza {
  readonly kind: 'success';
  /** Server time. */
  readonly t: number;
  /** The interop account id, as in the token's `sub`. */
  readonly account: string;
  readonly device: number;
}

/** Authentication failed; the gateway closes the connection after it. */
export interface FailureStanza {
  readonly kind: 'failure';
  /** Stable snake_case reason, e.g. token_expired, token_replayed, account_not_enlisted. */
  readonly reason: string;
  readonly text?: string | undefined;
}

export type EncType = 'pkmsg' | 'msg' | 'skmsg';
export type MediaType = 'image' | 'video' | 'audio' | 'ptt' | 'document' | 'sticker';

/** One ciphertext for one recipient device. */
export interface Enc {
  readonly type: EncType;
  /** The recipient's device; absent when the message's `to`/`from` JID names the one device. */
  readonly device?: number | undefined;
  readonly mediaType?: MediaType | undefined;
  /** The Signal message (WhisperMessage, PreKeyWhisperMessage or SenderKeyMessage) bytes. */
  readonly ciphertext: Uint8Array;
}

/** The pairwise ciphertext for one participant device of a group message (it carries the sender key). */
export interface ParticipantEnc {
  /** A device JID (`user:device@server`). */
  readonly jid: string;
  /** A pkmsg or msg, without `device`. */
  readonly enc: Enc;
}

export interface MessageStanza {
  readonly kind: 'message';
  /** Chosen by the sender, stable across resends: the gateway deduplicates on (sender, id). */
  readonly id: string;
  /** Set by a sender (client to gateway). */
  readonly to?: string | undefined;
  /** Set by the gateway when delivering. */
  readonly from?: string | undefined;
  /**
   * Group messages only: the individual device on the other side of the group. Delivered: the
   * sender's device. Sent: the one device a resend after a retry receipt is meant for.
   */
  readonly participant?: string | undefined;
  /** Set by the gateway when delivering: the sender's push name. */
  readonly notify?: string | undefined;
  readonly type: 'text' | 'media';
  readonly t: number;
  /**
   * One ciphertext per recipient device; or, in a group message, one skmsg (plus, when delivered,
   * at most one pkmsg/msg carrying the sender key for the receiving device).
   */
  readonly encs: readonly Enc[];
  /** Group messages sent with a skmsg: the sender key for the devices that lack it. Never empty. */
  readonly participants?: readonly ParticipantEnc[] | undefined;
}

export type AckClass = 'message' | 'receipt' | 'notification';

/** "I have stored it": from the gateway for accepted stanzas, from the client for delivered ones. */
export interface AckStanza {
  readonly kind: 'ack';
  readonly class: AckClass;
  /** The acknowledged stanza's id. */
  readonly id: string;
  readonly to?: string | undefined;
  readonly from?: string | undefined;
  /** Server time at which it was stored. */
  readonly t?: number | undefined;
  /** Set when the stanza was not accepted: an HTTP-like code. */
  readonly error?: number | undefined;
}

/** The keys a retry receipt carries after the first retry, so the sender can start a new session. */
export interface RetryKeys {
  readonly identityKey: Uint8Array;
  readonly signedPreKey: SignedPreKey;
  readonly preKey?: PreKey | undefined;
}

export interface Retry {
  /** 1 to 5. */
  readonly count: number;
  /** The id of the message that could not be decrypted. */
  readonly id: string;
  /** The failed message's timestamp. */
  readonly t: number;
  readonly registrationId: number;
  /** Required from count 2 on. */
  readonly keys?: RetryKeys | undefined;
}

/** Delivery (no type), read, or retry (decryption failed) of the message `id`. */
export interface ReceiptStanza {
  readonly kind: 'receipt';
  readonly id: string;
  readonly to?: string | undefined;
  readonly from?: string | undefined;
  readonly type?: 'read' | 'retry' | undefined;
  /**
   * Receipts about group messages: the individual on the other side of the group. Sent: the
   * message's sender. Delivered: the device that sends the receipt.
   */
  readonly participant?: string | undefined;
  readonly t: number;
  /** Present exactly when type is retry. */
  readonly retry?: Retry | undefined;
}

export interface ChatstateStanza {
  readonly kind: 'chatstate';
  readonly to?: string | undefined;
  readonly from?: string | undefined;
  readonly state: 'composing' | 'paused';
}

export interface PresenceStanza {
  readonly kind: 'presence';
  readonly type: 'available' | 'unavailable';
  readonly to?: string | undefined;
  readonly from?: string | undefined;
  /** Last seen, for unavailable. */
  readonly last?: number | undefined;
}

/** What an encrypt notification reports. */
export type EncryptEvent =
  /** The contact in `from` has a new identity key: drop its sessions, tell the user. */
  | { readonly event: 'identity_changed' }
  /** Only `count` one-time prekeys are left on the server: upload more. */
  | { readonly event: 'prekey_low'; readonly count: number };

export interface EncryptNotificationStanza {
  readonly kind: 'notification';
  readonly id: string;
  readonly from: string;
  readonly t: number;
  readonly type: 'encrypt';
  readonly body: EncryptEvent;
}

/** What a group notification (w:gp2) announces. */
export type GroupEvent =
  /** The group was created with the receiver in it. */
  | { readonly event: 'group_created'; readonly group: GroupInfo }
  /**
   * Participants were added, removed, promoted or demoted. A remove whose author (the
   * notification's `participant`) is the removed user is a leave; `reason: 'invite'` marks a join by
   * invite code.
   */
  | {
      readonly event: 'participants_changed';
      readonly action: ParticipantAction;
      readonly participants: readonly string[];
      readonly reason?: 'invite' | undefined;
    }
  | { readonly event: 'subject_changed'; readonly subject: string }
  /** `description` absent: deleted. */
  | { readonly event: 'description_changed'; readonly id: string; readonly description?: string | undefined }
  | { readonly event: 'setting_changed'; readonly setting: GroupSetting };

/** A change to a group, sent to every device of every participant (and of those just removed). */
export interface GroupNotificationStanza {
  readonly kind: 'notification';
  readonly id: string;
  /** The group. */
  readonly from: string;
  /** Who made the change (a user JID); absent when the gateway did. */
  readonly participant?: string | undefined;
  readonly t: number;
  /** The group's version after this change. */
  readonly version: number;
  readonly type: 'w:gp2';
  readonly body: GroupEvent;
}

/** A user's or a group's picture changed. */
export interface PictureNotificationStanza {
  readonly kind: 'notification';
  readonly id: string;
  /** Whose picture: a user or a group. */
  readonly from: string;
  /** Groups only: who changed it. */
  readonly participant?: string | undefined;
  readonly t: number;
  /** Groups only: the group's version after this change. */
  readonly version?: number | undefined;
  readonly type: 'picture';
  readonly body:
    { readonly event: 'picture_set'; readonly id: string } | { readonly event: 'picture_removed' };
}

/** A contact changed its push name or its about text. */
export interface ProfileNotificationStanza {
  readonly kind: 'notification';
  readonly id: string;
  /** The user. */
  readonly from: string;
  readonly t: number;
  readonly type: 'profile';
  readonly body:
    | { readonly event: 'push_name_changed'; readonly name: string }
    /** '' when cleared. */
    | { readonly event: 'status_changed'; readonly status: string };
}

/** Every notification, discriminated by `type` (and each body by `event`). */
export type NotificationStanza =
  EncryptNotificationStanza | GroupNotificationStanza | PictureNotificationStanza | ProfileNotificationStanza;

export type Stanza =
  | SuccessStanza
  | FailureStanza
  | IqStanza
  | MessageStanza
  | AckStanza
  | ReceiptStanza
  | ChatstateStanza
  | PresenceStanza
  | NotificationStanza;

export type StanzaKind = Stanza['kind'];
