/**
 * Names on the XMPP side: a gatekeeper contact appears as `+<E.164 digits>@<component domain>`
 * (`+4915112345678@wa.example.org`), the gatekeeper's own JID for it (`4915112345678@wa.interop`) is
 * the core's `remote`. A contact that is not a phone-number user (another provider's account,
 * `alice=1f2e@other.interop`) gets its whole JID as an XEP-0106 escaped local part. Phone numbers
 * and remotes themselves are src/bridge/phone.ts's.
 */
import { E164, phoneOfRemote, remoteOfPhone } from '../../src/bridge/phone.js';

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
  const phone = phoneOfRemote(remote);
  return phone !== undefined ? contactJidOfPhone(phone, domain) : `${escapeNode(remote)}@${domain}`;
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
  if (E164.test(local)) return remoteOfPhone(local);
  const unescaped = unescapeNode(local);
  return unescaped.includes('@') ? unescaped : undefined;
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
