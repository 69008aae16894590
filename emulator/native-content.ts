/**
 * What a native user can be asked to send, as JSON (the admin API's `POST /admin/native-users/send`
 * and scripts): every content kind the gatekeeper's apps send, each validated with a clear error.
 * `buildNativeContent` turns a request into the `Message` to encrypt; media is uploaded first.
 */
import { create } from '@bufbuild/protobuf';
import { WireType } from '@bufbuild/protobuf/wire';
import { z } from 'zod';
import {
  contactContent,
  editContent,
  locationContent,
  reactionContent,
  revokeContent,
  textContent,
  contextInfo,
  type TargetKey,
  UNSUPPORTED,
} from '../src/protocol/content.js';
import {
  MessageSchema,
  PollCreationMessage_OptionSchema,
  PollCreationMessageSchema,
  type Message,
} from '../src/protocol/gen/interop/v1/message_pb.js';
import type { NativeMedia } from './native-media.js';

const id = z.string().min(1, 'a message id').max(128);
const E164 = /^\+[1-9][0-9]{6,14}$/;
const phone = z.string().regex(E164, 'an E.164 number such as "+4915112345678"');
/** A one-pixel PNG: the picture a native user sends when a request names no file. */
const SAMPLE_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

const reply = { reply_to: id.optional() };

export const nativeContentSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('text'),
    text: z.string().min(1).max(65_536),
    /**
     * Whom the text mentions: numbers, or user JIDs (a third-party user); each is written into the
     * text as `@<number's digits>` (`@<user>`) if it is not there yet.
     */
    mentions: z
      .array(z.union([phone, z.string().regex(/^[^@\s]+@[^@\s]+$/, 'a user JID')]))
      .max(64)
      .optional(),
    ...reply,
  }),
  z.strictObject({
    kind: z.enum(['image', 'video', 'audio', 'voice', 'document']),
    /** The file, base64; a small sample of the kind when absent. */
    data_base64: z.string().max(20_000_000).optional(),
    mimetype: z.string().min(3).max(255).optional(),
    file_name: z.string().min(1).max(255).optional(),
    caption: z.string().max(4096).optional(),
    ...reply,
  }),
  z.strictObject({
    kind: z.literal('location'),
    latitude: z.number().min(-90).max(90),
    longitude: z.number().min(-180).max(180),
    name: z.string().max(256).optional(),
    address: z.string().max(512).optional(),
    ...reply,
  }),
  z.strictObject({
    kind: z.literal('contact'),
    cards: z
      .array(z.strictObject({ name: z.string().min(1).max(256), phone }))
      .min(1)
      .max(16),
    ...reply,
  }),
  z.strictObject({ kind: z.literal('edit'), target: id, text: z.string().min(1).max(65_536) }),
  z.strictObject({ kind: z.literal('delete'), target: id }),
  z.strictObject({ kind: z.literal('reaction'), target: id, emoji: z.string().max(32) }),
  z.strictObject({
    kind: z.literal('poll'),
    question: z.string().min(1).max(256),
    options: z.array(z.string().min(1).max(100)).min(2).max(12),
  }),
  /**
   * Another content of the gatekeeper's apps that the bridge does not carry (a sticker, a payment,
   * a view-once message...), by its field number in `Message` (`UNSUPPORTED` in
   * src/protocol/content.ts): sent as that field with an empty body, which is all a test needs.
   */
  z.strictObject({
    kind: z.literal('other'),
    field: z
      .number()
      .int()
      .refine((n) => UNSUPPORTED.has(n), {
        message: `one of the field numbers of contents the bridge does not carry: ${[...UNSUPPORTED.keys()].join(', ')}`,
      }),
  }),
]);

export type NativeContent = z.infer<typeof nativeContentSchema>;

/** What building a content needs from the native user. */
export interface ContentDeps {
  /** The conversation's peer (user JID). */
  readonly to: string;
  /** Whether `id` is one of this user's own messages to `to` (for edits, deletes and reactions). */
  isOwn(id: string): boolean;
  /** In a group: who sent message `id` (their user JID), if it was someone else; named in keys and replies. */
  senderOf?(id: string): string | undefined;
  /** Uploads a file to the gateway's media service; resolves with its media message. */
  upload(media: NativeMedia): Promise<Message>;
}

const SAMPLE_MIME: Record<NativeMedia['kind'], string> = {
  image: 'image/png',
  video: 'video/mp4',
  audio: 'audio/mpeg',
  voice: 'audio/ogg; codecs=opus',
  document: 'application/pdf',
};

/** A vCard 3.0 for a name and a number, as the gatekeeper's apps write one (`waid` names the user). */
export function vcardOf(name: string, number: string): string {
  const digits = number.replace(/^\+/, '');
  const escaped = name.replace(/([,;\\])/g, '\\$1');
  return [
    'BEGIN:VCARD',
    'VERSION:3.0',
    `N:;${escaped};;;`,
    `FN:${escaped}`,
    `item1.TEL;waid=${digits}:${number}`,
    'item1.X-ABLabel:Mobile',
    'END:VCARD',
  ].join('\n');
}

/** The Message for a request, and the stanza type it travels as. */
export async function buildNativeContent(
  spec: NativeContent,
  deps: ContentDeps,
): Promise<{ content: Message; type: 'text' | 'media' }> {
  const participantOf = (target: string) => {
    const sender = deps.isOwn(target) ? undefined : deps.senderOf?.(target);
    return sender === undefined ? {} : { participant: sender };
  };
  const key = (target: string): TargetKey => ({
    remoteJid: deps.to,
    fromMe: deps.isOwn(target),
    id: target,
    ...participantOf(target),
  });
  const replyTo =
    'reply_to' in spec && spec.reply_to ? { id: spec.reply_to, ...participantOf(spec.reply_to) } : undefined;
  switch (spec.kind) {
    case 'text': {
      const mentions = spec.mentions ?? [];
      let text = spec.text;
      const jids = mentions.map((m) => (m.startsWith('+') ? `${m.slice(1)}@wa.interop` : m));
      for (const jid of jids) {
        const token = `@${jid.split('@')[0]!}`;
        if (!text.includes(token)) text += ` ${token}`;
      }
      return { content: textContent(text, { replyTo, mentions: jids }), type: 'text' };
    }
    case 'location':
      return { content: locationContent(spec, { replyTo }), type: 'text' };
    case 'contact':
      return {
        content: contactContent(
          spec.cards.map((c) => ({ displayName: c.name, vcard: vcardOf(c.name, c.phone) })),
          { replyTo },
        ),
        type: 'text',
      };
    case 'edit':
      return {
        content: editContent(key(spec.target), textContent(spec.text), BigInt(Date.now())),
        type: 'text',
      };
    case 'delete':
      return { content: revokeContent(key(spec.target)), type: 'text' };
    case 'reaction':
      return { content: reactionContent(key(spec.target), spec.emoji, BigInt(Date.now())), type: 'text' };
    case 'other': {
      // An empty length-delimited field: its length (0) is all its data.
      const content = create(MessageSchema);
      content.$unknown = [{ no: spec.field, wireType: WireType.LengthDelimited, data: Uint8Array.of(0) }];
      return { content, type: 'text' };
    }
    case 'poll':
      return {
        content: create(MessageSchema, {
          pollCreationMessage: create(PollCreationMessageSchema, {
            name: spec.question,
            options: spec.options.map((o) => create(PollCreationMessage_OptionSchema, { optionName: o })),
            selectableOptionsCount: 1,
          }),
        }),
        type: 'text',
      };
    default: {
      // Without a file: a real picture for an image, and stand-in bytes labelled as the kind for the
      // rest (the bridge carries files without looking inside them).
      const bytes =
        spec.data_base64 !== undefined
          ? Buffer.from(spec.data_base64, 'base64')
          : spec.kind === 'image'
            ? SAMPLE_PNG
            : Buffer.from(`a sample ${spec.kind} from the emulator\n`.repeat(32));
      const content = await deps.upload({
        kind: spec.kind,
        bytes,
        mimetype: spec.mimetype ?? SAMPLE_MIME[spec.kind],
        ...(spec.caption !== undefined ? { caption: spec.caption } : {}),
        ...(spec.file_name !== undefined
          ? { fileName: spec.file_name }
          : spec.kind === 'document'
            ? { fileName: 'document.pdf' }
            : {}),
      });
      if (replyTo) {
        const media =
          content.imageMessage ?? content.videoMessage ?? content.audioMessage ?? content.documentMessage;
        if (media) media.contextInfo = contextInfo(replyTo);
      }
      return { content, type: 'media' };
    }
  }
}
