/**
 * What the bot commands of every network do, once: each adapter keeps its own command names,
 * syntax and wording (Matrix `login`, XMPP `register`), and calls these for the work. Results are
 * structured, not sentences, so each network says them its own way.
 */
import type { BridgeCore } from './adapter.js';
import { formatSafetyNumber, normalisePhone } from './phone.js';

/** A phone number a user typed, resolved to a contact on the interop network. */
export type ContactLookup =
  | { readonly ok: true; readonly phone: string; readonly remote: string }
  | { readonly ok: false; readonly reason: 'not_a_number' }
  | { readonly ok: false; readonly reason: 'not_enlisted' }
  | { readonly ok: false; readonly reason: 'not_reachable'; readonly phone: string };

/**
 * Resolves what the user typed (`+49 151 1234-5678`, `004915112345678`) to a reachable contact:
 * a phone number in international form, the user opted in, and the number on the network.
 */
export async function lookUpContact(core: BridgeCore, user: string, input: string): Promise<ContactLookup> {
  const phone = normalisePhone(input);
  if (phone === undefined) return { ok: false, reason: 'not_a_number' };
  if (!(await core.isEnlisted(user))) return { ok: false, reason: 'not_enlisted' };
  const found = await core.lookup(user, phone);
  if (!found.reachable || found.jid === undefined) return { ok: false, reason: 'not_reachable', phone };
  return { ok: true, phone, remote: found.jid };
}

/** Opts the user in; `already` when the user was opted in before. */
export async function optIn(core: BridgeCore, user: string): Promise<'done' | 'already'> {
  if (await core.isEnlisted(user)) return 'already';
  await core.enlist(user);
  return 'done';
}

/** Opts the user out; `not_enlisted` when there was nothing to opt out of. */
export async function optOut(core: BridgeCore, user: string): Promise<'done' | 'not_enlisted'> {
  if (!(await core.isEnlisted(user))) return 'not_enlisted';
  await core.optOut(user);
  return 'done';
}

/** The safety number with a contact, in groups of five digits. */
export async function safetyNumberWith(core: BridgeCore, user: string, remote: string): Promise<string> {
  return formatSafetyNumber(await core.safetyNumber(user, remote));
}
