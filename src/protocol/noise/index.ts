/** The Noise Protocol Framework (revision 34), as the gateway protocol uses it. */
export { NoiseError, type NoiseErrorCode } from './errors.js';
export {
  DHLEN,
  dh,
  generateKeyPair,
  importPublicKey,
  keyPairFromPrivateKey,
  type KeyPair,
  type PublicKey,
} from './dh.js';
export {
  AESGCM,
  ChaChaPoly,
  CIPHERS,
  KEYLEN,
  MAX_NONCE,
  TAGLEN,
  type CipherFunctions,
  type CipherName,
} from './cipher-functions.js';
export { HASHES, hkdf2, hkdf3, type HashFunction, type HashName } from './hash-functions.js';
export { CipherState, DEFAULT_NONCE_SOFT_LIMIT } from './cipher-state.js';
export { SymmetricState } from './symmetric-state.js';
export {
  BASE_PATTERNS,
  fallback,
  patternByName,
  type DhToken,
  type HandshakePattern,
  type KeyToken,
  type Token,
} from './patterns.js';
export {
  IK_PROTOCOL,
  parseProtocolName,
  XX_PROTOCOL,
  XXFALLBACK_PROTOCOL,
  type NoiseProtocol,
} from './protocol-name.js';
export {
  HandshakeState,
  MAX_HANDSHAKE_MESSAGE_LENGTH,
  type HandshakeOptions,
  type NoiseTransport,
} from './handshake-state.js';
