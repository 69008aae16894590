/**
 * Presence (RFC 6121): the users' resources coming and going (which tells the core who is online),
 * probes for the gateway's and the contacts' presence, subscriptions both ways, and the contact
 * requests the gateway makes on a user's behalf (a contact asks once; a refusal is not repeated).
 */
import type { Element } from '@xmpp/xml';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import type { Contacts } from './contacts.js';
import type { Access, CapsVersions, Outbound, UserChain } from './context.js';
import { notRegistered, userErrorOf } from './errors.js';
import { bareJid, contactJidOfPhone, contactJidOfRemote, domainOf, localPartOf } from './jids.js';
import type { UserResources } from './resources.js';
import {
  contactPresence,
  gatewayPresence,
  presence,
  presenceError,
  stanzaError,
  subscriptionRequest,
} from './stanzas.js';
import type { XmppStore } from './store.js';

export interface PresenceContext {
  readonly domain: string;
  readonly store: XmppStore;
  readonly core: Pick<BridgeCore, 'setOnline' | 'enlistedUsers'>;
  readonly out: Outbound;
  readonly access: Access;
  readonly chain: UserChain;
  readonly resources: Pick<UserResources, 'set'>;
  readonly contacts: Pick<Contacts, 'resolve' | 'lastPresence'>;
  readonly caps: CapsVersions;
  readonly log: Logger | undefined;
}

export class Presence {
  constructor(private readonly ctx: PresenceContext) {}

  /** A presence stanza from a user's server. */
  handle(el: Element): void {
    const from = el.attrs.from;
    const to = el.attrs.to;
    if (!from || !to) return;
    const user = bareJid(from);
    const type = el.attrs.type ?? 'available';
    switch (type) {
      case 'available':
        this.ctx.chain.queue(user, () => this.setResource(user, from, true));
        return;
      case 'unavailable':
        this.ctx.chain.queue(user, () => this.setResource(user, from, false));
        return;
      case 'probe':
        this.later(this.answerProbe(user, bareJid(to)));
        return;
      case 'subscribe':
        this.ctx.chain.queue(user, () => this.onSubscribe(el, user, bareJid(to)));
        return;
      case 'subscribed':
      case 'unsubscribe':
      case 'unsubscribed':
        this.later(this.onSubscriptionChange(user, bareJid(to), type));
        return;
      default:
        return;
    }
  }

  /** After every (re)connect: asks each registered user's server for their presence. */
  async announce(): Promise<void> {
    const { domain, out, caps } = this.ctx;
    for (const user of await this.ctx.core.enlistedUsers()) {
      out.fire(presence(domain, user, 'probe'));
      out.fire(gatewayPresence(domain, user, caps.gateway));
    }
  }

  /**
   * On the first message with a contact the user does not have yet (either way): a contact
   * request, once (a refused request is not repeated).
   */
  async offer(user: string, remote: string): Promise<void> {
    const { store, domain } = this.ctx;
    const c =
      (await store.contactByRemote(user, remote)) ??
      (await store.ensureContact(
        user,
        localPartOf(contactJidOfRemote(remote, domain)) ?? remote,
        remote,
        phoneOfRemote(remote),
      ));
    if (!c.subFrom && !c.asked) await this.ask(user, c.contact);
  }

  /** The contact (by JID local part) asks the user for a subscription, with its name (XEP-0172). */
  async ask(user: string, local: string): Promise<void> {
    const { store, domain, out } = this.ctx;
    const c = await store.contact(user, local);
    await store.setSubscription(user, local, { asked: true });
    out.fire(subscriptionRequest(contactJidOfPhone(local, domain), user, c?.name ?? local));
  }

  private async setResource(user: string, full: string, available: boolean): Promise<void> {
    const { domain, access } = this.ctx;
    if (domainOf(user) === domain) return;
    // Presence of anyone else (another domain, a user not registered) is none of the bridge's business.
    if (available && (!access.mayUse(user) || !(await access.isRegistered(user)))) return;
    const { wasOnline, online } = this.ctx.resources.set(user, full, available);
    if (online !== wasOnline) this.ctx.core.setOnline(user, online);
  }

  private async answerProbe(user: string, target: string): Promise<void> {
    const { domain, out, caps, access } = this.ctx;
    if (target === domain) {
      out.fire(
        (await access.isRegistered(user))
          ? gatewayPresence(domain, user, caps.gateway)
          : presence(domain, user, 'unsubscribed'),
      );
      return;
    }
    const c = await this.ctx.store.contact(user, localPartOf(target) ?? '');
    if (!c?.subTo) {
      out.fire(presence(target, user, 'unsubscribed'));
      return;
    }
    const available = this.ctx.contacts.lastPresence(user, c.remote) ?? true;
    out.fire(contactPresence(target, user, available, caps.contact, c));
  }

  private async onSubscribe(el: Element, user: string, target: string): Promise<void> {
    const { domain, out, caps, access, store } = this.ctx;
    if (target === domain) {
      out.fire(presence(domain, user, 'subscribed'));
      if (await access.isRegistered(user)) out.fire(gatewayPresence(domain, user, caps.gateway));
      return;
    }
    try {
      if (!access.mayUse(user)) throw access.notAllowed(user);
      if (!(await access.isRegistered(user))) throw notRegistered(`send "register" to ${domain} first.`);
      const remote = await this.ctx.contacts.resolve(user, target);
      const local = localPartOf(target) ?? '';
      await store.setSubscription(user, local, { subTo: true });
      out.fire(presence(target, user, 'subscribed'));
      const available = this.ctx.contacts.lastPresence(user, remote) ?? true;
      const c = await store.contact(user, local);
      out.fire(contactPresence(target, user, available, caps.contact, c ?? {}));
      if (c && !c.subFrom && !c.asked) await this.ask(user, local);
    } catch (err) {
      const e = userErrorOf(err);
      out.fire(presenceError(target, user, el.attrs.id, stanzaError(e.type, e.condition, e.message)));
      out.fire(presence(target, user, 'unsubscribed'));
    }
  }

  private async onSubscriptionChange(user: string, target: string, type: string): Promise<void> {
    const { domain, store, out } = this.ctx;
    if (target === domain) return;
    const local = localPartOf(target) ?? '';
    if (!(await store.contact(user, local))) return;
    if (type === 'subscribed') await store.setSubscription(user, local, { subFrom: true, asked: false });
    // A refused request is remembered (`asked` stays): the contact does not ask again.
    else if (type === 'unsubscribed') await store.setSubscription(user, local, { subFrom: false });
    else {
      // RFC 6121 3.3: the contact's side answers an unsubscribe with its unavailable presence.
      await store.setSubscription(user, local, { subTo: false });
      out.fire(presence(target, user, 'unavailable'));
    }
  }

  /** Handles a presence that needs the store without holding up the user's chain. */
  private later(work: Promise<void>): void {
    work.catch((err: unknown) => this.ctx.log?.warn({ err: (err as Error).message }, 'stanza not handled'));
  }
}
