/**
 * The value formats stanzas share: strict base64, fixed-width big-endian ids, decimal integers.
 * Both directions are strict and canonical, so a value has exactly one spelling on the wire.
 */

/** Key and signature sizes (raw Curve25519 keys, without libsignal's 0x05 type byte). */
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Registration ids travel as 4 bytes, prekey ids as 3 bytes, both big-endian (WhatsApp's layout). */
export const REGISTRATION_ID_BYTES = 4;
export const PREKEY_ID_BYTES = 3;
export const MAX_PREKEY_ID = 0xffffff;
export const MAX_REGISTRATION_ID = 0xffffffff;
export const MAX_RETRY_COUNT = 5;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** RFC 4648 section 4 with padding, no white space; undefined if `s` is not exactly that. */
export function fromBase64(s: string): Uint8Array | undefined {
  if (!BASE64.test(s)) return undefined;
  const bytes = new Uint8Array(Buffer.from(s, 'base64'));
  // Non-zero bits in the last character's unused part would give a second spelling of the same bytes.
  return toBase64(bytes) === s ? bytes : undefined;
}

export function toBigEndian(n: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let rest = n;
  for (let i = size - 1; i >= 0; i--) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return out;
}

export function fromBigEndian(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) n = n * 256 + b;
  return n;
}

/** A non-negative decimal integer without sign, leading zeros or exponent; undefined otherwise. */
export function parseDecimal(s: string): number | undefined {
  if (!DECIMAL.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function isUint(n: number, max: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= max;
}
