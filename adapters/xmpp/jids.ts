/**
 * Names on the XMPP side: a gatekeeper contact appears as `+<E.164 digits>@<component domain>`
 * (`+4915112345678@wa.example.org`), the gatekeeper's own JID for it (`4915112345678@wa.interop`) is
 * the core's `remote`. A contact that is not a phone-number user (another provider's account,
 * `alice=1f2e@other.interop`) gets its whole JID as an XEP-0106 escaped local part.
 */
import { NATIVE_REMOTE_SERVER as NATIVE_SERVER } from '../../src/bridge/phone.js';

/** E.164: a plus, a non-zero first digit, 7 to 15 digits in all. */
const E164 = /^\+[1-9]\d{6,14}$/;

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

/** The bare part of a JID (drops the resource). */
export function bareJid(jid: string): string {
  const slash = jid.indexOf('/');
  return slash < 0 ? jid : jid.slice(0, slash);
}

/** The resource of a full JID, or undefined. */
export function resourceOf(jid: string): string | undefined {
  const slash = jid.indexOf('/');
  return slash < 0 ? undefined : jid.slice(slash + 1);
}

export function localPartOf(jid: string): string | undefined {
  const bare = bareJid(jid);
  const at = bare.indexOf('@');
  return at < 0 ? undefined : bare.slice(0, at);
}

export function domainOf(jid: string): string {
  const bare = bareJid(jid);
  const at = bare.indexOf('@');
  return at < 0 ? bare : bare.slice(at + 1);
}

/** The contact JID of a phone number: `+4915112345678@wa.example.org`. */
export function contactJidOfPhone(phone: string, domain: string): string {
  return `${phone}@${domain}`;
}

/** The contact JID under which the core's remote (a gatekeeper user JID) appears. */
export function contactJidOfRemote(remote: string, domain: string): string {
  const at = remote.indexOf('@');
  const user = remote.slice(0, at);
  if (at > 0 && /^[1-9]\d{6,14}$/.test(user)) return `+${user}@${domain}`;
  return `${escapeNode(remote)}@${domain}`;
}

/** The phone number a contact JID names, if it is one (`+4915112345678@...`). */
export function phoneOfContact(contactJid: string): string | undefined {
  const local = localPartOf(contactJid);
  return local !== undefined && E164.test(local) ? local : undefined;
}

/**
 * The core's remote for a contact JID when no look-up is at hand: a phone number maps to the
 * gatekeeper's native JID, an escaped JID to itself.
 */
export function remoteOfContact(contactJid: string): string | undefined {
  const local = localPartOf(contactJid);
  if (local === undefined) return undefined;
  if (E164.test(local)) return `${local.slice(1)}@${NATIVE_SERVER}`;
  const unescaped = unescapeNode(local);
  return unescaped.includes('@') ? unescaped : undefined;
}

/** The phone number of a remote, when it is a phone-number user. */
export function phoneOfRemote(remote: string): string | undefined {
  const user = remote.slice(0, Math.max(0, remote.indexOf('@')));
  return /^[1-9]\d{6,14}$/.test(user) ? `+${user}` : undefined;
}

// XEP-0106 JID escaping, for the characters a gatekeeper JID can contain.
const ESCAPES: readonly [string, string][] = [
  ['\\', '\\5c'],
  [' ', '\\20'],
  ['"', '\\22'],
  ['&', '\\26'],
  ["'", '\\27'],
  ['/', '\\2f'],
  [':', '\\3a'],
  ['<', '\\3c'],
  ['>', '\\3e'],
  ['@', '\\40'],
];

export function escapeNode(s: string): string {
  let out = '';
  for (const ch of s) out += ESCAPES.find(([c]) => c === ch)?.[1] ?? ch;
  return out;
}

export function unescapeNode(s: string): string {
  return s.replace(/\\(5c|20|22|26|27|2f|3a|3c|3e|40)/g, (_m, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}
