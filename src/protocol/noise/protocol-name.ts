/**
 * Protocol names (spec section 8): Noise_<pattern>_<DH>_<cipher>_<hash>, e.g.
 * "Noise_XX_25519_AESGCM_SHA256". The name is also the first input of the handshake hash, so it
 * must be byte-exact on both sides.
 */
import { CIPHERS, type CipherFunctions, type CipherName } from './cipher-functions.js';
import { NoiseError } from './errors.js';
import { HASHES, type HashFunction, type HashName } from './hash-functions.js';
import { type HandshakePattern, patternByName } from './patterns.js';

export interface NoiseProtocol {
  readonly name: string;
  readonly pattern: HandshakePattern;
  /** Only "25519" is implemented. */
  readonly dh: '25519';
  readonly cipher: CipherFunctions;
  readonly hash: HashFunction;
}

export const XX_PROTOCOL = 'Noise_XX_25519_AESGCM_SHA256';
export const IK_PROTOCOL = 'Noise_IK_25519_AESGCM_SHA256';
export const XXFALLBACK_PROTOCOL = 'Noise_XXfallback_25519_AESGCM_SHA256';

const cache = new Map<string, NoiseProtocol>();

/** Parses a protocol name; throws `noise_unsupported_protocol` for anything not implemented. */
export function parseProtocolName(name: string): NoiseProtocol {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const parts = name.split('_');
  const [prefix, patternName, dh, cipherName, hashName] = parts;
  if (parts.length !== 5 || prefix !== 'Noise' || patternName === undefined) {
    throw unsupported(name, 'expected Noise_<pattern>_<dh>_<cipher>_<hash>');
  }
  if (dh !== '25519') throw unsupported(name, `DH "${dh}" (only 25519)`);
  const cipher = Object.hasOwn(CIPHERS, cipherName ?? '') ? CIPHERS[cipherName as CipherName] : undefined;
  if (cipher === undefined) throw unsupported(name, `cipher "${cipherName}" (AESGCM or ChaChaPoly)`);
  const hash = Object.hasOwn(HASHES, hashName ?? '') ? HASHES[hashName as HashName] : undefined;
  if (hash === undefined) throw unsupported(name, `hash "${hashName}" (SHA256, SHA512, BLAKE2s or BLAKE2b)`);
  const protocol: NoiseProtocol = { name, pattern: patternByName(patternName), dh, cipher, hash };
  cache.set(name, protocol);
  return protocol;
}

function unsupported(name: string, what: string): NoiseError {
  return new NoiseError(
    'noise_unsupported_protocol',
    `Noise protocol "${name}" is not supported: ${what}; the gateway speaks ${XX_PROTOCOL}, ${IK_PROTOCOL} and ${XXFALLBACK_PROTOCOL}`,
  );
}
