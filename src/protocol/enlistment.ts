/**
 * Enlistment: a third-party account opts in to interoperability by proving it holds its Signal
 * identity key. The proof is an XEdDSA signature, by that identity key, over the *enlistment
 * statement* defined here; the client sends it in `<iq xmlns="interop"><enlist t>` and the gateway
 * verifies it. Both sides build the statement with `enlistmentStatement`, so the bytes cannot drift.
 *
 * The statement names the account and the time, so a proof is useless for another account and, once
 * older than ENLISTMENT_MAX_AGE_SECONDS, useless altogether. A fixed version line keeps a signature
 * over these bytes from ever being valid as anything else the identity key signs (a signed prekey's
 * message is 33 bytes starting with 0x05, which never begins with "interop-enlist-v1\n").
 */
import { InteropError } from '../errors.js';

/** The first line of every statement: what is signed and in which version of the format. */
export const ENLISTMENT_STATEMENT_TAG = 'interop-enlist-v1';

/** A proof whose `t` is further than this from the gateway's clock (either way) is refused. */
export const ENLISTMENT_MAX_AGE_SECONDS = 300;

export const IDENTITY_KEY_LENGTH = 32;

/** Verifies an XEdDSA signature of a Curve25519 (Montgomery) public key: Signal's identity-key signatures. */
export type XEdDSAVerify = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

export type EnlistmentErrorCode = 'enlistment_stale' | 'enlistment_bad_signature' | 'enlistment_malformed';

export class EnlistmentError extends InteropError {
  declare readonly code: EnlistmentErrorCode;

  constructor(code: EnlistmentErrorCode, message: string) {
    super(code, message);
  }
}

/**
 * The bytes an identity key signs to enlist `accountJid` at time `t`:
 * UTF-8 `"interop-enlist-v1\n" + accountJid + "\n" + t + "\n"` followed by the 32 raw identity-key
 * bytes. `accountJid` is the bare account JID (`alice@matrixbridge.interop`, no device); `t` is
 * decimal seconds since the epoch without leading zeros.
 */
export function enlistmentStatement(accountJid: string, t: number, identityKey: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(t) || t < 0) {
    throw new EnlistmentError('enlistment_malformed', `enlistment time must be whole seconds, got ${t}`);
  }
  if (identityKey.length !== IDENTITY_KEY_LENGTH) {
    throw new EnlistmentError(
      'enlistment_malformed',
      `an identity key is ${IDENTITY_KEY_LENGTH} bytes, got ${identityKey.length}`,
    );
  }
  if (accountJid.length === 0 || /[\n@]/.test(accountJid.split('@')[0] ?? '') || !accountJid.includes('@')) {
    throw new EnlistmentError('enlistment_malformed', `"${accountJid}" is not a bare account JID`);
  }
  const head = new TextEncoder().encode(`${ENLISTMENT_STATEMENT_TAG}\n${accountJid}\n${t}\n`);
  const out = new Uint8Array(head.length + identityKey.length);
  out.set(head, 0);
  out.set(identityKey, head.length);
  return out;
}

/**
 * The gateway's check of an `<enlist>`: `t` within ENLISTMENT_MAX_AGE_SECONDS of `now`, then the
 * signature. Throws EnlistmentError (`enlistment_stale`, `enlistment_bad_signature`).
 */
export function verifyEnlistment(
  input: { accountJid: string; t: number; identityKey: Uint8Array; signature: Uint8Array },
  verify: XEdDSAVerify,
  now: number = Math.floor(Date.now() / 1000),
): void {
  if (Math.abs(now - input.t) > ENLISTMENT_MAX_AGE_SECONDS) {
    throw new EnlistmentError(
      'enlistment_stale',
      `the enlistment proof is dated ${input.t}, ${now - input.t} s from the gateway's clock (limit ` +
        `${ENLISTMENT_MAX_AGE_SECONDS} s): sign a fresh statement with the current time`,
    );
  }
  const statement = enlistmentStatement(input.accountJid, input.t, input.identityKey);
  let ok: boolean;
  try {
    ok = input.signature.length === 64 && verify(input.identityKey, statement, input.signature);
  } catch {
    ok = false; // a verifier that throws on a bad point has refused the signature
  }
  if (!ok) {
    throw new EnlistmentError(
      'enlistment_bad_signature',
      `the enlistment signature does not verify with the given identity key for ${input.accountJid}: ` +
        'sign the enlistment statement of this account and time with that identity key (XEdDSA)',
    );
  }
}
