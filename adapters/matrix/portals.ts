/**
 * Portals: one direct room per (local user, contact), created by the contact's ghost so Matrix
 * clients list it as a direct chat with the contact, with the bot in it for notices. An `m.bridge`
 * state event (MSC2346) names the contact. After an opt-out the portals are closed, groups' rooms
 * (group-portals.ts) too.
 */
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import type { RetryingMatrixClient } from './client.js';
import type { Content } from './content.js';
import { encryptionState, type EncryptedRooms } from './encrypted-rooms.js';
import type { Ghosts } from './ghosts.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { ManagementRooms } from './management-room.js';
import type { MatrixStore } from './store.js';

const BRIDGE_PROTOCOL = { id: 'whatsapp', displayname: 'WhatsApp (interoperability)' };

/**
 * The bridge-info state of a portal with `remote`, whose ghost is `ghostId` (MSC2346): `m.bridge`
 * and, with the same key and content, `uk.half-shot.bridge`, the name clients read before the MSC.
 * A group's portal has no ghost of its own, and the group's subject for a name.
 */
export function bridgeStates(
  ids: Pick<MatrixIds, 'botUserId' | 'phoneOf'>,
  remote: string,
  ghostId: string | undefined,
  name: string = ids.phoneOf(remote),
): { type: string; state_key: string; content: Content }[] {
  const state_key = `net.interop.bridge://whatsapp/${remote}`;
  const content = {
    bridgebot: ids.botUserId,
    creator: ids.botUserId,
    protocol: BRIDGE_PROTOCOL,
    channel: { id: remote, displayname: name },
    ...(ghostId === undefined ? {} : { 'net.interop.ghost': ghostId }),
  };
  return ['m.bridge', 'uk.half-shot.bridge'].map((type) => ({ type, state_key, content }));
}

export interface PortalsContext {
  readonly ids: Pick<MatrixIds, 'botUserId' | 'phoneOf' | 'ghostIdOf'>;
  readonly store: Pick<MatrixStore, 'portalOf' | 'portalsOf' | 'putRoom' | 'forgetRoom' | 'managementRoomOf'>;
  readonly ghosts: Pick<Ghosts, 'ensure' | 'client'>;
  readonly bot: Pick<RetryingMatrixClient, 'joinRoom' | 'leaveRoom'>;
  readonly rooms: Pick<ManagementRooms, 'notice'>;
  readonly log: Logger;
  /** New portals are created encrypted (`matrix.encryption.default`, with `allow`). */
  readonly encryptByDefault?: Pick<EncryptedRooms, 'prepare' | 'markEncrypted'> | undefined;
}

export class Portals {
  /** One creation at a time per (local user, contact). */
  readonly #creation = new KeyedQueue();

  constructor(private readonly c: PortalsContext) {}

  /** The portal room of (local user, contact), created (by the contact's ghost) when missing. */
  async ensure(localUser: string, remote: string): Promise<string> {
    const existing = await this.c.store.portalOf(localUser, remote);
    if (existing) return existing.roomId;
    return this.#creation.run(`${localUser}\n${remote}`, async () => {
      // A creation queued before this one may have made it.
      const made = await this.c.store.portalOf(localUser, remote);
      return made ? made.roomId : this.#create(localUser, remote);
    });
  }

  async #create(localUser: string, remote: string): Promise<string> {
    const ghostId = await this.c.ghosts.ensure(remote);
    const ghost = this.c.ghosts.client(ghostId);
    const encryption = this.c.encryptByDefault;
    // The ghost's device keys are on the homeserver before the user's client first looks for them.
    if (encryption) await encryption.prepare(ghostId);
    // The ghost creates the room, so Matrix clients list it as a direct chat with the contact; the
    // bot is invited too, for notices (failed deliveries, identity changes, encryption).
    const roomId = await ghost.createRoom({
      preset: 'trusted_private_chat',
      is_direct: true,
      invite: [localUser, this.c.ids.botUserId],
      initial_state: [
        ...bridgeStates(this.c.ids, remote, ghostId),
        ...(encryption ? [encryptionState()] : []),
      ],
    });
    if (encryption) encryption.markEncrypted(roomId);
    await this.c.store.putRoom({ roomId, kind: 'portal', localUser, remoteJid: remote });
    await this.c.bot.joinRoom(roomId);
    this.c.log.info({ room: roomId, user: localUser, contact: remote }, 'portal created');
    return roomId;
  }

  /** After opt-out: the portals say so, the ghosts leave, and the rooms are forgotten. */
  async close(localUser: string): Promise<void> {
    for (const portal of await this.c.store.portalsOf(localUser)) {
      try {
        await this.c.rooms.notice(
          portal.roomId,
          'You opted out of interoperability: this chat is no longer bridged. Send "login" to the bridge bot to come back.',
        );
        if (portal.remoteJid !== null && !isGroupRemote(portal.remoteJid))
          await this.c.ghosts.client(this.c.ids.ghostIdOf(portal.remoteJid)).leaveRoom(portal.roomId);
        // A group's room: the bot leaves it (its members' ghosts stay, as the group's history).
        else await this.c.bot.leaveRoom(portal.roomId);
      } catch (err) {
        this.c.log.warn({ room: portal.roomId, err: (err as Error).message }, 'portal not closed cleanly');
      }
      await this.c.store.forgetRoom(portal.roomId);
    }
    const management = await this.c.store.managementRoomOf(localUser);
    if (management) {
      await this.c.rooms.notice(
        management.roomId,
        'You have opted out: your interop account and its keys are deleted, and nobody on WhatsApp can reach you through this bridge.',
      );
    }
  }
}
