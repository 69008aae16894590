import { InteropError } from '../../errors.js';

export type HandshakeErrorCode =
  /** A handshake frame that is not the HandshakeMessage expected at this step. */
  | 'handshake_malformed'
  /** The handshake did not complete within the configured time. */
  | 'handshake_timeout';

/** A failure of the handshake driver itself; Noise, certificate and transport failures keep their own types. */
export class HandshakeError extends InteropError {
  declare readonly code: HandshakeErrorCode;

  constructor(code: HandshakeErrorCode, message: string) {
    super(code, message);
  }
}
