/**
 * What the core shows through the adapter (core -> XMPP): incoming events as messages from contact
 * JIDs (each stanza id derived from the event, so a redelivery is recognised), contacts' typing and
 * presence, the ticks and failures of the user's own messages, and the core's notices.
 */
import type { Element } from '@xmpp/xml';
import type {
  ConversationEvent,
  DeliveryUpdate,
  EphemeralEvent,
  IncomingEvent,
  MediaBody,
  Mention,
  Notice,
} from '../../src/bridge/events.js';
import { geoUri } from '../../src/bridge/geo.js';
import { formatSafetyNumber, phoneOfRemote } from '../../src/bridge/phone.js';
import type { Contacts } from './contacts.js';
import type { CapsVersions, Outbound } from './context.js';
import { contactJidOfPhone, contactJidOfRemote } from './jids.js';
import { fileNameFor, type FilePublisher } from './media.js';
import type { UserResources } from './resources.js';
import {
  chatMessage,
  chatState,
  contactPresence,
  deliveryReceipt,
  derivedId,
  errorMessageWithBody,
  gatewayPresence,
  incomingCaption,
  incomingEdit,
  incomingFile,
  incomingLocation,
  incomingReaction,
  incomingRetraction,
  incomingText,
  incomingUnshownFile,
  messageError,
  presence,
  readMarker,
  type IncomingEnvelope,
  type MentionReference,
} from './stanzas.js';
import type { Rooms } from './rooms.js';
import type { XmppStore } from './store.js';
import { markupToStyling } from './styling.js';

/** An event shown later than this after it happened carries its time (XEP-0203). */
const DELAY_SHOWN_AFTER_MS = 5_000;

export interface DeliveryContext {
  readonly domain: string;
  readonly store: XmppStore;
  readonly out: Outbound;
  readonly contacts: Pick<Contacts, 'jidOf' | 'setPresence'>;
  /** Contact requests on the first message with a contact (presence.ts). */
  readonly roster: { offer(user: string, remote: string): Promise<void> };
  readonly resources: Pick<UserResources, 'of' | 'lastSeenOf' | 'errorAddressOf' | 'clear'>;
  /** Gives incoming files a URL; none: a file arrives as a line saying what it was. */
  readonly publisher: FilePublisher | undefined;
  readonly caps: CapsVersions;
  /** Group messages go to the rooms the user joined. */
  readonly rooms: Pick<Rooms, 'deliver' | 'receipt'>;
}

/**
 * A tick's confirmation only lets the core acknowledge the contact's receipt to the gateway (which
 * sends it again if it never is): it may wait a little to share a ping with other ticks, instead of
 * one ping round trip per tick at a steady rate. The tick itself is written at once.
 */
const TICK = { confirmWithinMs: 100 } as const;

export class Delivery {
  constructor(private readonly ctx: DeliveryContext) {}

  /** `Adapter.deliver`: resolves with the stanza id once the server has taken every stanza. */
  async deliver(event: IncomingEvent): Promise<string | undefined> {
    const { out } = this.ctx;
    const { localUser, remote, remoteId } = event;
    const e = event.event;
    if (e.type === 'typing' || e.type === 'presence' || e.type === 'receipt') return undefined;
    if (event.author !== undefined) return this.deliverInRoom(event);
    const contact = await this.ctx.contacts.jidOf(localUser, remote);
    const id = derivedId('wa', localUser, remote, remoteId);
    await this.ctx.roster.offer(localUser, remote);
    const delay =
      Date.now() - event.timestamp > DELAY_SHOWN_AFTER_MS
        ? { from: this.ctx.domain, stamp: new Date(event.timestamp).toISOString() }
        : undefined;
    const stanzas = await this.stanzasOf({ id, from: contact, to: localUser, delay }, e);
    await Promise.all(stanzas.map((s) => out.send(s)));
    return id;
  }

  /** A member's message in a group: in its room, from the member's occupant JID (rooms.ts). */
  private async deliverInRoom(event: IncomingEvent): Promise<string> {
    const { localUser, remote, remoteId } = event;
    const id = derivedId('wa', localUser, remote, remoteId);
    const delay =
      Date.now() - event.timestamp > DELAY_SHOWN_AFTER_MS
        ? { from: this.ctx.domain, stamp: new Date(event.timestamp).toISOString() }
        : undefined;
    const author = contactJidOfRemote(event.author ?? remote, this.ctx.domain);
    const stanzas = await this.stanzasOf({ id, from: author, to: localUser, delay }, event.event);
    return this.ctx.rooms.deliver(event, stanzas);
  }

  /** `Adapter.showEphemeral`: a contact's typing, or presence (shown if the user subscribed to it). */
  async showEphemeral(event: EphemeralEvent): Promise<void> {
    const { localUser, remote } = event;
    const e = event.event;
    if (e.type === 'presence') this.ctx.contacts.setPresence(localUser, remote, e.available);
    const from = await this.ctx.contacts.jidOf(localUser, remote);
    if (e.type === 'typing') {
      this.ctx.out.fire(chatState(from, localUser, e.typing));
      return;
    }
    const c = await this.ctx.store.contactByRemote(localUser, remote);
    if (c?.subTo) this.ctx.out.fire(contactPresence(from, localUser, e.available, this.ctx.caps.contact, c));
  }

  /**
   * `Adapter.updateDelivery`: delivered and read ticks, and a failure as an error on the message.
   * Resolves once the stanza is queued on the link, with the link's confirmation of a tick (the
   * core acknowledges the contact's receipt to the gateway once the server has it).
   */
  async updateDelivery(update: DeliveryUpdate): Promise<{ confirmed?: Promise<void> }> {
    const { localUser, remote, localId, state } = update;
    // In a group, each member's receipt, shown in the room.
    if (update.by !== undefined) return this.ctx.rooms.receipt(update);
    const from = await this.ctx.contacts.jidOf(localUser, remote);
    const { out } = this.ctx;
    switch (state) {
      case 'delivered':
        return {
          confirmed: out.send(
            deliveryReceipt(from, localUser, derivedId('rcpt', localUser, localId), localId),
            TICK,
          ),
        };
      case 'read':
        return {
          confirmed: out.send(
            readMarker(from, localUser, derivedId('read', localUser, localId), localId),
            TICK,
          ),
        };
      case 'failed': {
        const to = this.ctx.resources.errorAddressOf(localUser, localId);
        out.fire(
          messageError(
            { id: localId, from: to, to: from },
            'cancel',
            'recipient-unavailable',
            `Not delivered: ${update.reason ?? 'the message could not be sent'}`,
          ),
        );
        return {};
      }
      default:
        return {};
    }
  }

  /** `Adapter.notify`. */
  async notify(localUser: string, notice: Notice): Promise<void> {
    const { domain, out, store } = this.ctx;
    switch (notice.kind) {
      case 'enlisted':
        this.say(
          localUser,
          `You are registered. Your WhatsApp contacts appear as +<phone number>@${domain}: add one with "add +4915112345678" or from your client's contact list.`,
        );
        out.fire(presence(domain, localUser, 'subscribe'));
        return;
      case 'opted_out':
        this.say(localUser, 'You are unregistered: your interop account and its keys are deleted.');
        for (const c of await store.contacts(localUser)) {
          const from = contactJidOfPhone(c.contact, domain);
          out.fire(presence(from, localUser, 'unavailable'));
          out.fire(presence(from, localUser, 'unsubscribed'));
          out.fire(presence(from, localUser, 'unsubscribe'));
        }
        out.fire(presence(domain, localUser, 'unavailable'));
        await store.forgetUser(localUser);
        this.ctx.resources.clear(localUser);
        return;
      case 'identity_changed': {
        const from = await this.ctx.contacts.jidOf(localUser, notice.remote);
        const who = phoneOfRemote(notice.remote) ?? notice.remote;
        const text =
          `The security code of ${who} changed (a new phone or a reinstall). Safety number: ${formatSafetyNumber(notice.safetyNumber)}.` +
          (notice.blocked
            ? ` Messages to ${who} are held until you confirm: send "confirm ${who}" to ${domain}.`
            : ' Compare it with your contact if in doubt.');
        // Resources known from presence, else the one the user last wrote from: an error must go
        // to a full JID (servers drop errors to a bare JID). Nobody there: a chat message, stored.
        const known = this.ctx.resources.of(localUser);
        const last = this.ctx.resources.lastSeenOf(localUser);
        const online = known.length > 0 ? known : last ? [last] : [];
        if (online.length === 0) out.fire(chatMessage(from, localUser, text));
        const id = derivedId('idc', localUser, notice.remote, notice.safetyNumber);
        for (const full of online) {
          out.fire(
            errorMessageWithBody(from, full, id, text, notice.blocked ? 'auth' : 'cancel', 'not-acceptable'),
          );
        }
        return;
      }
      case 'broadcast':
        this.say(localUser, `Notice from the bridge's operator: ${notice.text}`);
        return;
      case 'connection': {
        const text =
          notice.state === 'connected'
            ? 'Connected to the interop gateway'
            : notice.state === 'refused'
              ? `The interop gateway refused the connection${notice.detail ? ` (${notice.detail})` : ''}`
              : 'Disconnected from the interop gateway: reconnecting';
        const show = notice.state === 'connected' ? undefined : notice.state === 'refused' ? 'dnd' : 'xa';
        out.fire(gatewayPresence(domain, localUser, this.ctx.caps.gateway, { show, text }));
        return;
      }
    }
  }

  /** A chat message from the component to the user (or one resource). */
  say(to: string, text: string): void {
    this.ctx.out.fire(chatMessage(this.ctx.domain, to, text));
  }

  private async stanzasOf(env: IncomingEnvelope, e: ConversationEvent): Promise<Element[]> {
    switch (e.type) {
      case 'message':
        if (e.body.kind === 'text') {
          const text = markupToStyling(e.body.text);
          return [incomingText(env, text, e.replyTo?.localId, this.mentionsIn(text, e.body.mentions, env))];
        }
        if (e.body.kind === 'location') {
          const label = [e.body.name, e.body.address, e.body.comment].filter(Boolean).join(', ');
          const place = { ...e.body, uri: geoUri(e.body), text: label || undefined };
          const shown = [incomingLocation(env, place, e.replyTo?.localId)];
          return label ? [...shown, incomingCaption(env, label)] : shown;
        }
        return this.fileStanzas(env, e.body, e.replyTo?.localId);
      case 'edit':
        return [incomingEdit(env, markupToStyling(e.body.text), e.targetLocalId ?? e.target)];
      case 'delete':
        return [incomingRetraction(env, e.targetLocalId ?? e.target)];
      case 'reaction':
        return [incomingReaction(env, e.targetLocalId ?? e.target, e.emoji)];
      default:
        return [];
    }
  }

  /**
   * Where a text mentions someone (`@4915112345678`), as XEP-0372 references: code point ranges of
   * the body, pointing at the contact's JID, or at the user's own for a mention of the user.
   */
  private mentionsIn(
    text: string,
    mentions: readonly Mention[] | undefined,
    env: IncomingEnvelope,
  ): MentionReference[] {
    const refs: MentionReference[] = [];
    if (!mentions || mentions.length === 0) return refs;
    const points = Array.from(text);
    for (const m of mentions) {
      const token = Array.from(m.token);
      const uri = `xmpp:${m.self === true ? env.to.split('/')[0] : contactJidOfRemote(m.remote, this.ctx.domain)}`;
      for (let i = 0; i + token.length <= points.length; i++) {
        if (token.every((c, k) => points[i + k] === c)) {
          refs.push({ begin: i, end: i + token.length, uri });
          i += token.length - 1;
        }
      }
    }
    return refs.sort((a, b) => a.begin - b.begin);
  }

  /** A file by the URL the publisher gives it, and its caption as a message of its own. */
  private async fileStanzas(
    env: IncomingEnvelope,
    media: MediaBody,
    replyTo: string | undefined,
  ): Promise<Element[]> {
    const { publisher } = this.ctx;
    if (!publisher) return [incomingUnshownFile(env, labelOf(media))];
    const url = await publisher.publish({
      path: media.path,
      size: media.size,
      mimetype: media.mimetype,
      fileName: fileNameFor(media.mimetype, media.fileName),
    });
    const out = [incomingFile(env, url, media.caption, replyTo)];
    if (media.caption) out.push(incomingCaption(env, markupToStyling(media.caption)));
    return out;
  }
}

/** `a voice note`, `an image`, `a video`, `a file`. */
function labelOf(media: MediaBody): string {
  if (media.media === 'voice') return 'a voice note';
  if (media.media === 'file') return 'a file';
  return `a${media.media === 'image' ? 'n' : ''} ${media.media}`;
}
