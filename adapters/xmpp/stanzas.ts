/**
 * Namespaces, stanza builders and the XML-safety rule for everything the adapter sends. Every
 * stanza is built with `xml()`; every piece of foreign text goes through `xmlSafe` first, because
 * one character XML 1.0 forbids (a control character, a lone surrogate) makes the server close the
 * component's stream.
 */
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';

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
