/** The bridge core's failures, each with a stable code that says what to do. */
import { InteropError } from '../errors.js';

export type BridgeErrorCode =
  | 'bridge_not_enlisted'
  | 'bridge_already_enlisted'
  | 'bridge_bad_remote'
  | 'bridge_bad_local_user'
  | 'bridge_enlist_failed'
  | 'bridge_opt_out_failed'
  | 'bridge_not_connected'
  | 'bridge_unknown_adapter'
  | 'bridge_no_identity'
  | 'bridge_text_too_long'
  | 'bridge_group_refused';

export class BridgeError extends InteropError {
  declare readonly code: BridgeErrorCode;

  constructor(code: BridgeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * Why an outgoing message cannot be sent, in words for the local user (the adapter shows it).
 * Permanent: the outbox entry is failed and never retried.
 */
export class UndeliverableError extends InteropError {
  constructor(
    code: string,
    readonly reason: string,
  ) {
    super(code, reason);
  }
}
