/**
 * The contract between the core and one local network (Matrix or XMPP), in the manner of
 * mautrix-go bridgev2's `NetworkConnector`: the core calls `Adapter`, the adapter calls `BridgeCore`.
 * An adapter never sees Signal, Noise, JWTs, stanzas or the core's tables.
 *
 * Life of an adapter, the same for every network (the wiring in app/ does exactly this):
 *
 *   const adapter = createXyzAdapter(context, ownStore);   // an AdapterFactory: no I/O yet
 *   bridge.attach(adapter);                                // the core calls adapter.attach(core)
 *   await adapter.start();                                 // connects to the local network
 *   await bridge.start();                                  // puppets connect, pending events flow
 *   ...
 *   await adapter.stop();  await bridge.stop();
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { PayloadVault } from '../util/payload-vault.js';
import type { FileSealer } from '../util/sealed-file.js';
import type { HttpListener } from '../util/http-listener.js';
import type {
  ContactProfile,
  DeliveryUpdate,
  EphemeralEvent,
  GroupSnapshot,
  GroupUpdate,
  IncomingEvent,
  Notice,
  OutgoingEvent,
} from './events.js';

export type Network = 'matrix' | 'xmpp';

/**
 * What an adapter's network can show. The core reads these before every call (fallbacks.ts):
 * content the network cannot show arrives as a readable text instead (an edit as "✎ new text", a
 * reaction as a short line, a file over `maxMediaBytes` or without `media` as a notice naming it),
 * never as nothing; status signals it cannot show (receipts, typing, presence) are not sent.
 */
export interface AdapterCapabilities {
  /**
   * The local user's own messages sent from another of their devices on the gatekeeper's side
   * (`IncomingEvent.fromSelf`); without it they are not shown.
   */
  readonly fromOtherDevices?: boolean;
  /** Files (images, video, audio, documents); without it each arrives as a notice naming it. */
  readonly media: boolean;
  /** Locations shown on a map; without it a location arrives as text with its geo: URI. */
  readonly locations: boolean;
  /** Replies that point at the quoted message; without it the message arrives without the link. */
  readonly replies: boolean;
  /** Edits of earlier messages; without it an edit arrives as a new message "✎ new text". */
  readonly edits: boolean;
  /** Deletions of earlier messages; without it a deletion arrives as a short notice. */
  readonly deletes: boolean;
  /** Reactions; without it a reaction arrives as a short line ("reacted 👍"). */
  readonly reactions: boolean;
  /** Delivered and read ticks on the user's own messages; without it only failures are shown. */
  readonly readReceipts: boolean;
  /** Contacts' typing; without it never sent. */
  readonly typing: boolean;
  /** Contacts' presence; without it never sent. */
  readonly presence: boolean;
  /** Largest file the network accepts, in bytes; a larger incoming file arrives as a notice. */
  readonly maxMediaBytes: number;
}

export interface Adapter {
  /** The namespace of `localUser` values: Matrix user ids or XMPP bare JIDs. */
  readonly network: Network;
  /** Read by the core before every call; may change only while the adapter is stopped. */
  readonly capabilities: AdapterCapabilities;

  /**
   * Called once, by `Bridge.attach`, before `start()`: the core this adapter calls. Must not do
   * I/O or call the core yet.
   */
  attach(core: BridgeCore): void;

  /**
   * Connects to the local network (the appservice listener, the component stream) and starts
   * handling its traffic, including what was stored before a restart. Rejects with a typed error
   * that says what to do when the first connection fails; later drops are the adapter's to retry.
   */
  start(): Promise<void>;

  /**
   * Stops taking new work, lets work in flight finish and closes the connection to the local
   * network. Nothing accepted is lost: what the core has not confirmed is delivered again later.
   */
  stop(): Promise<void>;

  /**
   * Shows an incoming event to the local user. Called in order per (localUser, remote), at least
   * once: after a crash the same `remoteId` can come again, so the adapter must make the second
   * delivery a no-op (it may look itself up by `remoteId`). Resolve only once the event is safely
   * on the local network (the homeserver or XMPP server accepted it): the core then marks it
   * delivered and sends the delivery receipt. Reject to have it retried later. Never called with
   * an event the capabilities say the network cannot show.
   * Returns the local id of what was created, for the message map.
   */
  deliver(event: IncomingEvent): Promise<string | undefined>;

  /**
   * Shows a contact's typing or presence. Live only: called when it happens, never repeated, never
   * after a restart. Must not throw and should not wait for the local network.
   */
  showEphemeral(event: EphemeralEvent): void;

  /**
   * Shows the state of an outgoing event (send status, ticks, a failure). Must not throw. May return
   * a promise that resolves once the local network has the state for good (rejects if it could not
   * be shown): the core acknowledges a contact's receipt to the gateway only then, so that a crash
   * before it makes the gateway deliver the receipt again.
   */
  updateDelivery(update: DeliveryUpdate): void | Promise<void>;

  /** Tells the local user something that is not a message. Must not throw. */
  notify(localUser: string, notice: Notice): void;

  /**
   * What the provisioning API (src/provisioning) needs of this network, doing what the network's
   * chat commands do. Absent: the API does not serve this network's users.
   */
  readonly provisioning?: ProvisioningHooks;
}

/**
 * An adapter whose network shows group chats (a Matrix room, an XMPP MUC). Optional: an adapter
 * without it gets no group messages (the core leaves them pending) and no group updates.
 */
export interface GroupAdapter extends Adapter {
  /**
   * Shows a change of a group the local user is in: the first one (`created`) makes the group's
   * chat with every member, later ones keep its members, their roles, its name and topic in step;
   * `gone` ends it for the user. Called in order with the group's messages, at least once (make a
   * repeated `updateId` a no-op); resolve once the local network has it, reject to have it retried.
   */
  updateGroup(update: GroupUpdate): Promise<void>;
}

/** Whether the adapter shows group chats. */
export function isGroupAdapter(adapter: Adapter): adapter is GroupAdapter {
  return typeof (adapter as Partial<GroupAdapter>).updateGroup === 'function';
}

/**
 * An adapter whose network shows contacts' names and pictures (a ghost's display name and avatar, a
 * roster name, vCard and avatar). Optional: without it contacts stay their numbers.
 */
export interface ProfileAdapter extends Adapter {
  /**
   * Shows a contact's profile to the local user: called when the user first hears from the contact
   * in a run and whenever the contact changes it. Resolve once the network has it; a failure is only
   * logged (the next change or message brings it again). Make an unchanged profile a no-op.
   */
  updateProfile(localUser: string, profile: ContactProfile): Promise<void>;
}

/** Whether the adapter shows contacts' profiles. */
export function isProfileAdapter(adapter: Adapter): adapter is ProfileAdapter {
  return typeof (adapter as Partial<ProfileAdapter>).updateProfile === 'function';
}

/** What a local user asks of a group (the adapters' group commands). */
export type GroupRequest =
  | { readonly action: 'add' | 'remove' | 'promote' | 'demote'; readonly members: readonly string[] }
  | { readonly action: 'subject'; readonly subject: string }
  | { readonly action: 'description'; readonly description: string }
  | { readonly action: 'leave' };

/** A gatekeeper contact as a local user sees it on their network. */
export interface LocalContact {
  /** The contact's remote (`4915112345678@wa.interop`). */
  readonly remote: string;
  /** `+4915112345678`. */
  readonly phone: string;
  /** The contact's name as the network shows it. */
  readonly name: string;
  /** The contact on the local network: its ghost's Matrix ID, or its XMPP address. */
  readonly localId: string;
  /** The direct chat with the contact, when the user has one: a Matrix room ID, or the XMPP address. */
  readonly dm?: string | undefined;
}

/** The provisioning API's questions to one network (each adapter answers for its own users). */
export interface ProvisioningHooks {
  /** Whether `user` is written as this network's user ids are (a Matrix ID, a bare JID). */
  owns(user: string): boolean;
  /** The user's permission level on this network (`none` may not use the bridge at all). */
  permissionOf(user: string): 'none' | 'user' | 'admin';
  /** The contact as the user sees it (whether or not there is a chat yet). */
  contact(user: string, remote: string): Promise<LocalContact>;
  /** The user's contacts known to the bridge, each with its chat when there is one. */
  contacts(user: string): Promise<readonly LocalContact[]>;
  /** Opens the direct chat with the contact, as the network's start-chat command does. */
  startChat(
    user: string,
    remote: string,
    phone: string,
  ): Promise<LocalContact & { readonly existed: boolean }>;
  /** Where the user gives chat commands (a Matrix management room), if the network has one. */
  commandRoom?(user: string): Promise<string | undefined>;
}

/** The status of a local user's puppet, for `status` commands. */
export interface PuppetStatus {
  readonly enlisted: boolean;
  /** The gateway connection's state ('connected', 'connecting', ...), or 'none' without a puppet. */
  readonly connection: string;
  /** Outgoing events waiting to be sent. */
  readonly queued: number;
}

/** One puppet as an administrator sees it (the admin `puppets` and `show` commands). */
export interface PuppetReport extends PuppetStatus {
  readonly localUser: string;
  readonly network: Network;
  /** The puppet's stored state: enlisting, enlisted or opting_out. */
  readonly state: string;
  /** The interop account's address at the gateway (what the gatekeeper's users see). */
  readonly address: string;
  /** Incoming messages received but not yet shown on the local network. */
  readonly inboxPending: number;
  /** The last gateway connection problem since the bridge started, if any. */
  readonly lastError?: { readonly code: string; readonly message: string; readonly at: string } | undefined;
}

/** What the core offers adapters, bound to the adapter's network. */
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
  /** Opts the local user (of any network: admins use it too) out and removes the puppet with everything it owns. */
  optOut(localUser: string): Promise<void>;
  /** Whether a phone number (`+4915112345678`) is reachable, and its remote. */
  lookup(localUser: string, phone: string): Promise<{ reachable: boolean; jid?: string }>;
  /** The safety number (60 digits) between the local user and a contact, for `safety +number`. */
  safetyNumber(localUser: string, remote: string): Promise<string>;
  /** Confirms a changed identity (block_until_confirmed policy). */
  confirmIdentity(localUser: string, remote: string): Promise<void>;
  /** The local user's puppet and connection state, for `status`. */
  status(localUser: string): Promise<PuppetStatus>;
  /** Whether the local user has an enlisted puppet of this adapter's network. */
  isEnlisted(localUser: string): Promise<boolean>;
  /** The enlisted local users of this adapter's network. */
  enlistedUsers(): Promise<readonly string[]>;
  /**
   * Administration (callers check the caller is an admin first): every puppet of every network,
   * or the one of `localUser`, with its connection, queue and last error.
   */
  puppets(localUser?: string): Promise<readonly PuppetReport[]>;
  /** Drops and reopens the puppet's gateway connection (a `refused` one too); false without a puppet. */
  reconnect(localUser: string): Promise<boolean>;
  /** Tells every enlisted user of every network `text` (a `broadcast` notice); resolves with how many. */
  broadcast(text: string): Promise<number>;
  /**
   * Creates a group at the gateway with the local user as its admin and `members` (remote JIDs) in
   * it; resolves with its state once created (the adapter then also gets its `created` update).
   * Rejects with a typed error that says what went wrong (a member unknown, too many, no puppet).
   */
  createGroup?(localUser: string, subject: string, members: readonly string[]): Promise<GroupSnapshot>;
  /** Asks the gateway for a change of a group the local user is in; rejects with its reason. */
  changeGroup?(localUser: string, group: string, request: GroupRequest): Promise<void>;
  /** A group the local user is in, as the core last heard of it (no gateway request). */
  group?(localUser: string, group: string): Promise<GroupSnapshot | undefined>;
  /** The groups the local user is in. */
  groups?(localUser: string): Promise<readonly GroupSnapshot[]>;
  /**
   * What the adapter refused to show before can be shown now (the user joined a group's room):
   * the core offers the user's waiting messages again at once instead of after its back-off.
   */
  retryDeliveries?(localUser: string): Promise<void>;
}

/** What every adapter factory gets from the wiring. */
export interface AdapterContext {
  readonly config: Config;
  readonly logger: Logger;
  /** `bridge.data_dir`: the adapter keeps its files (downloads, spools) in a folder of its own there. */
  readonly dataDir: string;
  /** The daemon's HTTP listener, for adapters that serve files or endpoints of their own. */
  readonly http?: HttpListener | undefined;
  /** The listener's public base URL (`bridge.http.public_url` or its address). */
  readonly publicUrl?: string | undefined;
  /**
   * Seals files the adapter keeps while they wait (spools, files it serves) with the at-rest key;
   * a MediaBody of a sealed file says `sealed: true`. Absent only in tests without a key.
   */
  readonly sealer?: FileSealer | undefined;
  /**
   * Seals small contents the adapter keeps while they wait (the XMPP journal's stanzas) with the
   * same at-rest key, as the core seals its outbox and inbox rows. Absent only in tests without a key.
   */
  readonly vault?: PayloadVault | undefined;
  /**
   * The provisioning API's handler (src/provisioning), for an adapter with a listener of its own to
   * serve `/_matrix/provision/` on as well (the Matrix appservice listener, as mautrix bridges do).
   */
  readonly provisioning?: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
}

/**
 * How the wiring makes an adapter: from the context and the adapter's own storage (an interface the
 * adapter declares, implemented per backend, chosen by the wiring). Does no I/O: `start()` does.
 */
export type AdapterFactory<S, A extends Adapter = Adapter> = (context: AdapterContext, store: S) => A;
