/**
 * The two sender-key messages of groups, byte for byte in the classic layout: the group cipher of
 * libsignal-protocol-java and -javascript, which WhatsApp clients use (as does Baileys'
 * WASignalGroup, which test/unit/signal-sender-key-classic.test.ts checks these bytes against):
 *
 *   SenderKeyMessage             = 0x33 ‖ protobuf { 1: id (uint32), 2: iteration (uint32),
 *                                  3: ciphertext (bytes) } ‖ 64-byte XEdDSA signature
 *   SenderKeyDistributionMessage = 0x33 ‖ protobuf { 1: id (uint32), 2: iteration (uint32),
 *                                  3: chainKey (32 bytes), 4: signingKey (33 bytes, 0x05 ‖ key) }
 *
 * `id` is the sender's key (chain) id. The version byte is 0x33 (version 3 in both nibbles); a reader
 * looks at the high nibble only and accepts 3 alone. The signature covers everything before it,
 * version byte included. Nothing names the group: the receiver knows it from where the message
 * came (the sender key's name is the group and the sending device), so the group's distribution id
 * is the caller's, not the wire's. Fields are written in field-number order, zeros included, as
 * protobufjs and protobuf-java write these proto2 messages; every field is required on input (as
 * libsignal-protocol-java: "Incomplete message"), and anything malformed is `signal_invalid_message`.
 */
import { DJB_TYPE, SIGNATURE_LENGTH, xeddsaSign } from './curve.js';
import { SignalError } from './errors.js';
import { ProtoFields, ProtoWriter } from './sender-key-protobuf.js';

export const SENDER_KEY_VERSION = 3;
/** (3 << 4) | 3, as every sender-key writer has it. */
export const SENDER_KEY_VERSION_BYTE = 0x33;
const CHAIN_KEY_LENGTH = 32;
const SIGNING_KEY_LENGTH = 33;
const AES_BLOCK = 16;

const invalid = (what: string, why: string): SignalError =>
  new SignalError(
    'signal_invalid_message',
    `not a Signal ${what} (${why}): drop it; the sender's client is broken or the bytes were damaged`,
  );

// -- distribution ids: the store's key for a group's chains (UUIDs as strings), never on the wire

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The canonical (lower-case) form of a distribution id; throws `signal_bad_distribution_id`. */
export function canonicalDistributionId(id: string): string {
  const lower = typeof id === 'string' ? id.toLowerCase() : '';
  if (!UUID.test(lower)) {
    throw new SignalError(
      'signal_bad_distribution_id',
      `a group distribution id is a UUID like 6ba7b810-9dad-11d1-80b4-00c04fd430c8, got "${String(id)}"`,
    );
  }
  return lower;
}

function checkVersion(bytes: Uint8Array, what: string, minLength: number): void {
  if (bytes.length < minLength) throw invalid(what, `${bytes.length} bytes is too short`);
  const version = (bytes[0] as number) >> 4;
  if (version !== SENDER_KEY_VERSION) {
    throw invalid(what, `version ${version}; only version ${SENDER_KEY_VERSION} is spoken`);
  }
}

function readCommon(f: ProtoFields, what: string) {
  const chainId = f.uint32(1);
  const iteration = f.uint32(2);
  if (chainId === undefined) throw invalid(what, 'no key id');
  if (iteration === undefined) throw invalid(what, 'no iteration');
  return { chainId, iteration };
}

// -- SenderKeyMessage

export interface SenderKeyMessageFields {
  /** The sender's key id (`id`): which of its chains. */
  readonly chainId: number;
  readonly iteration: number;
  readonly ciphertext: Uint8Array;
  /** Version byte ‖ protobuf: what the signature covers. */
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
}

/** Reads a SenderKeyMessage, checking its framing (not its signature: that needs the sender's key). */
export function readSenderKeyMessage(bytes: Uint8Array): SenderKeyMessageFields {
  const what = 'SenderKeyMessage';
  checkVersion(bytes, what, 1 + SIGNATURE_LENGTH);
  const signed = bytes.subarray(0, bytes.length - SIGNATURE_LENGTH);
  const f = ProtoFields.read(signed.subarray(1), (why) => invalid(what, why));
  const common = readCommon(f, what);
  const ciphertext = f.bytes(3);
  if (ciphertext === undefined || ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) {
    throw invalid(what, 'the ciphertext is not whole AES blocks');
  }
  return { ...common, ciphertext, signed, signature: bytes.subarray(bytes.length - SIGNATURE_LENGTH) };
}

/** A whole SenderKeyMessage, signed with the sender's 32-byte private signing key. */
export function writeSenderKeyMessage(
  m: { chainId: number; iteration: number; ciphertext: Uint8Array },
  signingPrivateKey: Uint8Array,
): Buffer {
  const signed = Buffer.concat([
    Buffer.from([SENDER_KEY_VERSION_BYTE]),
    new ProtoWriter().uint32(1, m.chainId).uint32(2, m.iteration).bytes(3, m.ciphertext).finish(),
  ]);
  return Buffer.concat([signed, xeddsaSign(signingPrivateKey, signed)]);
}

// -- SenderKeyDistributionMessage

export interface SenderKeyDistributionFields {
  /** The sender's key id (`id`) of the chain handed out. */
  readonly chainId: number;
  /** The iteration `chainKey` is at: the receiver can read from this message on. */
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  /** 33 bytes: 0x05 ‖ the sender's public signing key. */
  readonly signingKey: Uint8Array;
}

/** Reads a SenderKeyDistributionMessage, checking its framing and key sizes. */
export function readSenderKeyDistribution(bytes: Uint8Array): SenderKeyDistributionFields {
  const what = 'SenderKeyDistributionMessage';
  checkVersion(bytes, what, 1);
  const f = ProtoFields.read(bytes.subarray(1), (why) => invalid(what, why));
  const common = readCommon(f, what);
  const chainKey = f.bytes(3);
  if (chainKey === undefined || chainKey.length !== CHAIN_KEY_LENGTH) {
    throw invalid(what, 'no 32-byte chain key');
  }
  const signingKey = f.bytes(4);
  if (signingKey === undefined || signingKey.length !== SIGNING_KEY_LENGTH || signingKey[0] !== DJB_TYPE) {
    throw invalid(what, 'the signing key is not a 0x05-typed Curve25519 key');
  }
  return { ...common, chainKey, signingKey };
}

/** A whole SenderKeyDistributionMessage. */
export function writeSenderKeyDistribution(m: SenderKeyDistributionFields): Buffer {
  return Buffer.concat([
    Buffer.from([SENDER_KEY_VERSION_BYTE]),
    new ProtoWriter()
      .uint32(1, m.chainId)
      .uint32(2, m.iteration)
      .bytes(3, m.chainKey)
      .bytes(4, m.signingKey)
      .finish(),
  ]);
}
