/**
 * The gateway's commands, one implementation for both ways of giving them: chat messages to the
 * component JID (`help`, `register`, `unregister`, `status`, `add +number`, `safety +number`,
 * `confirm +number`, `create-group subject: +number ...`), for clients without ad-hoc support, and XEP-0050 ad-hoc commands (register,
 * unregister, status; iq/adhoc.ts). The work is src/bridge/commands.ts's; the names, syntax and
 * wording are XMPP's own.
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { ADMIN_HELP, optIn, optOut, runAdminCommand, safetyNumberWith } from '../../src/bridge/commands.js';
import { normalisePhone } from '../../src/bridge/phone.js';
import type { Contacts } from './contacts.js';
import type { Access } from './context.js';
import { bareJid, contactJidOfPhone } from './jids.js';
import { roomOfGroup } from './rooms.js';
import { NS } from './stanzas.js';
import type { XmppStore } from './store.js';

export interface CommandContext {
  readonly domain: string;
  readonly core: BridgeCore;
  readonly store: Pick<XmppStore, 'contact' | 'contacts'>;
  readonly contacts: Pick<Contacts, 'lookUp'>;
  /** The contact asks the user for a subscription (presence.ts). */
  readonly roster: { ask(user: string, local: string): Promise<void> };
  readonly access: Pick<Access, 'isAdmin'>;
}

export interface CommandReply {
  readonly text: string;
  readonly error?: boolean;
  /** The core's notice tells the user in chat already (a registration, an unregistration). */
  readonly announced?: boolean;
}

export interface CommandInfo {
  readonly name: string;
  readonly usage: string;
  readonly help: string;
  /** Offered as an XEP-0050 ad-hoc command (those that take no argument). */
  readonly adhoc: boolean;
  readonly node: string;
  readonly title: string;
}

const command = (name: string, usage: string, help: string, adhoc: boolean, title: string): CommandInfo => ({
  name,
  usage,
  help,
  adhoc,
  node: adhoc ? name : `${NS.commands}#${name}`,
  title,
});

export const COMMANDS: readonly CommandInfo[] = [
  command('help', 'help', 'this list', false, 'Help'),
  command('register', 'register', 'opt in: creates your interop account', true, 'Register'),
  command(
    'unregister',
    'unregister',
    'opt out: deletes your interop account and its keys',
    true,
    'Unregister',
  ),
  command('status', 'status', 'your registration and connection', true, 'Status'),
  command('add', 'add +4915112345678', 'adds a WhatsApp contact by phone number', false, 'Add a contact'),
  command(
    'safety',
    'safety +4915112345678',
    'shows the safety number with a contact',
    false,
    'Safety number',
  ),
  command('confirm', 'confirm +4915112345678', "accepts a contact's changed security code", false, 'Confirm'),
  command(
    'create-group',
    'create-group Lunch crew: +4915112345678 +4915122223333',
    'makes a WhatsApp group with these contacts, and invites you to its room',
    false,
    'Create a group',
  ),
];

/**
 * The `admin` commands as XEP-0050 ad-hoc commands, for `xmpp.admins` only: `admin-puppets` completes
 * at once; the others ask for their argument in a data form (`field`) first.
 */
export interface AdminAdhoc {
  readonly node: string;
  readonly title: string;
  /** The admin sub-command it runs. */
  readonly sub: string;
  readonly field?: {
    readonly var: string;
    readonly type: 'jid-single' | 'text-multi';
    readonly label: string;
  };
}

const userField = {
  var: 'user',
  type: 'jid-single',
  label: 'The user (a Matrix ID or an XMPP address)',
} as const;

export const ADMIN_ADHOC: readonly AdminAdhoc[] = [
  { node: 'admin-puppets', title: 'Admin: list puppets', sub: 'puppets' },
  { node: 'admin-show', title: 'Admin: show a user', sub: 'show', field: userField },
  { node: 'admin-logout', title: 'Admin: log a user out', sub: 'logout', field: userField },
  { node: 'admin-reconnect', title: 'Admin: reconnect a puppet', sub: 'reconnect', field: userField },
  {
    node: 'admin-broadcast',
    title: 'Admin: notice to every user',
    sub: 'broadcast',
    field: { var: 'text', type: 'text-multi', label: 'The notice' },
  },
];

/** The refusal every non-admin gets for an `admin` command. */
export const NOT_ADMIN = "The admin commands are for the bridge's administrators (xmpp.admins) only.";

function helpText(domain: string, admin: boolean): string {
  const lines = COMMANDS.map((c) => `${c.usage}: ${c.help}`);
  const admins = admin ? ['Admin commands:', ...ADMIN_HELP.map(([u, h]) => `${u}: ${h}`)] : [];
  return [`Commands for ${domain}:`, ...lines, ...admins].join('\n');
}

/**
 * Adds a contact by phone number (the `add` command, and the provisioning API's create_dm): looks
 * the number up, keeps it as the user's contact and has the contact ask for a subscription.
 */
export async function addContact(
  ctx: Pick<CommandContext, 'store' | 'contacts' | 'roster' | 'domain'>,
  user: string,
  input: string,
): Promise<{ phone: string; remote: string; jid: string; existed: boolean }> {
  const { phone, remote } = await ctx.contacts.lookUp(user, input);
  const c = await ctx.store.contact(user, phone);
  if (c && !c.subFrom) await ctx.roster.ask(user, phone);
  return { phone, remote, jid: contactJidOfPhone(phone, ctx.domain), existed: c?.subFrom === true };
}

const NOT_REGISTERED: CommandReply = {
  text: 'You are not registered: send "register" first.',
  error: true,
};

/** Runs a command for `user` (a bare JID); a failure is a reply too. */
export async function runCommand(
  ctx: CommandContext,
  user: string,
  name: string,
  args: readonly string[],
): Promise<CommandReply> {
  const { core } = ctx;
  const arg = args.join(' ');
  try {
    switch (name) {
      case 'help':
      case '?':
        return { text: helpText(ctx.domain, ctx.access.isAdmin(user)) };
      case 'admin':
        if (!ctx.access.isAdmin(user)) return { text: NOT_ADMIN, error: true };
        return await runAdminCommand(core, arg);
      case 'register':
        if ((await optIn(core, user)) === 'already') return { text: 'You are already registered.' };
        // The core's 'enlisted' notice tells the user in chat; the ad-hoc reply needs its own text.
        return { text: 'You are registered.', announced: true };
      case 'unregister':
        if ((await optOut(core, user)) === 'not_enlisted') return { text: 'You are not registered.' };
        return { text: 'You are unregistered.', announced: true };
      case 'status': {
        const s = await core.status(user);
        if (!s.enlisted) return { text: 'Not registered. Send "register" to opt in.' };
        const contacts = (await ctx.store.contacts(user)).length;
        return {
          text: `Registered as ${user}. Gateway connection: ${s.connection}. Messages waiting to be sent: ${s.queued}. Contacts: ${contacts}.`,
        };
      }
      case 'add': {
        if (!(await core.isEnlisted(user))) return NOT_REGISTERED;
        if (arg === '') return { text: 'Usage: add +4915112345678', error: true };
        const { jid } = await addContact(ctx, user, arg);
        return { text: `${jid} is on WhatsApp: accept its contact request to see it in your contact list.` };
      }
      case 'safety':
      case 'confirm': {
        if (!(await core.isEnlisted(user))) return NOT_REGISTERED;
        if (arg === '') return { text: `Usage: ${name} +4915112345678`, error: true };
        const phone = normalisePhone(arg);
        if (!phone) return { text: `"${arg}" is not a phone number in international format.`, error: true };
        const remote =
          (await ctx.store.contact(user, phone))?.remote ?? (await ctx.contacts.lookUp(user, phone)).remote;
        if (name === 'confirm') {
          await core.confirmIdentity(user, remote);
          return { text: `Confirmed the security code of ${arg}: messages flow again.` };
        }
        return { text: `Safety number with ${arg}:\n${await safetyNumberWith(core, user, remote)}` };
      }
      case 'create-group': {
        if (!(await core.isEnlisted(user))) return NOT_REGISTERED;
        const colon = arg.lastIndexOf(':');
        const subject = colon < 0 ? '' : arg.slice(0, colon).trim();
        const numbers =
          colon < 0
            ? []
            : arg
                .slice(colon + 1)
                .split(/[\s,]+/)
                .filter(Boolean);
        if (subject === '' || numbers.length === 0 || !core.createGroup) {
          return { text: 'Usage: create-group Lunch crew: +4915112345678 +4915122223333', error: true };
        }
        const members: string[] = [];
        for (const n of numbers) members.push((await ctx.contacts.lookUp(user, n)).remote);
        const group = await core.createGroup(user, subject, members);
        return {
          text: `Made the group "${group.subject}" with ${numbers.join(', ')}: accept the invitation to ${roomOfGroup(group.group, ctx.domain)} to join it.`,
        };
      }
      default:
        return { text: `Unknown command "${name}". Send "help" for the list.`, error: true };
    }
  } catch (err) {
    return { text: `${name} failed: ${(err as Error).message}`, error: true };
  }
}

/** A chat message to the component JID, from a full JID: runs it and answers in chat. */
export async function answerChatCommand(
  ctx: CommandContext & { say(to: string, text: string): void },
  from: string,
  body: string,
): Promise<void> {
  const [name = '', ...words] = body.trim().split(/\s+/);
  // `admin broadcast` keeps the text as typed (line breaks too).
  const args = name.toLowerCase() === 'admin' ? [body.trim().slice(name.length)] : words;
  const reply = await runCommand(ctx, bareJid(from), name.toLowerCase(), args);
  if (!reply.announced) ctx.say(from, reply.text);
}
