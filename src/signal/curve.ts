/**
 * The curve and symmetric-crypto plug of the Signal library.
 *
 * @privacyresearch/libsignal-protocol-typescript ships a Curve25519 compiled to asm.js and does its
 * AES, HMAC and SHA-512 through WebCrypto (an importKey plus a promise per HMAC). Both are slow: a
 * DH costs about 1.4 ms there, an HMAC about 100 µs; OpenSSL does them in about 35 µs and 3 µs.
 * The library lets us replace both (`setCurve`, `setWebCrypto`), process-wide:
 *
 * - X25519 key pairs and agreements run on node:crypto. Raw keys are imported through JWK (DER/PKCS#8
 *   import costs ten times more) and the KeyObjects are cached by key bytes, so a ratchet key is
 *   imported once however many agreements use it.
 * - XEdDSA (Signal's signatures by Curve25519 identity keys) runs on @noble/curves' Edwards point
 *   arithmetic, because node:crypto cannot sign with a Montgomery key. The format is libsignal's: the
 *   sign bit of the Edwards public key travels in the top bit of the signature's last byte.
 * - AES-256-CBC, HMAC-SHA256 and SHA-512 run synchronously on node:crypto behind WebCrypto's shape.
 */
import crypto, { type KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { setCurve, setWebCrypto } from '@privacyresearch/libsignal-protocol-typescript';

import { SignalError } from './errors.js';

/** Raw Curve25519 keys are 32 bytes; libsignal's serialized public keys add a 0x05 type byte. */
export const KEY_LENGTH = 32;
export const DJB_TYPE = 0x05;
export const SIGNATURE_LENGTH = 64;

/** A Curve25519 key pair as raw 32-byte keys; the private key is clamped. */
export interface RawKeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// X25519 on node:crypto, with KeyObject caches

/** A small LRU map: a hit moves the entry to the young end; the oldest goes when full. */
class KeyObjectCache {
  private readonly map = new Map<string, KeyObject>();
  constructor(private readonly capacity: number) {}

  get(id: string): KeyObject | undefined {
    const hit = this.map.get(id);
    if (hit !== undefined) {
      this.map.delete(id);
      this.map.set(id, hit);
    }
    return hit;
  }

  set(id: string, key: KeyObject): void {
    if (this.map.size >= this.capacity) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(id, key);
  }

  clear(): void {
    this.map.clear();
  }
}

// Sized for a bridge with a few thousand active sessions: a ratchet private key is used by at most
// two agreements (one when created, one at the next step), identity and signed prekeys by many.
const privateKeys = new KeyObjectCache(8192);
const publicKeys = new KeyObjectCache(2048);

/** Drops every cached KeyObject (tests, or after deleting a puppet's keys). */
export function clearKeyCaches(): void {
  privateKeys.clear();
  publicKeys.clear();
}

// JWK import insists on an `x` member but derives the public key from `d`, so any 32 bytes do.
const PLACEHOLDER_X = Buffer.alloc(KEY_LENGTH).toString('base64url');

const asBuffer = (bytes: Uint8Array | ArrayBuffer): Buffer =>
  bytes instanceof ArrayBuffer
    ? Buffer.from(bytes)
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** An exact-length ArrayBuffer copy (the library keeps ArrayBuffers, never views). */
export const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer =>
  bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;

function checkKey(key: Buffer, what: string): void {
  if (key.length !== KEY_LENGTH) {
    throw new SignalError(
      'signal_invalid_key',
      `a Curve25519 ${what} is ${KEY_LENGTH} bytes, got ${key.length}: check the key's encoding (raw bytes; strip libsignal's 0x05 type byte)`,
    );
  }
}

/** X25519 clamping, as libsignal applies it when it makes a key pair. */
export function clampPrivateKey(privateKey: Uint8Array): Uint8Array {
  const k = Uint8Array.from(privateKey);
  k[0] = (k[0] as number) & 248;
  k[31] = ((k[31] as number) & 127) | 64;
  return k;
}

function privateKeyObject(privateKey: Buffer): KeyObject {
  checkKey(privateKey, 'private key');
  const id = privateKey.toString('latin1');
  let key = privateKeys.get(id);
  if (key === undefined) {
    key = crypto.createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: privateKey.toString('base64url'), x: PLACEHOLDER_X },
      format: 'jwk',
    });
    privateKeys.set(id, key);
  }
  return key;
}

function publicKeyObject(publicKey: Buffer): KeyObject {
  checkKey(publicKey, 'public key');
  const id = publicKey.toString('latin1');
  let key = publicKeys.get(id);
  if (key === undefined) {
    key = crypto.createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: publicKey.toString('base64url') },
      format: 'jwk',
    });
    publicKeys.set(id, key);
  }
  return key;
}

/** The key pair of a 32-byte private key (clamped first). Its KeyObject stays cached for agreements. */
export function keyPairFromPrivateKey(privateKey: Uint8Array): RawKeyPair {
  const clamped = Buffer.from(clampPrivateKey(privateKey));
  const key = privateKeyObject(clamped);
  const x = key.export({ format: 'jwk' }).x;
  if (x === undefined) {
    throw new SignalError('signal_invalid_key', 'node:crypto exported an X25519 key without its public part');
  }
  return { publicKey: new Uint8Array(Buffer.from(x, 'base64url')), privateKey: new Uint8Array(clamped) };
}

/**
 * A fresh random key pair. Not crypto.generateKeyPairSync: on Node 20, exporting a generated key as
 * JWK can deadlock the process (the export holds the key's mutex while allocating; a GC then runs
 * the key generation job's destructor, which takes the same mutex). Seen here in benchmarks.
 */
export function generateKeyPair(): RawKeyPair {
  return keyPairFromPrivateKey(crypto.randomBytes(KEY_LENGTH));
}

/**
 * X25519(privateKey, publicKey). OpenSSL refuses an all-zero result (a low-order public key), which
 * surfaces as `signal_invalid_key`: the peer is broken or hostile.
 */
export function calculateAgreement(publicKey: Uint8Array, privateKey: Uint8Array): Buffer {
  const pub = publicKeyObject(asBuffer(publicKey));
  const priv = privateKeyObject(asBuffer(privateKey));
  try {
    return crypto.diffieHellman({ privateKey: priv, publicKey: pub });
  } catch (cause) {
    throw new SignalError(
      'signal_invalid_key',
      'X25519 with the peer public key failed (low-order point?): the peer is broken or hostile',
      { cause },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// XEdDSA on @noble/curves

const Point = ed25519.Point;
const Fp = Point.Fp;
const L = Point.Fn.ORDER;
const P = Fp.ORDER;
/** hash1's prefix: the 32-byte little-endian encoding of 2^256 - 2 (XEdDSA spec, section 2.5). */
const HASH1_PREFIX = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xfe : 0xff));

const sha512 = (...parts: Uint8Array[]): Buffer => {
  const h = crypto.createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};
const modL = (bytes: Uint8Array): bigint => bytesToNumberLE(bytes) % L;

/**
 * Signs `message` with a Curve25519 private key (64 bytes). As libsignal (and its Rust successor):
 * a = k mod L, A = aB, r = SHA-512(hash1 prefix ‖ k ‖ M ‖ Z) mod L for 64 random bytes Z,
 * s = r + SHA-512(R ‖ A ‖ M)·a mod L, and the sign bit of A goes into bit 7 of the last byte.
 */
export function xeddsaSign(
  privateKey: Uint8Array,
  message: Uint8Array,
  random: Uint8Array = crypto.randomBytes(64),
): Uint8Array {
  checkKey(asBuffer(privateKey), 'private key');
  const k = clampPrivateKey(privateKey);
  const a = modL(k);
  const A = Point.BASE.multiply(a).toBytes();
  const signBit = (A[31] as number) & 0x80;
  const r = modL(sha512(HASH1_PREFIX, k, message, random));
  const R = Point.BASE.multiply(r === 0n ? 1n : r).toBytes();
  const h = modL(sha512(R, A, message));
  const s = (r + h * a) % L;
  const signature = new Uint8Array(SIGNATURE_LENGTH);
  signature.set(R, 0);
  signature.set(numberToBytesLE(s, 32), 32);
  signature[63] = ((signature[63] as number) & 0x7f) | signBit;
  return signature;
}

/**
 * Verifies a 64-byte XEdDSA signature by a 32-byte Curve25519 public key: the Montgomery u maps to
 * the Edwards y = (u - 1) / (u + 1), the sign bit comes from the signature, then plain Ed25519
 * verification (RFC 8032, canonical s). Never throws: a malformed key or signature is just invalid.
 */
export function xeddsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== KEY_LENGTH || signature.length !== SIGNATURE_LENGTH) return false;
  const u = bytesToNumberLE(publicKey);
  if (u >= P || u === P - 1n) return false;
  const y = Fp.mul(Fp.sub(u, 1n), Fp.inv(Fp.add(u, 1n)));
  const A = numberToBytesLE(y, 32);
  A[31] = ((A[31] as number) & 0x7f) | ((signature[63] as number) & 0x80);
  const sig = Uint8Array.from(signature);
  sig[63] = (sig[63] as number) & 0x7f;
  try {
    return ed25519.verify(sig, message, A, { zip215: false });
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The library's hooks

/** The `AsyncCurve` shape `setCurve` takes. Note the library's inverted verify: true means INVALID. */
export interface LibraryCurve {
  keyPair(privKey: ArrayBuffer): Promise<{ pubKey: ArrayBuffer; privKey: ArrayBuffer }>;
  sharedSecret(pubKey: ArrayBuffer, privKey: ArrayBuffer): Promise<ArrayBuffer>;
  sign(privKey: ArrayBuffer, message: ArrayBuffer): Promise<ArrayBuffer>;
  verify(pubKey: ArrayBuffer, message: ArrayBuffer, sig: ArrayBuffer): Promise<boolean>;
}

export const nativeCurve: LibraryCurve = {
  keyPair(privKey) {
    try {
      const pair = keyPairFromPrivateKey(new Uint8Array(privKey));
      return Promise.resolve({
        pubKey: toArrayBuffer(pair.publicKey),
        privKey: toArrayBuffer(pair.privateKey),
      });
    } catch (err) {
      return Promise.reject(err);
    }
  },
  sharedSecret(pubKey, privKey) {
    try {
      return Promise.resolve(
        toArrayBuffer(calculateAgreement(new Uint8Array(pubKey), new Uint8Array(privKey))),
      );
    } catch (err) {
      return Promise.reject(err);
    }
  },
  sign(privKey, message) {
    try {
      return Promise.resolve(toArrayBuffer(xeddsaSign(new Uint8Array(privKey), new Uint8Array(message))));
    } catch (err) {
      return Promise.reject(err);
    }
  },
  verify(pubKey, message, sig) {
    return Promise.resolve(
      !xeddsaVerify(new Uint8Array(pubKey), new Uint8Array(message), new Uint8Array(sig)),
    );
  },
};

type BufferSourceLike = ArrayBuffer | ArrayBufferView;

const bytesOf = (data: BufferSourceLike): Buffer =>
  data instanceof ArrayBuffer
    ? Buffer.from(data)
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/** What `importKey` returns here: the raw key, kept as a Buffer (no KeyObject: HMAC keys live once). */
interface RawCryptoKey {
  readonly raw: Buffer;
}

const bufferToArrayBuffer = (b: Buffer): ArrayBuffer => toArrayBuffer(b);

/**
 * The subset of WebCrypto the library calls (importKey 'raw' for AES-CBC and HMAC-SHA256, encrypt,
 * decrypt, sign, digest SHA-512, getRandomValues), done synchronously on node:crypto. Each call
 * still returns a promise because the library awaits it.
 */
export const nativeWebCrypto = {
  getRandomValues<T extends ArrayBufferView>(array: T): T {
    return crypto.getRandomValues(array);
  },
  subtle: {
    importKey(_format: string, key: BufferSourceLike): Promise<RawCryptoKey> {
      return Promise.resolve({ raw: Buffer.from(bytesOf(key)) });
    },
    encrypt(
      algorithm: { iv: BufferSourceLike },
      key: RawCryptoKey,
      data: BufferSourceLike,
    ): Promise<ArrayBuffer> {
      try {
        const cipher = crypto.createCipheriv('aes-256-cbc', key.raw, bytesOf(algorithm.iv));
        return Promise.resolve(
          bufferToArrayBuffer(Buffer.concat([cipher.update(bytesOf(data)), cipher.final()])),
        );
      } catch (err) {
        return Promise.reject(err);
      }
    },
    decrypt(
      algorithm: { iv: BufferSourceLike },
      key: RawCryptoKey,
      data: BufferSourceLike,
    ): Promise<ArrayBuffer> {
      try {
        const decipher = crypto.createDecipheriv('aes-256-cbc', key.raw, bytesOf(algorithm.iv));
        return Promise.resolve(
          bufferToArrayBuffer(Buffer.concat([decipher.update(bytesOf(data)), decipher.final()])),
        );
      } catch (err) {
        return Promise.reject(err);
      }
    },
    sign(_algorithm: unknown, key: RawCryptoKey, data: BufferSourceLike): Promise<ArrayBuffer> {
      return Promise.resolve(
        bufferToArrayBuffer(crypto.createHmac('sha256', key.raw).update(bytesOf(data)).digest()),
      );
    },
    digest(_algorithm: unknown, data: BufferSourceLike): Promise<ArrayBuffer> {
      return Promise.resolve(bufferToArrayBuffer(crypto.createHash('sha512').update(bytesOf(data)).digest()));
    },
  },
};

let installed = false;

/**
 * Plugs node:crypto and the XEdDSA above into the library, for the whole process (the library's
 * hooks are global). Idempotent; every entry point of this layer calls it.
 */
export function installNativeCrypto(): void {
  if (installed) return;
  setCurve(nativeCurve);
  setWebCrypto(nativeWebCrypto as unknown as Parameters<typeof setWebCrypto>[0]);
  installed = true;
}
