/**
 * The connection preface: the client's first 4 bytes, before any frame. ASCII `IG`, then the
 * protocol's major and minor version. The same 4 bytes are the Noise prologue, so a preface changed
 * in flight makes the handshake fail instead of silently negotiating something else.
 */
import { TransportError, UnsupportedVersionError } from './errors.js';

export const PREFACE_SIZE = 4;
export const PROTOCOL_MAJOR_VERSION = 1;
export const PROTOCOL_MINOR_VERSION = 0;

/** `49 47 01 00`: what a client sends first and what both sides mix in as the prologue. Do not mutate. */
export const PREFACE: Buffer = Buffer.from([0x49, 0x47, PROTOCOL_MAJOR_VERSION, PROTOCOL_MINOR_VERSION]);

const MAGIC = [0x49, 0x47] as const; // "IG"

export interface PrefaceVersion {
  readonly major: number;
  readonly minor: number;
}

/**
 * Checks the bytes received so far against the preface, so a stranger (an HTTP client, a port
 * scanner) is turned away at its first wrong byte rather than after four.
 * Returns the version once 4 bytes are in, `undefined` while more are needed. Any minor version of
 * major 1 is accepted: minor versions only add, and the server uses the client's exact 4 bytes as
 * its prologue, so both sides still hash the same thing.
 * Throws `transport_bad_preface` or `transport_unsupported_version`.
 */
export function checkPreface(received: Uint8Array): PrefaceVersion | undefined {
  const seen = Math.min(received.length, MAGIC.length);
  for (let i = 0; i < seen; i++) {
    if (received[i] !== MAGIC[i]) throw badPreface(received.subarray(0, PREFACE_SIZE));
  }
  if (received.length < PREFACE_SIZE) return undefined;
  const major = received[2]!;
  const minor = received[3]!;
  if (major !== PROTOCOL_MAJOR_VERSION) {
    throw new UnsupportedVersionError(major, minor, `${PROTOCOL_MAJOR_VERSION}.${PROTOCOL_MINOR_VERSION}`);
  }
  return { major, minor };
}

/** The error for a connection that closed after only part of the preface. */
export function truncatedPreface(received: Uint8Array): TransportError {
  return new TransportError(
    'transport_bad_preface',
    `connection closed after ${received.length} of the ${PREFACE_SIZE} preface bytes ` +
      `(${hex(received)}): the peer is not an interop gateway client`,
  );
}

function badPreface(received: Uint8Array): TransportError {
  return new TransportError(
    'transport_bad_preface',
    `expected the preface ${hex(PREFACE)} ("IG" ${PROTOCOL_MAJOR_VERSION}.${PROTOCOL_MINOR_VERSION}), ` +
      `received ${hex(received)}: the peer does not speak the interop gateway protocol ` +
      '(is it pointed at the right port?)',
  );
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1 ');
}
