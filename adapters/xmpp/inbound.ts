/**
 * What users send (XMPP -> core): chat messages to contact JIDs become outgoing events (text,
 * corrections XEP-0308, retractions XEP-0424, reactions XEP-0444, replies XEP-0461, files by URL
 * XEP-0066), chat markers XEP-0333 and chat states XEP-0085 become receipts and typing; messages to
 * the component JID are commands. What cannot be sent is refused with an error the client shows on
 * the message.
 */
import { parseGeoUri } from '../../src/bridge/geo.js';
import { rm } from 'node:fs/promises';
import type { Element } from '@xmpp/xml';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { ConversationEvent, MediaBody, OutgoingEvent } from '../../src/bridge/events.js';
import type { Logger } from '../../src/observability/logger.js';
import type { Contacts } from './contacts.js';
import type { Access, Outbound, UserChain } from './context.js';
import { notRegistered, userErrorOf, XmppUserError } from './errors.js';
import { parseStanza, type JournalEntry, type StanzaJournal } from './journal.js';
import { readMentions, replyFallback } from './references.js';
import { bareJid, localPartOf, remoteOfContact } from './jids.js';
import type { Downloads } from './downloads.js';
import { mediaKindOf } from './media.js';
import type { UserResources } from './resources.js';
import type { Rooms } from './rooms.js';
import { derivedId, messageError, NS, type ErrorType } from './stanzas.js';
import type { JournaledStanza, XmppStore } from './store.js';
import { stylingToMarkup } from './styling.js';

export interface InboundContext {
  readonly domain: string;
  readonly store: XmppStore;
  readonly core: Pick<BridgeCore, 'submit'>;
  readonly out: Outbound;
  readonly access: Access;
  readonly chain: UserChain;
  /** Where messages are journaled as they are parsed (journal.ts), and settled once submitted. */
  readonly journal: Pick<StanzaJournal, 'append' | 'settle'>;
  readonly resources: Pick<UserResources, 'seen' | 'rememberSender'>;
  readonly contacts: Pick<Contacts, 'resolve'>;
  /** Contact requests on the first message with a contact (presence.ts). */
  readonly roster: { offer(user: string, remote: string): Promise<void> };
  /** A chat command to the component JID (commands.ts), from a full JID. */
  command(from: string, body: string): Promise<void>;
  /** Files users share by URL, downloaded (sealed) before the core sends them. */
  readonly files: Pick<Downloads, 'fetch'>;
  /** Groups' rooms: messages to them go there (rooms.ts). */
  readonly rooms: Pick<Rooms, 'isRoom' | 'fromUser' | 'setSubject' | 'remoteOfOccupant'>;
  /** The core took an outgoing event. */
  submitted(event: OutgoingEvent): void;
  /** Something the user sent was refused, with the error stanza they got. */
  refused(error: Element): void;
  readonly log: Logger | undefined;
}

export class Inbound {
  constructor(private readonly ctx: InboundContext) {}

  /** A message stanza from a user's server. */
  handle(el: Element): void {
    this.dispatch(el, undefined);
  }

  /**
   * A stanza journaled before a crash and not yet handed to the core: handled again, on the user's
   * chain ahead of anything new (call before the link is up).
   */
  replay(row: JournaledStanza): void {
    let el: Element;
    try {
      el = parseStanza(row.stanza);
    } catch (err) {
      this.ctx.log?.warn({ err: (err as Error).message, seq: row.seq }, 'journaled stanza unreadable');
      this.ctx.journal.settle(row.seq);
      return;
    }
    if (!this.dispatch(el, row)) this.ctx.journal.settle(row.seq);
  }

  /**
   * Routes a message; a chat message to a contact is journaled (unless it comes from the journal,
   * as `journaled`) and queued on the user's chain. True when it was queued so.
   */
  private dispatch(el: Element, journaled: Pick<JournaledStanza, 'seq' | 'localId'> | undefined): boolean {
    const { access, chain, domain } = this.ctx;
    const from = el.attrs.from;
    const to = el.attrs.to;
    const type = el.attrs.type ?? 'normal';
    if (!from || !to || type === 'error' || type === 'headline') return false;
    const user = bareJid(from);
    if (!access.mayUse(user)) {
      const e = access.notAllowed(user);
      this.refuse(el, e.type, e.condition, e.message);
      return false;
    }
    if (from !== user) this.ctx.resources.seen(user, from);
    const contact = bareJid(to);
    if (contact === domain) {
      const body = el.getChild('body')?.getText();
      if (body !== undefined && body.trim() !== '') chain.queue(user, () => this.ctx.command(from, body));
      return false;
    }
    if (type === 'groupchat' && !this.ctx.rooms.isRoom(contact)) {
      this.refuse(el, 'cancel', 'item-not-found', `${contact} is not a group of this gateway.`);
      return false;
    }
    // Serialised at most once: for a derived id, or by the journal if the core is slower than the
    // end of this turn (otherwise the journal keeps no content and never asks for it).
    let text: string | undefined;
    const serialised = (): string => (text ??= el.toString());
    const localId =
      journaled?.localId ??
      el.getChild('origin-id', NS.sid)?.attrs.id ??
      el.attrs.id ??
      derivedId('x', from, serialised());
    // Chat states alone are worth nothing later: not journaled.
    const entry: JournalEntry | number | undefined =
      journaled !== undefined
        ? journaled.seq
        : worthJournaling(el)
          ? this.ctx.journal.append({ localUser: user, contact, localId, stanza: serialised })
          : undefined;
    let settled = entry === undefined;
    const taken = (): void => {
      if (settled) return;
      settled = true;
      this.ctx.journal.settle(entry as JournalEntry | number);
    };
    chain.queue(user, async () => {
      try {
        if (type === 'groupchat') await this.onRoomMessage(el, localId, taken);
        else await this.onChatMessage(el, from, to, localId, taken);
      } finally {
        taken();
      }
    });
    return true;
  }

  /** A message the user sends in a group's room (rooms.ts hands it to the core and reflects it). */
  private async onRoomMessage(el: Element, localId: string, taken: () => void): Promise<void> {
    const user = bareJid(el.attrs.from ?? '');
    try {
      const body = el.getChild('body')?.getText() ?? '';
      const subject = el.getChild('subject');
      if (subject && body === '') {
        // A new subject (XEP-0045 8.1): the group's, once the gateway agrees; the room shows it then.
        await this.ctx.rooms.setSubject(user, bareJid(el.attrs.to ?? ''), subject.getText());
        taken();
        return;
      }
      const oob = el.getChild('x', NS.oob)?.getChild('url')?.getText();
      const retract = el.getChild('retract', NS.retract)?.attrs.id;
      const reactions = el.getChild('reactions', NS.reactions);
      // XEP-0333 in a room: the user read up to the message with this (stanza-)id.
      const displayed = el.getChild('displayed', NS.markers)?.attrs.id;
      if (body === '' && !oob && !retract && !reactions && !displayed) return; // chat states: not for groups
      if (!(await this.ctx.access.isRegistered(user)))
        throw notRegistered(`register with ${this.ctx.domain} first.`);
      const event: ConversationEvent =
        body === '' && !oob && !retract && !reactions && displayed
          ? { type: 'receipt', receipt: 'read', targets: [displayed] }
          : await this.outgoingEvent(el, body, oob, retract, reactions, { localUser: user, localId });
      await this.ctx.rooms.fromUser(el, localId, event, taken);
    } catch (err) {
      this.refuseFor(el, err);
    }
  }

  /** `taken` is called as soon as the core has what the stanza says (its journal entry is settled). */
  private async onChatMessage(
    el: Element,
    from: string,
    to: string,
    localId: string,
    taken: () => void,
  ): Promise<void> {
    const { access, core, store } = this.ctx;
    const user = bareJid(from);
    const contactJid = bareJid(to);
    const base = { localUser: user, localId };
    try {
      // Receipts and chat states need no look-up: a contact we never resolved has nothing to mark.
      const displayed = el.getChild('displayed', NS.markers)?.attrs.id;
      const body = el.getChild('body')?.getText();
      const oob = el.getChild('x', NS.oob)?.getChild('url')?.getText();
      const retract = el.getChild('retract', NS.retract)?.attrs.id;
      const reactions = el.getChild('reactions', NS.reactions);
      const known = await store.contact(user, localPartOf(contactJid) ?? '');
      if (displayed) {
        const remote = known?.remote ?? remoteOfContact(contactJid);
        if (remote && (await access.isRegistered(user))) {
          await core.submit({
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
        if (state && remote && (await access.isRegistered(user))) {
          await core.submit({
            ...base,
            localId: `typing-${base.localId}`,
            remote,
            event: { type: 'typing', typing: state === 'composing' },
          });
        }
        return;
      }
      if (!(await access.isRegistered(user))) {
        throw notRegistered(
          `send "register" to ${this.ctx.domain} (or register through your client's service discovery), then send this again.`,
        );
      }
      this.ctx.resources.rememberSender(user, base.localId, from);
      const remote = known?.remote ?? (await this.ctx.contacts.resolve(user, contactJid));
      const event = await this.outgoingEvent(el, body ?? '', oob, retract, reactions, base);
      const outgoing: OutgoingEvent = { ...base, remote, event };
      await core.submit(outgoing);
      taken();
      await this.ctx.roster.offer(user, remote);
      this.ctx.submitted(outgoing);
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
    base: { localUser: string; localId: string },
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
      const file = await this.ctx.files.fetch(oob.trim(), base.localUser, base.localId);
      const desc = el.getChild('x', NS.oob)?.getChild('desc')?.getText();
      const media: MediaBody = {
        kind: 'media',
        media: mediaKindOf(file.mimetype),
        path: file.path,
        ...(file.sealed ? { sealed: true } : {}),
        mimetype: file.mimetype,
        size: file.size,
        fileName: file.fileName,
        ...(desc ? { caption: stylingToMarkup(desc) } : {}),
      };
      return { type: 'message', body: media, ...replyTo };
    }
    // Without a reply's quoted fallback, with XEP-0372 mentions as the people's tokens.
    const { text, mentions } = await readMentions(el, body, replyId ? replyFallback(el) : undefined, (jid) =>
      this.mentioned(base.localUser, jid),
    );
    // A body that is a geo: URI alone is a shared location (Conversations sends them so).
    const place = parseGeoUri(text);
    if (place !== undefined) return { type: 'message', body: { kind: 'location', ...place }, ...replyTo };
    const textBody = {
      kind: 'text' as const,
      text: stylingToMarkup(text),
      ...(mentions.length > 0 ? { mentions } : {}),
    };
    return { type: 'message', body: textBody, ...replyTo };
  }

  /** Whom a mention's JID names: a contact (by their JID), or a member (by their occupant JID). */
  private async mentioned(user: string, jid: string): Promise<string | undefined> {
    const bare = bareJid(jid);
    if (this.ctx.rooms.isRoom(bare)) return this.ctx.rooms.remoteOfOccupant(user, jid);
    return bare.endsWith(`@${this.ctx.domain}`) ? remoteOfContact(bare) : undefined;
  }

  private refuse(el: Element, type: ErrorType, condition: string, text: string): void {
    const error = messageError(
      { id: el.attrs.id, from: el.attrs.from ?? '', to: el.attrs.to ?? this.ctx.domain },
      type,
      condition,
      text,
    );
    this.ctx.out.fire(error);
    this.ctx.refused(error);
  }

  private refuseFor(el: Element, err: unknown): void {
    const e = userErrorOf(err);
    if (!(err instanceof XmppUserError))
      this.ctx.log?.warn({ err: (err as Error).message }, 'message refused');
    this.refuse(el, e.type, e.condition, e.message);
    // A file downloaded for a message that was refused is of no further use.
    const path = (err as { path?: string }).path;
    if (path) void rm(path, { force: true });
  }
}

/** Whether a message carries something the user would miss if it were lost (not a chat state alone). */
function worthJournaling(el: Element): boolean {
  return (
    (el.getChild('body')?.getText() ?? '') !== '' ||
    el.getChild('x', NS.oob) !== undefined ||
    el.getChild('retract', NS.retract) !== undefined ||
    el.getChild('reactions', NS.reactions) !== undefined ||
    el.getChild('displayed', NS.markers) !== undefined
  );
}

/** Removes the quoted part of a reply (XEP-0461 with an XEP-0428 fallback range). */
