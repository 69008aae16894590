/**
 * A strict reading of Signal's v3 message framing, done before a message reaches the library: the
 * library decodes hostile bytes leniently, logs to the console on bad keys, and steps the ratchet
 * before it checks the MAC. Rejecting malformed input here gives a typed error and keeps the
 * expensive path for messages that at least have the right shape.
 *
 *   WhisperMessage       = version byte ‖ protobuf { 1: ephemeralKey (33), 2: counter, 3: previousCounter,
 *                          4: ciphertext } ‖ 8-byte MAC
 *   PreKeyWhisperMessage = version byte ‖ protobuf { 5: registrationId, 1: preKeyId, 6: signedPreKeyId,
 *                          2: baseKey (33), 3: identityKey (33), 4: message (a WhisperMessage) }
 *
 * The version byte is (current << 4) | minimum; the library speaks version 3 and refuses anything
 * whose minimum is above 3 or whose current is below 3.
 */
import { SignalError } from './errors.js';

const MAC_LENGTH = 8;
/** (3 << 4) | 3: current and minimum version 3. */
export const VERSION_BYTE = 0x33;
const KEY_33 = 33;
const AES_BLOCK = 16;

export interface PreKeyMessageFields {
  readonly registrationId: number;
  readonly preKeyId: number | undefined;
  readonly signedPreKeyId: number;
  readonly baseKey: Uint8Array;
  /** 33 bytes: 0x05 ‖ the sender's identity key. */
  readonly identityKey: Uint8Array;
}

const invalid = (why: string): SignalError =>
  new SignalError(
    'signal_invalid_message',
    `not a Signal v3 message (${why}): drop it and ask the sender to retry`,
  );

function checkVersion(bytes: Uint8Array): void {
  if (bytes.length === 0) throw invalid('empty');
  const v = bytes[0] as number;
  if ((v & 0xf) > 3 || v >> 4 < 3) throw invalid(`version byte 0x${v.toString(16).padStart(2, '0')}`);
}

type Field = { varint: number } | { bytes: Uint8Array };

/** Reads a protobuf message into field number -> last value. Unknown wire types are refused. */
function readProtobuf(buf: Uint8Array): Map<number, Field> {
  const fields = new Map<number, Field>();
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw invalid('truncated varint');
      const b = buf[pos++] as number;
      if (shift < 49) result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw invalid('varint too long');
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw invalid('field number 0');
    if (wire === 0) {
      fields.set(field, { varint: varint() });
    } else if (wire === 2) {
      const len = varint();
      if (len > buf.length - pos) throw invalid('truncated field');
      fields.set(field, { bytes: buf.subarray(pos, pos + len) });
      pos += len;
    } else if (wire === 1) {
      if (pos + 8 > buf.length) throw invalid('truncated field');
      pos += 8;
    } else if (wire === 5) {
      if (pos + 4 > buf.length) throw invalid('truncated field');
      pos += 4;
    } else {
      throw invalid(`wire type ${wire}`);
    }
  }
  return fields;
}

const bytesField = (f: Map<number, Field>, n: number): Uint8Array | undefined => {
  const v = f.get(n);
  if (v === undefined) return undefined;
  if (!('bytes' in v)) throw invalid(`field ${n} is not bytes`);
  return v.bytes;
};
const intField = (f: Map<number, Field>, n: number): number | undefined => {
  const v = f.get(n);
  if (v === undefined) return undefined;
  if (!('varint' in v) || v.varint > 0xffffffff) throw invalid(`field ${n} is not a uint32`);
  return v.varint;
};
const checkKey = (key: Uint8Array | undefined, what: string): Uint8Array => {
  if (key === undefined || key.length !== KEY_33 || key[0] !== 0x05)
    throw invalid(`${what} is not a 0x05-typed Curve25519 key`);
  return key;
};

export interface WhisperMessageFields {
  /** 33 bytes: 0x05 ‖ the sender's current ratchet key. */
  readonly ephemeralKey: Uint8Array;
  readonly counter: number;
  readonly previousCounter: number;
  readonly ciphertext: Uint8Array;
  /** The protobuf bytes (between the version byte and the MAC): what the MAC covers. */
  readonly proto: Uint8Array;
  readonly mac: Uint8Array;
}

/** Reads a WhisperMessage ("msg"), checking its framing. Absent counters are 0, as in protobuf. */
export function readWhisperMessage(bytes: Uint8Array): WhisperMessageFields {
  checkVersion(bytes);
  if (bytes.length < 1 + MAC_LENGTH + 1) throw invalid('too short');
  const proto = bytes.subarray(1, bytes.length - MAC_LENGTH);
  const f = readProtobuf(proto);
  const ephemeralKey = checkKey(bytesField(f, 1), 'the ratchet key');
  const ciphertext = bytesField(f, 4);
  if (ciphertext === undefined || ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) {
    throw invalid('the ciphertext is not whole AES blocks');
  }
  return {
    ephemeralKey,
    counter: intField(f, 2) ?? 0,
    previousCounter: intField(f, 3) ?? 0,
    ciphertext,
    proto,
    mac: bytes.subarray(bytes.length - MAC_LENGTH),
  };
}

/** Checks a WhisperMessage's framing ("msg"). */
export function checkWhisperMessage(bytes: Uint8Array): void {
  readWhisperMessage(bytes);
}

// -- encoding (fields in the order libsignal writes them)

const varintBytes = (n: number): number[] => {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};

class Writer {
  private readonly parts: Uint8Array[] = [];
  varint(field: number, value: number): this {
    this.parts.push(Uint8Array.from([...varintBytes(field * 8), ...varintBytes(value)]));
    return this;
  }
  bytes(field: number, value: Uint8Array): this {
    this.parts.push(Uint8Array.from([...varintBytes(field * 8 + 2), ...varintBytes(value.length)]), value);
    return this;
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** The protobuf of a WhisperMessage (without version byte and MAC). */
export function encodeWhisperMessage(m: {
  ephemeralKey: Uint8Array;
  counter: number;
  previousCounter: number;
  ciphertext: Uint8Array;
}): Buffer {
  return new Writer()
    .bytes(1, m.ephemeralKey)
    .varint(2, m.counter)
    .varint(3, m.previousCounter)
    .bytes(4, m.ciphertext)
    .finish();
}

/** A whole PreKeyWhisperMessage (version byte ‖ protobuf) around a whole WhisperMessage. */
export function encodePreKeyWhisperMessage(m: {
  registrationId: number;
  preKeyId: number | undefined;
  signedPreKeyId: number;
  baseKey: Uint8Array;
  identityKey: Uint8Array;
  message: Uint8Array;
}): Buffer {
  const w = new Writer();
  if (m.preKeyId) w.varint(1, m.preKeyId);
  w.bytes(2, m.baseKey)
    .bytes(3, m.identityKey)
    .bytes(4, m.message)
    .varint(5, m.registrationId)
    .varint(6, m.signedPreKeyId);
  return Buffer.concat([Buffer.from([VERSION_BYTE]), w.finish()]);
}

/** Checks a PreKeyWhisperMessage's framing ("pkmsg") and returns the fields the manager needs. */
export function readPreKeyMessage(bytes: Uint8Array): PreKeyMessageFields {
  checkVersion(bytes);
  const f = readProtobuf(bytes.subarray(1));
  const registrationId = intField(f, 5);
  const signedPreKeyId = intField(f, 6);
  if (registrationId === undefined) throw invalid('no registration id');
  if (signedPreKeyId === undefined) throw invalid('no signed prekey id');
  const baseKey = checkKey(bytesField(f, 2), 'the base key');
  const identityKey = checkKey(bytesField(f, 3), 'the identity key');
  const message = bytesField(f, 4);
  if (message === undefined) throw invalid('no inner message');
  checkWhisperMessage(message);
  return { registrationId, preKeyId: intField(f, 1), signedPreKeyId, baseKey, identityKey };
}
