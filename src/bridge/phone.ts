/**
 * Phone numbers and remote ids, the one place both adapters learn them from. A gatekeeper contact
 * is a *remote*: its user JID on the interop network (`4915112345678@wa.interop`). Users type phone
 * numbers; adapters show them as ghost ids or contact JIDs of their own.
 */
import { NATIVE_SERVER } from '../protocol/stanza/jid.js';

/** The interop server of the gatekeeper's own users (the part after `@` in a native remote). */
export const NATIVE_REMOTE_SERVER = NATIVE_SERVER;

/** E.164 without the plus: a non-zero first digit, 7 to 15 digits in all. */
export const E164_DIGITS = /^[1-9]\d{6,14}$/;
/** E.164 as written: `+` and 7 to 15 digits, the first non-zero. */
export const E164 = /^\+[1-9]\d{6,14}$/;

/** Whether `digits` (no plus) can be an E.164 number. */
export function isE164Digits(digits: string): boolean {
  return E164_DIGITS.test(digits);
}

/** `+49 151 1234-5678`, `0049...`, `(+49) 151...` -> `+4915112345678`; undefined if not a number. */
export function normalisePhone(input: string): string | undefined {
  const trimmed = input.trim();
  if (!/^[+0-9 ()./-]+$/.test(trimmed)) return undefined;
  let digits = trimmed.replace(/[^0-9+]/g, '');
  if (digits.startsWith('00')) digits = `+${digits.slice(2)}`;
  if (!digits.startsWith('+')) digits = `+${digits}`;
  if (digits.indexOf('+', 1) !== -1) return undefined;
  return E164.test(digits) ? digits : undefined;
}

/** The remote of a gatekeeper user by phone number: `+4915112345678` -> `4915112345678@wa.interop`. */
export function remoteOfPhone(phone: string): string {
  return `${phone.startsWith('+') ? phone.slice(1) : phone}@${NATIVE_REMOTE_SERVER}`;
}

/** The phone number of a remote, when it is a phone-number user: `+4915112345678`. */
export function phoneOfRemote(remote: string): string | undefined {
  const user = remote.slice(0, Math.max(0, remote.indexOf('@')));
  return E164_DIGITS.test(user) ? `+${user}` : undefined;
}

/** A safety number (60 digits) in groups of five, as the gatekeeper's apps show it. */
export function formatSafetyNumber(n: string): string {
  return n.replace(/\s+/g, '').replace(/(\d{5})(?=\d)/g, '$1 ');
}
