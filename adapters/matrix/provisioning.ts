/**
 * The provisioning API's questions to the Matrix side (src/provisioning): who a Matrix user is
 * allowed to be, how a contact looks to them (its ghost, its portal) and opening a portal, the way
 * the bot's commands do it.
 */
import type { LocalContact, ProvisioningHooks } from '../../src/bridge/adapter.js';
import { openChat, type CommandContext } from './commands.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { ManagementRooms } from './management-room.js';
import type { MatrixStore } from './store.js';

export interface MatrixProvisioningContext {
  readonly ids: Pick<MatrixIds, 'permissionOf' | 'phoneOf' | 'ghostIdOf' | 'displaynameOf' | 'isOurs'>;
  readonly store: Pick<MatrixStore, 'portalOf' | 'portalsOf' | 'managementRoomOf'>;
  readonly portals: CommandContext['portals'];
  readonly rooms: Pick<ManagementRooms, 'ensure'>;
}

/** A Matrix user ID: `@localpart:server`. */
const MATRIX_ID = /^@[^:\s]+:[^\s]+$/;

export function matrixProvisioning(c: MatrixProvisioningContext): ProvisioningHooks {
  const contact = (remote: string, dm: string | undefined): LocalContact => {
    const phone = c.ids.phoneOf(remote);
    return { remote, phone, name: c.ids.displaynameOf(phone), localId: c.ids.ghostIdOf(remote), dm };
  };
  return {
    owns: (user) => MATRIX_ID.test(user),
    // The bot and the ghosts are the bridge's own: nobody acts as them.
    permissionOf: (user) => (c.ids.isOurs(user) ? 'none' : c.ids.permissionOf(user)),
    contact: async (user, remote) => contact(remote, (await c.store.portalOf(user, remote))?.roomId),
    contacts: async (user) =>
      (await c.store.portalsOf(user))
        // Contacts only: a group's room is not a contact's.
        .filter((p) => p.remoteJid !== undefined && p.remoteJid !== null && !isGroupRemote(p.remoteJid))
        .map((p) => contact(p.remoteJid as string, p.roomId)),
    startChat: async (user, remote) => {
      const { roomId, existed } = await openChat(c, user, remote);
      return { ...contact(remote, roomId), existed };
    },
    commandRoom: async (user) => (await c.store.managementRoomOf(user))?.roomId,
  };
}
