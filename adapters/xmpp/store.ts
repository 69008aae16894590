/**
 * What the XMPP adapter keeps: the users' contacts with their subscription state, and the stanza ids
 * of delivered incoming events. Every method returns a promise, so that an asynchronous backend
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
}

/** Subscription flags to set; those left out keep their value. */
export interface SubscriptionChange {
  readonly subTo?: boolean;
  readonly subFrom?: boolean;
  readonly asked?: boolean;
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
  /** Sets the given subscription flags of an existing contact. */
  setSubscription(localUser: string, contact: string, change: SubscriptionChange): Promise<void>;
  /** The stanza id under which an incoming event was shown, if it was. */
  deliveredStanza(localUser: string, remote: string, remoteId: string): Promise<string | undefined>;
  /** Records that an incoming event was shown under `stanzaId` (a second record of it is ignored). */
  markDelivered(localUser: string, remote: string, remoteId: string, stanzaId: string): Promise<void>;
  /** Forgets delivery records older than `maxAgeMs` and resolves with how many there were. */
  pruneDelivered(maxAgeMs: number): Promise<number>;
  /** Removes everything kept for a user (on unregistration). */
  forgetUser(localUser: string): Promise<void>;
}
