export { HandshakeError, type HandshakeErrorCode } from './errors.js';
export { clientHandshake, type ClientHandshakeOptions, type ClientHandshakeResult } from './client.js';
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  serverHandshake,
  type HandshakePatternName,
  type ServerHandshakeOptions,
  type ServerHandshakeResult,
} from './server.js';
