/**
 * The gateway's certificate chain: the server's Noise handshake payload, which proves that the
 * static key the client just met belongs to the gateway whose root key the bridge has pinned.
 *
 *   root (pinned Ed25519 key, in config) --signs--> intermediate {Ed25519 key}
 *   intermediate --signs--> leaf {X25519 Noise static key of the server}
 *
 * Each certificate carries its `Details` as serialized protobuf bytes and an Ed25519 signature over
 * exactly those bytes, so a verifier never re-serializes what it checks.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ed25519 } from '@noble/curves/ed25519.js';
import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from 'node:crypto';
import { InteropError } from '../errors.js';
import {
  CertChainSchema,
  CertChain_NoiseCertificateSchema,
  CertChain_NoiseCertificate_DetailsSchema,
  type CertChain_NoiseCertificate,
  type CertChain_NoiseCertificate_Details,
} from './gen/interop/v1/handshake_pb.js';

export const ED25519_KEY_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;
export const X25519_KEY_LENGTH = 32;
const UINT32_MAX = 0xffff_ffff;
/** RFC 8410 PrivateKeyInfo header for a 32-byte Ed25519 seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export type CertErrorCode =
  | 'cert_malformed'
  | 'cert_bad_signature'
  | 'cert_wrong_issuer'
  | 'cert_expired'
  | 'cert_not_yet_valid'
  | 'cert_key_mismatch';

/** Every code `verifyCertChain` can raise, in the order the checks run. */
export const CERT_ERROR_CODES: readonly CertErrorCode[] = [
  'cert_malformed',
  'cert_bad_signature',
  'cert_wrong_issuer',
  'cert_expired',
  'cert_not_yet_valid',
  'cert_key_mismatch',
];

/** The gateway's certificate chain failed a check: the client must abort before sending its payload. */
export class CertError extends InteropError {
  declare readonly code: CertErrorCode;

  constructor(code: CertErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export type CertRole = 'leaf' | 'intermediate';

/** Raw Ed25519 keys: 32-byte public key, 32-byte private seed (RFC 8032). */
export interface Ed25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

/** One certificate as received: the signed bytes, their signature and their decoded contents. */
export interface DecodedCertificate {
  detailsBytes: Uint8Array;
  signature: Uint8Array;
  details: CertChain_NoiseCertificate_Details;
}

export interface DecodedCertChain {
  leaf: DecodedCertificate;
  intermediate: DecodedCertificate;
}

export interface IssueIntermediateInput {
  rootPrivateKey: Uint8Array;
  serial: number;
  /** The intermediate's Ed25519 public key (32 bytes). */
  key: Uint8Array;
  /** Seconds since the Unix epoch. */
  notBefore: number;
  notAfter: number;
}

export interface IssueLeafInput {
  intermediatePrivateKey: Uint8Array;
  serial: number;
  issuerSerial: number;
  /** The server's X25519 Noise static public key (32 bytes). */
  key: Uint8Array;
  notBefore: number;
  notAfter: number;
}

export interface VerifyCertChainOptions {
  /** The gateway root key pinned in the bridge's configuration (raw 32 bytes or a KeyObject). */
  rootPublicKey: Uint8Array | KeyObject;
  /** The server's static key as the Noise handshake revealed it. */
  serverStaticKey: Uint8Array;
  /** Seconds since the Unix epoch; defaults to the system clock. */
  now?: number;
}

/** A fresh Ed25519 key pair for a gateway root. */
export function createRootKey(): Ed25519KeyPair {
  return createEd25519KeyPair();
}

/** A fresh Ed25519 key pair for an intermediate certificate. */
export function createIntermediateKey(): Ed25519KeyPair {
  return createEd25519KeyPair();
}

/**
 * From 32 random bytes (the RFC 8032 seed), the public key derived by @noble/curves: on Node 20,
 * exporting a key that generateKeyPairSync just made can deadlock when a GC runs during the export.
 */
function createEd25519KeyPair(): Ed25519KeyPair {
  const privateKey = new Uint8Array(randomBytes(32));
  return { publicKey: ed25519.getPublicKey(privateKey), privateKey };
}

/** Signs an intermediate certificate with the gateway's root key. */
export function issueIntermediate(input: IssueIntermediateInput): CertChain_NoiseCertificate {
  requireLength(input.key, ED25519_KEY_LENGTH, 'intermediate key (Ed25519 public key)');
  return issue(input.rootPrivateKey, {
    serial: input.serial,
    issuerSerial: 0,
    key: input.key,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
  });
}

/** Signs a leaf certificate, binding the server's Noise static key, with the intermediate's key. */
export function issueLeaf(input: IssueLeafInput): CertChain_NoiseCertificate {
  requireLength(input.key, X25519_KEY_LENGTH, 'leaf key (X25519 Noise static key)');
  return issue(input.intermediatePrivateKey, {
    serial: input.serial,
    issuerSerial: input.issuerSerial,
    key: input.key,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
  });
}

function issue(
  signerPrivateKey: Uint8Array,
  d: { serial: number; issuerSerial: number; key: Uint8Array; notBefore: number; notAfter: number },
): CertChain_NoiseCertificate {
  requireUint32(d.serial, 'serial');
  requireUint32(d.issuerSerial, 'issuerSerial');
  requireSeconds(d.notBefore, 'notBefore');
  requireSeconds(d.notAfter, 'notAfter');
  if (d.notAfter < d.notBefore) {
    throw new RangeError(`notAfter (${d.notAfter}) is before notBefore (${d.notBefore})`);
  }
  const details = toBinary(
    CertChain_NoiseCertificate_DetailsSchema,
    create(CertChain_NoiseCertificate_DetailsSchema, {
      serial: d.serial,
      issuerSerial: d.issuerSerial,
      key: d.key,
      notBefore: BigInt(d.notBefore),
      notAfter: BigInt(d.notAfter),
    }),
  );
  const signature = sign(null, details, ed25519PrivateKey(signerPrivateKey));
  return create(CertChain_NoiseCertificateSchema, { details, signature: new Uint8Array(signature) });
}

/** Serializes the chain as the server's handshake payload. */
export function encodeCertChain(chain: {
  leaf: CertChain_NoiseCertificate;
  intermediate: CertChain_NoiseCertificate;
}): Uint8Array {
  return toBinary(CertChainSchema, create(CertChainSchema, chain));
}

/**
 * Parses a handshake payload into both certificates and their details. Checks structure only
 * (lengths, presence), never signatures or times: that is `verifyCertChain`'s job.
 */
export function decodeCertChain(bytes: Uint8Array): DecodedCertChain {
  let chain;
  try {
    chain = fromBinary(CertChainSchema, bytes);
  } catch (cause) {
    throw malformed('the server handshake payload is not a CertChain protobuf', cause);
  }
  if (chain.intermediate === undefined) throw malformed('the chain has no intermediate certificate');
  if (chain.leaf === undefined) throw malformed('the chain has no leaf certificate');
  const intermediate = decodeCertificate(chain.intermediate, 'intermediate', ED25519_KEY_LENGTH);
  const leaf = decodeCertificate(chain.leaf, 'leaf', X25519_KEY_LENGTH);
  return { leaf, intermediate };
}

function decodeCertificate(
  cert: CertChain_NoiseCertificate,
  role: CertRole,
  keyLength: number,
): DecodedCertificate {
  if (cert.details.length === 0) throw malformed(`the ${role} certificate has no details`);
  if (cert.signature.length !== ED25519_SIGNATURE_LENGTH) {
    throw malformed(
      `the ${role} certificate's signature is ${cert.signature.length} bytes, expected ${ED25519_SIGNATURE_LENGTH}`,
    );
  }
  let details;
  try {
    details = fromBinary(CertChain_NoiseCertificate_DetailsSchema, cert.details);
  } catch (cause) {
    throw malformed(`the ${role} certificate's details are not a Details protobuf`, cause);
  }
  if (details.key.length !== keyLength) {
    throw malformed(`the ${role} certificate's key is ${details.key.length} bytes, expected ${keyLength}`);
  }
  return { detailsBytes: cert.details, signature: cert.signature, details };
}

/**
 * Verifies the server's certificate chain against the pinned root key and the Noise static key the
 * handshake revealed. Throws a CertError on the first failed check, in this order: structure,
 * intermediate signature, issuer serial, leaf signature, intermediate validity, leaf validity, leaf key.
 * Returns the decoded chain so that callers can log serials and expiry.
 */
export function verifyCertChain(bytes: Uint8Array, options: VerifyCertChainOptions): DecodedCertChain {
  const chain = decodeCertChain(bytes);
  const { leaf, intermediate } = chain;

  const rootKey =
    options.rootPublicKey instanceof Uint8Array
      ? ed25519PublicKey(options.rootPublicKey)
      : options.rootPublicKey;
  if (!ed25519Verify(rootKey, intermediate)) {
    throw new CertError(
      'cert_bad_signature',
      `gateway intermediate certificate (serial ${intermediate.details.serial}) is not signed by the pinned root key: ` +
        'check gateway.root_key, or the gateway is not the one you configured',
    );
  }

  if (leaf.details.issuerSerial !== intermediate.details.serial) {
    throw new CertError(
      'cert_wrong_issuer',
      `gateway leaf certificate names issuer serial ${leaf.details.issuerSerial} but the intermediate's serial is ` +
        `${intermediate.details.serial}: the gateway sent a leaf from another intermediate`,
    );
  }

  if (!ed25519Verify(ed25519PublicKey(intermediate.details.key), leaf)) {
    throw new CertError(
      'cert_bad_signature',
      `gateway leaf certificate (serial ${leaf.details.serial}) is not signed by the intermediate ` +
        `(serial ${intermediate.details.serial}): the gateway's certificate chain is broken`,
    );
  }

  const now = BigInt(Math.floor(options.now ?? Date.now() / 1000));
  checkValidity(intermediate.details, 'intermediate', now);
  checkValidity(leaf.details, 'leaf', now);

  if (!bytesEqual(leaf.details.key, options.serverStaticKey)) {
    throw new CertError(
      'cert_key_mismatch',
      "gateway leaf certificate certifies a different key than the server's Noise static key: " +
        'the peer is not the certified gateway (possible interception)',
    );
  }
  return chain;
}

function checkValidity(details: CertChain_NoiseCertificate_Details, role: CertRole, now: bigint): void {
  if (now > details.notAfter) {
    throw new CertError(
      'cert_expired',
      `gateway ${role} certificate expired on ${formatSeconds(details.notAfter)}: ` +
        `renew the emulator's ${role} certificate or update gateway.root_key`,
    );
  }
  if (now < details.notBefore) {
    throw new CertError(
      'cert_not_yet_valid',
      `gateway ${role} certificate is not valid before ${formatSeconds(details.notBefore)}: ` +
        "check this machine's clock, or the gateway issued its certificate with a future start",
    );
  }
}

/** ISO 8601 without milliseconds ("2027-01-01T00:00:00Z"); raw seconds when beyond Date's range. */
function formatSeconds(seconds: bigint): string {
  const ms = Number(seconds) * 1000;
  if (!Number.isFinite(ms) || ms > 8.64e15) return `${seconds} s after the epoch`;
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function ed25519Verify(key: KeyObject, cert: DecodedCertificate): boolean {
  try {
    return verify(null, cert.detailsBytes, key, cert.signature);
  } catch {
    // An unusable key (e.g. not a curve point) cannot have produced a valid signature.
    return false;
  }
}

// JWK import is the fast path in node:crypto (see ARCHITECTURE.md), far cheaper than DER.
function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(raw) }, format: 'jwk' });
}

function ed25519PrivateKey(seed: Uint8Array): KeyObject {
  requireLength(seed, ED25519_KEY_LENGTH, 'Ed25519 private key');
  // Node's JWK import of a private key also wants `x`, which the caller does not pass; PKCS#8 is
  // slower but issuing is rare (verification, the hot path, only imports public keys).
  const pkcs8 = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
}

function malformed(message: string, cause?: unknown): CertError {
  return new CertError(
    'cert_malformed',
    `${message}: the peer is not an interop gateway speaking this protocol version`,
    { cause },
  );
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) throw new RangeError(`${what} must be ${length} bytes, got ${bytes.length}`);
}

function requireUint32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > UINT32_MAX)
    throw new RangeError(`${what} must be a uint32, got ${n}`);
}

function requireSeconds(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what} must be whole seconds since the epoch, got ${n}`);
  }
}

function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}
