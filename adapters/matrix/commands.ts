/**
 * The bridge bot's commands, in a user's management room (a direct chat with the bot): help, login
 * (after saying what opting in means, and a confirmation), logout, start-chat, create-group, list,
 * status, safety, confirm, double-puppet, encryption, ping. Users the permissions do not allow get
 * a polite refusal. The names, syntax and wording are Matrix's own; the work is
 * src/bridge/commands.ts, shared with the XMPP adapter.
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import {
  ADMIN_HELP,
  lookUpContact,
  optIn,
  optOut,
  runAdminCommand,
  safetyNumberWith,
} from '../../src/bridge/commands.js';
import { normalisePhone } from '../../src/bridge/phone.js';
import { groupsOfFour, type BotCryptoInfo } from './crypto/verification.js';
import type { DoublePuppets } from './double-puppet.js';
import type { GroupPortals } from './group-portals.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { ManagementRooms } from './management-room.js';
import type { Portals } from './portals.js';
import type { MatrixRoom, MatrixStore } from './store.js';

const HELP = [
  'Commands:',
  '- `login`: opt in to interoperability (you will be asked to confirm)',
  '- `logout`: opt out; your interop account and keys are deleted',
  '- `start-chat +<number>`: open a chat with a WhatsApp user',
  '- `create-group <name> +<number> +<number>...`: make a WhatsApp group with these users, and its room',
  '- `list`: your bridged chats',
  '- `status`: your interop account and its connection',
  '- `safety +<number>`: the safety number of a contact, to compare with them',
  "- `confirm +<number>`: accept a contact's changed security code",
  '- `double-puppet on|off`: what you send from your other WhatsApp devices appears as sent by you',
  "- `encryption`: whether the bridge encrypts, and the bot's keys to verify it",
  '- `ping`: check that the bridge answers',
  '- `help`: this list',
].join('\n');

const OPT_IN = [
  'Opting in creates an interoperability account for you at the gatekeeper (WhatsApp):',
  "- this bridge makes encryption keys for you and registers your Matrix ID with WhatsApp's interop gateway;",
  '- WhatsApp users who know your address can then message you, and you can message them by phone number;',
  "- messages are end-to-end encrypted between this bridge and their phones: the bridge (run by your homeserver's operator) can read them;",
  '- WhatsApp sees who talks to whom and when, as for its own users.',
  'Reply `login confirm` to opt in, or ignore this to stay out.',
].join('\n');

/** The bot's greeting in a new management room. */
export function welcome(): string {
  return `Hello! I connect Matrix with WhatsApp through interoperability.\n${HELP}`;
}

export interface CommandContext {
  readonly core: BridgeCore;
  readonly ids: Pick<MatrixIds, 'permissionOf' | 'phoneOf' | 'serverName'>;
  readonly store: Pick<MatrixStore, 'portalOf' | 'portalsOf'>;
  readonly portals: Pick<Portals, 'ensure'>;
  readonly groups: Pick<GroupPortals, 'ensure'>;
  readonly rooms: Pick<ManagementRooms, 'notice'>;
  readonly doublePuppets: Pick<DoublePuppets, 'enable' | 'disable'>;
  /** `matrix.encryption`, and with `allow` what the bot's device says of itself and of a user. */
  readonly encryption?: {
    readonly allow: boolean;
    readonly default: boolean;
    readonly describe?: (userId: string) => Promise<BotCryptoInfo>;
  };
}

type Reply = (text: string) => Promise<string>;

/**
 * Opens (or finds) the user's portal with a contact: what `start-chat` does once the number is
 * resolved, and what the provisioning API's create_dm does.
 */
export async function openChat(
  c: Pick<CommandContext, 'store' | 'portals'>,
  user: string,
  remote: string,
): Promise<{ roomId: string; existed: boolean }> {
  const existed = (await c.store.portalOf(user, remote)) !== undefined;
  return { roomId: await c.portals.ensure(user, remote), existed };
}

export class CommandHandler {
  /** Users who asked to log in and were told what it means (a confirmation is due). */
  readonly #pendingLogin = new Set<string>();

  constructor(private readonly c: CommandContext) {}

  /** Answers one command (an m.text message) in the sender's management room. */
  async handle(room: MatrixRoom, sender: string, body: string, eventId: string): Promise<void> {
    const reply: Reply = (text) => this.c.rooms.notice(room.roomId, text, eventId);
    if (this.c.ids.permissionOf(sender) === 'none') {
      await reply(
        `Sorry, ${sender}: this bridge is not open to your account. If you think it should be, ask the operator of ${this.c.ids.serverName}.`,
      );
      return;
    }
    const words = body
      .trim()
      .replace(/^!\S*\s+/, '')
      .split(/\s+/);
    const command = (words[0] ?? '').toLowerCase();
    const arg = words.slice(1).join(' ');
    try {
      switch (command) {
        case '':
        case 'help':
          await reply(
            this.c.ids.permissionOf(sender) === 'admin'
              ? [HELP, 'Admin commands:', ...ADMIN_HELP.map(([u, h]) => `- \`${u}\`: ${h}`)].join('\n')
              : HELP,
          );
          return;
        case 'admin': {
          if (this.c.ids.permissionOf(sender) !== 'admin') {
            await reply(
              `Sorry, ${sender}: \`admin\` commands are for the bridge's administrators (permission level admin).`,
            );
            return;
          }
          const rest = body
            .trim()
            .replace(/^!\S*\s+/, '')
            .replace(/^\S+/, '');
          await reply((await runAdminCommand(this.c.core, rest)).text);
          return;
        }
        case 'ping':
          await reply('pong: the bridge is running.');
          return;
        case 'login':
          await this.#login(sender, arg.toLowerCase(), reply);
          return;
        case 'logout':
          await this.#logout(sender, reply);
          return;
        case 'start-chat':
          await this.#startChat(sender, arg, reply);
          return;
        case 'create-group':
          await this.#createGroup(sender, arg, reply);
          return;
        case 'list':
          await this.#list(sender, reply);
          return;
        case 'status':
          await this.#status(sender, reply);
          return;
        case 'safety':
          await this.#safety(sender, arg, reply);
          return;
        case 'confirm':
          await this.#confirm(sender, arg, reply);
          return;
        case 'encryption':
          await reply(await this.#encryption(sender));
          return;
        case 'double-puppet': {
          const on = arg.toLowerCase();
          if (on !== 'on' && on !== 'off') {
            await reply('Send `double-puppet on` or `double-puppet off`.');
            return;
          }
          await reply(
            on === 'on'
              ? await this.c.doublePuppets.enable(sender)
              : await this.c.doublePuppets.disable(sender),
          );
          return;
        }
        default:
          await reply(`Unknown command "${command}". Send \`help\` for the list.`);
      }
    } catch (err) {
      await reply(`That did not work: ${(err as Error).message}`);
    }
  }

  /** What is true of the bridge's encryption: the setting, the bot's keys, the user's verification. */
  async #encryption(sender: string): Promise<string> {
    const e = this.c.encryption;
    if (e?.allow !== true || e.describe === undefined) {
      return 'The bridge does not take part in Matrix end-to-end encryption (matrix.encryption.allow is off): it cannot read encrypted rooms, and creates none.';
    }
    const info = await e.describe(sender);
    return [
      e.default
        ? 'The bridge takes part in end-to-end encryption and creates new portals encrypted.'
        : 'The bridge takes part in end-to-end encryption (in rooms you encrypt); it creates new portals unencrypted.',
      `The bot's session: ${info.deviceId}, key ${groupsOfFour(info.ed25519)}`,
      info.masterKey === undefined
        ? 'The bot has no cross-signing identity yet.'
        : `The bot's cross-signing master key: ${info.masterKey}`,
      info.verifiedSessions.length > 0
        ? `You verified the bot with emojis from your session ${info.verifiedSessions.join(', ')}.`
        : "You have not verified the bot with emojis: choose Verify on the bot's profile in your client, and compare the emojis the bot posts here.",
    ].join('\n');
  }

  async #login(sender: string, arg: string, reply: Reply): Promise<void> {
    if (await this.c.core.isEnlisted(sender)) {
      await reply('You are already opted in. Send `status` to see your connection.');
      return;
    }
    if (arg !== 'confirm' && arg !== 'yes') {
      this.#pendingLogin.add(sender);
      await reply(OPT_IN);
      return;
    }
    this.#pendingLogin.delete(sender);
    await reply('Opting you in: creating your keys and enlisting at the gateway…');
    // The core tells the adapter when it is done (notify enlisted), which posts the welcome.
    await optIn(this.c.core, sender);
  }

  async #logout(sender: string, reply: Reply): Promise<void> {
    if (!(await this.c.core.status(sender)).enlisted) {
      await reply('You are not opted in: there is nothing to log out of.');
      return;
    }
    await reply('Opting you out: your interop account, keys and queued messages are being deleted…');
    await optOut(this.c.core, sender);
  }

  /** The contact the user named by phone number, or undefined after telling them why not. */
  async #contact(sender: string, arg: string, reply: Reply): Promise<string | undefined> {
    const found = await lookUpContact(this.c.core, sender, arg);
    if (found.ok) return found.remote;
    switch (found.reason) {
      case 'not_a_number':
        await reply(`"${arg}" is not a phone number: give it with the country code, such as +4915112345678.`);
        return undefined;
      case 'not_enlisted':
        await reply('You have not opted in yet: send `login` first.');
        return undefined;
      case 'not_reachable':
        await reply(
          `${found.phone} cannot be reached through interoperability (not on WhatsApp, or not accepting interop chats).`,
        );
        return undefined;
    }
  }

  async #startChat(sender: string, arg: string, reply: Reply): Promise<void> {
    const remote = await this.#contact(sender, arg, reply);
    if (remote === undefined) return;
    const { roomId, existed } = await openChat(this.c, sender, remote);
    const phone = this.c.ids.phoneOf(remote);
    await reply(
      existed
        ? `You already have a chat with ${phone}: ${roomId}`
        : `Started a chat with ${phone}: accept the invitation to ${roomId}.`,
    );
  }

  /**
   * `create-group Lunch crew +4915112345678 +4915122223333`: the numbers at the end are the members,
   * the words before them the group's subject (a colon after it, as XMPP's command has it, is fine).
   * The user is the group's admin; its room is made at once, and the reply names it.
   */
  async #createGroup(sender: string, arg: string, reply: Reply): Promise<void> {
    const words = arg.split(/\s+/).filter(Boolean);
    let first = words.length;
    while (
      first > 0 &&
      /^[+(0-9]/.test(words[first - 1]!) &&
      normalisePhone(words[first - 1]!) !== undefined
    ) {
      first--;
    }
    const subject = words.slice(0, first).join(' ').replace(/:$/, '').trim();
    const numbers = words.slice(first);
    if (subject === '' || numbers.length === 0 || this.c.core.createGroup === undefined) {
      await reply(
        'Send `create-group <name> +<number> +<number>...`, such as `create-group Lunch crew +4915112345678`.',
      );
      return;
    }
    const members: string[] = [];
    const phones: string[] = [];
    for (const n of numbers) {
      const remote = await this.#contact(sender, n, reply);
      if (remote === undefined) return;
      members.push(remote);
      phones.push(this.c.ids.phoneOf(remote));
    }
    const group = await this.c.core.createGroup(sender, subject, members);
    const roomId = await this.c.groups.ensure(sender, group);
    await reply(
      `Made the group "${group.subject}" with ${phones.join(', ')}: accept the invitation to ${roomId}.`,
    );
  }

  async #list(sender: string, reply: Reply): Promise<void> {
    const portals = await this.c.store.portalsOf(sender);
    if (portals.length === 0) {
      await reply('You have no bridged chats yet. Send `start-chat +<number>` to open one.');
      return;
    }
    const lines: string[] = [];
    for (const p of portals) {
      const remote = p.remoteJid ?? '?';
      const name = isGroupRemote(remote)
        ? `the group "${(await this.c.core.group?.(sender, remote))?.subject ?? remote}"`
        : this.c.ids.phoneOf(remote);
      lines.push(`- ${name}: ${p.roomId}`);
    }
    await reply(['Your chats:', ...lines].join('\n'));
  }

  async #status(sender: string, reply: Reply): Promise<void> {
    const s = await this.c.core.status(sender);
    if (!s.enlisted) {
      await reply(
        this.#pendingLogin.has(sender)
          ? 'You are not opted in yet: reply `login confirm` to opt in.'
          : 'You are not opted in. Send `login` to opt in.',
      );
      return;
    }
    await reply(`Opted in. Gateway connection: ${s.connection}. Messages waiting to be sent: ${s.queued}.`);
  }

  async #safety(sender: string, arg: string, reply: Reply): Promise<void> {
    const remote = await this.#contact(sender, arg, reply);
    if (remote === undefined) return;
    const n = await safetyNumberWith(this.c.core, sender, remote);
    await reply(
      `Safety number with ${this.c.ids.phoneOf(remote)}:\n${n}\nCompare it with what their phone shows.`,
    );
  }

  async #confirm(sender: string, arg: string, reply: Reply): Promise<void> {
    const remote = await this.#contact(sender, arg, reply);
    if (remote === undefined) return;
    await this.c.core.confirmIdentity(sender, remote);
    await reply(`Confirmed the security code of ${this.c.ids.phoneOf(remote)}: held messages are sent now.`);
  }
}
