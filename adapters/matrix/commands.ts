/**
 * The bridge bot's commands, in a user's management room (a direct chat with the bot): help, login
 * (after saying what opting in means, and a confirmation), logout, start-chat, list, status, safety,
 * confirm, ping. Users the permissions do not allow get a polite refusal.
 */
import type { MatrixAdapter } from './adapter.js';
import { groupSafetyNumber } from './adapter.js';
import type { MatrixRoom } from './store.js';

const PHONE = /^\+?[1-9][0-9]{6,14}$/;

const HELP = [
  'Commands:',
  '- `login`: opt in to interoperability (you will be asked to confirm)',
  '- `logout`: opt out; your interop account and keys are deleted',
  '- `start-chat +<number>`: open a chat with a WhatsApp user',
  '- `list`: your bridged chats',
  '- `status`: your interop account and its connection',
  '- `safety +<number>`: the safety number of a contact, to compare with them',
  "- `confirm +<number>`: accept a contact's changed security code",
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

export class CommandHandler {
  /** Users who asked to log in and were told what it means (a confirmation is due). */
  readonly #pendingLogin = new Set<string>();

  constructor(private readonly adapter: MatrixAdapter) {}

  welcome(): string {
    return `Hello! I connect Matrix with WhatsApp through interoperability.\n${HELP}`;
  }

  async handle(room: MatrixRoom, sender: string, body: string, eventId: string): Promise<void> {
    const a = this.adapter;
    const reply = (text: string) => a.botNotice(room.roomId, text, eventId);
    if (a.permissionOf(sender) === 'none') {
      await reply(
        `Sorry, ${sender}: this bridge is not open to your account. If you think it should be, ask the operator of ${a.config.server_name}.`,
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
          await reply(HELP);
          return;
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
        default:
          await reply(`Unknown command "${command}". Send \`help\` for the list.`);
      }
    } catch (err) {
      await reply(`That did not work: ${(err as Error).message}`);
    }
  }

  async #login(sender: string, arg: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    if (a.core.status(sender).enlisted) {
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
    await a.core.enlist(sender);
  }

  async #logout(sender: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    if (!a.core.status(sender).enlisted) {
      await reply('You are not opted in: there is nothing to log out of.');
      return;
    }
    await reply('Opting you out: your interop account, keys and queued messages are being deleted…');
    await a.core.optOut(sender);
  }

  async #contact(
    sender: string,
    arg: string,
    reply: (t: string) => Promise<string>,
  ): Promise<string | undefined> {
    const a = this.adapter;
    const phone = arg.replace(/[\s()-]/g, '');
    if (!PHONE.test(phone)) {
      await reply(`"${arg}" is not a phone number: give it with the country code, such as +4915112345678.`);
      return undefined;
    }
    if (!a.core.status(sender).enlisted) {
      await reply('You have not opted in yet: send `login` first.');
      return undefined;
    }
    const e164 = phone.startsWith('+') ? phone : `+${phone}`;
    const found = await a.core.lookup(sender, e164);
    if (!found.reachable || found.jid === undefined) {
      await reply(
        `${e164} cannot be reached through interoperability (not on WhatsApp, or not accepting interop chats).`,
      );
      return undefined;
    }
    return found.jid;
  }

  async #startChat(sender: string, arg: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    const jid = await this.#contact(sender, arg, reply);
    if (jid === undefined) return;
    const existed = a.mstore.portalOf(sender, jid) !== undefined;
    const roomId = await a.ensurePortal(sender, jid);
    await reply(
      existed
        ? `You already have a chat with ${a.phoneOf(jid)}: ${roomId}`
        : `Started a chat with ${a.phoneOf(jid)}: accept the invitation to ${roomId}.`,
    );
  }

  async #list(sender: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    const portals = a.mstore.portalsOf(sender);
    if (portals.length === 0) {
      await reply('You have no bridged chats yet. Send `start-chat +<number>` to open one.');
      return;
    }
    await reply(
      ['Your chats:', ...portals.map((p) => `- ${a.phoneOf(p.remoteJid ?? '?')}: ${p.roomId}`)].join('\n'),
    );
  }

  async #status(sender: string, reply: (t: string) => Promise<string>): Promise<void> {
    const s = this.adapter.core.status(sender);
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

  async #safety(sender: string, arg: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    const jid = await this.#contact(sender, arg, reply);
    if (jid === undefined) return;
    const n = await a.core.safetyNumber(sender, jid);
    await reply(
      `Safety number with ${a.phoneOf(jid)}:\n${groupSafetyNumber(n)}\nCompare it with what their phone shows.`,
    );
  }

  async #confirm(sender: string, arg: string, reply: (t: string) => Promise<string>): Promise<void> {
    const a = this.adapter;
    const jid = await this.#contact(sender, arg, reply);
    if (jid === undefined) return;
    await a.core.confirmIdentity(sender, jid);
    await reply(`Confirmed the security code of ${a.phoneOf(jid)}: held messages are sent now.`);
  }
}
