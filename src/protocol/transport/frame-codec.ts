/**
 * Frames: a 3-byte big-endian length, then that many bytes (WhatsApp's framing). Pure: no I/O,
 * so the same code serves the bridge's client, the emulator's server, and tests.
 */
import { FrameTooLargeError, TransportError } from './errors.js';

export const FRAME_HEADER_SIZE = 3;
/** The largest length 3 bytes can carry. */
export const FRAME_LENGTH_LIMIT = 0xff_ffff;
/** 1 MiB: the default maximum payload length of one frame, in both directions. */
export const DEFAULT_MAX_FRAME_SIZE = 1_048_576;

/** Validates a configured maximum frame size and returns it. */
export function checkMaxFrameSize(maxFrameSize: number): number {
  if (!Number.isInteger(maxFrameSize) || maxFrameSize < 0 || maxFrameSize > FRAME_LENGTH_LIMIT) {
    throw new TransportError(
      'transport_bad_max_frame_size',
      `maximum frame size ${maxFrameSize} is not an integer from 0 to ${FRAME_LENGTH_LIMIT} ` +
        '(the most a 3-byte length can express): fix transport.max_frame_size',
    );
  }
  return maxFrameSize;
}

/** The 3-byte header for a payload of `length` bytes, refusing lengths over `maxFrameSize`. */
export function encodeFrameHeader(length: number, maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE): Buffer {
  const limit = Math.min(maxFrameSize, FRAME_LENGTH_LIMIT);
  if (length > limit) {
    throw new TransportError(
      'transport_outgoing_frame_too_large',
      `refusing to send a frame of ${length} bytes, over the maximum of ${limit}: ` +
        'split the message or raise transport.max_frame_size on both sides',
    );
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  header.writeUIntBE(length, 0, FRAME_HEADER_SIZE);
  return header;
}

/** Header + payload in one buffer. */
export function encodeFrame(payload: Uint8Array, maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE): Buffer {
  const header = encodeFrameHeader(payload.length, maxFrameSize);
  return Buffer.concat([header, payload], FRAME_HEADER_SIZE + payload.length);
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; default 1 MiB. */
  readonly maxFrameSize?: number;
}

/**
 * Reassembles frames from a byte stream however it is split or coalesced. An oversize length is
 * rejected as soon as its header is complete, before any of the body is buffered. Frames are
 * returned without copying when they lie inside one pushed chunk (they then share its memory), and
 * with a single copy when they span several chunks, so many small chunks cost linear time.
 * After an error the decoder is spent: every later call throws the same error.
 */
export class FrameDecoder {
  readonly maxFrameSize: number;
  readonly #header = Buffer.alloc(FRAME_HEADER_SIZE);
  #headerFilled = 0;
  /** Length of the frame whose body is being collected, or -1 while reading a header. */
  #bodyLength = -1;
  #bodyChunks: Buffer[] = [];
  #bodyFilled = 0;
  #failure: TransportError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.maxFrameSize = checkMaxFrameSize(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE);
  }

  /** True when no partial frame is held: the stream may end here. */
  get atFrameBoundary(): boolean {
    return this.#headerFilled === 0 && this.#bodyLength < 0;
  }

  /** Bytes of the current partial frame (header included) held so far. */
  get bufferedBytes(): number {
    return this.#headerFilled + (this.#bodyLength < 0 ? 0 : FRAME_HEADER_SIZE + this.#bodyFilled);
  }

  /** Feeds a chunk; returns the frames it completed, in order. Throws a TransportError on a violation
   * (frames completed earlier in the same chunk are then lost: use `feed` to receive them first). */
  push(chunk: Uint8Array): Buffer[] {
    const frames: Buffer[] = [];
    this.feed(chunk, (frame) => frames.push(frame));
    return frames;
  }

  /** Feeds a chunk, calling `onFrame` for each completed frame in order, before any error is thrown.
   * `onFrame` must not throw. */
  feed(chunk: Uint8Array, onFrame: (frame: Buffer) => void): void {
    if (this.#failure) throw this.#failure;
    const bytes = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let offset = 0;
    while (offset < bytes.length) {
      if (this.#bodyLength < 0) {
        let length: number;
        if (this.#headerFilled === 0 && bytes.length - offset >= FRAME_HEADER_SIZE) {
          length = bytes.readUIntBE(offset, FRAME_HEADER_SIZE);
          offset += FRAME_HEADER_SIZE;
        } else {
          while (this.#headerFilled < FRAME_HEADER_SIZE && offset < bytes.length) {
            this.#header[this.#headerFilled++] = bytes[offset++]!;
          }
          if (this.#headerFilled < FRAME_HEADER_SIZE) return;
          this.#headerFilled = 0;
          length = this.#header.readUIntBE(0, FRAME_HEADER_SIZE);
        }
        if (length > this.maxFrameSize) throw this.#fail(new FrameTooLargeError(length, this.maxFrameSize));
        if (bytes.length - offset >= length) {
          // The whole body is in this chunk: hand out a view, no copy.
          const frame = bytes.subarray(offset, offset + length);
          offset += length;
          onFrame(frame);
          continue;
        }
        this.#bodyLength = length;
      }
      const take = Math.min(this.#bodyLength - this.#bodyFilled, bytes.length - offset);
      this.#bodyChunks.push(bytes.subarray(offset, offset + take));
      this.#bodyFilled += take;
      offset += take;
      if (this.#bodyFilled === this.#bodyLength) {
        const chunks = this.#bodyChunks;
        const frame = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#bodyLength);
        this.#bodyChunks = [];
        this.#bodyFilled = 0;
        this.#bodyLength = -1;
        onFrame(frame);
      }
    }
  }

  /** The stream ended: throws `transport_frame_truncated` if a frame was left incomplete. */
  end(): void {
    if (this.#failure) throw this.#failure;
    if (this.atFrameBoundary) return;
    const message =
      this.#bodyLength < 0
        ? `stream ended after ${this.#headerFilled} of the ${FRAME_HEADER_SIZE} bytes of a frame header`
        : `stream ended after ${this.#bodyFilled} of the ${this.#bodyLength} bytes of a frame`;
    throw this.#fail(
      new TransportError(
        'transport_frame_truncated',
        `${message}: the peer closed or lost the connection mid-frame; reconnect and resend`,
      ),
    );
  }

  #fail(error: TransportError): TransportError {
    this.#failure = error;
    this.#bodyChunks = [];
    return error;
  }
}
