/**
 * A sender key record: what one puppet knows of one sender's chains in one group distribution,
 * with libsignal's rules (rust/protocol/src/sender_keys.rs) and its storage format (the
 * SenderKeyRecordStructure of rust/protocol/src/proto/storage.proto), so a record written here is
 * one libsignal's `SenderKeyRecord.deserialize` reads, and the other way round.
 *
 * A record holds up to five states, newest first: a sender that rotates keeps its older chains
 * readable for a while (messages sent before the rotation may still arrive). Each state has a chain
 * id, the chain key at its next iteration, the signing key (the private half only on the sender's
 * own state) and the skipped message keys, oldest first, at most 2000.
 *
 * Records are values: the functions here return new ones and never change their argument, so a
 * failed operation leaves the stored record as it was.
 */
import { DJB_TYPE, KEY_LENGTH } from './curve.js';
import { SignalError } from './errors.js';
import { ProtoFields, ProtoWriter } from './sender-key-protobuf.js';
import { SENDER_KEY_VERSION } from './sender-key-wire.js';
import { sameBytes } from './store.js';

/** libsignal's MAX_SENDER_KEY_STATES. */
export const MAX_SENDER_KEY_STATES = 5;
/** libsignal's MAX_MESSAGE_KEYS: skipped message keys kept per state. */
export const MAX_MESSAGE_KEYS = 2000;

/** A chain key and the iteration of the message key it derives next. */
export interface SenderChainKey {
  readonly iteration: number;
  /** 32 bytes. */
  readonly seed: Uint8Array;
}

/** The seed of a message key skipped over (an out-of-order message not yet arrived). */
export interface SenderMessageKeySeed {
  readonly iteration: number;
  readonly seed: Uint8Array;
}

export interface SenderKeyState {
  readonly messageVersion: number;
  readonly chainId: number;
  readonly chainKey: SenderChainKey;
  /** 33 bytes: 0x05 ‖ the public signing key. */
  readonly signingPublic: Uint8Array;
  /** 32 bytes on the sender's own state; undefined on a state received from a distribution message. */
  readonly signingPrivate: Uint8Array | undefined;
  /** Oldest first. */
  readonly messageKeys: readonly SenderMessageKeySeed[];
}

/** Newest state first. */
export type SenderKeyRecord = readonly SenderKeyState[];

/**
 * The record with `state` in front. As libsignal: a state with the same chain id and signing key
 * is kept as it is (a distribution message processed twice must not rewind its chain, which would
 * let old messages be decrypted again); one with the same chain id and another key is dropped; the
 * oldest states go beyond five.
 */
export function withState(record: SenderKeyRecord, state: SenderKeyState): SenderKeyRecord {
  const existing = record.find(
    (s) => s.chainId === state.chainId && sameBytes(s.signingPublic, state.signingPublic),
  );
  const others = record.filter((s) => s.chainId !== state.chainId);
  return [existing ?? state, ...others.slice(0, MAX_SENDER_KEY_STATES - 1)];
}

/** The newest state with that chain id. */
export const stateForChain = (record: SenderKeyRecord, chainId: number): SenderKeyState | undefined =>
  record.find((s) => s.chainId === chainId);

/** The record with `state` replacing the state of the same chain id, in its place. */
export const replaceState = (record: SenderKeyRecord, state: SenderKeyState): SenderKeyRecord =>
  record.map((s) => (s.chainId === state.chainId ? state : s));

/** Skipped keys with `added` appended, the oldest dropped beyond MAX_MESSAGE_KEYS. */
export function withMessageKeys(
  keys: readonly SenderMessageKeySeed[],
  added: readonly SenderMessageKeySeed[],
): SenderMessageKeySeed[] {
  const all = [...keys, ...added];
  return all.length > MAX_MESSAGE_KEYS ? all.slice(all.length - MAX_MESSAGE_KEYS) : all;
}

// -- storage format (proto3: zero values are left out, as prost writes them)

function writeKeyPair(w: ProtoWriter, no: number, iteration: number, seed: Uint8Array): void {
  const inner = new ProtoWriter();
  if (iteration !== 0) inner.uint32(1, iteration);
  if (seed.length > 0) inner.bytes(2, seed);
  w.bytes(no, inner.finish());
}

function encodeState(s: SenderKeyState): Buffer {
  const w = new ProtoWriter();
  if (s.chainId !== 0) w.uint32(1, s.chainId);
  writeKeyPair(w, 2, s.chainKey.iteration, s.chainKey.seed);
  const signing = new ProtoWriter().bytes(1, s.signingPublic);
  if (s.signingPrivate !== undefined) signing.bytes(2, s.signingPrivate);
  w.bytes(3, signing.finish());
  for (const k of s.messageKeys) writeKeyPair(w, 4, k.iteration, k.seed);
  w.uint32(5, s.messageVersion);
  return w.finish();
}

/** The record as libsignal's SenderKeyRecordStructure. */
export function encodeSenderKeyRecord(record: SenderKeyRecord): Buffer {
  const w = new ProtoWriter();
  for (const s of record) w.bytes(1, encodeState(s));
  return w.finish();
}

const corrupt = (why: string): SignalError =>
  new SignalError(
    'signal_sender_key_corrupt',
    `a stored sender key record cannot be read (${why}): delete it (rotate, or deleteSenderKey); the sender's next distribution message restores it`,
  );

function decodeSeed(bytes: Uint8Array, what: string): SenderMessageKeySeed {
  const f = ProtoFields.read(bytes, corrupt);
  const seed = f.bytes(2);
  if (seed === undefined || seed.length !== KEY_LENGTH) throw corrupt(`${what} without a 32-byte seed`);
  return { iteration: f.uint32(1) ?? 0, seed: Uint8Array.from(seed) };
}

function decodeState(bytes: Uint8Array): SenderKeyState {
  const f = ProtoFields.read(bytes, corrupt);
  const chain = f.bytes(2);
  const signing = f.bytes(3);
  if (chain === undefined) throw corrupt('a state without a chain key');
  if (signing === undefined) throw corrupt('a state without a signing key');
  const keys = ProtoFields.read(signing, corrupt);
  const signingPublic = keys.bytes(1);
  const signingPrivate = keys.bytes(2);
  if (
    signingPublic === undefined ||
    signingPublic.length !== KEY_LENGTH + 1 ||
    signingPublic[0] !== DJB_TYPE
  ) {
    throw corrupt('a signing key that is not a 0x05-typed Curve25519 key');
  }
  if (signingPrivate !== undefined && signingPrivate.length !== 0 && signingPrivate.length !== KEY_LENGTH) {
    throw corrupt('a private signing key that is not 32 bytes');
  }
  const version = f.uint32(5) ?? 0;
  return {
    // libsignal reads 0 (a record from before the field existed) as the first version, 3.
    messageVersion: version === 0 ? SENDER_KEY_VERSION : version,
    chainId: f.uint32(1) ?? 0,
    chainKey: decodeSeed(chain, 'a chain key'),
    signingPublic: Uint8Array.from(signingPublic),
    signingPrivate:
      signingPrivate === undefined || signingPrivate.length === 0
        ? undefined
        : Uint8Array.from(signingPrivate),
    messageKeys: f.repeated(4).map((k) => decodeSeed(k, 'a skipped message key')),
  };
}

/** Reads a record written by `encodeSenderKeyRecord` or libsignal; `signal_sender_key_corrupt` if it is not one. */
export function decodeSenderKeyRecord(bytes: Uint8Array): SenderKeyRecord {
  return ProtoFields.read(bytes, corrupt).repeated(1).map(decodeState).slice(0, MAX_SENDER_KEY_STATES);
}
