/**
 * The provider-signed JWT a client presents in its Noise handshake payload
 * (ClientPayload.interop_data.token), and the gateway's verification of it.
 *
 * The token is bound to the client's Noise static key by a confirmation claim,
 * `cnf: { "x25519": base64url(static key) }`, so a token stolen off a client (or out of a log)
 * is useless from any other key. Verification runs structure, algorithm, key, signature, claims,
 * and only then the replay cache, so a forged or otherwise invalid token never occupies it.
 */
import { randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import {
  calculateJwkThumbprint,
  compactVerify,
  errors,
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
} from 'jose';
import { InteropError } from '../errors.js';
import { ReplayCacheFullError, type ReplayGuard } from './replay-cache.js';

export type ClientTokenAlg = 'EdDSA' | 'ES256';
/** Only these; `none`, HMAC (a shared secret the gateway could forge with) and the rest are refused. */
export const CLIENT_TOKEN_ALGS: readonly ClientTokenAlg[] = ['EdDSA', 'ES256'];

export const DEFAULT_TOKEN_TTL_SECONDS = 300;
export const DEFAULT_CLOCK_SKEW_SECONDS = 60;
/** "Minutes, not hours": a token whose exp - iat exceeds this is refused whatever its window. */
export const DEFAULT_MAX_TOKEN_TTL_SECONDS = 3600;
/** Far above any honest token (a few hundred bytes); bounds the work a hostile client can cause. */
export const MAX_TOKEN_LENGTH = 8192;
export const NOISE_STATIC_KEY_LENGTH = 32;

/**
 * Every `<failure reason=...>` value of client authentication. All but `account_not_enlisted`
 * come from `verifyClientToken`; that one is the gateway's own check of the account after it.
 */
export const AUTH_FAILURE_REASONS = [
  'token_malformed',
  'token_alg_not_allowed',
  'token_unknown_kid',
  'token_bad_signature',
  'token_wrong_issuer',
  'token_wrong_audience',
  'token_lifetime_too_long',
  'token_expired',
  'token_not_yet_valid',
  'token_key_mismatch',
  'token_replayed',
  'replay_cache_full',
  'account_not_enlisted',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];
export type TokenFailureReason = Exclude<AuthFailureReason, 'account_not_enlisted'>;

/** The client's token was refused; `reason` (equal to `code`) goes on the wire as the failure reason. */
export class TokenError extends InteropError {
  declare readonly code: TokenFailureReason;
  readonly reason: TokenFailureReason;

  constructor(reason: TokenFailureReason, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
    this.reason = reason;
  }
}

export interface ClientTokenClaims {
  /** The provider (integrator) id. */
  iss: string;
  /** The interop account. */
  sub: string;
  /** The gateway id. */
  aud: string | string[];
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  cnf: { x25519: string };
}

/** A key that can sign tokens: a private JWK, a node KeyObject or a WebCrypto CryptoKey. */
export type TokenSigningKey = JWK | KeyObject | CryptoKey;
/** A key that can verify tokens: a public JWK, a node KeyObject or a WebCrypto CryptoKey. */
export type TokenVerificationKey = JWK | KeyObject | CryptoKey;

export interface MintClientTokenInput {
  privateKey: TokenSigningKey;
  kid: string;
  alg: ClientTokenAlg;
  /** The provider id (`iss`). */
  issuer: string;
  /** The interop account (`sub`). */
  subject: string;
  /** The gateway id (`aud`). */
  audience: string;
  /** The client's X25519 Noise static public key, which the token is bound to. */
  noiseStaticKey: Uint8Array;
  ttlSeconds?: number;
  /** Seconds since the Unix epoch; defaults to the system clock. */
  now?: number;
}

/**
 * Finds the verification key a token's `kid` names. `iss` is the token's *unverified* issuer, there
 * only to pick the provider's key set; it is checked against the expected issuers after the signature.
 * Returns undefined for an unknown kid. Whatever it throws propagates unchanged (an operator fault,
 * not the client's).
 */
export type TokenKeyResolver = (
  kid: string,
  context: { alg: ClientTokenAlg; iss: string | undefined },
) => TokenVerificationKey | undefined | Promise<TokenVerificationKey | undefined>;

export interface VerifyClientTokenOptions {
  keyResolver: TokenKeyResolver;
  /** The provider id(s) accepted as `iss`, or a predicate (e.g. a lookup in the provider table). */
  issuer: string | readonly string[] | ((iss: string) => boolean);
  /** This gateway's id; `aud` must be it or contain it. */
  audience: string;
  /** The client's static key as the Noise handshake revealed it. */
  noiseStaticKey: Uint8Array;
  replayCache: ReplayGuard;
  /** Seconds since the Unix epoch; defaults to the system clock. */
  now?: number;
  clockSkewSeconds?: number;
  maxTtlSeconds?: number;
}

/** Mints the compact JWS a client puts in ClientPayload.interop_data.token. */
export async function mintClientToken(input: MintClientTokenInput): Promise<string> {
  if (input.noiseStaticKey.length !== NOISE_STATIC_KEY_LENGTH) {
    throw new RangeError(
      `noiseStaticKey must be ${NOISE_STATIC_KEY_LENGTH} bytes (X25519), got ${input.noiseStaticKey.length}`,
    );
  }
  const ttl = input.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (!Number.isSafeInteger(ttl) || ttl <= 0)
    throw new RangeError(`ttlSeconds must be a positive integer, got ${ttl}`);
  const now = Math.floor(input.now ?? Date.now() / 1000);
  const cnf = { x25519: toBase64Url(input.noiseStaticKey) };
  return new SignJWT({ cnf })
    .setProtectedHeader({ alg: input.alg, kid: input.kid, typ: 'JWT' })
    .setIssuer(input.issuer)
    .setSubject(input.subject)
    .setAudience(input.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + ttl)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(input.privateKey);
}

/**
 * Verifies a client's token for this gateway and records its `jti`. Throws a TokenError whose
 * `reason` is the failure stanza's reason; returns the claims of a token that passed everything.
 */
export async function verifyClientToken(
  token: unknown,
  options: VerifyClientTokenOptions,
): Promise<ClientTokenClaims> {
  const skew = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  const maxTtl = options.maxTtlSeconds ?? DEFAULT_MAX_TOKEN_TTL_SECONDS;
  const now = options.now ?? Date.now() / 1000;

  const { compact, header, unverifiedPayload } = splitToken(token);
  const alg = header['alg'];
  if (typeof alg !== 'string') throw malformed('the token header has no "alg"');
  if (!isAllowedAlg(alg)) {
    throw new TokenError(
      'token_alg_not_allowed',
      `token algorithm "${alg}" is not allowed: sign client tokens with EdDSA (Ed25519) or ES256`,
    );
  }
  const kid = header['kid'];
  if (typeof kid !== 'string' || kid.length === 0) {
    throw new TokenError(
      'token_unknown_kid',
      'the token header has no "kid": name the signing key of the provider JWKS',
    );
  }
  const unverifiedIss = typeof unverifiedPayload['iss'] === 'string' ? unverifiedPayload['iss'] : undefined;

  const key = await options.keyResolver(kid, { alg, iss: unverifiedIss });
  if (key === undefined) {
    // Say "wrong issuer" when that is the actual problem: no provider's keys could have matched.
    if (unverifiedIss !== undefined && !issuerAccepted(options.issuer, unverifiedIss)) {
      throw wrongIssuer(unverifiedIss);
    }
    throw new TokenError(
      'token_unknown_kid',
      `token key id "${kid}" is not in the provider's JWKS: publish the key in the JWKS the gateway uses, ` +
        'or sign with a key that is listed',
    );
  }

  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(compact, key, { algorithms: [alg] }));
  } catch (cause) {
    throw signatureFailure(cause, kid, alg);
  }

  const claims = parseClaims(payloadBytes);

  if (!issuerAccepted(options.issuer, claims.iss)) throw wrongIssuer(claims.iss);

  const audiences = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!audiences.includes(options.audience)) {
    throw new TokenError(
      'token_wrong_audience',
      `token audience ${JSON.stringify(claims.aud)} does not include this gateway ("${options.audience}"): ` +
        "set the provider's gateway id to the gateway's",
    );
  }

  if (claims.exp - claims.iat > maxTtl) {
    throw new TokenError(
      'token_lifetime_too_long',
      `token lifetime ${claims.exp - claims.iat} s exceeds the maximum ${maxTtl} s: mint short-lived tokens ` +
        '(minutes, not hours)',
    );
  }

  if (now >= claims.exp + skew) {
    throw new TokenError(
      'token_expired',
      `token expired at ${formatSeconds(claims.exp)} (now ${formatSeconds(now)}, skew ${skew} s): mint a fresh ` +
        "token per connection and check the provider's clock",
    );
  }
  const notBefore = Math.max(claims.nbf, claims.iat);
  if (notBefore > now + skew) {
    throw new TokenError(
      'token_not_yet_valid',
      `token is not valid before ${formatSeconds(notBefore)} (now ${formatSeconds(now)}, skew ${skew} s): ` +
        "check the provider's clock",
    );
  }

  if (!cnfMatches(claims.cnf.x25519, options.noiseStaticKey)) {
    throw new TokenError(
      'token_key_mismatch',
      "token is bound (cnf.x25519) to a different Noise static key than this connection's: " +
        'mint the token for the key the client connects with',
    );
  }

  // Last: only a token that passed everything else may occupy the cache. Keyed per issuer, since
  // two providers' jti spaces are independent.
  let fresh: boolean;
  try {
    fresh = options.replayCache.recordOnce(JSON.stringify([claims.iss, claims.jti]), claims.exp + skew, now);
  } catch (cause) {
    if (cause instanceof ReplayCacheFullError) {
      throw new TokenError('replay_cache_full', `${cause.message}; the client should retry later`, { cause });
    }
    throw cause;
  }
  if (!fresh) {
    throw new TokenError(
      'token_replayed',
      `token id (jti) "${claims.jti}" was already used: mint a new token for every connection`,
    );
  }
  return claims;
}

// --- JWKS ------------------------------------------------------------------------------------

export interface ProviderPublicJwk {
  kty: 'OKP' | 'EC';
  crv: 'Ed25519' | 'P-256';
  x: string;
  /** EC keys only. */
  y?: string;
  kid: string;
  alg: ClientTokenAlg;
  use: 'sig';
}

export interface ProviderPrivateJwk extends ProviderPublicJwk {
  d: string;
}

export interface ProviderJwks {
  keys: ProviderPublicJwk[];
}

/** A JWKS as configured or fetched: only keys with a `kid` are usable. */
export interface JwksLike {
  keys: readonly JWK[];
}

/**
 * A new provider signing key as a private JWK. `kid` defaults to the key's RFC 7638 thumbprint,
 * so it is stable and needs no registry.
 */
export async function generateProviderKey(alg: ClientTokenAlg, kid?: string): Promise<ProviderPrivateJwk> {
  // Through WebCrypto (jose): on Node 20, exporting a key generateKeyPairSync just made can deadlock
  // when a GC runs during the export.
  const { privateKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : 'ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const base = {
    kty: alg === 'EdDSA' ? ('OKP' as const) : ('EC' as const),
    crv: alg === 'EdDSA' ? ('Ed25519' as const) : ('P-256' as const),
    x: jwk.x ?? '',
    ...(jwk.y !== undefined ? { y: jwk.y } : {}),
  };
  return {
    ...base,
    kid: kid ?? (await calculateJwkThumbprint(base, 'sha256')),
    alg,
    use: 'sig',
    d: jwk.d ?? '',
  };
}

/** The JWKS to publish: the same keys with every private member stripped. */
export function publicJwks(privateJwks: readonly ProviderPrivateJwk[]): ProviderJwks {
  return {
    keys: privateJwks.map((k) => ({
      kty: k.kty,
      crv: k.crv,
      x: k.x,
      ...(k.y !== undefined ? { y: k.y } : {}),
      kid: k.kid,
      alg: k.alg,
      use: k.use,
    })),
  };
}

/** A key resolver over one provider's JWKS (first key wins for a repeated kid). */
export function jwksKeyResolver(jwks: JwksLike): TokenKeyResolver {
  const byKid = indexJwks(jwks);
  return (kid) => byKid.get(kid);
}

/** A key resolver over several providers' JWKS, picked by the token's issuer. */
export function jwksKeyResolverByIssuer(jwksByIssuer: ReadonlyMap<string, JwksLike>): TokenKeyResolver {
  const indexed = new Map([...jwksByIssuer].map(([iss, jwks]) => [iss, indexJwks(jwks)]));
  return (kid, { iss }) => (iss === undefined ? undefined : indexed.get(iss)?.get(kid));
}

function indexJwks(jwks: JwksLike): Map<string, JWK> {
  const byKid = new Map<string, JWK>();
  for (const key of jwks.keys) {
    if (typeof key.kid !== 'string' || byKid.has(key.kid)) continue;
    if (key.use !== undefined && key.use !== 'sig') continue;
    // Strip private members defensively: a verifier must never hold them. The same object is
    // returned every time, so jose's per-object import cache turns repeat look-ups into no work.
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, k: _k, ...pub } = key;
    byKid.set(key.kid, pub);
  }
  return byKid;
}

// --- internals -------------------------------------------------------------------------------

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function splitToken(token: unknown): {
  compact: string;
  header: Record<string, unknown>;
  unverifiedPayload: Record<string, unknown>;
} {
  if (typeof token !== 'string') throw malformed('the token is not a string');
  if (token.length > MAX_TOKEN_LENGTH)
    throw malformed(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  if (parts.length !== 3)
    throw malformed(`the token has ${parts.length} dot-separated parts, a compact JWS has 3`);
  const [h, p, s] = parts as [string, string, string];
  if (!BASE64URL.test(h) || !BASE64URL.test(p) || !BASE64URL.test(s)) {
    throw malformed('the token has characters outside base64url');
  }
  return {
    compact: token,
    header: parseJsonObject(Buffer.from(h, 'base64url'), 'header'),
    unverifiedPayload: parseJsonObject(Buffer.from(p, 'base64url'), 'payload'),
  };
}

function parseJsonObject(utf8: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(utf8).toString('utf8'));
  } catch {
    throw malformed(`the token ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw malformed(`the token ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function parseClaims(bytes: Uint8Array): ClientTokenClaims {
  const raw = parseJsonObject(bytes, 'payload');
  const str = (name: string): string => {
    const v = raw[name];
    if (typeof v !== 'string' || v.length === 0)
      throw malformed(`claim "${name}" is missing or not a string`);
    return v;
  };
  const num = (name: string): number => {
    const v = raw[name];
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw malformed(`claim "${name}" is missing or not a number`);
    return v;
  };
  const aud = raw['aud'];
  if (!(
    typeof aud === 'string' ||
    (Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === 'string'))
  )) {
    throw malformed('claim "aud" is missing or not a string (or array of strings)');
  }
  const cnf = raw['cnf'];
  const x25519 =
    typeof cnf === 'object' && cnf !== null && !Array.isArray(cnf)
      ? (cnf as Record<string, unknown>)['x25519']
      : undefined;
  if (typeof x25519 !== 'string')
    throw malformed('claim "cnf.x25519" (the Noise static key binding) is missing');
  return {
    iss: str('iss'),
    sub: str('sub'),
    aud: aud as string | string[],
    iat: num('iat'),
    nbf: num('nbf'),
    exp: num('exp'),
    jti: str('jti'),
    cnf: { x25519 },
  };
}

function signatureFailure(cause: unknown, kid: string, alg: string): TokenError {
  if (cause instanceof errors.JWSInvalid) {
    return new TokenError('token_malformed', `the token is not a valid compact JWS: ${cause.message}`, {
      cause,
    });
  }
  if (cause instanceof errors.JWSSignatureVerificationFailed) {
    return new TokenError(
      'token_bad_signature',
      `token signature does not verify with key "${kid}": the token was not signed by that provider key`,
      { cause },
    );
  }
  // Anything else is the key refusing the operation (an EC key for EdDSA, a wrong curve, ...).
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new TokenError(
    'token_bad_signature',
    `token signature cannot be checked with key "${kid}" for ${alg} (${detail}): sign with the algorithm the ` +
      'JWKS lists for that key',
    { cause },
  );
}

function isAllowedAlg(alg: string): alg is ClientTokenAlg {
  return (CLIENT_TOKEN_ALGS as readonly string[]).includes(alg);
}

function issuerAccepted(expected: VerifyClientTokenOptions['issuer'], iss: string): boolean {
  if (typeof expected === 'string') return expected === iss;
  if (typeof expected === 'function') return expected(iss);
  return expected.includes(iss);
}

function wrongIssuer(iss: string): TokenError {
  return new TokenError(
    'token_wrong_issuer',
    `token issuer "${iss}" is not a provider this gateway accepts: set iss to the provider id the gateway knows`,
  );
}

function cnfMatches(encoded: string, staticKey: Uint8Array): boolean {
  if (!BASE64URL.test(encoded)) return false;
  const bound = Buffer.from(encoded, 'base64url');
  return bound.length === staticKey.length && timingSafeEqual(bound, staticKey);
}

function malformed(message: string): TokenError {
  return new TokenError('token_malformed', `${message}: send a compact JWS signed by the provider`);
}

function formatSeconds(seconds: number): string {
  const ms = seconds * 1000;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return `${seconds} s after the epoch`;
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}
