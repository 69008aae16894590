import { InteropError } from '../../errors.js';

/**
 * Every failure of the transport layer (preface, frames, encrypted frames). The code is stable
 * (logs, metrics, tests); the message says what happened and what to do. The codes a connection
 * can close with are listed in docs/PROTOCOL.md, section 1.
 */
export type TransportErrorCode =
  /** The first bytes from the client are not `IG` + version: not an interop gateway client. */
  | 'transport_bad_preface'
  /** The preface names a major version this side does not speak. */
  | 'transport_unsupported_version'
  /** A frame header announced a length over the configured maximum. */
  | 'transport_frame_too_large'
  /** The byte stream ended in the middle of a frame (header or body). */
  | 'transport_frame_truncated'
  /** A transport frame did not decrypt (tampered, reordered, or the wrong keys). */
  | 'transport_decrypt_failed'
  /** Nothing arrived within the idle (or handshake) timeout set by the owner. */
  | 'transport_idle_timeout'
  /** The operating system reported an error on the connection (reset, broken pipe, ...). */
  | 'transport_socket_error'
  /** Send or receive on a connection that is closed or closing. */
  | 'transport_closed'
  /** This side was asked to send a frame over the maximum (or over 2^24-1 bytes): a caller bug. */
  | 'transport_outgoing_frame_too_large'
  /** A maximum frame size that the 3-byte length cannot express or that is not an integer. */
  | 'transport_bad_max_frame_size';

export class TransportError extends InteropError {
  declare readonly code: TransportErrorCode;

  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A frame header announced more bytes than the receiver accepts; raised before the body is read. */
export class FrameTooLargeError extends TransportError {
  readonly announcedLength: number;
  readonly maxFrameSize: number;

  constructor(announcedLength: number, maxFrameSize: number) {
    super(
      'transport_frame_too_large',
      `peer announced a frame of ${announcedLength} bytes, over the maximum of ${maxFrameSize}: ` +
        'closing the connection (raise transport.max_frame_size on both sides if such frames are legitimate)',
    );
    this.announcedLength = announcedLength;
    this.maxFrameSize = maxFrameSize;
  }
}

/** The preface names a protocol version this side cannot speak. */
export class UnsupportedVersionError extends TransportError {
  readonly major: number;
  readonly minor: number;

  constructor(major: number, minor: number, supported: string) {
    super(
      'transport_unsupported_version',
      `peer speaks interop gateway protocol version ${major}.${minor}, this side speaks ${supported}: ` +
        'upgrade whichever side is older',
    );
    this.major = major;
    this.minor = minor;
  }
}
