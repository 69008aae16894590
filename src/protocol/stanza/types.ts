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

export interface MessageStanza {
  readonly kind: 'message';
  /** Chosen by the sender, stable across resends: the gateway deduplicates on (sender, id). */
  readonly id: string;
  /** Set by a sender (client to gateway). */
  readonly to?: string | undefined;
  /** Set by the gateway when delivering. */
  readonly from?: string | undefined;
  readonly type: 'text' | 'media';
  readonly t: number;
  readonly encs: readonly Enc[];
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

export interface NotificationStanza {
  readonly kind: 'notification';
  readonly id: string;
  readonly from: string;
  readonly t: number;
  readonly type: 'encrypt';
  readonly body: EncryptEvent;
}

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
