/**
 * The Noise DH functions for Curve25519 (spec section 12.1), on OpenSSL through node:crypto: about
 * 25 times faster than a JavaScript curve. Raw keys are imported as JWK and the KeyObjects are kept,
 * because importing as DER/PKCS#8 costs ten times more and a handshake does several DHs.
 */
import crypto, { type KeyObject } from 'node:crypto';

import { unpooledCopy } from '../../util/unpooled.js';
import { NoiseError } from './errors.js';

/** The spec's DHLEN for 25519. */
export const DHLEN = 32;

/** A local key pair: the raw 32-byte keys (what goes on the wire) and their ready KeyObjects. */
export interface KeyPair {
  readonly publicKey: Buffer;
  readonly privateKey: Buffer;
  readonly publicKeyObject: KeyObject;
  readonly privateKeyObject: KeyObject;
}

/** A remote public key: the raw bytes (hashed into the transcript) and the KeyObject for DH. */
export interface PublicKey {
  readonly bytes: Buffer;
  readonly keyObject: KeyObject;
}

// JWK import insists on an `x` member but derives the public key from `d`, so any 32 bytes do.
const PLACEHOLDER_X = Buffer.alloc(DHLEN).toString('base64url');
/** PKCS#8 PrivateKeyInfo header for an X25519 key (OID 1.3.101.110), followed by the 32 raw bytes. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * Random bytes for private keys, drawn from the CSPRNG a few hundred keys at a time: one
 * randomFillSync per 256 keys instead of one randomBytes per key. Each 32-byte slice is copied out
 * and zeroed, so no key material is handed out twice or left behind.
 */
const RANDOM_POOL = Buffer.alloc(256 * DHLEN);
let randomOffset = RANDOM_POOL.length;

function randomPrivateKey(): Buffer {
  if (randomOffset === RANDOM_POOL.length) {
    crypto.randomFillSync(RANDOM_POOL);
    randomOffset = 0;
  }
  const end = randomOffset + DHLEN;
  const key = Buffer.from(RANDOM_POOL.subarray(randomOffset, end));
  RANDOM_POOL.fill(0, randomOffset, end);
  randomOffset = end;
  return key;
}

/**
 * GENERATE_KEYPAIR(): 32 random bytes as the private key (X25519 clamps any 32 bytes), imported
 * like a fixed key. Not crypto.generateKeyPairSync: on Node 20 exporting a freshly generated key
 * as JWK can deadlock when the GC destroys the key-generation job mid-export (seen here in about
 * one run in three of a handshake loop). The cost is the same, about 40 µs.
 */
export function generateKeyPair(): KeyPair {
  return makeKeyPair(randomPrivateKey(), 'ephemeral');
}

/**
 * The key pair of a fixed 32-byte private key (a configured static key, or a test vector's). The
 * public key comes from the private key's own JWK export (OpenSSL derived it on import); its
 * KeyObject, which DH never needs, is only created if someone asks for it.
 */
export function keyPairFromPrivateKey(privateKey: Buffer): KeyPair {
  return makeKeyPair(privateKey, 'static');
}

function makeKeyPair(privateKey: Buffer, kind: 'ephemeral' | 'static'): KeyPair {
  checkLength(privateKey, 'private key');
  const privateKeyObject = importPrivateKey(privateKey);
  const x = privateKeyObject.export({ format: 'jwk' }).x;
  if (x === undefined) {
    throw new NoiseError('noise_invalid_key', 'node:crypto exported an X25519 key without its public part x');
  }
  const publicKey = Buffer.from(x, 'base64url');
  if (kind === 'ephemeral') return new X25519KeyPair(publicKey, privateKey, privateKeyObject, true);
  // Kept as long as the key pair: out of Buffer's shared pool (src/util/unpooled.ts).
  return new X25519KeyPair(unpooledCopy(publicKey), unpooledCopy(privateKey), privateKeyObject, false);
}

/**
 * A class rather than an object literal with a getter: a puppet keeps its key pair for its life,
 * and the literal's accessor made every one a dictionary-mode object (about 0.4 KiB more each).
 *
 * A static key's KeyObject is held weakly: OpenSSL's copy of a key costs about 2 KiB of native
 * memory, and a connected puppet needs it only for its next handshake. Once collected, it is
 * imported again from the raw key when asked for (about 20 µs, once per handshake at most). An
 * ephemeral key's is held for its short life.
 */
class X25519KeyPair implements KeyPair {
  #held: KeyObject | undefined;
  #kept: WeakRef<KeyObject> | undefined;
  #publicKeyObject: KeyObject | undefined;

  constructor(
    readonly publicKey: Buffer,
    readonly privateKey: Buffer,
    privateKeyObject: KeyObject,
    ephemeral: boolean,
  ) {
    if (ephemeral) this.#held = privateKeyObject;
    else this.#kept = new WeakRef(privateKeyObject);
  }

  get privateKeyObject(): KeyObject {
    if (this.#held !== undefined) return this.#held;
    let key = this.#kept?.deref();
    if (key === undefined) {
      key = importPrivateKey(this.privateKey);
      this.#kept = new WeakRef(key);
    }
    return key;
  }

  get publicKeyObject(): KeyObject {
    return (this.#publicKeyObject ??= crypto.createPublicKey(this.privateKeyObject));
  }
}

function importPrivateKey(privateKey: Buffer): KeyObject {
  try {
    return crypto.createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: privateKey.toString('base64url'), x: PLACEHOLDER_X },
      format: 'jwk',
    });
  } catch {
    // A Node that checks `x` against `d`: fall back to PKCS#8 (slower, still correct).
    return crypto.createPrivateKey({
      key: Buffer.concat([PKCS8_X25519_PREFIX, privateKey]),
      format: 'der',
      type: 'pkcs8',
    });
  }
}

/** A peer's raw 32-byte public key, ready for DH. */
export function importPublicKey(bytes: Buffer): PublicKey {
  checkLength(bytes, 'public key');
  const keyObject = crypto.createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: bytes.toString('base64url') },
    format: 'jwk',
  });
  return { bytes: Buffer.from(bytes), keyObject };
}

/**
 * DH(key_pair, public_key). OpenSSL refuses an all-zero result (a low-order peer key), which the
 * spec allows implementations to do; that surfaces as `noise_dh_failed`.
 */
export function dh(keyPair: KeyPair, publicKey: PublicKey): Buffer {
  try {
    return crypto.diffieHellman({ privateKey: keyPair.privateKeyObject, publicKey: publicKey.keyObject });
  } catch (cause) {
    throw new NoiseError(
      'noise_dh_failed',
      'X25519 with the peer public key failed (low-order point?): the peer is broken or hostile; drop the connection',
      { cause },
    );
  }
}

/** Remote static keys remembered per local key pair; a client pins one or two server keys. */
const STATIC_DH_CACHE_SIZE = 64;
/**
 * Oldest first. A short list, not a Map: most key pairs only ever meet one server key, and a Map
 * would make a 148-byte hash table for it.
 */
const staticDhCache = new WeakMap<KeyPair, Array<{ readonly id: string; readonly shared: Buffer }>>();

/**
 * DH(s, rs) for a remote static key this side was given before the handshake (IK's pinned server
 * key): the result is the same for every handshake between the two keys, so it is computed once per
 * pair and remembered next to the private key it is derived from (it is no more secret than s).
 * Only for pre-shared keys: for a key a peer just sent, a cache hit would tell that peer, by timing,
 * whether the key connected recently.
 */
export function preSharedStaticDh(keyPair: KeyPair, publicKey: PublicKey): Buffer {
  let byRemote = staticDhCache.get(keyPair);
  if (byRemote === undefined) {
    byRemote = [];
    staticDhCache.set(keyPair, byRemote);
  }
  const id = publicKey.bytes.toString('latin1');
  const cached = byRemote.find((e) => e.id === id);
  if (cached !== undefined) return Buffer.from(cached.shared);
  const shared = dh(keyPair, publicKey);
  if (byRemote.length >= STATIC_DH_CACHE_SIZE) byRemote.shift();
  byRemote.push({ id, shared: unpooledCopy(shared) });
  return shared;
}

function checkLength(key: Buffer, what: string): void {
  if (key.length !== DHLEN) {
    throw new NoiseError(
      'noise_invalid_key',
      `an X25519 ${what} is ${DHLEN} bytes, got ${key.length}: check the key's encoding (raw bytes, not PEM or base64 text)`,
    );
  }
}
