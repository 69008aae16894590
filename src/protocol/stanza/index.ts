/**
 * The stanza codec of the gateway protocol: the one module boundary other layers import.
 * A second wire codec (say, WhatsApp's binary XML) would offer the same `Stanza` values.
 */
export type * from './types.js';
export { encodeStanza, toBytes } from './encode.js';
export { decodeStanza, elementToStanza } from './decode.js';
export {
  DEFAULT_STANZA_LIMITS,
  elementToBytes,
  parseXml,
  serializeXml,
  toXmlSafe,
  type StanzaLimits,
} from './codec.js';
export {
  StanzaInvalidError,
  StanzaLimitError,
  StanzaMalformedError,
  StanzaUnencodableError,
  StanzaUnknownError,
  type StanzaContext,
  type StanzaLimitCode,
} from './errors.js';
export * from './jid.js';
export { XMLNS, IQ_OPS, ENC_VERSION, GROUP_SERVER } from './vocabulary.js';
