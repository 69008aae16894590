/**
 * The XMPP adapter: a gateway component in the manner of Slidge, Spectrum 2 and Biboumi. Local
 * users are XMPP bare JIDs; gatekeeper contacts appear as `+4915112345678@<component domain>`; the
 * component's own JID takes registration (XEP-0077, XEP-0050 ad-hoc commands, chat commands) and
 * phone-number look-ups (XEP-0100).
 *
 * Toward the core it implements `Adapter`; toward the server it speaks through the ComponentLink,
 * whose confirmation (a ping round trip behind the stanza) is what `deliver` waits for.
 */
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import { xml, type Element } from '@xmpp/xml';
import type { IqContext } from '@xmpp/component';
import type { Adapter, AdapterCapabilities, BridgeCore } from '../../src/bridge/adapter.js';
import type {
  ConversationEvent,
  DeliveryUpdate,
  EphemeralEvent,
  IncomingEvent,
  MediaBody,
  Notice,
  OutgoingEvent,
} from '../../src/bridge/events.js';
import { formatSafetyNumber, normalisePhone, phoneOfRemote } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import { VERSION } from '../../src/version.js';
import { runCommand, COMMANDS, type CommandContext } from './commands.js';
import type { ComponentLink } from './component.js';
import { XmppUserError } from './errors.js';
import {
  bareJid,
  contactJidOfPhone,
  contactJidOfRemote,
  domainOf,
  localPartOf,
  phoneOfContact,
  remoteOfContact,
} from './jids.js';
import { fetchUserFile, fileNameFor, mediaKindOf, type FilePublisher } from './media.js';
import { capsVer, derivedId, messageError, NS, stanzaError, xmlSafe } from './stanzas.js';
import type { XmppStore } from './store.js';
import { markupToStyling, stylingToMarkup } from './styling.js';

export interface XmppAdapterOptions {
  link: ComponentLink;
  store: XmppStore;
  /** The component's domain (`xmpp.component_domain`). */
  domain: string;
  /** The gateway's name in service discovery (`xmpp.name`). */
  name: string;
  /** `media.max_bytes`. */
  maxMediaBytes: number;
  /** `media.allowed_fetch_hosts`: where files users share may be fetched from. */
  allowedFetchHosts: readonly string[];
  /** Gives incoming files a URL (XEP-0363 slots or the bridge's own file host); none: a notice. */
  publisher: FilePublisher | undefined;
  /** Where files users share are downloaded to before the core sends them. */
  downloadDir: string;
  /** Domains whose users may use the gateway (`xmpp.allowed_domains`); empty: any. */
  allowedDomains?: readonly string[] | undefined;
  /** The registered users (XMPP puppets), for presence probes after a (re)connect. */
  registeredUsers: () => string[];
  logger?: Logger | undefined;
}

export interface XmppAdapterEvents {
  /** An outgoing event was accepted by the core (durably in its outbox). */
  submitted: [event: OutgoingEvent];
  /** Something the user sent was refused, with the error stanza it got. */
  refused: [error: Element];
}

const IDENTITY_GATEWAY = { category: 'gateway', type: 'whatsapp' } as const;
const IDENTITY_CONTACT = { category: 'client', type: 'phone' } as const;
const CAPS_NODE = 'https://github.com/interop-bridge/interop-bridge';

const GATEWAY_FEATURES = [
  NS.discoInfo,
  NS.discoItems,
  NS.register,
  NS.gateway,
  NS.commands,
  NS.ping,
  NS.vcard,
  NS.version,
] as const;

const CONTACT_FEATURES = [
  NS.discoInfo,
  NS.caps,
  NS.ping,
  NS.vcard,
  NS.receipts,
  NS.markers,
  NS.chatstates,
  NS.oob,
  NS.correct,
  NS.retract,
  NS.reactions,
  NS.reply,
] as const;

/** How long the puppet gets to connect before a look-up is given up on. */
const LOOKUP_WAIT_MS = 10_000;
/** Full JIDs remembered per outgoing message, for its error reply. */
const SENDERS_KEPT = 2048;
/** Available resources tracked per user (a client cannot have more in any real use). */
const RESOURCES_KEPT = 32;

export class XmppAdapter extends EventEmitter<XmppAdapterEvents> implements Adapter {
  readonly network = 'xmpp' as const;
  readonly capabilities: AdapterCapabilities;
  private core: BridgeCore | undefined;
  private readonly o: XmppAdapterOptions;
  private readonly log: Logger | undefined;
  /** Available resources of each local user (full JIDs). */
  private readonly resources = new Map<string, Set<string>>();
  /** Last presence of each contact, per user: `${user}\n${remote}`. */
  private readonly contactPresence = new Map<string, boolean>();
  /** The full JID each outgoing message came from: `${user}\n${localId}`. */
  private readonly senders = new Map<string, string>();
  /** The full JID each user last sent something from (for errors when presence is unknown). */
  private readonly lastSeen = new Map<string, string>();
  /** One chain of work per local user, so their messages reach the core in order. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly gatewayCaps: string;
  private readonly contactCaps: string;

  constructor(options: XmppAdapterOptions) {
    super();
    this.o = options;
    this.log = options.logger;
    this.capabilities = {
      media: true,
      replies: true,
      edits: true,
      deletes: true,
      reactions: true,
      readReceipts: true,
      typing: true,
      presence: true,
      maxMediaBytes: options.maxMediaBytes,
    };
    this.gatewayCaps = capsVer([{ ...IDENTITY_GATEWAY, name: options.name }], GATEWAY_FEATURES);
    this.contactCaps = capsVer([IDENTITY_CONTACT], CONTACT_FEATURES);
  }

  /** Connects the adapter to the core (the value of `bridge.attach(adapter)`) and the link. */
  attach(core: BridgeCore): void {
    this.core = core;
    const { link } = this.o;
    link.on('stanza', (el) => this.onStanza(el));
    link.on('online', () => this.onLinkOnline());
    this.registerIqHandlers();
  }

  /** Opens the component stream; rejects when the server refuses it or cannot be reached. */
  async start(): Promise<void> {
    await this.o.link.start();
  }

  /** Closes the component stream; unconfirmed deliveries are retried by the core after a restart. */
  async stop(): Promise<void> {
    await this.o.link.stop();
  }

  private get bridge(): BridgeCore {
    if (!this.core) throw new Error('XmppAdapter used before attach()');
    return this.core;
  }

  private get domain(): string {
    return this.o.domain;
  }

  // =============================================================================================
  // Adapter: core -> XMPP

  async deliver(event: IncomingEvent): Promise<string | undefined> {
    const { localUser, remote, remoteId } = event;
    const e = event.event;
    if (e.type === 'typing' || e.type === 'presence' || e.type === 'receipt') return undefined;
    const done = this.o.store.deliveredStanza(localUser, remote, remoteId);
    if (done !== undefined) return done;
    const contact = this.contactOf(localUser, remote);
    const id = derivedId('wa', localUser, remote, remoteId);
    await this.offerContact(localUser, remote);
    const stanzas = await this.incomingStanzas(id, contact, localUser, event, e);
    await Promise.all(stanzas.map((s) => this.o.link.send(s)));
    this.o.store.markDelivered(localUser, remote, remoteId, id);
    return id;
  }

  showEphemeral(event: EphemeralEvent): void {
    const { localUser, remote } = event;
    const from = this.contactOf(localUser, remote);
    if (event.event.type === 'typing') {
      this.fire(
        xml(
          'message',
          { type: 'chat', from, to: localUser },
          xml(event.event.typing ? 'composing' : 'paused', { xmlns: NS.chatstates }),
          xml('no-store', { xmlns: NS.hints }),
        ),
      );
      return;
    }
    const available = event.event.available;
    this.contactPresence.set(`${localUser}\n${remote}`, available);
    const c = this.o.store.contactByRemote(localUser, remote);
    if (c?.subTo) this.fire(this.contactPresenceStanza(from, localUser, available));
  }

  updateDelivery(update: DeliveryUpdate): void {
    const { localUser, remote, localId, state } = update;
    const from = this.contactOf(localUser, remote);
    switch (state) {
      case 'delivered':
        this.fire(
          xml(
            'message',
            { type: 'chat', from, to: localUser, id: derivedId('rcpt', localUser, localId) },
            xml('received', { xmlns: NS.receipts, id: localId }),
          ),
        );
        return;
      case 'read':
        this.fire(
          xml(
            'message',
            { type: 'chat', from, to: localUser, id: derivedId('read', localUser, localId) },
            xml('displayed', { xmlns: NS.markers, id: localId }),
            xml('store', { xmlns: NS.hints }),
          ),
        );
        return;
      case 'failed': {
        const to =
          this.senders.get(`${localUser}\n${localId}`) ??
          this.anyResource(localUser) ??
          this.lastSeen.get(localUser) ??
          localUser;
        this.fire(
          messageError(
            { id: localId, from: to, to: from },
            'cancel',
            'recipient-unavailable',
            `Not delivered: ${update.reason ?? 'the message could not be sent'}`,
          ),
        );
        return;
      }
      default:
        return;
    }
  }

  notify(localUser: string, notice: Notice): void {
    try {
      this.onNotice(localUser, notice);
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'notice not shown');
    }
  }

  private onNotice(localUser: string, notice: Notice): void {
    switch (notice.kind) {
      case 'enlisted':
        this.say(
          localUser,
          `You are registered. Your WhatsApp contacts appear as +<phone number>@${this.domain}: add one with "add +4915112345678" or from your client's contact list.`,
        );
        this.fire(xml('presence', { from: this.domain, to: localUser, type: 'subscribe' }));
        return;
      case 'opted_out':
        this.say(localUser, 'You are unregistered: your interop account and its keys are deleted.');
        for (const c of this.o.store.contacts(localUser)) {
          const from = contactJidOfPhone(c.contact, this.domain);
          this.fire(xml('presence', { from, to: localUser, type: 'unavailable' }));
          this.fire(xml('presence', { from, to: localUser, type: 'unsubscribed' }));
          this.fire(xml('presence', { from, to: localUser, type: 'unsubscribe' }));
        }
        this.fire(xml('presence', { from: this.domain, to: localUser, type: 'unavailable' }));
        this.o.store.forgetUser(localUser);
        this.resources.delete(localUser);
        return;
      case 'identity_changed': {
        const from = this.contactOf(localUser, notice.remote);
        const who = phoneOfRemote(notice.remote) ?? notice.remote;
        const text =
          `The security code of ${who} changed (a new phone or a reinstall). Safety number: ${formatSafetyNumber(notice.safetyNumber)}.` +
          (notice.blocked
            ? ` Messages to ${who} are held until you confirm: send "confirm ${who}" to ${this.domain}.`
            : ' Compare it with your contact if in doubt.');
        // Resources known from presence, else the one the user last wrote from: an error must go
        // to a full JID (servers drop errors to a bare JID). Nobody there: a chat message, stored.
        const known = [...(this.resources.get(localUser) ?? [])];
        const last = this.lastSeen.get(localUser);
        const online = known.length > 0 ? known : last ? [last] : [];
        if (online.length === 0) {
          this.fire(xml('message', { type: 'chat', from, to: localUser }, xml('body', {}, xmlSafe(text))));
        }
        for (const full of online) {
          this.fire(
            xml(
              'message',
              {
                type: 'error',
                from,
                to: full,
                id: derivedId('idc', localUser, notice.remote, notice.safetyNumber),
              },
              xml('body', {}, xmlSafe(text)),
              stanzaError(notice.blocked ? 'auth' : 'cancel', 'not-acceptable', text),
            ),
          );
        }
        return;
      }
      case 'connection': {
        const show = notice.state === 'connected' ? undefined : notice.state === 'refused' ? 'dnd' : 'xa';
        const status =
          notice.state === 'connected'
            ? 'Connected to the interop gateway'
            : notice.state === 'refused'
              ? `The interop gateway refused the connection${notice.detail ? ` (${notice.detail})` : ''}`
              : 'Disconnected from the interop gateway: reconnecting';
        this.fire(
          xml(
            'presence',
            { from: this.domain, to: localUser },
            show ? xml('show', {}, show) : null,
            xml('status', {}, xmlSafe(status)),
            this.capsElement(this.gatewayCaps),
          ),
        );
        return;
      }
    }
  }

  // =============================================================================================
  // Incoming stanzas: XMPP -> core

  private onStanza(el: Element): void {
    try {
      if (el.name === 'message') this.onMessage(el);
      else if (el.name === 'presence') this.onPresence(el);
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'stanza not handled');
    }
  }

  private onMessage(el: Element): void {
    const from = el.attrs.from;
    const to = el.attrs.to;
    const type = el.attrs.type ?? 'normal';
    if (!from || !to || type === 'error' || type === 'headline') return;
    const user = bareJid(from);
    if (!this.mayUse(user)) {
      const e = this.notAllowed(user);
      this.refuse(el, e.type, e.condition, e.message);
      return;
    }
    if (from !== user) this.lastSeen.set(user, from);
    if (bareJid(to) === this.domain) {
      const body = el.getChild('body')?.getText();
      if (body !== undefined && body.trim() !== '') {
        this.chain(user, () => this.onCommand(from, body));
      }
      return;
    }
    if (type === 'groupchat') {
      this.refuse(el, 'cancel', 'feature-not-implemented', 'Group chats are not bridged yet.');
      return;
    }
    this.chain(user, () => this.onChatMessage(el, from, to));
  }

  private async onChatMessage(el: Element, from: string, to: string): Promise<void> {
    const user = bareJid(from);
    const contactJid = bareJid(to);
    const base = {
      localUser: user,
      localId:
        el.getChild('origin-id', NS.sid)?.attrs.id ?? el.attrs.id ?? derivedId('x', from, el.toString()),
    };
    try {
      // Receipts and chat states need no look-up: a contact we never resolved has nothing to mark.
      const displayed = el.getChild('displayed', NS.markers)?.attrs.id;
      const body = el.getChild('body')?.getText();
      const oob = el.getChild('x', NS.oob)?.getChild('url')?.getText();
      const retract = el.getChild('retract', NS.retract)?.attrs.id;
      const reactions = el.getChild('reactions', NS.reactions);
      const known = this.o.store.contact(user, localPartOf(contactJid) ?? '');
      if (displayed) {
        const remote = known?.remote ?? remoteOfContact(contactJid);
        if (remote && this.isRegistered(user)) {
          await this.bridge.submit({
            ...base,
            localId: `read-${displayed}`,
            remote,
            event: { type: 'receipt', receipt: 'read', targets: [displayed] },
          });
        }
      }
      const hasContent = (body !== undefined && body !== '') || oob || retract || reactions;
      if (!hasContent) {
        const state = el.getChildElements().find((c) => c.attrs.xmlns === NS.chatstates)?.name;
        const remote = known?.remote ?? remoteOfContact(contactJid);
        if (state && remote && this.isRegistered(user)) {
          await this.bridge.submit({
            ...base,
            localId: `typing-${base.localId}`,
            remote,
            event: { type: 'typing', typing: state === 'composing' },
          });
        }
        return;
      }
      if (!this.isRegistered(user)) {
        throw new XmppUserError(
          'xmpp_not_registered',
          'auth',
          'registration-required',
          `You are not registered with the bridge: send "register" to ${this.domain} (or register through your client's service discovery), then send this again.`,
        );
      }
      this.rememberSender(user, base.localId, from);
      const remote = known?.remote ?? (await this.resolveContact(user, contactJid));
      const event = await this.outgoingEvent(el, body ?? '', oob, retract, reactions);
      const outgoing: OutgoingEvent = { ...base, remote, event };
      await this.bridge.submit(outgoing);
      await this.offerContact(user, remote);
      this.emit('submitted', outgoing);
    } catch (err) {
      this.refuseFor(el, err);
    }
  }

  private async outgoingEvent(
    el: Element,
    body: string,
    oob: string | undefined,
    retract: string | undefined,
    reactions: Element | undefined,
  ): Promise<ConversationEvent> {
    if (retract) return { type: 'delete', target: retract };
    if (reactions?.attrs.id) {
      const emoji = reactions.getChildren('reaction').map((r) => r.getText())[0] ?? '';
      return { type: 'reaction', target: reactions.attrs.id, emoji };
    }
    const replace = el.getChild('replace', NS.correct)?.attrs.id;
    if (replace)
      return { type: 'edit', target: replace, body: { kind: 'text', text: stylingToMarkup(body) } };
    const replyId = el.getChild('reply', NS.reply)?.attrs.id;
    const replyTo = replyId ? { replyTo: { id: replyId } } : {};
    if (oob && (body.trim() === '' || body.trim() === oob.trim())) {
      const file = await fetchUserFile(oob.trim(), {
        maxBytes: this.o.maxMediaBytes,
        allowedHosts: this.o.allowedFetchHosts,
        dir: this.o.downloadDir,
      });
      const desc = el.getChild('x', NS.oob)?.getChild('desc')?.getText();
      const media: MediaBody = {
        kind: 'media',
        media: mediaKindOf(file.mimetype),
        path: file.path,
        mimetype: file.mimetype,
        size: file.size,
        fileName: file.fileName,
        ...(desc ? { caption: stylingToMarkup(desc) } : {}),
      };
      return { type: 'message', body: media, ...replyTo };
    }
    const text = replyId ? stripReplyFallback(el, body) : body;
    return { type: 'message', body: { kind: 'text', text: stylingToMarkup(text) }, ...replyTo };
  }

  /** The remote for a contact JID: stored, or looked up (and stored); throws if unreachable. */
  private async resolveContact(user: string, contactJid: string): Promise<string> {
    const local = localPartOf(contactJid) ?? '';
    const phone = phoneOfContact(contactJid);
    if (!phone) {
      const remote = remoteOfContact(contactJid);
      if (!remote) {
        throw new XmppUserError(
          'xmpp_bad_contact',
          'modify',
          'jid-malformed',
          `${contactJid} is not a contact of this gateway: contacts are +<phone number in international format>@${this.domain}.`,
        );
      }
      this.o.store.ensureContact(user, local, remote);
      return remote;
    }
    const found = await this.lookup(user, phone);
    if (!found.reachable) throw notOnNetwork(phone);
    const remote = found.jid ?? remoteOfContact(contactJid)!;
    this.o.store.ensureContact(user, local, remote, phone);
    return remote;
  }

  /**
   * Asks the gateway whether a number is reachable, waiting a little for the puppet to connect
   * (with the `presence` lifecycle it connects as its user comes online). When the gateway cannot
   * be asked, the number is taken as the gatekeeper's own JID: the outbox asks again before sending
   * and reports an unreachable contact as a failure.
   */
  private async lookup(user: string, phone: string): Promise<{ reachable: boolean; jid?: string }> {
    const deadline = Date.now() + LOOKUP_WAIT_MS;
    while (this.bridge.status(user).connection !== 'connected' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      return await this.bridge.lookup(user, phone);
    } catch (err) {
      this.log?.info({ err: (err as Error).message }, 'look-up not possible now: assuming the native JID');
      return { reachable: true };
    }
  }

  // --- presence ------------------------------------------------------------------------------

  private onPresence(el: Element): void {
    const from = el.attrs.from;
    const to = el.attrs.to;
    if (!from || !to) return;
    const user = bareJid(from);
    const type = el.attrs.type ?? 'available';
    switch (type) {
      case 'available':
        this.setResource(user, from, true);
        return;
      case 'unavailable':
        this.setResource(user, from, false);
        return;
      case 'probe':
        this.answerProbe(user, bareJid(to));
        return;
      case 'subscribe':
        this.chain(user, () => this.onSubscribe(el, user, bareJid(to)));
        return;
      case 'subscribed':
      case 'unsubscribe':
      case 'unsubscribed':
        this.onSubscriptionChange(user, bareJid(to), type);
        return;
      default:
        return;
    }
  }

  private setResource(user: string, full: string, available: boolean): void {
    if (domainOf(user) === this.domain) return;
    // Presence of anyone else (another domain, a user not registered) is none of the bridge's business.
    if (available && (!this.mayUse(user) || !this.isRegistered(user))) return;
    let set = this.resources.get(user);
    const wasOnline = (set?.size ?? 0) > 0;
    if (available) {
      if (!set) this.resources.set(user, (set = new Set()));
      if (!set.has(full) && set.size >= RESOURCES_KEPT) {
        const oldest = set.values().next().value;
        if (oldest !== undefined) set.delete(oldest);
      }
      set.add(full);
    } else {
      set?.delete(full);
      // A bare-JID unavailable (the server's answer to a probe for a user who is offline).
      if (full === user) set?.clear();
      if (set?.size === 0) this.resources.delete(user);
    }
    const online = (set?.size ?? 0) > 0;
    if (online !== wasOnline && this.core) this.bridge.setOnline(user, online);
  }

  private answerProbe(user: string, target: string): void {
    if (target === this.domain) {
      if (this.isRegistered(user)) {
        this.fire(xml('presence', { from: this.domain, to: user }, this.capsElement(this.gatewayCaps)));
      } else {
        this.fire(xml('presence', { from: this.domain, to: user, type: 'unsubscribed' }));
      }
      return;
    }
    const c = this.o.store.contact(user, localPartOf(target) ?? '');
    if (!c?.subTo) {
      this.fire(xml('presence', { from: target, to: user, type: 'unsubscribed' }));
      return;
    }
    const available = this.contactPresence.get(`${user}\n${c.remote}`) ?? true;
    this.fire(this.contactPresenceStanza(target, user, available));
  }

  private async onSubscribe(el: Element, user: string, target: string): Promise<void> {
    if (target === this.domain) {
      this.fire(xml('presence', { from: this.domain, to: user, type: 'subscribed' }));
      if (this.isRegistered(user)) {
        this.fire(xml('presence', { from: this.domain, to: user }, this.capsElement(this.gatewayCaps)));
      }
      return;
    }
    try {
      if (!this.mayUse(user)) throw this.notAllowed(user);
      if (!this.isRegistered(user)) {
        throw new XmppUserError(
          'xmpp_not_registered',
          'auth',
          'registration-required',
          `You are not registered with the bridge: send "register" to ${this.domain} first.`,
        );
      }
      const remote = await this.resolveContact(user, target);
      const local = localPartOf(target) ?? '';
      this.o.store.setSubscription(user, local, { subTo: true });
      this.fire(xml('presence', { from: target, to: user, type: 'subscribed' }));
      const available = this.contactPresence.get(`${user}\n${remote}`) ?? true;
      this.fire(this.contactPresenceStanza(target, user, available));
      const c = this.o.store.contact(user, local);
      if (c && !c.subFrom && !c.asked) this.askSubscription(user, local);
    } catch (err) {
      const e = userErrorOf(err);
      this.fire(
        xml(
          'presence',
          { from: target, to: user, type: 'error', ...(el.attrs.id ? { id: el.attrs.id } : {}) },
          stanzaError(e.type, e.condition, e.message),
        ),
      );
      this.fire(xml('presence', { from: target, to: user, type: 'unsubscribed' }));
    }
  }

  private onSubscriptionChange(user: string, target: string, type: string): void {
    if (target === this.domain) return;
    const local = localPartOf(target) ?? '';
    if (!this.o.store.contact(user, local)) return;
    if (type === 'subscribed') this.o.store.setSubscription(user, local, { subFrom: true, asked: false });
    // A refused request is remembered (`asked` stays): the contact does not ask again.
    else if (type === 'unsubscribed') this.o.store.setSubscription(user, local, { subFrom: false });
    else {
      // RFC 6121 3.3: the contact's side answers an unsubscribe with its unavailable presence.
      this.o.store.setSubscription(user, local, { subTo: false });
      this.fire(xml('presence', { from: target, to: user, type: 'unavailable' }));
    }
  }

  /** The contact asks the user for a subscription, with its name (XEP-0172). */
  private askSubscription(user: string, local: string): void {
    const c = this.o.store.contact(user, local);
    this.o.store.setSubscription(user, local, { asked: true });
    this.fire(
      xml(
        'presence',
        { from: contactJidOfPhone(local, this.domain), to: user, type: 'subscribe' },
        xml('nick', { xmlns: NS.nick }, xmlSafe(c?.name ?? local)),
      ),
    );
  }

  /**
   * On the first message with a contact the user does not have yet (either way): a contact
   * request, once (a refused request is not repeated).
   */
  private async offerContact(user: string, remote: string): Promise<void> {
    const c =
      this.o.store.contactByRemote(user, remote) ??
      this.o.store.ensureContact(
        user,
        localPartOf(contactJidOfRemote(remote, this.domain)) ?? remote,
        remote,
        phoneOfRemote(remote),
      );
    if (!c.subFrom && !c.asked) this.askSubscription(user, c.contact);
  }

  /** Adds a contact by phone number (the `add` command): looks it up and asks the user. */
  async addContact(user: string, phoneInput: string): Promise<string> {
    const phone = normalisePhone(phoneInput);
    if (!phone) {
      throw new XmppUserError(
        'xmpp_bad_phone',
        'modify',
        'bad-request',
        `"${phoneInput}" is not a phone number in international format, such as +4915112345678.`,
      );
    }
    const jid = contactJidOfPhone(phone, this.domain);
    await this.resolveContact(user, jid);
    const c = this.o.store.contact(user, phone);
    if (c && !c.subFrom) this.askSubscription(user, phone);
    return jid;
  }

  // =============================================================================================
  // iq: registration, gateway, disco, vCard, version

  private registerIqHandlers(): void {
    const { link } = this.o;
    link.handleIq('get', NS.discoInfo, 'query', (ctx) => this.discoInfo(ctx));
    link.handleIq('get', NS.discoItems, 'query', (ctx) => this.discoItems(ctx));
    link.handleIq('get', NS.register, 'query', (ctx) => this.registerForm(ctx));
    link.handleIq('set', NS.register, 'query', (ctx) => this.registerSet(ctx));
    link.handleIq('get', NS.gateway, 'query', () => this.gatewayPrompt());
    link.handleIq('set', NS.gateway, 'query', (ctx) => this.gatewayTranslate(ctx));
    link.handleIq('set', NS.commands, 'command', (ctx) => this.adhoc(ctx));
    link.handleIq('get', NS.vcard, 'vCard', (ctx) => this.vcard(ctx));
    link.handleIq('get', NS.version, 'query', () =>
      xml('query', { xmlns: NS.version }, xml('name', {}, 'interop-bridge'), xml('version', {}, VERSION)),
    );
  }

  private discoInfo({ stanza, element }: IqContext): Element {
    const to = bareJid(stanza.attrs.to ?? this.domain);
    const node = element.attrs.node;
    if (to === this.domain) {
      if (node === NS.commands) {
        return xml(
          'query',
          { xmlns: NS.discoInfo, node },
          xml('identity', { category: 'automation', type: 'command-list', name: 'Commands' }),
        );
      }
      if (node && COMMANDS.some((c) => c.node === node)) {
        return xml(
          'query',
          { xmlns: NS.discoInfo, node },
          xml('identity', { category: 'automation', type: 'command-node', name: node }),
          xml('feature', { var: NS.commands }),
          xml('feature', { var: NS.dataForms }),
        );
      }
      return xml(
        'query',
        { xmlns: NS.discoInfo, ...(node ? { node } : {}) },
        xml('identity', { ...IDENTITY_GATEWAY, name: this.o.name }),
        ...GATEWAY_FEATURES.map((f) => xml('feature', { var: f })),
      );
    }
    return xml(
      'query',
      { xmlns: NS.discoInfo, ...(node ? { node } : {}) },
      // No name: one caps hash serves every contact (the name is in the roster and vCard).
      xml('identity', { ...IDENTITY_CONTACT }),
      ...CONTACT_FEATURES.map((f) => xml('feature', { var: f })),
    );
  }

  private discoItems({ stanza, element }: IqContext): Element {
    const to = bareJid(stanza.attrs.to ?? this.domain);
    const node = element.attrs.node;
    if (to === this.domain && node === NS.commands) {
      return xml(
        'query',
        { xmlns: NS.discoItems, node },
        ...COMMANDS.filter((c) => c.adhoc).map((c) =>
          xml('item', { jid: this.domain, node: c.node, name: c.title }),
        ),
      );
    }
    return xml('query', { xmlns: NS.discoItems, ...(node ? { node } : {}) });
  }

  private registerForm({ stanza }: IqContext): Element {
    const user = bareJid(stanza.attrs.from ?? '');
    const registered = this.isRegistered(user);
    return xml(
      'query',
      { xmlns: NS.register },
      xml(
        'instructions',
        {},
        registered
          ? 'You are registered. Send <remove/> to unregister (this deletes your interop account and its keys).'
          : `Registering opts you in to WhatsApp interoperability: the bridge creates an interop account for ${user} and your contacts appear as +<phone number>@${this.domain}. No password is needed.`,
      ),
      registered ? xml('registered') : null,
      xml('username', {}, user),
    );
  }

  private async registerSet({ stanza, element }: IqContext): Promise<Element | boolean> {
    const user = bareJid(stanza.attrs.from ?? '');
    if (!this.mayUse(user)) return stanzaError('auth', 'forbidden', this.notAllowed(user).message);
    return this.inChain(user, async () => {
      try {
        if (element.getChild('remove')) await this.bridge.optOut(user);
        else await this.bridge.enlist(user);
        return true;
      } catch (err) {
        return stanzaError('wait', 'remote-server-timeout', (err as Error).message);
      }
    });
  }

  private gatewayPrompt(): Element {
    return xml(
      'query',
      { xmlns: NS.gateway },
      xml('desc', {}, 'Enter the phone number of a WhatsApp user, in international format (+4915112345678).'),
      xml('prompt', {}, 'Phone number'),
    );
  }

  private gatewayTranslate({ element }: IqContext): Element {
    const input = element.getChild('prompt')?.getText() ?? '';
    const phone = normalisePhone(input);
    if (!phone) {
      return stanzaError(
        'modify',
        'not-acceptable',
        `"${input}" is not a phone number in international format, such as +4915112345678.`,
      );
    }
    return xml('query', { xmlns: NS.gateway }, xml('jid', {}, contactJidOfPhone(phone, this.domain)));
  }

  private async adhoc({ stanza, element }: IqContext): Promise<Element> {
    const user = bareJid(stanza.attrs.from ?? '');
    const node = element.attrs.node ?? '';
    if (!this.mayUse(user)) return stanzaError('auth', 'forbidden', this.notAllowed(user).message);
    const command = COMMANDS.find((c) => c.adhoc && c.node === node);
    if (!command) return stanzaError('cancel', 'item-not-found', `There is no command "${node}".`);
    if (element.attrs.action === 'cancel') {
      return xml('command', {
        xmlns: NS.commands,
        node,
        sessionid: element.attrs.sessionid,
        status: 'canceled',
      });
    }
    const reply = await this.inChain(user, () => runCommand(this.commandContext(user), command.name, []));
    return xml(
      'command',
      {
        xmlns: NS.commands,
        node,
        sessionid: element.attrs.sessionid ?? derivedId('s', user, node, String(Date.now())),
        status: 'completed',
      },
      xml('note', { type: reply.error ? 'error' : 'info' }, xmlSafe(reply.text)),
    );
  }

  private vcard({ stanza }: IqContext): Element {
    const to = bareJid(stanza.attrs.to ?? this.domain);
    if (to === this.domain) {
      return xml('vCard', { xmlns: NS.vcard }, xml('FN', {}, xmlSafe(this.o.name)));
    }
    const user = bareJid(stanza.attrs.from ?? '');
    const local = localPartOf(to) ?? '';
    const c = this.o.store.contact(user, local);
    const phone = phoneOfContact(to);
    const name = c?.name ?? phone ?? local;
    return xml(
      'vCard',
      { xmlns: NS.vcard },
      xml('FN', {}, xmlSafe(name)),
      xml('NICKNAME', {}, xmlSafe(name)),
      phone ? xml('TEL', {}, xml('CELL'), xml('NUMBER', {}, phone)) : null,
    );
  }

  // =============================================================================================
  // Chat commands to the component JID

  private async onCommand(from: string, body: string): Promise<void> {
    const user = bareJid(from);
    const [name = '', ...args] = body.trim().split(/\s+/);
    const verb = name.toLowerCase();
    const reply = await runCommand(this.commandContext(user), verb, args);
    // A successful (un)registration is announced by the core's notice.
    if (!reply.error && reply.text !== 'You are registered.' && reply.text !== 'You are unregistered.') {
      this.say(from, reply.text);
    } else if (reply.error) {
      this.say(from, reply.text);
    }
  }

  private commandContext(user: string): CommandContext {
    return {
      user,
      domain: this.domain,
      core: this.bridge,
      registered: () => this.isRegistered(user),
      contacts: () => this.o.store.contacts(user).length,
      addContact: (phone) => this.addContact(user, phone),
      remoteOf: async (phoneInput) => {
        const phone = normalisePhone(phoneInput);
        if (!phone) return undefined;
        return (
          this.o.store.contact(user, phone)?.remote ??
          (await this.resolveContact(user, contactJidOfPhone(phone, this.domain)))
        );
      },
    };
  }

  // =============================================================================================
  // Helpers

  private async incomingStanzas(
    id: string,
    from: string,
    to: string,
    event: IncomingEvent,
    e: ConversationEvent,
  ): Promise<Element[]> {
    const delay =
      Date.now() - event.timestamp > 5_000
        ? xml('delay', { xmlns: NS.delay, from: this.domain, stamp: new Date(event.timestamp).toISOString() })
        : null;
    const common = (children: (Element | null)[], stanzaId = id) =>
      xml(
        'message',
        { type: 'chat', from, to, id: stanzaId },
        ...children,
        xml('origin-id', { xmlns: NS.sid, id: stanzaId }),
        delay,
      );
    const markable = [xml('request', { xmlns: NS.receipts }), xml('markable', { xmlns: NS.markers })];
    switch (e.type) {
      case 'message': {
        const reply = e.replyTo?.localId
          ? xml('reply', { xmlns: NS.reply, to: from, id: e.replyTo.localId })
          : null;
        if (e.body.kind === 'text') {
          return [
            common([
              xml('body', {}, xmlSafe(markupToStyling(e.body.text))),
              reply,
              ...markable,
              xml('active', { xmlns: NS.chatstates }),
            ]),
          ];
        }
        const media = e.body;
        const label =
          media.media === 'voice'
            ? 'a voice note'
            : media.media === 'file'
              ? 'a file'
              : `a${media.media === 'image' ? 'n' : ''} ${media.media}`;
        if (!this.o.publisher) {
          return [
            common([
              xml('body', {}, `(sent ${label}, which this bridge cannot show: no file host is configured)`),
              ...markable,
            ]),
          ];
        }
        const url = await this.o.publisher.publish({
          path: media.path,
          size: media.size,
          mimetype: media.mimetype,
          fileName: fileNameFor(media.mimetype, media.fileName),
        });
        const out = [
          common([
            xml('body', {}, url),
            xml(
              'x',
              { xmlns: NS.oob },
              xml('url', {}, url),
              media.caption ? xml('desc', {}, xmlSafe(media.caption)) : null,
            ),
            reply,
            ...markable,
          ]),
        ];
        if (media.caption) {
          out.push(
            common([xml('body', {}, xmlSafe(markupToStyling(media.caption))), ...markable], `${id}-caption`),
          );
        }
        return out;
      }
      case 'edit':
        return [
          common([
            xml('body', {}, xmlSafe(markupToStyling(e.body.text))),
            xml('replace', { xmlns: NS.correct, id: e.targetLocalId ?? e.target }),
            ...markable,
          ]),
        ];
      case 'delete':
        return [
          common([
            xml('body', {}, 'This person deleted a message.'),
            xml('retract', { xmlns: NS.retract, id: e.targetLocalId ?? e.target }),
            xml('fallback', { xmlns: NS.fallback, for: NS.retract }),
            xml('store', { xmlns: NS.hints }),
          ]),
        ];
      case 'reaction':
        return [
          common([
            xml(
              'reactions',
              { xmlns: NS.reactions, id: e.targetLocalId ?? e.target },
              e.emoji ? xml('reaction', {}, xmlSafe(e.emoji)) : null,
            ),
            xml('store', { xmlns: NS.hints }),
          ]),
        ];
      default:
        return [];
    }
  }

  private contactPresenceStanza(from: string, to: string, available: boolean): Element {
    return available
      ? xml(
          'presence',
          { from, to },
          this.capsElement(this.contactCaps),
          xml('nick', { xmlns: NS.nick }, xmlSafe(phoneOfContact(from) ?? localPartOf(from) ?? from)),
        )
      : xml('presence', { from, to, type: 'unavailable' });
  }

  private capsElement(ver: string): Element {
    return xml('c', { xmlns: NS.caps, hash: 'sha-1', node: CAPS_NODE, ver });
  }

  /** The contact JID under which `remote` appears to `user`. */
  private contactOf(user: string, remote: string): string {
    const c = this.o.store.contactByRemote(user, remote);
    return c ? contactJidOfPhone(c.contact, this.domain) : contactJidOfRemote(remote, this.domain);
  }

  private mayUse(user: string): boolean {
    const allowed = this.o.allowedDomains ?? [];
    return allowed.length === 0 || allowed.includes('*') || allowed.includes(domainOf(user).toLowerCase());
  }

  private notAllowed(user: string): XmppUserError {
    return new XmppUserError(
      'xmpp_domain_not_allowed',
      'cancel',
      'not-allowed',
      `Users of ${domainOf(user)} may not use this gateway (it serves ${(this.o.allowedDomains ?? []).join(', ')}).`,
    );
  }

  private isRegistered(user: string): boolean {
    return this.core !== undefined && this.bridge.status(user).enlisted;
  }

  private anyResource(user: string): string | undefined {
    return [...(this.resources.get(user) ?? [])][0];
  }

  private rememberSender(user: string, localId: string, full: string): void {
    this.senders.set(`${user}\n${localId}`, full);
    if (this.senders.size > SENDERS_KEPT) {
      const first = this.senders.keys().next().value;
      if (first !== undefined) this.senders.delete(first);
    }
  }

  /** A chat message from the component to the user (or one resource). */
  private say(to: string, text: string): void {
    this.fire(xml('message', { type: 'chat', from: this.domain, to }, xml('body', {}, xmlSafe(text))));
  }

  /** Sends without waiting for the confirmation (must not throw: used from the core's callbacks). */
  private fire(stanza: Element): void {
    this.o.link.send(stanza).catch((err: unknown) => {
      this.log?.debug({ err: (err as Error).message }, 'stanza not confirmed');
    });
  }

  private refuse(
    el: Element,
    type: 'cancel' | 'modify' | 'auth' | 'wait',
    condition: string,
    text: string,
  ): void {
    const error = messageError(
      { id: el.attrs.id, from: el.attrs.from ?? '', to: el.attrs.to ?? this.domain },
      type,
      condition,
      text,
    );
    this.fire(error);
    this.emit('refused', error);
  }

  private refuseFor(el: Element, err: unknown): void {
    const e = userErrorOf(err);
    if (!(err instanceof XmppUserError)) this.log?.warn({ err: (err as Error).message }, 'message refused');
    this.refuse(el, e.type, e.condition, e.message);
    // A file downloaded for a message that was refused is of no further use.
    const path = (err as { path?: string }).path;
    if (path) void rm(path, { force: true });
  }

  /** Runs `work` in the user's chain (after their earlier stanzas) and resolves with its result. */
  private inChain<T>(user: string, work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.chain(user, () => work().then(resolve, reject));
    });
  }

  private chain(user: string, work: () => Promise<void>): void {
    const next = (this.chains.get(user) ?? Promise.resolve())
      .then(work)
      .catch((err: unknown) =>
        this.log?.warn({ err: (err as Error).message }, 'XMPP stanza handling failed'),
      );
    this.chains.set(user, next);
    void next.then(() => {
      if (this.chains.get(user) === next) this.chains.delete(user);
    });
  }

  /** After every (re)connect: ask each registered user's server for their presence. */
  private onLinkOnline(): void {
    for (const user of this.o.registeredUsers()) {
      this.fire(xml('presence', { from: this.domain, to: user, type: 'probe' }));
      this.fire(xml('presence', { from: this.domain, to: user }, this.capsElement(this.gatewayCaps)));
    }
  }

  /** Waits until every in-progress stanza handling has finished (for an orderly stop). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }
}

function notOnNetwork(phone: string): XmppUserError {
  return new XmppUserError(
    'xmpp_not_on_network',
    'cancel',
    'item-not-found',
    `${phone} is not on the interop network (not a WhatsApp user, or not reachable through interoperability): the message was not sent.`,
  );
}

function userErrorOf(err: unknown): XmppUserError {
  if (err instanceof XmppUserError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'bridge_not_enlisted') {
    return new XmppUserError(
      'xmpp_not_registered',
      'auth',
      'registration-required',
      'You are not registered with the bridge: send "register" to the gateway first.',
    );
  }
  if (code === 'bridge_bad_remote') {
    return new XmppUserError('xmpp_bad_contact', 'modify', 'jid-malformed', (err as Error).message);
  }
  return new XmppUserError(
    'xmpp_bridge_failed',
    'wait',
    'internal-server-error',
    `The bridge could not take the message (${(err as Error).message}): send it again.`,
  );
}

/** Removes the quoted part of a reply (XEP-0461 with an XEP-0428 fallback range). */
function stripReplyFallback(el: Element, body: string): string {
  const fb = el
    .getChildren('fallback', NS.fallback)
    .find((f) => f.attrs.for === NS.reply)
    ?.getChild('body');
  const start = Number(fb?.attrs.start);
  const end = Number(fb?.attrs.end);
  if (!Number.isInteger(start) || !Number.isInteger(end) || end <= start) return body;
  const cps = [...body];
  return [...cps.slice(0, start), ...cps.slice(end)].join('');
}
