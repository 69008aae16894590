/**
 * What the XMPP adapter keeps: the users' contacts with their subscription state, the stanza ids
 * of delivered incoming events, and the journal of what users sent (crash safety, journal.ts). Every method returns a promise, so that an asynchronous backend
 * fits; the wiring picks the implementation (sqlite-store.ts on the bridge's SQLite database).
 */

/** A gatekeeper contact as one local user has it in their roster. */
export interface XmppContact {
  readonly localUser: string;
  /** The contact JID's local part, e.g. `+4915112345678`. */
  readonly contact: string;
  readonly remote: string;
  readonly name: string | null;
  /** The user receives the contact's presence (RFC 6121 subscription "to", from the user's side). */
  readonly subTo: boolean;
  /** The contact receives the user's presence. */
  readonly subFrom: boolean;
  /** The contact has asked the user for a subscription (asked once: a refusal is not repeated). */
  readonly asked: boolean;
  /** The contact's about text (vCard DESC). */
  readonly about: string | null;
  /** The contact's picture: its id at the gateway and SHA-1 (hex, XEP-0153); the bytes via `photo`. */
  readonly photoId: string | null;
  readonly photoHash: string | null;
}

/** Subscription flags to set; those left out keep their value. */
export interface SubscriptionChange {
  readonly subTo?: boolean;
  readonly subFrom?: boolean;
  readonly asked?: boolean;
}

/** A message stanza a user sent, as journaled when it was parsed. */
export interface JournalAppend {
  readonly localUser: string;
  /** The contact's bare JID. */
  readonly contact: string;
  /** XEP-0359 origin-id, else the stanza id. */
  readonly localId: string;
  /**
   * The stanza as received (serialised), sealed with the at-rest key when the bridge has one (as
   * text: journal.ts SEALED_STANZA_PREFIX); null when the core already has it (the row only says it
   * was taken).
   */
  readonly stanza: string | null;
  readonly receivedAt: number;
}

/** A journaled stanza not yet handed to the core, as stored (sealed, or plain from before sealing). */
export type JournalRow = JournaledStanza;

/** A journaled stanza not yet handed to the core (to be replayed), opened. */
export interface JournaledStanza {
  readonly seq: number;
  readonly localUser: string;
  /** The local id it was journaled under (kept: an id-less stanza's is derived from its text). */
  readonly localId: string;
  readonly stanza: string;
}

/** One write of the journal: every part lands in one transaction. */
export interface JournalWrite {
  /** The run the appended rows belong to. */
  readonly run: number;
  readonly append: readonly JournalAppend[];
  /** Rows the core now has: their content is cleared (the row is kept for the crash notice). */
  readonly settle: readonly number[];
  /** Removes content-free rows with a seq below this (those older than the notice window). */
  readonly pruneBelow?: number | undefined;
}

/** What a user had sent to one contact in the runs before the current one. */
export interface JournalSummary {
  readonly localUser: string;
  readonly contact: string;
  /** How many of their messages the journal holds (the last minute's before the stop). */
  readonly count: number;
  /** The last of them: its local id and when it was received. */
  readonly lastLocalId: string;
  readonly lastAt: number;
}

/** A start of the adapter; `stoppedAt` is unset until it stops cleanly. */
export interface XmppRun {
  readonly run: number;
  readonly startedAt: number;
  readonly stoppedAt: number | undefined;
}

export interface XmppStore {
  /** The user's contact with this JID local part, if there is one. */
  contact(localUser: string, contact: string): Promise<XmppContact | undefined>;
  /** The user's contact for a remote (a gatekeeper user JID), if there is one. */
  contactByRemote(localUser: string, remote: string): Promise<XmppContact | undefined>;
  /** The user's contacts, ordered by JID local part. */
  contacts(localUser: string): Promise<XmppContact[]>;
  /** Creates the contact if missing (keeping its subscription state; a given name replaces the old one) and resolves with it. */
  ensureContact(localUser: string, contact: string, remote: string, name?: string): Promise<XmppContact>;
  /**
   * The contact's profile as the gateway has it: name, about text, and picture (`photo` absent: none;
   * `bytes` absent: the same picture as stored, kept).
   */
  setProfile(
    localUser: string,
    contact: string,
    profile: {
      readonly name: string | null;
      readonly about: string | null;
      readonly photo?: {
        readonly id: string;
        readonly hash: string;
        readonly bytes?: Uint8Array;
        readonly type?: string;
      };
    },
  ): Promise<void>;
  /** The contact's picture (for its vCard), if it has one. */
  contactPhoto(localUser: string, contact: string): Promise<{ bytes: Uint8Array; type: string } | undefined>;
  /** Sets the given subscription flags of an existing contact. */
  setSubscription(localUser: string, contact: string, change: SubscriptionChange): Promise<void>;
  /**
   * Records a new run (a start of the adapter) and resolves with it and the one before, whose
   * `stoppedAt` is unset if the bridge did not stop cleanly.
   */
  beginRun(): Promise<{ run: XmppRun; previous: XmppRun | undefined }>;
  /** Marks the run as cleanly stopped and removes the content-free journal rows. */
  endRun(run: number): Promise<void>;
  /**
   * Appends, settles and prunes journal rows in one transaction and resolves with the new rows'
   * seqs, in order. The append must be durable when this resolves (the SQLite backend writes before
   * it returns).
   */
  writeJournal(write: JournalWrite): Promise<number[]>;
  /** The journaled stanzas not yet handed to the core, in the order they were received. */
  journaled(): Promise<JournalRow[]>;
  /** Per user and contact, what the journal holds from runs before `run`. */
  journalSummary(beforeRun: number): Promise<JournalSummary[]>;
  /** Removes the content-free journal rows of runs before `run` (their notice was given). */
  forgetJournal(beforeRun: number): Promise<void>;
  /** Removes everything kept for a user (on unregistration). */
  forgetUser(localUser: string): Promise<void>;
}
