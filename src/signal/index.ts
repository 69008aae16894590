/** The Signal layer's public API (see docs/SIGNAL.md). */
export { SignalError, type SignalErrorCode } from './errors.js';
export {
  calculateAgreement,
  clearKeyCaches,
  generateKeyPair,
  installNativeCrypto,
  keyPairFromPrivateKey,
  xeddsaSign,
  xeddsaVerify,
  type RawKeyPair,
} from './curve.js';
export { createSignalIdentity, generateRegistrationId, type SignalIdentity } from './keys.js';
export { safetyNumber, FINGERPRINT_ITERATIONS } from './fingerprint.js';
export {
  MemorySignalBackend,
  SignalProtocolStore,
  type LocalIdentity,
  type RemoteIdentity,
  type SignalBackend,
  type StoredPreKey,
  type StoredSignedPreKey,
  type Trust,
} from './store.js';
export { SqliteSignalBackend, type SqliteSignalBackendOptions } from './sqlite-store.js';
export { PostgresSignalBackend } from './postgres-store.js';
export {
  SignalSessionManager,
  type EncryptedMessage,
  type IdentityChange,
  type IdentityPolicy,
  type SessionManagerOptions,
  type SignalMessageType,
} from './session-manager.js';
export { type PreKeyUpload } from './prekeys.js';
