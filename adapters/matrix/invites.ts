/**
 * Membership: the bot invited to a direct chat (a management room) or brought into a portal by a
 * ghost, a ghost invited by a local user (a portal made from the user's side, or a contact added
 * to a group in its room), and users or ghosts leaving (a user leaving a group's room leaves the
 * group). Invites from users the permissions do not allow are refused without joining. Without
 * `matrix.encryption.allow` the bridge cannot read Matrix-encrypted rooms, declines encrypted direct
 * chats, and says so once per room; with it, they are taken like any other.
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { Logger } from '../../src/observability/logger.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import { welcome } from './commands.js';
import { textContent, type Content } from './content.js';
import type { EncryptedRooms } from './encrypted-rooms.js';
import type { Ghosts } from './ghosts.js';
import type { GroupPortals } from './group-portals.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { ManagementRooms } from './management-room.js';
import { bridgeStates } from './portals.js';
import type { MatrixRoom, MatrixStore } from './store.js';

export interface InvitesContext {
  readonly ids: Pick<
    MatrixIds,
    'botUserId' | 'serverName' | 'isOurs' | 'ghostDigits' | 'ghostIdOf' | 'permissionOf' | 'phoneOf'
  >;
  readonly store: Pick<MatrixStore, 'room' | 'putRoom' | 'forgetRoom' | 'markEncryptionTold'>;
  readonly core: Pick<BridgeCore, 'status'>;
  readonly bot: Pick<
    RetryingMatrixClient,
    'joinRoom' | 'leaveRoom' | 'doRequest' | 'getRoomStateEvent' | 'getJoinedRooms' | 'sendMessage'
  >;
  readonly ghosts: Pick<Ghosts, 'client' | 'ensure' | 'remoteOf'>;
  /** Groups' rooms: the user leaving one leaves the group, a ghost invited (kicked) is added (removed). */
  readonly groups: Pick<GroupPortals, 'userLeft' | 'ghostInvited' | 'userRemoved'>;
  readonly rooms: Pick<ManagementRooms, 'notice'>;
  readonly log: Logger;
  /** With `matrix.encryption.allow`: encrypted rooms are taken, with a device for the ghost. */
  readonly encryption?: Pick<EncryptedRooms, 'prepare' | 'markEncrypted'> | undefined;
}

type Client = Pick<RetryingMatrixClient, 'getRoomStateEvent'>;

export class Invites {
  constructor(private readonly c: InvitesContext) {}

  /** An `m.room.member` event, whoever sent it. */
  async member(roomId: string, sender: string, stateKey: unknown, content: Content): Promise<void> {
    if (typeof stateKey !== 'string') return;
    const { ids, store } = this.c;
    const membership = content['membership'];
    if (membership === 'invite' && stateKey === ids.botUserId) {
      await this.#botInvited(roomId, sender, content);
    } else if (membership === 'invite' && ids.ghostDigits(stateKey) !== undefined && !ids.isOurs(sender)) {
      await this.#ghostInvited(roomId, sender, stateKey);
    } else if ((membership === 'leave' || membership === 'ban') && !ids.isOurs(stateKey)) {
      const room = await store.room(roomId);
      if (room?.kind === 'portal' && room.localUser === stateKey && isGroup(room)) {
        await this.c.groups.userLeft(room);
      } else if (room && room.localUser === stateKey) {
        // The user left: the bridge leaves too, and the next message makes a new room.
        await store.forgetRoom(roomId);
        if (room.kind === 'portal' && room.remoteJid !== null) {
          await this.c.ghosts
            .client(ids.ghostIdOf(room.remoteJid))
            .leaveRoom(roomId)
            .catch(() => undefined);
        }
        await this.c.bot.leaveRoom(roomId).catch(() => undefined);
      }
    } else if ((membership === 'leave' || membership === 'ban') && ids.ghostDigits(stateKey) !== undefined) {
      const room = await store.room(roomId);
      if (room?.kind === 'portal' && isGroup(room)) {
        // The user kicked a member out of a group's room: removed from the group.
        await this.c.groups.userRemoved(room, sender, stateKey);
      } else if (
        room?.kind === 'portal' &&
        room.remoteJid !== null &&
        !isGroup(room) &&
        ids.ghostIdOf(room.remoteJid) === stateKey
      ) {
        // Our ghost left or was removed: the next message makes a new portal.
        await store.forgetRoom(roomId);
        await this.c.bot.leaveRoom(roomId).catch(() => undefined);
      }
    }
  }

  async #botInvited(roomId: string, sender: string, content: Content): Promise<void> {
    const { bot, ids } = this.c;
    if (ids.isOurs(sender)) {
      // A ghost brings the bot into its portal.
      await bot.joinRoom(roomId);
      return;
    }
    if (ids.permissionOf(sender) === 'none') {
      // Rejected without joining: an invite must not make the homeserver join arbitrary rooms.
      await bot.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, null, {
        reason: `this bridge is not open to your account; ask the operator of ${ids.serverName}`,
      });
      return;
    }
    await bot.joinRoom(roomId);
    if (content['is_direct'] !== true) {
      await this.c.rooms.notice(roomId, 'I only take commands in a direct chat: start one with me.');
      return;
    }
    // Checked before the room is recorded: an encrypted DM must not replace the user's working
    // management room (the bridge cannot read it, and the user's commands would go unanswered).
    if (await this.#isEncrypted(bot, roomId)) {
      if (this.c.encryption === undefined) {
        await this.#declineEncrypted(bot, roomId, 'management', null);
        return;
      }
      this.c.encryption.markEncrypted(roomId);
    }
    await this.c.store.putRoom({ roomId, kind: 'management', localUser: sender });
    await this.c.rooms.notice(roomId, welcome());
  }

  async #ghostInvited(roomId: string, sender: string, ghostId: string): Promise<void> {
    const { ids, log } = this.c;
    const ghost = this.c.ghosts.client(ghostId);
    const refuse = async (reason: string) => {
      await ghost.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, null, {
        reason,
      });
    };
    if (ids.permissionOf(sender) === 'none') {
      await refuse('this bridge is not open to your account');
      return;
    }
    if (!(await this.c.core.status(sender)).enlisted) {
      await refuse('you have not opted in to interoperability: send "login" to the bridge bot first');
      return;
    }
    const remote = await this.c.ghosts.remoteOf(ghostId, sender);
    if (remote === undefined) {
      await refuse(`+${ids.ghostDigits(ghostId) ?? ''} cannot be reached through interoperability`);
      return;
    }
    const room = await this.c.store.room(roomId);
    if (room?.kind === 'portal' && isGroup(room)) {
      // Invited into a group's room: the contact is added to the group.
      await this.c.groups.ghostInvited(room, sender, ghostId, remote);
      return;
    }
    await this.c.ghosts.ensure(remote);
    // Its device keys are on the homeserver before the user's client looks for them (at the join).
    await this.c.encryption?.prepare(ghostId);
    await ghost.joinRoom(roomId);
    // Checked before the room is recorded: an encrypted DM must not replace the user's working
    // portal with this contact (whose messages would then be dropped).
    if (await this.#isEncrypted(ghost, roomId)) {
      if (this.c.encryption === undefined) {
        await this.#declineEncrypted(ghost, roomId, 'portal', remote);
        return;
      }
      this.c.encryption.markEncrypted(roomId);
    }
    await this.c.store.putRoom({ roomId, kind: 'portal', localUser: sender, remoteJid: remote });
    try {
      await ghost.inviteUser(ids.botUserId, roomId);
    } catch (err) {
      log.debug({ room: roomId, err: (err as Error).message }, 'the bot was not invited to the portal');
    }
    try {
      for (const s of bridgeStates(ids, remote, ghostId)) {
        await ghost.sendStateEvent(roomId, s.type, s.state_key, s.content);
      }
    } catch (err) {
      log.debug({ room: roomId, err: (err as Error).message }, 'no m.bridge state in the portal');
    }
    log.info({ room: roomId, user: sender, contact: remote }, 'portal created by an invite');
  }

  /** An encrypted room offered as a new portal or management room: said plainly, then left. */
  async #declineEncrypted(
    client: Pick<RetryingMatrixClient, 'sendMessage' | 'leaveRoom'>,
    roomId: string,
    kind: MatrixRoom['kind'],
    remoteJid: string | null,
  ): Promise<void> {
    const text = encryptedRoomText(kind, remoteJid === null ? 'the bridge' : this.c.ids.phoneOf(remoteJid));
    await client.sendMessage(roomId, textContent({ kind: 'text', text }, 'm.notice'));
    await client.leaveRoom(roomId).catch(() => undefined);
    this.c.log.info(
      { room: roomId, kind },
      'an encrypted room was offered: declined, the existing room stays',
    );
  }

  async #isEncrypted(client: Client, roomId: string): Promise<boolean> {
    try {
      await client.getRoomStateEvent(roomId, 'm.room.encryption', '');
      return true;
    } catch (err) {
      if (describeFailure(err).status === 404) return false;
      throw err;
    }
  }

  /** Says once per room, plainly, that the bridge cannot read Matrix-encrypted messages. */
  async tellEncrypted(room: MatrixRoom): Promise<void> {
    const { ids } = this.c;
    if (!(await this.c.store.markEncryptionTold(room.roomId))) return;
    const who =
      room.remoteJid === null ? 'the bridge' : isGroup(room) ? 'the group' : ids.phoneOf(room.remoteJid);
    const text = encryptedRoomText(room.kind, who);
    const sender =
      room.kind === 'portal' && room.remoteJid !== null && !isGroup(room) && !(await this.#botIn(room.roomId))
        ? this.c.ghosts.client(ids.ghostIdOf(room.remoteJid))
        : this.c.bot;
    await sender.sendMessage(room.roomId, textContent({ kind: 'text', text }, 'm.notice'));
    if (room.kind === 'portal') await this.c.store.forgetRoom(room.roomId);
  }

  async #botIn(roomId: string): Promise<boolean> {
    try {
      const rooms = await this.c.bot.getJoinedRooms();
      return rooms.includes(roomId);
    } catch {
      return false;
    }
  }
}

/** Whether a room is a group's portal (its remote a group, not a contact). */
const isGroup = (room: MatrixRoom): boolean => room.remoteJid !== null && isGroupRemote(room.remoteJid);

/** What the user is told in a room the bridge cannot read. */
function encryptedRoomText(kind: MatrixRoom['kind'], who: string): string {
  return (
    `This room is end-to-end encrypted, and this bridge cannot read Matrix-encrypted messages ` +
    `(Matrix encryption is not available in it). Nothing you send here reaches ${who}. ` +
    (kind === 'portal'
      ? `Send "start-chat ${who}" to the bridge bot for an unencrypted chat.`
      : 'Start a new direct chat with me without encryption to use the commands.')
  );
}
