/**
 * The libsignal library throws plain Errors whose only meaning is in their message text (and one
 * error name). They are read here, in one place, into SignalErrors with a stable code and advice, so
 * a change in the library's wording touches this file only. Our own ratchet already throws
 * SignalErrors; only an unusable key gets the meaning of the operation that met it.
 */
import { SignalError } from './errors.js';

/** What the session manager was doing when the library threw: the same text reads differently. */
export type LibraryOperation = 'encrypt' | 'decrypt' | 'bundle';

/** Turns the library's plain Errors into typed ones that say what to do. */
export function typedError(err: unknown, op: LibraryOperation, address: string): SignalError {
  if (err instanceof SignalError) {
    if (op === 'decrypt' && err.code === 'signal_invalid_key') {
      return new SignalError(
        'signal_invalid_message',
        `a message from ${address} carries an unusable key: drop it`,
        {
          cause: err,
        },
      );
    }
    if (op === 'bundle' && err.code === 'signal_invalid_key') {
      return new SignalError('signal_bad_bundle', `the prekey bundle of ${address} carries an unusable key`, {
        cause: err,
      });
    }
    return err;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  const m = e.message;
  const make = (code: ConstructorParameters<typeof SignalError>[0], message: string) =>
    new SignalError(code, message, { cause: e });
  if (e.name === 'MessageCounterError') {
    return make(
      'signal_duplicate_message',
      `a message from ${address} reuses a counter already decrypted: a replay or duplicate; drop it`,
    );
  }
  if (/No record for|No session/.test(m)) {
    return make(
      'signal_no_session',
      `no session with ${address}: fetch its prekey bundle and call processBundle`,
    );
  }
  if (/Missing Signed PreKey/.test(m)) {
    return make(
      'signal_unknown_prekey',
      `a prekey message from ${address} names a signed prekey this puppet no longer has: ask the sender to fetch a fresh bundle`,
    );
  }
  if (/Identity key changed|Unknown identity key/.test(m)) {
    return make(
      'signal_identity_changed',
      `the identity key of ${address} changed: confirm it before sending`,
    );
  }
  if (/Incompatible version/.test(m)) {
    return make('signal_invalid_message', `a message from ${address} has an unsupported version: drop it`);
  }
  if (op === 'bundle') {
    return make(
      'signal_bad_bundle',
      /Invalid signature/.test(m)
        ? `the signed prekey of ${address} is not signed by its identity key: refuse the bundle and fetch it again later`
        : `the prekey bundle of ${address} is unusable (${m}): fetch it again`,
    );
  }
  if (op === 'encrypt') return make('signal_encrypt_failed', `encrypting to ${address} failed (${m})`);
  if (/messages into the future/.test(m)) {
    return make(
      'signal_decrypt_failed',
      `a message from ${address} skips more than 2000 messages: ask the sender to retry`,
    );
  }
  return make(
    'signal_decrypt_failed',
    `a message from ${address} did not decrypt (${m}): send a retry receipt so the sender re-encrypts it`,
  );
}
