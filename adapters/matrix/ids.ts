/**
 * Who is who on the Matrix side, from the config alone: the bridge bot, the ghosts
 * (`@wa_<digits>:<server>`, one per gatekeeper contact, named by `ghost_displayname`), the
 * permission of everyone else, and which remotes are groups rather than contacts.
 */
import { isE164Digits } from '../../src/bridge/phone.js';
import type { Config } from '../../src/config/schema.js';
import { MatrixAdapterError } from './errors.js';

export type MatrixConfig = Config['matrix'];
export type PermissionLevel = 'none' | 'user' | 'admin';

/** The server part of group remotes (`120363001@g.wa.interop`). */
const GROUP_SERVER = 'g.wa.interop';

/** Whether a remote is a group (its portal is a group's room), not a contact. */
export function isGroupRemote(remote: string): boolean {
  return remote.endsWith(`@${GROUP_SERVER}`);
}

export class MatrixIds {
  readonly botUserId: string;
  readonly serverName: string;
  readonly #config: MatrixConfig;

  constructor(config: MatrixConfig) {
    this.#config = config;
    this.serverName = config.server_name;
    this.botUserId = `@${config.bot_localpart}:${config.server_name}`;
  }

  /** The permission of a Matrix user: by user id, then server name, then "*"; none when unlisted. */
  permissionOf(userId: string): PermissionLevel {
    const p = this.#config.permissions;
    const server = userId.slice(userId.indexOf(':') + 1);
    return p[userId] ?? p[server] ?? p['*'] ?? 'none';
  }

  /** Whether a user id is one of the bridge's (the bot or a ghost). */
  isOurs(userId: string): boolean {
    return userId === this.botUserId || this.ghostDigits(userId) !== undefined;
  }

  /**
   * Whether a pushed record can do anything: an event or a read receipt of the bridge's own users
   * (the echo of what a ghost or the bot sent) is dropped when handled, so it is not journaled at
   * all. Membership is kept: the invites act on the bridge's own joins and invites.
   */
  actsOn(record: { kind: string; payload: Record<string, unknown> }): boolean {
    const p = record.payload;
    if (record.kind === 'receipt') return typeof p['user_id'] !== 'string' || !this.isOurs(p['user_id']);
    if (p['type'] === 'm.room.member') return true;
    return typeof p['sender'] !== 'string' || !this.isOurs(p['sender']);
  }

  /**
   * The phone number digits of a ghost id; undefined for any other id. Only an E.164 number makes
   * a ghost: no account for any string of digits queried.
   */
  ghostDigits(userId: string): string | undefined {
    const prefix = `@${this.#config.ghost_localpart_prefix}`;
    const suffix = `:${this.#config.server_name}`;
    if (!userId.startsWith(prefix) || !userId.endsWith(suffix)) return undefined;
    const digits = userId.slice(prefix.length, userId.length - suffix.length);
    return isE164Digits(digits) ? digits : undefined;
  }

  /** The ghost of a contact (`4915112345678@wa.interop` -> `@wa_4915112345678:<server>`). */
  ghostIdOf(remote: string): string {
    const user = remote.split('@')[0] ?? '';
    if (!/^[0-9]+$/.test(user) || isGroupRemote(remote)) {
      throw new MatrixAdapterError(
        'matrix_contact_unsupported',
        `${remote} is not a phone-numbered contact: this bridge shows gatekeeper users only`,
      );
    }
    return `@${this.#config.ghost_localpart_prefix}${user}:${this.#config.server_name}`;
  }

  /** A contact's phone number, for people: `+4915112345678`. */
  phoneOf(remote: string): string {
    return `+${remote.split('@')[0] ?? remote}`;
  }

  /**
   * A ghost's display name: `matrix.ghost_displayname` with the contact's push name in place of
   * `{phone}` when they have one ("Bob (WhatsApp)"), their number otherwise ("+49151... (WhatsApp)"),
   * as mautrix-whatsapp's `{{.PushName}} (WA)`; the suffix keeps a ghost told apart from a Matrix
   * user of the same name. A template with `{name}` puts the name there (the number without one)
   * and keeps `{phone}` the number: "{name} ({phone})".
   */
  displaynameOf(phone: string, name?: string): string {
    const template = this.#config.ghost_displayname;
    const pushName = name?.trim() || undefined;
    if (template.includes('{name}')) {
      return template.replaceAll('{name}', pushName ?? phone).replaceAll('{phone}', phone);
    }
    return template.replace('{phone}', pushName ?? phone);
  }
}
