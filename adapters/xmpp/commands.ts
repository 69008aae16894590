/**
 * The gateway's commands, one implementation for both ways of giving them: chat messages to the
 * component JID (`help`, `register`, `unregister`, `status`, `add +number`, `safety +number`,
 * `confirm +number`), for clients without ad-hoc support, and XEP-0050 ad-hoc commands (register,
 * unregister, status).
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { formatSafetyNumber } from '../../src/bridge/phone.js';
import { NS } from './stanzas.js';

export interface CommandContext {
  readonly user: string;
  readonly domain: string;
  readonly core: BridgeCore;
  registered(): boolean;
  contacts(): number;
  /** Looks the number up and sends the contact request; resolves with the contact JID. */
  addContact(phone: string): Promise<string>;
  /** The core's remote for a phone number, looked up if needed; undefined if not a number. */
  remoteOf(phone: string): Promise<string | undefined>;
}

export interface CommandReply {
  readonly text: string;
  readonly error?: boolean;
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
];

function helpText(domain: string): string {
  const lines = COMMANDS.map((c) => `${c.usage}: ${c.help}`);
  return [`Commands for ${domain}:`, ...lines].join('\n');
}

const NOT_REGISTERED: CommandReply = {
  text: 'You are not registered: send "register" first.',
  error: true,
};

export async function runCommand(
  ctx: CommandContext,
  name: string,
  args: readonly string[],
): Promise<CommandReply> {
  const arg = args.join(' ');
  try {
    switch (name) {
      case 'help':
      case '?':
        return { text: helpText(ctx.domain) };
      case 'register':
        if (ctx.registered()) return { text: 'You are already registered.' };
        await ctx.core.enlist(ctx.user);
        // The core's 'enlisted' notice tells the user in chat; the ad-hoc reply needs its own text.
        return { text: 'You are registered.' };
      case 'unregister':
        if (!ctx.registered()) return { text: 'You are not registered.' };
        await ctx.core.optOut(ctx.user);
        return { text: 'You are unregistered.' };
      case 'status': {
        const s = ctx.core.status(ctx.user);
        if (!s.enlisted) return { text: 'Not registered. Send "register" to opt in.' };
        return {
          text: `Registered as ${ctx.user}. Gateway connection: ${s.connection}. Messages waiting to be sent: ${s.queued}. Contacts: ${ctx.contacts()}.`,
        };
      }
      case 'add': {
        if (!ctx.registered()) return NOT_REGISTERED;
        if (arg === '') return { text: 'Usage: add +4915112345678', error: true };
        const jid = await ctx.addContact(arg);
        return { text: `${jid} is on WhatsApp: accept its contact request to see it in your contact list.` };
      }
      case 'safety':
      case 'confirm': {
        if (!ctx.registered()) return NOT_REGISTERED;
        if (arg === '') return { text: `Usage: ${name} +4915112345678`, error: true };
        const remote = await ctx.remoteOf(arg);
        if (!remote) return { text: `"${arg}" is not a phone number in international format.`, error: true };
        if (name === 'confirm') {
          await ctx.core.confirmIdentity(ctx.user, remote);
          return { text: `Confirmed the security code of ${arg}: messages flow again.` };
        }
        const n = await ctx.core.safetyNumber(ctx.user, remote);
        return { text: `Safety number with ${arg}:\n${formatSafetyNumber(n)}` };
      }
      default:
        return { text: `Unknown command "${name}". Send "help" for the list.`, error: true };
    }
  } catch (err) {
    return { text: `${name} failed: ${(err as Error).message}`, error: true };
  }
}
