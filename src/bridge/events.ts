/**
 * Canonical events: what adapters hand the core and the core hands adapters. They name local
 * users (a Matrix user id or an XMPP bare JID) and remote contacts (a gatekeeper user's JID such as
 * `4915112345678@wa.interop`), never rooms or stanzas: those are the adapters' business. Every event
 * that can be referred to later carries a stable id on each side (`localId` from the adapter,
 * `remoteId` on the wire), kept in the message map.
 */

/** Text with the gatekeeper's lightweight markup (*bold* _italic_ ~strike~ ```mono```). */
export interface TextBody {
  readonly kind: 'text';
  readonly text: string;
  /** Who the text mentions; each is written in `text` as its `token`. */
  readonly mentions?: readonly Mention[] | undefined;
}

/**
 * Someone a text mentions, written in the text as `@` and the user part of their JID
 * (`@4915112345678`, the gatekeeper's way): an adapter shows it as its network shows a mention (a
 * Matrix pill, an XMPP reference).
 */
export interface Mention {
  /** The mentioned user's remote JID; for the local user themselves, their puppet's address. */
  readonly remote: string;
  /** How the text writes the mention: `@4915112345678`. */
  readonly token: string;
  /** The local user themselves (someone mentioned the user the message is for). */
  readonly self?: boolean | undefined;
}

/** A place on the map (WGS 84 degrees), with what the sender said about it. */
export interface LocationBody {
  readonly kind: 'location';
  readonly latitude: number;
  readonly longitude: number;
  readonly name?: string | undefined;
  readonly address?: string | undefined;
  readonly url?: string | undefined;
  readonly comment?: string | undefined;
}

export type MediaKind = 'image' | 'video' | 'audio' | 'voice' | 'file';

/** A file, by a local path the core may read (outgoing) or has written (incoming). */
export interface MediaBody {
  readonly kind: 'media';
  readonly media: MediaKind;
  readonly path: string;
  /**
   * Outgoing: the file at `path` is sealed with the at-rest key (src/util/sealed-file.ts), as an
   * adapter's spool keeps what waits; the core opens it with the same key when it sends it.
   */
  readonly sealed?: boolean | undefined;
  readonly mimetype: string;
  readonly size: number;
  readonly fileName?: string | undefined;
  readonly caption?: string | undefined;
  /** Seconds, for audio, voice and video. */
  readonly durationSeconds?: number | undefined;
  readonly width?: number | undefined;
  readonly height?: number | undefined;
}

/**
 * A reply quotes an earlier message by its local id (outgoing) or remote id (incoming). Incoming,
 * `localId` is the adapter's own id of the quoted message when the message map knows it (the adapter
 * never sees the map), so it can render the reply without a look-up of its own.
 */
export interface ReplyRef {
  readonly id: string;
  readonly localId?: string | undefined;
}

export interface MessageEvent {
  readonly type: 'message';
  readonly body: TextBody | MediaBody | LocationBody;
  readonly replyTo?: ReplyRef | undefined;
}

/**
 * Edits, deletes (revokes) and reactions travel both ways: `content.ts` maps them to and from the
 * wire's contents; the message map resolves their targets.
 *
 * `target` is a local id (outgoing) or a remote id (incoming); incoming, `targetLocalId` is the
 * local id of the target when the message map knows it.
 */
export interface EditEvent {
  readonly type: 'edit';
  readonly target: string;
  readonly targetLocalId?: string | undefined;
  readonly body: TextBody;
}
export interface DeleteEvent {
  readonly type: 'delete';
  readonly target: string;
  readonly targetLocalId?: string | undefined;
}
export interface ReactionEvent {
  readonly type: 'reaction';
  readonly target: string;
  readonly targetLocalId?: string | undefined;
  /** An emoji; empty removes the reaction. */
  readonly emoji: string;
}

export interface ReceiptEvent {
  readonly type: 'receipt';
  readonly receipt: 'delivered' | 'read';
  /**
   * The ids (local when outgoing, remote when incoming) of the messages receipted. An outgoing
   * read receipt covers the contact's earlier messages too, each once: naming the newest one read
   * is enough (as a Matrix read receipt or an XEP-0333 displayed marker does).
   */
  readonly targets: readonly string[];
}

export interface TypingEvent {
  readonly type: 'typing';
  readonly typing: boolean;
}

export interface PresenceEvent {
  readonly type: 'presence';
  readonly available: boolean;
}

export type ConversationEvent =
  MessageEvent | EditEvent | DeleteEvent | ReactionEvent | ReceiptEvent | TypingEvent | PresenceEvent;

/** An event from a local user to a remote contact, as an adapter submits it. */
export interface OutgoingEvent {
  /** The adapter's id for this event (Matrix event id, XMPP stanza/origin id): the dedupe key. */
  readonly localId: string;
  /** Matrix user id or XMPP bare JID. */
  readonly localUser: string;
  /** The remote contact's user JID. */
  readonly remote: string;
  readonly event: ConversationEvent;
}

/** An event from a remote contact to a local user, as the core hands it to the adapter. */
export interface IncomingEvent {
  /** The sender's wire message id: stable across redeliveries, so the adapter can be idempotent. */
  readonly remoteId: string;
  readonly localUser: string;
  /** The conversation: the contact, or the group (`<id>@g.wa.interop`). */
  readonly remote: string;
  /** In a group: the participant who sent it (their remote JID). Absent in a 1:1 conversation. */
  readonly author?: string | undefined;
  /** Sender's time, milliseconds since the epoch. */
  readonly timestamp: number;
  readonly event: ConversationEvent;
  /**
   * The adapter may have been handed this event before without the core hearing back (an earlier
   * attempt failed, or the bridge stopped first): an adapter whose network does not make a resend
   * idempotent by itself looks for what it sent before sending again. False for a first attempt.
   */
  readonly mayBeRepeat?: boolean;
  /**
   * The local user sent this themselves, to `remote`, from another of their devices on the
   * gatekeeper's side (multi-device sync): shown as theirs, not the contact's. Only for adapters
   * with the `fromOtherDevices` capability.
   */
  readonly fromSelf?: boolean;
}

/**
 * Typing and presence of a remote contact: live only, never stored, not acknowledged, no id. Shown
 * if the local user is there to see it, dropped otherwise.
 */
export interface EphemeralEvent {
  readonly localUser: string;
  readonly remote: string;
  readonly event: TypingEvent | PresenceEvent;
}

/** What happened to an outgoing event, for the adapter to show (send status, ticks, errors). */
export type DeliveryState = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';

export interface DeliveryUpdate {
  readonly localId: string;
  readonly localUser: string;
  readonly remote: string;
  readonly state: DeliveryState;
  /** Set when failed: a sentence for the user ("the contact is not on the interop network"). */
  readonly reason?: string | undefined;
  /**
   * In a group: the member (remote JID) whose receipt this is. Each member's delivery and read
   * receipts come one by one, in any order (a member's "delivered" may follow another's "read"):
   * show them per member (a ghost's read marker), not as the message's one state.
   */
  readonly by?: string | undefined;
}

/** Things the user should know that are not messages. */
export type Notice =
  | {
      readonly kind: 'identity_changed';
      readonly remote: string;
      readonly safetyNumber: string;
      readonly blocked: boolean;
    }
  | {
      readonly kind: 'connection';
      readonly state: 'connected' | 'connecting' | 'disconnected' | 'refused';
      readonly detail?: string;
    }
  | { readonly kind: 'enlisted' }
  | { readonly kind: 'opted_out' }
  /** A notice from the bridge's operator to every enlisted user (the admin `broadcast` command). */
  | { readonly kind: 'broadcast'; readonly text: string };

// ---- Groups ----

/** A member of a group, as the core tells the adapter. */
export interface GroupMember {
  /** The member's remote JID (a gatekeeper user, or another provider's account). */
  readonly remote: string;
  /** `+4915112345678` for a gatekeeper user. */
  readonly phone?: string | undefined;
  /** An admin of the group (an Element moderator, an XMPP room admin). */
  readonly admin: boolean;
  /** The local user's own puppet. */
  readonly self?: boolean | undefined;
}

/** A group's state after a change, as the gateway announced it. */
export interface GroupSnapshot {
  /** `<id>@g.wa.interop`: the group's remote, as `IncomingEvent.remote` names it. */
  readonly group: string;
  readonly subject: string;
  readonly description?: string | undefined;
  /** Only admins send. */
  readonly announce: boolean;
  /** Only admins edit the subject, description and picture. */
  readonly locked: boolean;
  /** Grows by one with every change. */
  readonly version: number;
  readonly members: readonly GroupMember[];
}

/** What changed in a group (who did it in `by`, a remote JID, when someone did). */
export type GroupChange =
  | { readonly kind: 'created' }
  | {
      readonly kind: 'added' | 'removed' | 'promoted' | 'demoted';
      readonly members: readonly string[];
      /** A join by invite code. */
      readonly byInvite?: boolean | undefined;
    }
  | { readonly kind: 'subject' | 'description' | 'settings' }
  /** The local user is no longer a member (removed, or left): the group ends for them. */
  | { readonly kind: 'gone' };

/** A change of a group the local user is in, in order with the group's messages. */
export interface GroupUpdate {
  readonly localUser: string;
  readonly snapshot: GroupSnapshot;
  readonly change: GroupChange;
  /** The remote who made the change; absent when the gateway did. */
  readonly by?: string | undefined;
  /** Stable across redeliveries (the group and its version): the adapter makes a repeat a no-op. */
  readonly updateId: string;
}

// ---- Contacts' profiles ----

/** A contact's profile as the gateway has it (PROTOCOL.md 5.8), for the adapter to show. */
export interface ContactProfile {
  /**
   * The contact; or a group (`<id>@g.wa.interop`), whose profile is its picture alone (its subject
   * and description come with `GroupUpdate`): show it as the group's avatar.
   */
  readonly remote: string;
  /** The push name the contact chose; absent: none (show the number). */
  readonly name?: string | undefined;
  /** The about text. */
  readonly about?: string | undefined;
  /**
   * The contact's picture; absent: none (or removed). `id` changes whenever the picture does; the
   * bytes (a JPEG) come when it changed since the adapter was last told, not when it is the same.
   */
  readonly picture?:
    | { readonly id: string; readonly bytes?: Uint8Array | undefined; readonly mimetype?: string | undefined }
    | undefined;
}
