/**
 * A user's gatekeeper contacts as the adapter resolves them: the contact JID a remote appears
 * under, the remote of a contact JID (a phone number is looked up at the gateway, with
 * src/bridge/commands.ts's `lookUpContact`, and kept), and each contact's last presence.
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { lookUpContact } from '../../src/bridge/commands.js';
import { remoteOfPhone } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import { notAContact, notAPhoneNumber, notOnNetwork, notRegistered } from './errors.js';
import {
  contactJidOfPhone,
  contactJidOfRemote,
  localPartOf,
  phoneOfContact,
  remoteOfContact,
} from './jids.js';
import type { XmppStore } from './store.js';

/** How long the puppet gets to connect before a look-up is given up on. */
const LOOKUP_WAIT_MS = 10_000;

export interface ContactsContext {
  readonly domain: string;
  readonly store: XmppStore;
  readonly core: BridgeCore;
  readonly log: Logger | undefined;
}

export class Contacts {
  /** Last presence of each contact, by `${user}\n${remote}`. */
  private readonly presence = new Map<string, boolean>();
  /** The core as `lookUpContact` sees it: with the patient look-up below. */
  private readonly lookups: BridgeCore;

  constructor(private readonly ctx: ContactsContext) {
    // Delegates everything else to the core, whatever kind of object it is.
    this.lookups = Object.assign(Object.create(ctx.core) as BridgeCore, {
      lookup: (user: string, phone: string) => this.lookup(user, phone),
    });
  }

  /** The contact JID under which `remote` appears to `user`. */
  async jidOf(user: string, remote: string): Promise<string> {
    const c = await this.ctx.store.contactByRemote(user, remote);
    return c ? contactJidOfPhone(c.contact, this.ctx.domain) : contactJidOfRemote(remote, this.ctx.domain);
  }

  /**
   * The remote for a contact JID, looked up (a phone number) and kept as the user's contact.
   * Throws an `XmppUserError` when the JID is no contact or the number is not reachable.
   */
  async resolve(user: string, contactJid: string): Promise<string> {
    const phone = phoneOfContact(contactJid);
    if (phone) return (await this.lookUp(user, phone)).remote;
    const remote = remoteOfContact(contactJid);
    if (!remote) throw notAContact(contactJid, this.ctx.domain);
    await this.ctx.store.ensureContact(user, localPartOf(contactJid) ?? '', remote);
    return remote;
  }

  /**
   * Looks up a phone number the user typed (any common notation) and keeps the contact; resolves
   * with the number in international form and its remote. Throws an `XmppUserError` otherwise.
   */
  async lookUp(user: string, input: string): Promise<{ phone: string; remote: string }> {
    const found = await lookUpContact(this.lookups, user, input);
    if (!found.ok) {
      switch (found.reason) {
        case 'not_a_number':
          throw notAPhoneNumber(input);
        case 'not_enlisted':
          throw notRegistered(`send "register" to ${this.ctx.domain} first.`);
        case 'not_reachable':
          throw notOnNetwork(found.phone);
      }
    }
    await this.ctx.store.ensureContact(user, found.phone, found.remote, found.phone);
    return { phone: found.phone, remote: found.remote };
  }

  /** The contact's last presence as the gateway told it, if it did. */
  lastPresence(user: string, remote: string): boolean | undefined {
    return this.presence.get(`${user}\n${remote}`);
  }

  setPresence(user: string, remote: string, available: boolean): void {
    this.presence.set(`${user}\n${remote}`, available);
  }

  /**
   * Asks the gateway whether a number is reachable, waiting a little for the puppet to connect
   * (with the `presence` lifecycle it connects as its user comes online). When the gateway cannot
   * be asked, or names no JID, the number is taken as the gatekeeper's own JID: the outbox asks
   * again before sending and reports an unreachable contact as a failure.
   */
  private async lookup(user: string, phone: string): Promise<{ reachable: boolean; jid?: string }> {
    const { core, log } = this.ctx;
    const deadline = Date.now() + LOOKUP_WAIT_MS;
    while ((await core.status(user)).connection !== 'connected' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const found = await core.lookup(user, phone);
      return found.reachable ? { reachable: true, jid: found.jid ?? remoteOfPhone(phone) } : found;
    } catch (err) {
      log?.info({ err: (err as Error).message }, 'look-up not possible now: assuming the native JID');
      return { reachable: true, jid: remoteOfPhone(phone) };
    }
  }
}
