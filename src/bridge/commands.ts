/**
 * What the bot commands of every network do, once: each adapter keeps its own command names,
 * syntax and wording (Matrix `login`, XMPP `register`), and calls these for the work. Results are
 * structured, not sentences, so each network says them its own way.
 */
import type { BridgeCore, PuppetReport } from './adapter.js';
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

// -------------------------------------------------------------------------------------------------
// Administration: the same `admin ...` commands on every network, for users at the `admin` level
// (each network checks the level before calling, and refuses everyone else with its own wording).

/** The admin commands, as `help` lists them (the same words on Matrix and XMPP). */
export const ADMIN_HELP: readonly (readonly [usage: string, help: string])[] = [
  ['admin puppets', 'every puppet with its connection state, queue depth and last error'],
  ['admin show <user>', "one user's puppet (a Matrix ID or an XMPP address)"],
  ['admin logout <user>', 'opt a user out: their interop account and keys are deleted'],
  ['admin reconnect <user>', "drop and reopen a user's gateway connection"],
  ['admin broadcast <text>', 'send a notice to every opted-in user'],
];

/** The puppets `admin puppets` lists in one answer; the provisioning API lists them all. */
export const ADMIN_LIST_LIMIT = 50;

/** What an admin command answered: a text, and whether it is a refusal or a usage error. */
export interface AdminReply {
  readonly text: string;
  readonly error?: boolean;
}

/** One puppet on one line: "@a:b (matrix): enlisted, connected, 2 queued, last error: …". */
export function describePuppet(p: PuppetReport): string {
  const state = p.state === 'enlisted' ? 'opted in' : p.state.replace('_', ' ');
  const error = p.lastError ? `, last error at ${p.lastError.at}: ${p.lastError.message}` : '';
  return `${p.localUser} (${p.network}): ${state}, gateway ${p.connection}, ${p.queued} queued${error}`;
}

/**
 * Runs `admin <sub> <arg>`, given what follows "admin" as typed (a broadcast keeps its line breaks).
 * The caller has checked that the sender is an admin. Failures (the gateway unreachable at a
 * logout) are replies too.
 */
export async function runAdminCommand(core: BridgeCore, rest: string): Promise<AdminReply> {
  const m = /^\s*(\S*)\s*([\s\S]*)$/.exec(rest);
  const sub = (m?.[1] ?? '').toLowerCase();
  const arg = (m?.[2] ?? '').trim();
  const usage = (): AdminReply => ({
    text: ['Admin commands:', ...ADMIN_HELP.map(([u, h]) => `${u}: ${h}`)].join('\n'),
    error: sub !== '' && sub !== 'help',
  });
  try {
    switch (sub) {
      case 'puppets': {
        const all = await core.puppets();
        if (all.length === 0) return { text: 'No puppets: nobody has opted in yet.' };
        const shown = all.slice(0, ADMIN_LIST_LIMIT).map((p) => `- ${describePuppet(p)}`);
        const more =
          all.length > ADMIN_LIST_LIMIT
            ? [
                `… and ${all.length - ADMIN_LIST_LIMIT} more (GET /_matrix/provision/v3/admin/puppets lists all)`,
              ]
            : [];
        return { text: [`Puppets (${all.length}):`, ...shown, ...more].join('\n') };
      }
      case 'show':
      case 'logout':
      case 'reconnect': {
        if (arg === '') return { text: `Usage: admin ${sub} <user>`, error: true };
        const [p] = await core.puppets(arg);
        if (!p) return { text: `${arg} has no puppet: they have not opted in.`, error: true };
        if (sub === 'show') return { text: describePuppet(p) };
        if (sub === 'reconnect') {
          await core.reconnect(arg);
          return { text: `Reconnecting ${arg}'s puppet to the gateway.` };
        }
        // The core's own opt-out, not `optOut` (bound to the caller's network): an admin on Matrix
        // may log out an XMPP user.
        await core.optOut(arg);
        return { text: `${arg} is opted out: their interop account and keys are deleted.` };
      }
      case 'broadcast': {
        if (arg === '') return { text: 'Usage: admin broadcast <text>', error: true };
        const n = await core.broadcast(arg);
        return { text: `Sent to ${n} opted-in user${n === 1 ? '' : 's'}.` };
      }
      default:
        return usage();
    }
  } catch (err) {
    return { text: `admin ${sub} failed: ${(err as Error).message}`, error: true };
  }
}
