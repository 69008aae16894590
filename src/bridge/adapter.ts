/**
 * The contract between the core and one local network (Matrix or XMPP). The core calls these
 * methods; the adapter calls the core through `BridgeCore` (below). An adapter never sees Signal,
 * Noise, JWTs or stanzas.
 */
import type { DeliveryUpdate, EphemeralEvent, IncomingEvent, Notice, OutgoingEvent } from './events.js';

/** What an adapter's network can show; the core does not send what cannot be shown. */
export interface AdapterCapabilities {
  readonly media: boolean;
  readonly replies: boolean;
  readonly edits: boolean;
  readonly deletes: boolean;
  readonly reactions: boolean;
  readonly readReceipts: boolean;
  readonly typing: boolean;
  readonly presence: boolean;
  /** Largest file the network accepts, in bytes; larger incoming files get a notice instead. */
  readonly maxMediaBytes: number;
}

export interface Adapter {
  /** 'matrix' or 'xmpp': the namespace of `localUser` values. */
  readonly network: 'matrix' | 'xmpp';
  readonly capabilities: AdapterCapabilities;

  /**
   * Shows an incoming event to the local user. Called in order per (localUser, remote), at least
   * once: after a crash the same `remoteId` can come again, so the adapter must make the second
   * delivery a no-op (it may look itself up by `remoteId`). Resolve only once the event is safely
   * on the local network (the homeserver or XMPP server accepted it): the core then marks it
   * delivered and sends the delivery receipt. Reject to have it retried later.
   * Returns the local id of what was created, for the message map.
   */
  deliver(event: IncomingEvent): Promise<string | undefined>;

  /**
   * Shows a contact's typing or presence. Live only: called when it happens, never repeated, never
   * after a restart. Must not throw and should not wait for the local network.
   */
  showEphemeral(event: EphemeralEvent): void;

  /** Shows the state of an outgoing event (send status, ticks, a failure). Must not throw. */
  updateDelivery(update: DeliveryUpdate): void;

  /** Tells the local user something that is not a message. Must not throw. */
  notify(localUser: string, notice: Notice): void;
}

/** What the core offers adapters. */
export interface BridgeCore {
  /**
   * Accepts an outgoing event: it is durably in the outbox when this resolves (answer the local
   * server only then). Idempotent on `localId`: a resubmission after a crash is not sent twice.
   * Typing and presence are the exception: sent at once when connected, dropped otherwise.
   * Rejects with `bridge_not_enlisted` for a user without a puppet and `bridge_bad_remote` for a
   * remote that is not a user JID.
   */
  submit(event: OutgoingEvent): Promise<void>;
  /**
   * The local user came online or went offline on the local network. With the `presence`
   * lifecycle the puppet is connected only while its user is online (the reference offer asks
   * proxies to connect for users who are there); with `always` this only sends the presence.
   */
  setOnline(localUser: string, online: boolean): void;
  /** Opts the local user in: creates the puppet, its keys, and enlists it at the gateway. */
  enlist(localUser: string): Promise<void>;
  /** Opts the local user out and removes the puppet with everything it owns. */
  optOut(localUser: string): Promise<void>;
  /** Whether a phone number is reachable, and its JID. */
  lookup(localUser: string, phone: string): Promise<{ reachable: boolean; jid?: string }>;
  /** The safety number between the local user and a contact, for `safety +number`. */
  safetyNumber(localUser: string, remote: string): Promise<string>;
  /** Confirms a changed identity (block_until_confirmed policy). */
  confirmIdentity(localUser: string, remote: string): Promise<void>;
  /** The local user's puppet and connection state, for `status`. */
  status(localUser: string): { enlisted: boolean; connection: string; queued: number };
}
