import fc from 'fast-check';
import {
  DEFAULT_MAX_FRAME_SIZE,
  FrameDecoder,
  FrameTooLargeError,
  TransportError,
  encodeFrame,
} from '../../src/protocol/transport/index.js';

/** Splits `bytes` at the given cut points (any numbers; taken modulo the length, deduplicated). */
function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  return chunks;
}

function decodeAll(chunks: readonly Buffer[], maxFrameSize?: number): Buffer[] {
  const decoder = new FrameDecoder(maxFrameSize === undefined ? {} : { maxFrameSize });
  const frames = chunks.flatMap((chunk) => decoder.push(chunk));
  decoder.end();
  return frames;
}

const framesArb = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 });

describe('encodeFrame', () => {
  it('prefixes the payload with its length as 3 big-endian bytes', () => {
    expect(encodeFrame(Buffer.from('hello')).toString('hex')).toBe('000005' + '68656c6c6f');
    expect(encodeFrame(Buffer.alloc(0)).toString('hex')).toBe('000000');
    expect(encodeFrame(Buffer.alloc(0x012345)).subarray(0, 3).toString('hex')).toBe('012345');
  });

  it('refuses a payload over the maximum', () => {
    expect(() => encodeFrame(Buffer.alloc(11), 10)).toThrow(
      expect.objectContaining({ code: 'transport_outgoing_frame_too_large' }),
    );
    expect(() => encodeFrame(Buffer.alloc(DEFAULT_MAX_FRAME_SIZE + 1))).toThrow(TransportError);
    expect(encodeFrame(Buffer.alloc(DEFAULT_MAX_FRAME_SIZE)).length).toBe(DEFAULT_MAX_FRAME_SIZE + 3);
  });

  it('refuses a payload over 2^24-1 whatever the maximum', () => {
    expect(() => encodeFrame(Buffer.alloc(0x100_0000), 0xff_ffff)).toThrow(
      expect.objectContaining({ code: 'transport_outgoing_frame_too_large' }),
    );
  });
});

describe('FrameDecoder', () => {
  it('rejects a maximum the 3-byte length cannot express', () => {
    expect(() => new FrameDecoder({ maxFrameSize: 0x100_0000 })).toThrow(
      expect.objectContaining({ code: 'transport_bad_max_frame_size' }),
    );
  });

  it('yields exactly the frames sent, in order, however the stream is split', () => {
    fc.assert(
      fc.property(framesArb, fc.array(fc.nat(), { maxLength: 40 }), (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
        const frames = decodeAll(splitAt(stream, cuts));
        expect(frames.map((f) => Buffer.from(f))).toEqual(payloads.map((p) => Buffer.from(p)));
      }),
    );
  });

  it('yields the same frames from 1-byte chunks and from one coalesced chunk', () => {
    fc.assert(
      fc.property(framesArb, (payloads) => {
        const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
        const expected = payloads.map((p) => Buffer.from(p));
        const byteByByte = [...stream].map((b) => Buffer.from([b]));
        expect(decodeAll(byteByByte).map((f) => Buffer.from(f))).toEqual(expected);
        expect(decodeAll([stream]).map((f) => Buffer.from(f))).toEqual(expected);
      }),
    );
  });

  it('reassembles a 1 MiB frame arriving in many small pieces', () => {
    const payload = Buffer.alloc(DEFAULT_MAX_FRAME_SIZE, 7);
    payload.writeUInt32BE(0xdeadbeef, 500_000);
    const stream = encodeFrame(payload);
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 97) chunks.push(stream.subarray(i, i + 97));
    const frames = decodeAll(chunks);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.equals(payload)).toBe(true);
  });

  it('rejects an oversize length from the header alone, before any of the body', () => {
    const decoder = new FrameDecoder({ maxFrameSize: 1000 });
    expect(decoder.push(Buffer.from([0x00, 0x03]))).toEqual([]);
    let thrown: unknown;
    try {
      decoder.push(Buffer.from([0xe9])); // 0x0003e9 = 1001
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(FrameTooLargeError);
    expect(thrown).toMatchObject({
      code: 'transport_frame_too_large',
      announcedLength: 1001,
      maxFrameSize: 1000,
    });
  });

  it('rejects a header over the default 1 MiB maximum', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from([0x10, 0x00, 0x01]))).toThrow(
      expect.objectContaining({ code: 'transport_frame_too_large', announcedLength: 0x100001 }),
    );
  });

  it('accepts a frame of exactly the maximum', () => {
    expect(decodeAll([encodeFrame(Buffer.alloc(1000, 1), 1000)], 1000)[0]!.length).toBe(1000);
  });

  it('delivers the frames before an oversize header to feed callbacks, then throws', () => {
    const decoder = new FrameDecoder({ maxFrameSize: 10 });
    const seen: string[] = [];
    const chunk = Buffer.concat([encodeFrame(Buffer.from('ok')), Buffer.from([0, 0, 11])]);
    expect(() => decoder.feed(chunk, (f) => seen.push(f.toString()))).toThrow(FrameTooLargeError);
    expect(seen).toEqual(['ok']);
  });

  it('stays failed after an error', () => {
    const decoder = new FrameDecoder({ maxFrameSize: 10 });
    expect(() => decoder.push(Buffer.from([0, 0, 11]))).toThrow(FrameTooLargeError);
    expect(() => decoder.push(encodeFrame(Buffer.from('x')))).toThrow(FrameTooLargeError);
  });

  it('reports a stream that ends mid-header or mid-body as truncated', () => {
    const midHeader = new FrameDecoder();
    midHeader.push(Buffer.from([0]));
    expect(() => midHeader.end()).toThrow(expect.objectContaining({ code: 'transport_frame_truncated' }));

    const midBody = new FrameDecoder();
    midBody.push(encodeFrame(Buffer.from('hello')).subarray(0, 6));
    expect(midBody.bufferedBytes).toBe(6);
    expect(() => midBody.end()).toThrow(/after 3 of the 5 bytes/);
  });

  it('ends cleanly at a frame boundary', () => {
    const decoder = new FrameDecoder();
    decoder.push(encodeFrame(Buffer.from('a')));
    expect(decoder.atFrameBoundary).toBe(true);
    expect(() => decoder.end()).not.toThrow();
  });

  it('turns random bytes into frames or a TransportError, never anything else', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.integer({ min: 0, max: 70_000 }),
        (bytes, cuts, maxFrameSize) => {
          const decoder = new FrameDecoder({ maxFrameSize });
          try {
            for (const chunk of splitAt(Buffer.from(bytes), cuts)) {
              for (const frame of decoder.push(chunk)) expect(frame.length).toBeLessThanOrEqual(maxFrameSize);
            }
            decoder.end();
          } catch (error) {
            expect(error).toBeInstanceOf(TransportError);
            expect(['transport_frame_too_large', 'transport_frame_truncated']).toContain(
              (error as TransportError).code,
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
