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
export {
  SqliteSenderKeyBackend,
  SqliteSignalBackend,
  type SqliteSignalBackendOptions,
} from './sqlite-store.js';
export { PostgresSenderKeyBackend, PostgresSignalBackend } from './postgres-store.js';
export {
  SignalSessionManager,
  type EncryptedMessage,
  type IdentityChange,
  type IdentityPolicy,
  type SessionManagerOptions,
  type SignalMessageType,
} from './session-manager.js';
export { type PreKeyUpload } from './prekeys.js';
export {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  MAX_FORWARD_JUMPS,
  processDistribution,
  rotate,
} from './sender-keys.js';
export { MemorySenderKeyBackend, type SenderKeyAddress, type SenderKeyBackend } from './sender-key-store.js';
export { MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES } from './sender-key-record.js';
