/**
 * A puppet's Signal state: its identity, one-time and signed prekeys, sessions per remote device,
 * and the remote identities it has seen with their trust state.
 *
 * Two layers: a synchronous `SignalBackend` (in memory, or SQLite in sqlite-store.ts) that holds the
 * data, and `SignalProtocolStore`, the library's `StorageType` on top of it, which converts between
 * the library's ArrayBuffers and this project's Uint8Arrays and hands out session working copies
 * (see record.ts).
 */
import {
  Direction,
  type KeyPairType,
  type StorageType,
} from '@privacyresearch/libsignal-protocol-typescript';

import { DJB_TYPE, KEY_LENGTH, toArrayBuffer } from './curve.js';
import { SignalError } from './errors.js';
import { decodeRecord, encodeRecord, LIVE_RECORD, LiveSessionRecord } from './record.js';
import { LazyMap } from '../util/lazy-map.js';

/** The puppet's own identity: the 14-bit registration id and its Curve25519 identity key pair. */
export interface LocalIdentity {
  readonly registrationId: number;
  /** 32 raw bytes (as on the wire and in the puppets table); a 33-byte 0x05 form is accepted too. */
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

/** A one-time prekey this puppet generated; `uploaded` once the prekey server has it. */
export interface StoredPreKey {
  readonly keyId: number;
  /** 32 raw bytes. */
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly uploaded: boolean;
}

export interface StoredSignedPreKey {
  readonly keyId: number;
  /** 32 raw bytes. */
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  /** XEdDSA by the identity key over the 33-byte 0x05 ‖ publicKey. */
  readonly signature: Uint8Array;
  /** Milliseconds since the Unix epoch. */
  readonly createdAt: number;
}

/**
 * trusted: first seen, or confirmed by the user. changed: the key changed under trust-on-first-use
 * (usable; the user was told). blocked: the key changed under block-until-confirmed (no sending).
 */
export type Trust = 'trusted' | 'changed' | 'blocked';

/** A remote device's identity key. Keyed by address ("user.device"): WhatsApp devices have their own. */
export interface RemoteIdentity {
  readonly address: string;
  /** 33 bytes, 0x05 ‖ key, as in Signal messages. */
  readonly identityKey: Uint8Array;
  readonly trust: Trust;
  readonly firstSeen: number;
  readonly changedAt: number;
}

/**
 * Where a puppet's Signal state lives. One ratchet step per message runs on synchronous reads and
 * writes of a working set (a round trip per step would cost more than the step); what an
 * asynchronous database needs has two places of its own, which every caller goes through:
 *
 * - `prepare(user)` before reading: makes the puppet's own keys and, with `user`, that remote
 *   user's sessions and identities readable by the synchronous methods. A networked backend loads
 *   them here; the SQLite and memory backends have them at hand and resolve at once.
 * - `flush()` before anything made from the state leaves (a ciphertext, an upload of prekeys):
 *   resolves once every write made so far is durable. Writes that must be atomic with the core's
 *   rows (a decryption with its inbox row) are committed inside the store's unit instead
 *   (`SessionWriteGate` in src/bridge).
 */
export interface SignalBackend {
  /** Makes the own keys and, with `user` (an address's user part, as in `sessionAddresses`), that user's state readable. */
  prepare(user?: string): Promise<void>;
  /** Resolves once every write made so far is durable. */
  flush(): Promise<void>;

  localIdentity(): LocalIdentity | undefined;

  /** The committed record, or undefined. Callers must not mutate it (copy it first). */
  loadSession(address: string): LiveSessionRecord | undefined;
  /** Commits `record` (the backend may keep the object itself). */
  saveSession(address: string, record: LiveSessionRecord): void;
  deleteSession(address: string): void;
  /** Addresses with a session for one remote user ("user.1", "user.2", ...). */
  sessionAddresses(user: string): string[];

  preKey(keyId: number): StoredPreKey | undefined;
  putPreKeys(keys: readonly StoredPreKey[]): void;
  removePreKey(keyId: number): void;
  /** Prekeys not yet uploaded, lowest id first. */
  preKeysNotUploaded(limit: number): StoredPreKey[];
  markPreKeysUploaded(keyIds: readonly number[]): void;
  /** `count` fresh one-time prekey ids (1..0xFFFFFF, wrapping; never reused before wrapping). */
  allocatePreKeyIds(count: number): number[];
  preKeyCount(): number;

  /** A fresh signed prekey id (1..0xFFFFFF, wrapping). */
  allocateSignedPreKeyId(): number;
  signedPreKey(keyId: number): StoredSignedPreKey | undefined;
  /** Newest first. */
  signedPreKeys(): StoredSignedPreKey[];
  putSignedPreKey(key: StoredSignedPreKey): void;
  removeSignedPreKey(keyId: number): void;

  remoteIdentity(address: string): RemoteIdentity | undefined;
  putRemoteIdentity(identity: RemoteIdentity): void;

  /** Runs `work` atomically where the backend can (SQLite transaction); in memory, just runs it. */
  atomically<T>(work: () => T): T;
}

/** 33-byte libsignal form of a Curve25519 public key. */
export function withTypeByte(key: Uint8Array): Uint8Array {
  if (key.length === KEY_LENGTH + 1 && key[0] === DJB_TYPE) return key;
  if (key.length !== KEY_LENGTH) {
    throw new SignalError(
      'signal_invalid_key',
      `a Curve25519 public key is 32 bytes (or 33 with the 0x05 type byte), got ${key.length}`,
    );
  }
  const out = new Uint8Array(KEY_LENGTH + 1);
  out[0] = DJB_TYPE;
  out.set(key, 1);
  return out;
}

/** 32-byte raw form of a Curve25519 public key. */
export function withoutTypeByte(key: Uint8Array): Uint8Array {
  if (key.length === KEY_LENGTH) return key;
  if (key.length === KEY_LENGTH + 1 && key[0] === DJB_TYPE) return key.subarray(1);
  throw new SignalError(
    'signal_invalid_key',
    `a Curve25519 public key is 32 bytes (or 33 with the 0x05 type byte), got ${key.length}`,
  );
}

/** Prekey ids are 3 bytes on the wire; 0 is avoided (the library treats it as "no prekey"). */
export const MAX_KEY_ID = 0xffffff;
/** The `n`-th id of a counter, mapped into 1..MAX_KEY_ID. */
export const keyIdAt = (n: number): number => (n % MAX_KEY_ID) + 1;

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

/** Everything in memory: tests, benchmarks, and the emulator's native users. */
export class MemorySignalBackend implements SignalBackend {
  private readonly sessions = new Map<string, LiveSessionRecord>();
  private readonly preKeys = new Map<number, StoredPreKey>();
  private readonly signed = new Map<number, StoredSignedPreKey>();
  private readonly identities = new Map<string, RemoteIdentity>();
  private preKeyCounter = 0;
  private signedCounter = 0;

  constructor(private readonly identity: LocalIdentity) {}

  prepare(): Promise<void> {
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  localIdentity(): LocalIdentity {
    return this.identity;
  }

  loadSession(address: string): LiveSessionRecord | undefined {
    return this.sessions.get(address);
  }
  saveSession(address: string, record: LiveSessionRecord): void {
    this.sessions.set(address, record);
  }
  deleteSession(address: string): void {
    this.sessions.delete(address);
  }
  sessionAddresses(user: string): string[] {
    return [...this.sessions.keys()].filter((a) => a.startsWith(`${user}.`)).sort();
  }

  preKey(keyId: number): StoredPreKey | undefined {
    return this.preKeys.get(keyId);
  }
  putPreKeys(keys: readonly StoredPreKey[]): void {
    for (const k of keys) {
      this.preKeys.set(k.keyId, k);
    }
  }
  removePreKey(keyId: number): void {
    this.preKeys.delete(keyId);
  }
  preKeysNotUploaded(limit: number): StoredPreKey[] {
    return [...this.preKeys.values()]
      .filter((k) => !k.uploaded)
      .sort((a, b) => a.keyId - b.keyId)
      .slice(0, limit);
  }
  markPreKeysUploaded(keyIds: readonly number[]): void {
    for (const id of keyIds) {
      const k = this.preKeys.get(id);
      if (k) this.preKeys.set(id, { ...k, uploaded: true });
    }
  }
  allocatePreKeyIds(count: number): number[] {
    const ids = Array.from({ length: count }, (_, i) => keyIdAt(this.preKeyCounter + i));
    this.preKeyCounter += count;
    return ids;
  }
  allocateSignedPreKeyId(): number {
    return keyIdAt(this.signedCounter++);
  }
  preKeyCount(): number {
    return this.preKeys.size;
  }

  signedPreKey(keyId: number): StoredSignedPreKey | undefined {
    return this.signed.get(keyId);
  }
  signedPreKeys(): StoredSignedPreKey[] {
    return [...this.signed.values()].sort((a, b) => b.createdAt - a.createdAt || b.keyId - a.keyId);
  }
  putSignedPreKey(key: StoredSignedPreKey): void {
    this.signed.set(key.keyId, key);
  }
  removeSignedPreKey(keyId: number): void {
    this.signed.delete(keyId);
  }

  remoteIdentity(address: string): RemoteIdentity | undefined {
    return this.identities.get(address);
  }
  putRemoteIdentity(identity: RemoteIdentity): void {
    this.identities.set(identity.address, identity);
  }

  atomically<T>(work: () => T): T {
    return work();
  }
}

const keyPairOf = (publicKey: Uint8Array, privateKey: Uint8Array): KeyPairType => ({
  pubKey: toArrayBuffer(withTypeByte(publicKey)),
  privKey: toArrayBuffer(privateKey),
});

const keyIdOf = (keyId: number | string): number => (typeof keyId === 'number' ? keyId : Number(keyId));

/**
 * The library's `StorageType` over a backend. Sessions: `workingCopy` hands the library a copy of the
 * committed record; `storeSession(address, LIVE_RECORD)` commits that copy. Records the library
 * builds itself arrive as JSON and are decoded once.
 *
 * Remote identities are not written here: the library calls `saveIdentity` before it knows whether a
 * message authenticates, and only with partial addresses in places. The session manager decides and
 * records identity changes under its policy after each successful operation; `isTrustedIdentity`
 * only refuses a key the user has blocked.
 */
export class SignalProtocolStore implements StorageType {
  private readonly working = new LazyMap<string, LiveSessionRecord>();
  private cachedIdentity: KeyPairType | undefined;

  constructor(readonly backend: SignalBackend) {}

  /** A mutable copy of the committed record of `address`, remembered for the commit. */
  workingCopy(address: string): LiveSessionRecord | undefined {
    const committed = this.backend.loadSession(address);
    if (committed === undefined) {
      this.working.delete(address);
      return undefined;
    }
    const copy = committed.copy();
    this.working.set(address, copy);
    return copy;
  }

  /** Forgets an uncommitted working copy (after a failed operation). */
  discardWorkingCopy(address: string): void {
    this.working.delete(address);
  }

  // -- StorageType

  getIdentityKeyPair(): Promise<KeyPairType | undefined> {
    if (this.cachedIdentity === undefined) {
      const id = this.backend.localIdentity();
      if (id !== undefined) this.cachedIdentity = keyPairOf(id.publicKey, id.privateKey);
    }
    return Promise.resolve(this.cachedIdentity);
  }

  getLocalRegistrationId(): Promise<number | undefined> {
    return Promise.resolve(this.backend.localIdentity()?.registrationId);
  }

  isTrustedIdentity(identifier: string, identityKey: ArrayBuffer, direction: Direction): Promise<boolean> {
    if (direction !== Direction.SENDING) return Promise.resolve(true);
    const known = this.backend.remoteIdentity(identifier);
    const blocked = known?.trust === 'blocked' && sameBytes(known.identityKey, new Uint8Array(identityKey));
    return Promise.resolve(!blocked);
  }

  saveIdentity(encodedAddress: string, publicKey: ArrayBuffer): Promise<boolean> {
    const known = this.backend.remoteIdentity(encodedAddress);
    return Promise.resolve(known !== undefined && !sameBytes(known.identityKey, new Uint8Array(publicKey)));
  }

  loadPreKey(keyId: string | number): Promise<KeyPairType | undefined> {
    const k = this.backend.preKey(keyIdOf(keyId));
    return Promise.resolve(k && keyPairOf(k.publicKey, k.privateKey));
  }

  storePreKey(keyId: number | string, keyPair: KeyPairType): Promise<void> {
    this.backend.putPreKeys([
      {
        keyId: keyIdOf(keyId),
        publicKey: withoutTypeByte(new Uint8Array(keyPair.pubKey)),
        privateKey: new Uint8Array(keyPair.privKey),
        uploaded: false,
      },
    ]);
    return Promise.resolve();
  }

  removePreKey(keyId: number | string): Promise<void> {
    this.backend.removePreKey(keyIdOf(keyId));
    return Promise.resolve();
  }

  storeSession(encodedAddress: string, record: string): Promise<void> {
    try {
      if (record === LIVE_RECORD) {
        const copy = this.working.get(encodedAddress);
        if (copy === undefined) throw new Error(`no working copy of the session with ${encodedAddress}`);
        this.working.delete(encodedAddress);
        this.backend.saveSession(encodedAddress, copy);
      } else {
        this.backend.saveSession(encodedAddress, decodeRecord(record));
      }
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  loadSession(encodedAddress: string): Promise<string | undefined> {
    const committed = this.backend.loadSession(encodedAddress);
    return Promise.resolve(committed && encodeRecord(committed));
  }

  loadSignedPreKey(keyId: number | string): Promise<KeyPairType | undefined> {
    const k = this.backend.signedPreKey(keyIdOf(keyId));
    return Promise.resolve(k && keyPairOf(k.publicKey, k.privateKey));
  }

  storeSignedPreKey(): Promise<void> {
    return Promise.reject(
      new Error('signed prekeys are made by the session manager (rotateSignedPreKey), which also signs them'),
    );
  }

  removeSignedPreKey(keyId: number | string): Promise<void> {
    this.backend.removeSignedPreKey(keyIdOf(keyId));
    return Promise.resolve();
  }
}
