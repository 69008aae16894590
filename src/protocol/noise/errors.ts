import { InteropError } from '../../errors.js';

/**
 * Every failure of the Noise layer. The code is stable (logs, metrics, tests); the message says
 * what to do. A handshake that raised one of these must be abandoned: its state is poisoned.
 */
export type NoiseErrorCode =
  /** An AEAD tag did not verify: tampered, truncated, reordered or wrong-key ciphertext. */
  | 'noise_decrypt_failed'
  /** A CipherState used its last nonce: rekey or reconnect before this happens. */
  | 'noise_nonce_exhausted'
  /** A protocol name this implementation does not speak (pattern, DH, cipher or hash). */
  | 'noise_unsupported_protocol'
  /** A key of the wrong length, or a required key that was not supplied. */
  | 'noise_invalid_key'
  /** The DH failed: the peer sent a low-order or otherwise unusable public key. */
  | 'noise_dh_failed'
  /** A handshake message shorter than the pattern requires. */
  | 'noise_malformed_message'
  /** A handshake message (or a payload that would make one) over 65,535 bytes. */
  | 'noise_message_too_large'
  /** A call out of turn: writing when it is the peer's turn, after completion, or after a failure. */
  | 'noise_invalid_state';

export class NoiseError extends InteropError {
  declare readonly code: NoiseErrorCode;

  constructor(code: NoiseErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
