/**
 * Namespaces, stanza builders and the XML-safety rule for everything the adapter sends: the
 * handlers say what to send, these say how it looks on the wire (the answers to iq requests are
 * built next to their handlers in iq/). Every stanza is built with `xml()`; every piece of foreign
 * text goes through `xmlSafe` first, because one character XML 1.0 forbids (a control character, a
 * lone surrogate) makes the server close the component's stream.
 */
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import { localPartOf, phoneOfContact } from './jids.js';

export const NS = {
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  discoInfo: 'http://jabber.org/protocol/disco#info',
  discoItems: 'http://jabber.org/protocol/disco#items',
  caps: 'http://jabber.org/protocol/caps',
  register: 'jabber:iq:register',
  gateway: 'jabber:iq:gateway',
  commands: 'http://jabber.org/protocol/commands',
  dataForms: 'jabber:x:data',
  ping: 'urn:xmpp:ping',
  vcard: 'vcard-temp',
  nick: 'http://jabber.org/protocol/nick',
  vcardUpdate: 'vcard-temp:x:update',
  receipts: 'urn:xmpp:receipts',
  markers: 'urn:xmpp:chat-markers:0',
  chatstates: 'http://jabber.org/protocol/chatstates',
  sid: 'urn:xmpp:sid:0',
  oob: 'jabber:x:oob',
  upload: 'urn:xmpp:http:upload:0',
  delay: 'urn:xmpp:delay',
  hints: 'urn:xmpp:hints',
  correct: 'urn:xmpp:message-correct:0',
  retract: 'urn:xmpp:message-retract:1',
  fallback: 'urn:xmpp:fallback:0',
  reactions: 'urn:xmpp:reactions:0',
  reply: 'urn:xmpp:reply:0',
  reference: 'urn:xmpp:reference:0',
  geoloc: 'http://jabber.org/protocol/geoloc',
  version: 'jabber:iq:version',
} as const;

/**
 * `text` with every character XML 1.0 does not allow removed: C0 controls other than tab, LF and
 * CR, lone surrogates, U+FFFE and U+FFFF. Everything else (emoji, markup, `<&>`) is kept; the
 * builder escapes what needs escaping.
 */
export function xmlSafe(text: string): string {
  return text.replace(FORBIDDEN_XML_CHARS, '');
}

// From a string, so that the source holds no control characters (no-control-regex).
const FORBIDDEN_XML_CHARS = new RegExp(
  '[\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]' +
    '|[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]',
  'g',
);

export type ErrorType = 'cancel' | 'modify' | 'auth' | 'wait';

/** `<error type><condition/><text>…</text></error>` with a human-readable sentence. */
export function stanzaError(type: ErrorType, condition: string, text: string): Element {
  return xml(
    'error',
    { type },
    xml(condition, { xmlns: NS.stanzas }),
    xml('text', { xmlns: NS.stanzas, 'xml:lang': 'en' }, xmlSafe(text)),
  );
}

/** An error reply to a message (same id, from and to swapped) that clients show on that message. */
export function messageError(
  original: { id?: string | undefined; from: string; to: string },
  type: ErrorType,
  condition: string,
  text: string,
): Element {
  return xml(
    'message',
    { type: 'error', from: original.to, to: original.from, ...(original.id ? { id: original.id } : {}) },
    stanzaError(type, condition, text),
  );
}

/** XEP-0115 verification string over identities and features (no forms). */
export function capsVer(
  identities: readonly { category: string; type: string; name?: string }[],
  features: readonly string[],
): string {
  const ids = identities
    .map((i) => `${i.category}/${i.type}//${i.name ?? ''}`)
    .sort()
    .join('<');
  const s = `${ids}<${[...features].sort().join('<')}<`;
  return createHash('sha1').update(s, 'utf8').digest('base64');
}

/** A deterministic stanza id for something derived from `parts` (resends reuse it). */
export function derivedId(prefix: string, ...parts: string[]): string {
  return `${prefix}-${createHash('sha256').update(parts.join('\n'), 'utf8').digest('hex').slice(0, 24)}`;
}

// --- presence ----------------------------------------------------------------------------------

/** Where the gateway's caps (XEP-0115) point: one node for the gateway and its contacts. */
export const CAPS_NODE = 'https://github.com/interop-bridge/interop-bridge';

export type PresenceType =
  'unavailable' | 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed' | 'probe';

/** A presence without payload: available when `type` is left out. */
export function presence(from: string, to: string, type?: PresenceType): Element {
  return xml('presence', { from, to, ...(type ? { type } : {}) });
}

/** `<c/>` (XEP-0115) with a verification string from `capsVer`. */
export function capsElement(ver: string): Element {
  return xml('c', { xmlns: NS.caps, hash: 'sha-1', node: CAPS_NODE, ver });
}

/** The gateway's own presence to a user, with a status line when it is not plainly online. */
export function gatewayPresence(
  domain: string,
  to: string,
  capsVer: string,
  status?: { show: 'dnd' | 'xa' | undefined; text: string },
): Element {
  return xml(
    'presence',
    { from: domain, to },
    status?.show ? xml('show', {}, status.show) : null,
    status ? xml('status', {}, xmlSafe(status.text)) : null,
    capsElement(capsVer),
  );
}

/**
 * A contact's presence: available (with caps, its name or else its number as nick, XEP-0172) or
 * unavailable; either way its picture's hash (XEP-0153) when it has one, so clients fetch the vCard.
 */
export function contactPresence(
  from: string,
  to: string,
  available: boolean,
  capsVer: string,
  profile: { readonly name?: string | null; readonly photoHash?: string | null } = {},
): Element {
  const photo = xml(
    'x',
    { xmlns: NS.vcardUpdate },
    profile.photoHash ? xml('photo', {}, profile.photoHash) : xml('photo', {}),
  );
  if (!available) return xml('presence', { from, to, type: 'unavailable' }, photo);
  const nick = profile.name ?? phoneOfContact(from) ?? localPartOf(from) ?? from;
  return xml(
    'presence',
    { from, to },
    capsElement(capsVer),
    xml('nick', { xmlns: NS.nick }, xmlSafe(nick)),
    photo,
  );
}

/** A contact asks the user for a subscription, with its name (XEP-0172). */
export function subscriptionRequest(from: string, to: string, nick: string): Element {
  return xml('presence', { from, to, type: 'subscribe' }, xml('nick', { xmlns: NS.nick }, xmlSafe(nick)));
}

/** An error answer to a presence (a subscription request that cannot be approved). */
export function presenceError(from: string, to: string, id: string | undefined, error: Element): Element {
  return xml('presence', { from, to, type: 'error', ...(id ? { id } : {}) }, error);
}

// --- messages ----------------------------------------------------------------------------------

/** A chat message with a body (the component's answers, notices). */
export function chatMessage(from: string, to: string, text: string): Element {
  return xml('message', { type: 'chat', from, to }, xml('body', {}, xmlSafe(text)));
}

/** A contact's typing (XEP-0085), not stored by the server (XEP-0334). */
export function chatState(from: string, to: string, typing: boolean): Element {
  return xml(
    'message',
    { type: 'chat', from, to },
    xml(typing ? 'composing' : 'paused', { xmlns: NS.chatstates }),
    xml('no-store', { xmlns: NS.hints }),
  );
}

/** The contact received the user's message `of` (XEP-0184). */
export function deliveryReceipt(from: string, to: string, id: string, of: string): Element {
  return xml('message', { type: 'chat', from, to, id }, xml('received', { xmlns: NS.receipts, id: of }));
}

/** The contact read the user's message `of` (XEP-0333), stored for the user's other clients. */
export function readMarker(from: string, to: string, id: string, of: string): Element {
  return xml(
    'message',
    { type: 'chat', from, to, id },
    xml('displayed', { xmlns: NS.markers, id: of }),
    xml('store', { xmlns: NS.hints }),
  );
}

/** An error message with a body too, which clients show even when they ignore the error's text. */
export function errorMessageWithBody(
  from: string,
  to: string,
  id: string,
  text: string,
  type: ErrorType,
  condition: string,
): Element {
  return xml(
    'message',
    { type: 'error', from, to, id },
    xml('body', {}, xmlSafe(text)),
    stanzaError(type, condition, text),
  );
}

/** The envelope of the stanzas that show one incoming event. */
export interface IncomingEnvelope {
  readonly id: string;
  /** The contact JID. */
  readonly from: string;
  readonly to: string;
  /** XEP-0203 delay, for an event shown late: who delayed it and when it happened. */
  readonly delay?: { readonly from: string; readonly stamp: string } | undefined;
}

function incoming(env: IncomingEnvelope, children: (Element | null)[], id = env.id): Element {
  return xml(
    'message',
    { type: 'chat', from: env.from, to: env.to, id },
    ...children,
    xml('origin-id', { xmlns: NS.sid, id }),
    env.delay ? xml('delay', { xmlns: NS.delay, from: env.delay.from, stamp: env.delay.stamp }) : null,
  );
}

/** Asks for a delivery receipt and a read marker (XEP-0184, XEP-0333). */
function markable(): Element[] {
  return [xml('request', { xmlns: NS.receipts }), xml('markable', { xmlns: NS.markers })];
}

/** XEP-0461: the message answers the contact's (or the user's) message `id`. */
function reply(env: IncomingEnvelope, id: string | undefined): Element | null {
  return id ? xml('reply', { xmlns: NS.reply, to: env.from, id }) : null;
}

/** A mention in a body (XEP-0372): code point range [begin, end) of the body, and whom (an xmpp: URI). */
export interface MentionReference {
  readonly begin: number;
  readonly end: number;
  readonly uri: string;
}

/** A text message from a contact (`text` already in XEP-0393 styling), with its mentions. */
export function incomingText(
  env: IncomingEnvelope,
  text: string,
  replyTo?: string,
  mentions: readonly MentionReference[] = [],
): Element {
  return incoming(env, [
    xml('body', {}, xmlSafe(text)),
    reply(env, replyTo),
    ...mentions.map((m) =>
      xml('reference', {
        xmlns: NS.reference,
        type: 'mention',
        begin: String(m.begin),
        end: String(m.end),
        uri: m.uri,
      }),
    ),
    ...markable(),
    xml('active', { xmlns: NS.chatstates }),
  ]);
}

/**
 * A contact's location: the geo: URI alone as the body (Conversations and Gajim show such a body
 * on a map) and the place in XEP-0080 form; its name and address follow as a caption.
 */
export function incomingLocation(
  env: IncomingEnvelope,
  place: { latitude: number; longitude: number; uri: string; text?: string | undefined },
  replyTo?: string,
): Element {
  return incoming(env, [
    xml('body', {}, place.uri),
    xml(
      'geoloc',
      { xmlns: NS.geoloc },
      xml('lat', {}, String(place.latitude)),
      xml('lon', {}, String(place.longitude)),
      place.text ? xml('text', {}, xmlSafe(place.text)) : null,
    ),
    reply(env, replyTo),
    ...markable(),
  ]);
}

/** A file from a contact by URL (XEP-0066); the caption goes in a message of its own too. */
export function incomingFile(
  env: IncomingEnvelope,
  url: string,
  caption?: string,
  replyTo?: string,
): Element {
  return incoming(env, [
    xml('body', {}, url),
    xml('x', { xmlns: NS.oob }, xml('url', {}, url), caption ? xml('desc', {}, xmlSafe(caption)) : null),
    reply(env, replyTo),
    ...markable(),
  ]);
}

/** The caption of a file, as the message after it (`text` in XEP-0393 styling). */
export function incomingCaption(env: IncomingEnvelope, text: string): Element {
  return incoming(env, [xml('body', {}, xmlSafe(text)), ...markable()], `${env.id}-caption`);
}

/** A file that cannot be shown (no file host), named by what it is (`a voice note`). */
export function incomingUnshownFile(env: IncomingEnvelope, label: string): Element {
  return incoming(env, [
    xml('body', {}, `(sent ${label}, which this bridge cannot show: no file host is configured)`),
    ...markable(),
  ]);
}

/** A correction (XEP-0308) of the message `target`. */
export function incomingEdit(env: IncomingEnvelope, text: string, target: string): Element {
  return incoming(env, [
    xml('body', {}, xmlSafe(text)),
    xml('replace', { xmlns: NS.correct, id: target }),
    ...markable(),
  ]);
}

/** A retraction (XEP-0424) of the message `target`, with a fallback body (XEP-0428). */
export function incomingRetraction(env: IncomingEnvelope, target: string): Element {
  return incoming(env, [
    xml('body', {}, 'This person deleted a message.'),
    xml('retract', { xmlns: NS.retract, id: target }),
    xml('fallback', { xmlns: NS.fallback, for: NS.retract }),
    xml('store', { xmlns: NS.hints }),
  ]);
}

/** The contact's reaction (XEP-0444) to `target`; an empty `emoji` removes it. */
export function incomingReaction(env: IncomingEnvelope, target: string, emoji: string): Element {
  return incoming(env, [
    xml('reactions', { xmlns: NS.reactions, id: target }, emoji ? xml('reaction', {}, xmlSafe(emoji)) : null),
    xml('store', { xmlns: NS.hints }),
  ]);
}
