/**
 * Message contents: the plaintext inside a Signal message is a protobuf `Message` followed by
 * random padding (N bytes each of value N, 1 <= N <= 16), so that ciphertext lengths do not give
 * away the exact length of short texts. Unpadding is strict: a sender that pads any other way is
 * broken or probing, and its message is refused rather than guessed at.
 */
import { randomInt } from 'node:crypto';
import { create, isFieldSet, toBinary } from '@bufbuild/protobuf';
import { InteropError } from '../errors.js';
import {
  ContactMessageSchema,
  ContactsArrayMessageSchema,
  ContextInfoSchema,
  ExtendedTextMessageSchema,
  LocationMessageSchema,
  MessageKeySchema,
  MessageSchema,
  ProtocolMessage_Type,
  ProtocolMessageSchema,
  ReactionMessageSchema,
} from './gen/interop/v1/message_pb.js';
import type {
  AudioMessage,
  ContextInfo,
  DocumentMessage,
  ImageMessage,
  Message,
  MessageKey,
  VideoMessage,
} from './gen/interop/v1/message_pb.js';
import { decodeProto } from './proto-decode.js';
import type { ProtoDecodeOptions } from './proto-decode.js';

export const MIN_PADDING = 1;
export const MAX_PADDING = 16;

export class ContentError extends InteropError {
  declare readonly code: 'content_bad_padding';
}

/** Append N bytes of value N; N is random in 1..16 unless given (for fixed test vectors). */
export function padContent(
  body: Uint8Array,
  n: number = randomInt(MIN_PADDING, MAX_PADDING + 1),
): Uint8Array {
  if (!Number.isInteger(n) || n < MIN_PADDING || n > MAX_PADDING) {
    throw new RangeError(`padding length must be an integer in ${MIN_PADDING}..${MAX_PADDING}, got ${n}`);
  }
  const out = new Uint8Array(body.length + n);
  out.set(body);
  out.fill(n, body.length);
  return out;
}

/**
 * Remove the padding, strictly: the last byte N must be 1..16, the input must hold at least N
 * bytes, and the last N bytes must all equal N. The body may be empty (an empty `Message` is valid
 * protobuf; describeContent calls it `unknown`).
 */
export function unpadContent(padded: Uint8Array): Uint8Array {
  const n = padded[padded.length - 1];
  if (n === undefined) throw badPadding('the plaintext is empty (at least one padding byte is required)');
  if (n < MIN_PADDING || n > MAX_PADDING) {
    throw badPadding(`the last byte is ${n}, not a padding length in ${MIN_PADDING}..${MAX_PADDING}`);
  }
  if (padded.length < n) throw badPadding(`padding length ${n} exceeds the ${padded.length}-byte plaintext`);
  for (let i = padded.length - n; i < padded.length; i++) {
    if (padded[i] !== n) throw badPadding(`padding byte at offset ${i} is ${padded[i]}, expected ${n}`);
  }
  return padded.subarray(0, padded.length - n);
}

function badPadding(detail: string): ContentError {
  return new ContentError(
    'content_bad_padding',
    `message contents have bad padding: ${detail}; the sender does not pad as the protocol requires, ` +
      'drop the message and report it as undecodable',
  );
}

export interface EncodeContentOptions {
  /** Fix the padding length (1..16) instead of drawing it at random: for test vectors only. */
  padLength?: number;
}

/** Serialize and pad a `Message`: the plaintext to hand to the Signal layer. */
export function encodeContent(message: Message, options: EncodeContentOptions = {}): Uint8Array {
  return padContent(toBinary(MessageSchema, message), options.padLength);
}

/**
 * Unpad and decode a plaintext from the Signal layer. Throws ContentError (`content_bad_padding`)
 * or ProtoDecodeError (`proto_malformed`, `proto_too_large`), nothing else.
 */
export function decodeContent(plaintext: Uint8Array, options?: ProtoDecodeOptions): Message {
  return decodeProto(MessageSchema, unpadContent(plaintext), 'message contents', options);
}

// ---- Building the common contents ----

/** The message a reply quotes: its stanza id, its author, and optionally its content. */
export interface ReplyTo {
  id: string;
  participant?: string;
  quoted?: Message;
}

/** Which message a reaction, revoke or edit is about (WhatsApp's MessageKey). */
export interface TargetKey {
  remoteJid: string;
  fromMe: boolean;
  id: string;
  participant?: string;
}

/**
 * Plain text: `conversation` (1) alone, or `extendedTextMessage` (6) when it replies to something
 * or mentions someone. A mention is the user's JID in `mentionedJid`, and `@<number>` in the text
 * (the sender writes it there; apps show the name in its place).
 */
export function textContent(
  text: string,
  options: { replyTo?: ReplyTo | undefined; mentions?: readonly string[] | undefined } = {},
): Message {
  const mentions = options.mentions ?? [];
  if (options.replyTo === undefined && mentions.length === 0) {
    return create(MessageSchema, { conversation: text });
  }
  return create(MessageSchema, {
    extendedTextMessage: create(ExtendedTextMessageSchema, {
      text,
      contextInfo: contextInfo(options.replyTo, mentions),
    }),
  });
}

/** A place to share. */
export interface Place {
  latitude: number;
  longitude: number;
  name?: string | undefined;
  address?: string | undefined;
  url?: string | undefined;
  comment?: string | undefined;
}

/** A location (5): coordinates with an optional name and address. */
export function locationContent(place: Place, options: { replyTo?: ReplyTo | undefined } = {}): Message {
  return create(MessageSchema, {
    locationMessage: create(LocationMessageSchema, {
      degreesLatitude: place.latitude,
      degreesLongitude: place.longitude,
      ...(place.name ? { name: place.name } : {}),
      ...(place.address ? { address: place.address } : {}),
      ...(place.url ? { url: place.url } : {}),
      ...(place.comment ? { comment: place.comment } : {}),
      ...(options.replyTo ? { contextInfo: contextInfo(options.replyTo) } : {}),
    }),
  });
}

/** A contact card to share: its name and its vCard text. */
export interface Card {
  displayName: string;
  vcard: string;
}

/** One contact card (4), or several (13, `contactsArrayMessage`). */
export function contactContent(cards: readonly Card[], options: { replyTo?: ReplyTo | undefined } = {}): Message {
  const context = options.replyTo ? { contextInfo: contextInfo(options.replyTo) } : {};
  const card = (c: Card) => create(ContactMessageSchema, { displayName: c.displayName, vcard: c.vcard });
  const [only] = cards;
  if (cards.length === 1 && only) {
    return create(MessageSchema, {
      contactMessage: create(ContactMessageSchema, { displayName: only.displayName, vcard: only.vcard, ...context }),
    });
  }
  return create(MessageSchema, {
    contactsArrayMessage: create(ContactsArrayMessageSchema, {
      displayName: `${cards.length} contacts`,
      contacts: cards.map(card),
      ...context,
    }),
  });
}

/** A reaction (46) to `target`; an empty `emoji` removes an earlier reaction. */
export function reactionContent(target: TargetKey, emoji: string, senderTimestampMs?: bigint): Message {
  return create(MessageSchema, {
    reactionMessage: create(ReactionMessageSchema, {
      key: messageKey(target),
      text: emoji,
      ...(senderTimestampMs === undefined ? {} : { senderTimestampMs }),
    }),
  });
}

/** Delete `target` for everyone: protocolMessage (12) of type REVOKE. */
export function revokeContent(target: TargetKey): Message {
  return create(MessageSchema, {
    protocolMessage: create(ProtocolMessageSchema, {
      key: messageKey(target),
      type: ProtocolMessage_Type.REVOKE,
    }),
  });
}

/** Replace the content of `target`: protocolMessage (12) of type MESSAGE_EDIT. */
export function editContent(target: TargetKey, replacement: Message, timestampMs?: bigint): Message {
  return create(MessageSchema, {
    protocolMessage: create(ProtocolMessageSchema, {
      key: messageKey(target),
      type: ProtocolMessage_Type.MESSAGE_EDIT,
      editedMessage: replacement,
      ...(timestampMs === undefined ? {} : { timestampMs }),
    }),
  });
}

/** The ContextInfo (17) that makes any content a reply, and names whom a text mentions. */
export function contextInfo(replyTo: ReplyTo | undefined, mentions: readonly string[] = []): ContextInfo {
  return create(ContextInfoSchema, {
    ...(replyTo === undefined ? {} : { stanzaId: replyTo.id }),
    ...(replyTo?.participant === undefined ? {} : { participant: replyTo.participant }),
    ...(replyTo?.quoted === undefined ? {} : { quotedMessage: replyTo.quoted }),
    ...(mentions.length === 0 ? {} : { mentionedJid: [...mentions] }),
  });
}

function messageKey(target: TargetKey): MessageKey {
  return create(MessageKeySchema, {
    remoteJid: target.remoteJid,
    fromMe: target.fromMe,
    id: target.id,
    ...(target.participant === undefined ? {} : { participant: target.participant }),
  });
}

// ---- Routing on what a content is ----

/** The quoted message of a reply, as the bridge needs it to find its own copy. */
export interface ReplyRef {
  id: string;
  participant?: string;
}

/** A contact card as received: the name shown and the vCard text (possibly empty). */
export interface ReceivedCard {
  displayName: string;
  vcard: string;
}

export type DescribedContent =
  | { kind: 'text'; text: string; replyTo?: ReplyRef; mentions?: string[] }
  | { kind: 'image'; media: ImageMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'video'; media: VideoMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'audio'; media: AudioMessage; replyTo?: ReplyRef }
  | { kind: 'voice'; media: AudioMessage; replyTo?: ReplyRef }
  | { kind: 'document'; media: DocumentMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'reaction'; target: MessageKey; emoji: string }
  | { kind: 'revoke'; target: MessageKey }
  | { kind: 'edit'; target: MessageKey; replacement: Message }
  | { kind: 'location'; place: Place; live: boolean; replyTo?: ReplyRef }
  | { kind: 'contact'; cards: ReceivedCard[]; replyTo?: ReplyRef }
  /** A content the bridge knows of but does not carry (a poll, a sticker...): `what` names it. */
  | { kind: 'unsupported'; what: string }
  | { kind: 'unknown'; reason: string };

export type ContentKind = DescribedContent['kind'];

/**
 * Say what a content is, for routing. A well-formed content sets one of the fields; if several are
 * set, the first in this order wins: protocolMessage, reactionMessage, image, video, audio,
 * document, location, contact(s), extendedTextMessage, conversation. A content the gatekeeper's
 * apps send that the bridge does not carry (a poll, a sticker, a payment: `UNSUPPORTED`, by field
 * number) is `unsupported`, naming it; anything else the bridge cannot act on (an unset or unknown
 * protocol type, a missing target key, no field at all) is `unknown` with a reason.
 */
export function describeContent(message: Message): DescribedContent {
  const pm = message.protocolMessage;
  if (pm !== undefined) {
    // proto2 enums default to their first value (REVOKE): only an explicitly set type counts.
    if (!isFieldSet(pm, ProtocolMessageSchema.field.type)) {
      return { kind: 'unknown', reason: 'protocolMessage without a known type' };
    }
    const target = pm.key;
    if (pm.type === ProtocolMessage_Type.REVOKE) {
      if (!validTarget(target)) return { kind: 'unknown', reason: 'revoke without a target message id' };
      return { kind: 'revoke', target };
    }
    if (pm.type === ProtocolMessage_Type.MESSAGE_EDIT) {
      if (!validTarget(target)) return { kind: 'unknown', reason: 'edit without a target message id' };
      if (pm.editedMessage === undefined) return { kind: 'unknown', reason: 'edit without a new content' };
      return { kind: 'edit', target, replacement: pm.editedMessage };
    }
    return { kind: 'unknown', reason: `protocolMessage of type ${pm.type}` };
  }
  const reaction = message.reactionMessage;
  if (reaction !== undefined) {
    if (!validTarget(reaction.key))
      return { kind: 'unknown', reason: 'reaction without a target message id' };
    return { kind: 'reaction', target: reaction.key, emoji: reaction.text };
  }
  if (message.imageMessage !== undefined) {
    const media = message.imageMessage;
    return { kind: 'image', media, caption: media.caption, ...reply(media.contextInfo) };
  }
  if (message.videoMessage !== undefined) {
    const media = message.videoMessage;
    return { kind: 'video', media, caption: media.caption, ...reply(media.contextInfo) };
  }
  if (message.audioMessage !== undefined) {
    const media = message.audioMessage;
    return { kind: media.ptt ? 'voice' : 'audio', media, ...reply(media.contextInfo) };
  }
  if (message.documentMessage !== undefined) {
    const media = message.documentMessage;
    return { kind: 'document', media, caption: media.caption, ...reply(media.contextInfo) };
  }
  const location = message.locationMessage;
  if (location !== undefined) {
    const place: Place = { latitude: location.degreesLatitude, longitude: location.degreesLongitude };
    if (!validCoordinates(place)) return { kind: 'unknown', reason: 'location with invalid coordinates' };
    for (const k of ['name', 'address', 'url', 'comment'] as const) if (location[k]) place[k] = location[k];
    return { kind: 'location', place, live: location.isLive, ...reply(location.contextInfo) };
  }
  if (message.contactMessage !== undefined) {
    const card = message.contactMessage;
    return { kind: 'contact', cards: [receivedCard(card)], ...reply(card.contextInfo) };
  }
  if (message.contactsArrayMessage !== undefined) {
    const array = message.contactsArrayMessage;
    if (array.contacts.length === 0) return { kind: 'unknown', reason: 'contacts message without a card' };
    return { kind: 'contact', cards: array.contacts.map(receivedCard), ...reply(array.contextInfo) };
  }
  if (message.extendedTextMessage !== undefined) {
    const ext = message.extendedTextMessage;
    const mentions = ext.contextInfo?.mentionedJid.filter((j) => j !== '') ?? [];
    return {
      kind: 'text',
      text: ext.text,
      ...reply(ext.contextInfo),
      ...(mentions.length > 0 ? { mentions } : {}),
    };
  }
  if (isFieldSet(message, MessageSchema.field.conversation)) {
    return { kind: 'text', text: message.conversation };
  }
  if (message.pollCreationMessage !== undefined) return { kind: 'unsupported', what: 'a poll' };
  for (const field of message.$unknown ?? []) {
    const what = UNSUPPORTED.get(field.no);
    if (what !== undefined) return { kind: 'unsupported', what };
  }
  if (message.senderKeyDistributionMessage !== undefined) {
    return { kind: 'unknown', reason: 'a sender key alone, with no content' };
  }
  return { kind: 'unknown', reason: 'no content field the bridge knows' };
}

/**
 * Contents of the gatekeeper's apps that the bridge knows by their field number in `Message` but
 * does not carry, and how a notice names them (WhatsApp's field numbers).
 */
export const UNSUPPORTED: ReadonlyMap<number, string> = new Map([
  [10, 'a call'],
  [14, 'a template message'],
  [16, 'a payment'],
  [18, 'a live location'],
  [22, 'a payment request'],
  [25, 'a template message'],
  [26, 'a sticker'],
  [28, 'a group invitation'],
  [30, 'a product'],
  [36, 'a list'],
  [37, 'a view-once message'],
  [38, 'an order'],
  [41, 'an invoice'],
  [42, 'a message with buttons'],
  [44, 'a payment invitation'],
  [45, 'an interactive message'],
  [49, 'a poll'],
  [50, 'a poll vote'],
  [55, 'a view-once message'],
  [60, 'a poll'],
  [61, 'a scheduled call'],
  [64, 'a poll'],
  [66, 'a round video message'],
  [75, 'an event'],
]);

function validCoordinates(p: Place): boolean {
  return (
    Number.isFinite(p.latitude) &&
    Number.isFinite(p.longitude) &&
    Math.abs(p.latitude) <= 90 &&
    Math.abs(p.longitude) <= 180
  );
}

function receivedCard(card: { displayName: string; vcard: string }): ReceivedCard {
  return { displayName: card.displayName, vcard: card.vcard };
}

function validTarget(key: MessageKey | undefined): key is MessageKey {
  return key !== undefined && key.id !== '';
}

function reply(context: ContextInfo | undefined): { replyTo?: ReplyRef } {
  if (context === undefined || context.stanzaId === '') return {};
  const { stanzaId: id, participant } = context;
  return { replyTo: participant === '' ? { id } : { id, participant } };
}
