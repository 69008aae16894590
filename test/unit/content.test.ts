import { create, equals, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { InteropError } from '../../src/errors.js';
import {
  contactContent,
  ContentError,
  decodeContent,
  describeContent,
  editContent,
  encodeContent,
  locationContent,
  padContent,
  reactionContent,
  revokeContent,
  textContent,
  unpadContent,
} from '../../src/protocol/content.js';
import { ClientPayloadSchema } from '../../src/protocol/gen/interop/v1/handshake_pb.js';
import {
  AudioMessageSchema,
  ContextInfoSchema,
  DocumentMessageSchema,
  ExtendedTextMessageSchema,
  ImageMessageSchema,
  LocationMessageSchema,
  MessageKeySchema,
  MessageSchema,
  ProtocolMessage_Type,
  PollCreationMessageSchema,
  ProtocolMessageSchema,
  ReactionMessageSchema,
  VideoMessageSchema,
} from '../../src/protocol/gen/interop/v1/message_pb.js';
import type { Message } from '../../src/protocol/gen/interop/v1/message_pb.js';
import { decodeProto, ProtoDecodeError } from '../../src/protocol/proto-decode.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const target = { remoteJid: '15551234567@s.whatsapp.net', fromMe: false, id: 'ABCD1234' };

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof InteropError) return err.code;
    throw err;
  }
  throw new Error('expected an InteropError, nothing was thrown');
}

describe('content padding', () => {
  it.each(Array.from({ length: 16 }, (_, i) => i + 1))(
    'pads with %i bytes of value N and unpads back',
    (n) => {
      const body = bytes(0x0a, 0x02, 0x68, 0x69);
      const padded = padContent(body, n);
      expect(padded.length).toBe(body.length + n);
      expect([...padded.subarray(body.length)]).toEqual(Array(n).fill(n));
      expect(unpadContent(padded)).toEqual(body);
    },
  );

  it('draws a random padding length in 1..16', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(padContent(bytes(1)).length - 1);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
  });

  it('matches the documented example: "hi" padded with 3', () => {
    expect(hex(encodeContent(textContent('hi'), { padLength: 3 }))).toBe('0a026869030303');
  });

  it.each([
    ['an empty plaintext', bytes()],
    ['a last byte of 0', bytes(0x0a, 0x00, 0x00)],
    ['a last byte of 17', bytes(...Array(17).fill(17))],
    ['a last byte of 255', bytes(0x0a, 0xff)],
    ['padding bytes that differ', bytes(0x0a, 0x00, 0x02, 0x03, 0x03)],
    ['padding longer than the plaintext', bytes(0x05, 0x05, 0x05)],
  ])('rejects %s with content_bad_padding', (_name, input) => {
    expect(codeOf(() => unpadContent(input))).toBe('content_bad_padding');
    expect(() => decodeContent(input)).toThrow(ContentError);
  });

  it('accepts padding only (an empty Message), which describes as unknown', () => {
    const message = decodeContent(bytes(0x01));
    expect(equals(MessageSchema, message, create(MessageSchema))).toBe(true);
    expect(describeContent(message).kind).toBe('unknown');
  });
});

describe('decodeProto', () => {
  it.each([
    ['a truncated varint', bytes(0x08, 0xff)],
    ['a string field sent as a varint', bytes(0x08, 0x01, 0x41)],
    ['a message field sent as fixed32', bytes(0x1d, 0, 0, 0, 0)],
    ['invalid UTF-8 in conversation', bytes(0x0a, 0x02, 0xc3, 0x28)],
    ['a lone surrogate encoded in UTF-8', bytes(0x0a, 0x03, 0xed, 0xa0, 0x80)],
    ['invalid UTF-8 nested in extendedTextMessage.text', bytes(0x32, 0x03, 0x0a, 0x01, 0xff)],
    ['a length beyond the input', bytes(0x0a, 0x10, 0x41)],
    ['a 2^32 length', bytes(0x0a, 0x80, 0x80, 0x80, 0x80, 0x10)],
    ['a field that runs past its sub-message', bytes(0x32, 0x02, 0x0a, 0x01, 0x41, 0x41)],
    ['a varint of 11 bytes', bytes(0x20, ...Array(10).fill(0x80), 0x01)],
    ['field number 0', bytes(0x02, 0x00)],
    ['wire type 6', bytes(0x0e)],
    ['a stray end-group tag', bytes(0x0c)],
    ['an unterminated group', bytes(0x5b, 0x08, 0x01)],
  ])('rejects %s with proto_malformed naming what was decoded', (_name, input) => {
    let caught: unknown;
    try {
      decodeProto(MessageSchema, input, 'test contents');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProtoDecodeError);
    expect((caught as ProtoDecodeError).code).toBe('proto_malformed');
    expect((caught as ProtoDecodeError).message).toMatch(/^test contents: malformed interop\.v1\.Message/);
  });

  it('rejects input over the size limit with proto_too_large before parsing', () => {
    const big = toBinary(MessageSchema, textContent('x'.repeat(100)));
    expect(codeOf(() => decodeProto(MessageSchema, big, 'contents', { maxBytes: 50 }))).toBe(
      'proto_too_large',
    );
  });

  it('rejects nesting deeper than the limit', () => {
    let message = textContent('deep');
    for (let i = 0; i < 8; i++) message = textContent('reply', { replyTo: { id: `m${i}`, quoted: message } });
    const encoded = toBinary(MessageSchema, message);
    expect(codeOf(() => decodeProto(MessageSchema, encoded, 'contents', { maxDepth: 10 }))).toBe(
      'proto_malformed',
    );
    expect(decodeProto(MessageSchema, encoded, 'contents').extendedTextMessage?.text).toBe('reply');
  });

  it('rejects invalid UTF-8 in a proto3 schema too', () => {
    const input = bytes(0x92, 0x03, 0x02, 0xc3, 0x28); // ClientPayload.end_user_ip (50)
    expect(codeOf(() => decodeProto(ClientPayloadSchema, input, 'client payload'))).toBe('proto_malformed');
  });

  it('keeps unknown fields and packed or unpacked repeated fields', () => {
    const unknownField = bytes(0xf8, 0x07, 0x2a); // field 127, varint 42
    const input = new Uint8Array([...toBinary(MessageSchema, textContent('hi')), ...unknownField]);
    const message = decodeProto(MessageSchema, input, 'contents');
    expect(message.conversation).toBe('hi');
    expect(toBinary(MessageSchema, message)).toEqual(input);
  });

  it('gives only InteropErrors for random bytes, under any schema', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (input) => {
        for (const schema of [MessageSchema, ClientPayloadSchema]) {
          try {
            decodeProto(schema, input, 'random');
          } catch (err) {
            if (!(err instanceof ProtoDecodeError)) throw err;
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
});

const text = fc.string({ unit: 'binary', maxLength: 60 });
const blob = fc.uint8Array({ maxLength: 40 });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const i64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const opt = { requiredKeys: [] as never[] };
const key = fc
  .record({ remoteJid: text, fromMe: fc.boolean(), id: text, participant: text }, opt)
  .map((k) => create(MessageKeySchema, k));
const context = fc
  .record(
    {
      stanzaId: text,
      participant: text,
      quotedMessage: text.map((t) => textContent(t)),
      mentionedJid: fc.array(text, { maxLength: 3 }),
    },
    opt,
  )
  .map((c) => create(ContextInfoSchema, c));
const mediaCommon = { url: text, mimetype: text, fileSha256: blob, fileLength: u64, mediaKey: blob };
const arbitraryMessage: fc.Arbitrary<Message> = fc
  .record(
    {
      conversation: text,
      extendedTextMessage: fc
        .record({ text, matchedText: text, title: text, contextInfo: context }, opt)
        .map((m) => create(ExtendedTextMessageSchema, m)),
      imageMessage: fc
        .record({ ...mediaCommon, caption: text, height: u32, width: u32, mediaKeyTimestamp: i64 }, opt)
        .map((m) => create(ImageMessageSchema, m)),
      audioMessage: fc
        .record(
          { ...mediaCommon, ptt: fc.boolean(), seconds: u32, waveform: blob, contextInfo: context },
          opt,
        )
        .map((m) => create(AudioMessageSchema, m)),
      videoMessage: fc
        .record({ ...mediaCommon, caption: text, gifPlayback: fc.boolean() }, opt)
        .map((m) => create(VideoMessageSchema, m)),
      documentMessage: fc
        .record({ ...mediaCommon, fileName: text, pageCount: u32, caption: text }, opt)
        .map((m) => create(DocumentMessageSchema, m)),
      protocolMessage: fc
        .record(
          {
            key,
            type: fc.constantFrom(
              ProtocolMessage_Type.REVOKE,
              ProtocolMessage_Type.MESSAGE_EDIT,
              ProtocolMessage_Type.EPHEMERAL_SETTING,
            ),
            editedMessage: text.map((t) => textContent(t)),
            timestampMs: i64,
          },
          opt,
        )
        .map((m) => create(ProtocolMessageSchema, m)),
      reactionMessage: fc
        .record({ key, text, groupingKey: text, senderTimestampMs: i64 }, opt)
        .map((m) => create(ReactionMessageSchema, m)),
    },
    opt,
  )
  .map((m) => create(MessageSchema, m));

describe('encodeContent / decodeContent', () => {
  it('round-trips any Message, with any Unicode text', () => {
    fc.assert(
      fc.property(arbitraryMessage, (message) => {
        const decoded = decodeContent(encodeContent(message));
        expect(equals(MessageSchema, decoded, message)).toBe(true);
        expect(toBinary(MessageSchema, decoded)).toEqual(toBinary(MessageSchema, message));
      }),
      { numRuns: 500 },
    );
  });

  it('gives only InteropErrors for random or corrupted plaintexts', () => {
    const corrupted = fc
      .tuple(arbitraryMessage, fc.nat(), fc.integer({ min: 0, max: 7 }), fc.nat())
      .map(([message, at, bit, cut]) => {
        const encoded = encodeContent(message);
        encoded[at % encoded.length]! ^= 1 << bit;
        return encoded.subarray(0, encoded.length - (cut % 4));
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), corrupted), (input) => {
        try {
          decodeContent(input);
        } catch (err) {
          if (!(err instanceof InteropError)) throw err;
          expect(['content_bad_padding', 'proto_malformed']).toContain(err.code);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('content builders and describeContent', () => {
  it('sends plain text as conversation (field 1)', () => {
    const message = textContent('héllo 👋');
    expect(message.conversation).toBe('héllo 👋');
    expect(describeContent(message)).toEqual({ kind: 'text', text: 'héllo 👋' });
  });

  it('sends a reply as extendedTextMessage with contextInfo naming the quoted message', () => {
    const message = textContent('yes', { replyTo: { id: 'Q1', participant: '15550001111@s.whatsapp.net' } });
    expect(message.conversation).toBe('');
    expect(message.extendedTextMessage?.contextInfo?.stanzaId).toBe('Q1');
    expect(describeContent(decodeContent(encodeContent(message)))).toEqual({
      kind: 'text',
      text: 'yes',
      replyTo: { id: 'Q1', participant: '15550001111@s.whatsapp.net' },
    });
  });

  it('describes reactions, revokes and edits with their target', () => {
    const reaction = describeContent(decodeContent(encodeContent(reactionContent(target, '👍'))));
    expect(reaction).toMatchObject({ kind: 'reaction', emoji: '👍', target: { id: 'ABCD1234' } });
    expect(describeContent(reactionContent(target, ''))).toMatchObject({ kind: 'reaction', emoji: '' });
    expect(describeContent(decodeContent(encodeContent(revokeContent(target))))).toMatchObject({
      kind: 'revoke',
      target: { id: 'ABCD1234', remoteJid: target.remoteJid },
    });
    const edit = describeContent(decodeContent(encodeContent(editContent(target, textContent('fixed')))));
    expect(edit.kind).toBe('edit');
    if (edit.kind === 'edit')
      expect(describeContent(edit.replacement)).toEqual({ kind: 'text', text: 'fixed' });
  });

  it('describes media by kind, with voice notes apart from other audio', () => {
    const image = create(MessageSchema, { imageMessage: create(ImageMessageSchema, { caption: 'cat' }) });
    expect(describeContent(image)).toMatchObject({ kind: 'image', caption: 'cat' });
    const voice = create(MessageSchema, { audioMessage: create(AudioMessageSchema, { ptt: true }) });
    expect(describeContent(voice).kind).toBe('voice');
    const audio = create(MessageSchema, { audioMessage: create(AudioMessageSchema, { seconds: 3 }) });
    expect(describeContent(audio).kind).toBe('audio');
    const video = create(MessageSchema, { videoMessage: create(VideoMessageSchema, {}) });
    expect(describeContent(video).kind).toBe('video');
    const doc = create(MessageSchema, {
      documentMessage: create(DocumentMessageSchema, {
        fileName: 'a.pdf',
        contextInfo: create(ContextInfoSchema, { stanzaId: 'Q2' }),
      }),
    });
    expect(describeContent(doc)).toMatchObject({ kind: 'document', replyTo: { id: 'Q2' } });
  });

  it('calls a protocolMessage without an explicit type unknown, not a revoke', () => {
    const message = create(MessageSchema, {
      protocolMessage: create(ProtocolMessageSchema, { key: create(MessageKeySchema, { id: 'X' }) }),
    });
    expect(describeContent(decodeContent(encodeContent(message))).kind).toBe('unknown');
  });

  it('calls a revoke or reaction without a target id unknown', () => {
    expect(describeContent(revokeContent({ ...target, id: '' })).kind).toBe('unknown');
    expect(describeContent(reactionContent({ ...target, id: '' }, '👍')).kind).toBe('unknown');
  });
});

describe('locations, contact cards, mentions and contents the bridge does not carry', () => {
  const roundTrip = (m: Message) => decodeContent(encodeContent(m));

  it('reads a location with its name and address, and a reply it makes', () => {
    const m = locationContent(
      { latitude: 52.5163, longitude: 13.3777, name: 'Brandenburger Tor', address: 'Pariser Platz' },
      { replyTo: { id: 'Q1' } },
    );
    expect(describeContent(roundTrip(m))).toEqual({
      kind: 'location',
      place: { latitude: 52.5163, longitude: 13.3777, name: 'Brandenburger Tor', address: 'Pariser Platz' },
      live: false,
      replyTo: { id: 'Q1' },
    });
  });

  it('refuses a location off the globe as unknown, with the reason', () => {
    const m = create(MessageSchema, {
      locationMessage: create(LocationMessageSchema, { degreesLatitude: 91, degreesLongitude: 0 }),
    });
    expect(describeContent(m)).toEqual({ kind: 'unknown', reason: 'location with invalid coordinates' });
  });

  it('reads one contact card, and several sent together', () => {
    const jane = { displayName: 'Jane', vcard: 'BEGIN:VCARD\nFN:Jane\nEND:VCARD' };
    const joe = { displayName: 'Joe', vcard: 'BEGIN:VCARD\nFN:Joe\nEND:VCARD' };
    expect(describeContent(roundTrip(contactContent([jane])))).toEqual({ kind: 'contact', cards: [jane] });
    expect(describeContent(roundTrip(contactContent([jane, joe])))).toEqual({
      kind: 'contact',
      cards: [jane, joe],
    });
  });

  it('reads whom a text mentions, and sends a plain conversation when it mentions no one', () => {
    const m = textContent('hi @4915112345678', { mentions: ['4915112345678@wa.interop'] });
    expect(m.extendedTextMessage?.contextInfo?.mentionedJid).toEqual(['4915112345678@wa.interop']);
    expect(describeContent(roundTrip(m))).toEqual({
      kind: 'text',
      text: 'hi @4915112345678',
      mentions: ['4915112345678@wa.interop'],
    });
    expect(textContent('hi', { mentions: [] }).conversation).toBe('hi');
  });

  it('names a poll, and contents known only by their field number (a sticker), as unsupported', () => {
    const poll = create(MessageSchema, {
      pollCreationMessage: create(PollCreationMessageSchema, { name: 'Lunch?' }),
    });
    expect(describeContent(roundTrip(poll))).toEqual({ kind: 'unsupported', what: 'a poll' });
    // Field 26 (stickerMessage), length-delimited, with an empty body: not declared in the schema.
    // Tag (26 << 3) | 2 = 210 is the varint D2 01.
    const sticker = decodeContent(padContent(Uint8Array.of(0xd2, 0x01, 0), 1));
    expect(describeContent(sticker)).toEqual({ kind: 'unsupported', what: 'a sticker' });
    // Field 999, a varint: tag 999 << 3 = 7992 is the varint B8 3E.
    const nothing = decodeContent(padContent(Uint8Array.of(0xb8, 0x3e, 1), 1));
    expect(describeContent(nothing)).toEqual({ kind: 'unknown', reason: 'no content field the bridge knows' });
  });
});
