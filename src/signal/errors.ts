import { InteropError } from '../errors.js';

/**
 * Every failure of the Signal layer. The code is stable (logs, metrics, tests, retry receipts);
 * the message says what to do. A failed decrypt or encrypt never changes the stored session.
 */
export type SignalErrorCode =
  /** No session with that device: fetch its prekey bundle and call processBundle first. */
  | 'signal_no_session'
  /** The message did not authenticate or decrypt against any session: ask the sender to retry. */
  | 'signal_decrypt_failed'
  /** Not a Signal v3 message at all (wrong version byte, unparseable protobuf, wrong key sizes). */
  | 'signal_invalid_message'
  /** The message's counter was already used: a replay or a duplicate delivery; drop it. */
  | 'signal_duplicate_message'
  /** A prekey message names a signed prekey this puppet no longer has: the sender used a stale bundle. */
  | 'signal_unknown_prekey'
  /** The remote identity changed and the policy blocks sending until the user confirms it. */
  | 'signal_identity_changed'
  /** A prekey bundle with bad key sizes or a signed prekey signature that does not verify. */
  | 'signal_bad_bundle'
  /** A malformed remote address (expected "user.device"). */
  | 'signal_bad_address'
  /** The puppet's own identity (key pair, registration id, signed prekey) is missing from the store. */
  | 'signal_identity_missing'
  /** A key of the wrong size handed to the curve (a caller bug or a corrupt store). */
  | 'signal_invalid_key'
  /** A stored session record cannot be read: delete the session and fetch a fresh bundle. */
  | 'signal_session_corrupt'
  /** A networked backend was read without `prepare()` first (a caller bug: the state is not loaded). */
  | 'signal_not_prepared'
  /** Encryption failed for a reason other than a missing session or a blocked identity (a bug). */
  | 'signal_encrypt_failed'
  /** No sender key for that group and sender (or not for the message's chain): ask for its distribution message. */
  | 'signal_no_sender_key'
  /** A group message whose XEdDSA signature does not verify under the sender's signing key: drop it. */
  | 'signal_bad_signature'
  /** A group message more than 25,000 iterations ahead of its chain (libsignal's limit): drop it. */
  | 'signal_message_too_far_ahead'
  /** A sender key chain at the last uint32 iteration: rotate the sender key (a new distribution). */
  | 'signal_sender_chain_exhausted'
  /** A stored sender key record cannot be read: delete it; the sender's next distribution restores it. */
  | 'signal_sender_key_corrupt'
  /** A group distribution id that is not a UUID (a caller bug). */
  | 'signal_bad_distribution_id';

export class SignalError extends InteropError {
  declare readonly code: SignalErrorCode;

  constructor(code: SignalErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
