/**
 * The small interfaces the adapter's feature files are written against. Each feature declares the
 * context it needs from these (and from its neighbours' narrow types); adapter.ts builds them, so no
 * feature imports the adapter or another feature.
 */
import type { Element } from '@xmpp/xml';
import type { XmppUserError } from './errors.js';

/** The way to the XMPP server (the component link). */
export interface Outbound {
  /**
   * Queues a stanza; resolves once the server has confirmably taken it (`confirmWithinMs`: the
   * confirmation may wait that long to share a ping with other writes).
   */
  send(stanza: Element, options?: { confirmWithinMs?: number }): Promise<void>;
  /** Queues a stanza without waiting for the confirmation; a later failure is only logged. */
  fire(stanza: Element): void;
}

/** Who may use the gateway. */
export interface Access {
  /** Whether the user's domain is one the gateway serves (`xmpp.allowed_domains`). */
  mayUse(user: string): boolean;
  /** The error a user of a domain the gateway does not serve gets. */
  notAllowed(user: string): XmppUserError;
  /** Whether the user has opted in (an enlisted puppet of this network). */
  isRegistered(user: string): Promise<boolean>;
  /** Whether the user (a bare JID) is one of `xmpp.admins`: the `admin` commands are theirs. */
  isAdmin(user: string): boolean;
}

/** One chain of work per local user, so that what a user sends is handled in the order it came. */
export interface UserChain {
  /** Runs `work` after the user's earlier work and resolves with its result. */
  run<T>(user: string, work: () => Promise<T>): Promise<T>;
  /** Queues `work` after the user's earlier work without waiting for it; a failure is logged. */
  queue(user: string, work: () => Promise<void>): void;
}

/** The XEP-0115 verification strings the gateway announces (iq/disco.ts computes them). */
export interface CapsVersions {
  /** Of the component JID itself. */
  readonly gateway: string;
  /** Of every contact JID (one hash serves all: contacts differ only by name). */
  readonly contact: string;
}
