/**
 * The two sender-key messages of Signal groups, byte for byte as libsignal writes them
 * (rust/protocol/src/protocol.rs; field numbers from rust/protocol/src/proto/wire.proto):
 *
 *   SenderKeyMessage             = version byte ‖ protobuf { 1: distribution_uuid (16), 2: chain_id,
 *                                  3: iteration, 4: ciphertext } ‖ 64-byte XEdDSA signature
 *   SenderKeyDistributionMessage = version byte ‖ protobuf { 1: distribution_uuid (16), 2: chain_id,
 *                                  3: iteration, 4: chain_key (32), 5: signing_key (33, 0x05 ‖ key) }
 *
 * The version byte is 0x33 (version 3 in both nibbles); like libsignal, a reader looks at the high
 * nibble only and accepts 3 alone. The signature covers everything before it, version byte
 * included. Every field is required, and anything malformed is `signal_invalid_message`.
 */
import { DJB_TYPE, SIGNATURE_LENGTH, xeddsaSign } from './curve.js';
import { SignalError } from './errors.js';
import { ProtoFields, ProtoWriter } from './sender-key-protobuf.js';

export const SENDER_KEY_VERSION = 3;
/** (3 << 4) | 3, as libsignal writes it. */
export const SENDER_KEY_VERSION_BYTE = 0x33;
const UUID_LENGTH = 16;
const CHAIN_KEY_LENGTH = 32;
const SIGNING_KEY_LENGTH = 33;
const AES_BLOCK = 16;

const invalid = (what: string, why: string): SignalError =>
  new SignalError(
    'signal_invalid_message',
    `not a Signal ${what} (${why}): drop it; the sender's client is broken or the bytes were damaged`,
  );

// -- distribution ids: UUIDs as strings (as @signalapp/libsignal-client has them), 16 bytes on the wire

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

export const distributionIdBytes = (id: string): Uint8Array =>
  Buffer.from(canonicalDistributionId(id).replace(/-/g, ''), 'hex');

const distributionIdOf = (bytes: Uint8Array): string => {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

function checkVersion(bytes: Uint8Array, what: string, minLength: number): void {
  if (bytes.length < minLength) throw invalid(what, `${bytes.length} bytes is too short`);
  const version = (bytes[0] as number) >> 4;
  if (version !== SENDER_KEY_VERSION) {
    throw invalid(what, `version ${version}; only version ${SENDER_KEY_VERSION} is spoken`);
  }
}

function readCommon(f: ProtoFields, what: string) {
  const uuid = f.bytes(1);
  if (uuid === undefined || uuid.length !== UUID_LENGTH) throw invalid(what, 'no 16-byte distribution id');
  const chainId = f.uint32(2);
  const iteration = f.uint32(3);
  if (chainId === undefined) throw invalid(what, 'no chain id');
  if (iteration === undefined) throw invalid(what, 'no iteration');
  return { distributionId: distributionIdOf(uuid), chainId, iteration };
}

// -- SenderKeyMessage

export interface SenderKeyMessageFields {
  /** Lower-case UUID. */
  readonly distributionId: string;
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
  const ciphertext = f.bytes(4);
  if (ciphertext === undefined || ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) {
    throw invalid(what, 'the ciphertext is not whole AES blocks');
  }
  return { ...common, ciphertext, signed, signature: bytes.subarray(bytes.length - SIGNATURE_LENGTH) };
}

/** A whole SenderKeyMessage, signed with the sender's 32-byte private signing key. */
export function writeSenderKeyMessage(
  m: { distributionId: string; chainId: number; iteration: number; ciphertext: Uint8Array },
  signingPrivateKey: Uint8Array,
): Buffer {
  const signed = Buffer.concat([
    Buffer.from([SENDER_KEY_VERSION_BYTE]),
    new ProtoWriter()
      .bytes(1, distributionIdBytes(m.distributionId))
      .uint32(2, m.chainId)
      .uint32(3, m.iteration)
      .bytes(4, m.ciphertext)
      .finish(),
  ]);
  return Buffer.concat([signed, xeddsaSign(signingPrivateKey, signed)]);
}

// -- SenderKeyDistributionMessage

export interface SenderKeyDistributionFields {
  /** Lower-case UUID. */
  readonly distributionId: string;
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
  // libsignal's own floor: a message holds at least a chain key and a public key.
  checkVersion(bytes, what, 1 + 32 + 32);
  const f = ProtoFields.read(bytes.subarray(1), (why) => invalid(what, why));
  const common = readCommon(f, what);
  const chainKey = f.bytes(4);
  if (chainKey === undefined || chainKey.length !== CHAIN_KEY_LENGTH) {
    throw invalid(what, 'no 32-byte chain key');
  }
  const signingKey = f.bytes(5);
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
      .bytes(1, distributionIdBytes(m.distributionId))
      .uint32(2, m.chainId)
      .uint32(3, m.iteration)
      .bytes(4, m.chainKey)
      .bytes(5, m.signingKey)
      .finish(),
  ]);
}
