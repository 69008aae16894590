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
  ContextInfoSchema,
  ExtendedTextMessageSchema,
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

/** Plain text: `conversation` (1) alone, or `extendedTextMessage` (6) when it replies to something. */
export function textContent(text: string, options: { replyTo?: ReplyTo } = {}): Message {
  if (options.replyTo === undefined) return create(MessageSchema, { conversation: text });
  return create(MessageSchema, {
    extendedTextMessage: create(ExtendedTextMessageSchema, {
      text,
      contextInfo: contextInfo(options.replyTo),
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

/** The ContextInfo (17) that makes any content a reply. */
export function contextInfo(replyTo: ReplyTo): ContextInfo {
  return create(ContextInfoSchema, {
    stanzaId: replyTo.id,
    ...(replyTo.participant === undefined ? {} : { participant: replyTo.participant }),
    ...(replyTo.quoted === undefined ? {} : { quotedMessage: replyTo.quoted }),
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

export type DescribedContent =
  | { kind: 'text'; text: string; replyTo?: ReplyRef }
  | { kind: 'image'; media: ImageMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'video'; media: VideoMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'audio'; media: AudioMessage; replyTo?: ReplyRef }
  | { kind: 'voice'; media: AudioMessage; replyTo?: ReplyRef }
  | { kind: 'document'; media: DocumentMessage; caption: string; replyTo?: ReplyRef }
  | { kind: 'reaction'; target: MessageKey; emoji: string }
  | { kind: 'revoke'; target: MessageKey }
  | { kind: 'edit'; target: MessageKey; replacement: Message }
  | { kind: 'unknown'; reason: string };

export type ContentKind = DescribedContent['kind'];

/**
 * Say what a content is, for routing. A well-formed content sets one of the fields; if several are
 * set, the first in this order wins: protocolMessage, reactionMessage, image, video, audio,
 * document, extendedTextMessage, conversation. Anything the bridge cannot act on (an unset or
 * unknown protocol type, a missing target key, no known field) is `unknown` with a reason.
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
  if (message.extendedTextMessage !== undefined) {
    const ext = message.extendedTextMessage;
    return { kind: 'text', text: ext.text, ...reply(ext.contextInfo) };
  }
  if (isFieldSet(message, MessageSchema.field.conversation)) {
    return { kind: 'text', text: message.conversation };
  }
  return { kind: 'unknown', reason: 'no content field the bridge knows' };
}

function validTarget(key: MessageKey | undefined): key is MessageKey {
  return key !== undefined && key.id !== '';
}

function reply(context: ContextInfo | undefined): { replyTo?: ReplyRef } {
  if (context === undefined || context.stanzaId === '') return {};
  const { stanzaId: id, participant } = context;
  return { replyTo: participant === '' ? { id } : { id, participant } };
}
