/**
 * A group's picture as its room's avatar (`m.room.avatar`), as mautrix-whatsapp shows it: the core
 * hands it over as the group's profile (`updateProfile` with the group as `remote`) when the user
 * first meets the group and at each change; the bot uploads it and sets it, or removes the avatar
 * when the group has no picture any more. The room is made first if it is not there yet.
 */
import type { ContactProfile } from '../../src/bridge/events.js';
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import type { RetryingMatrixClient } from './client.js';
import type { GroupPortals } from './group-portals.js';

export interface GroupAvatarsContext {
  readonly groups: Pick<GroupPortals, 'roomFor'>;
  readonly bot: Pick<RetryingMatrixClient, 'uploadContent' | 'sendStateEvent'>;
  readonly log?: Logger | undefined;
}

export class GroupAvatars {
  /** One change at a time per room, in the order they came. */
  readonly #rooms = new KeyedQueue();

  constructor(private readonly c: GroupAvatarsContext) {}

  async show(localUser: string, profile: ContactProfile): Promise<void> {
    const roomId = await this.c.groups.roomFor(localUser, profile.remote);
    if (roomId === undefined) return; // not (any more) a group of the user's
    const picture = profile.picture;
    if (picture !== undefined && picture.bytes === undefined) {
      this.c.log?.debug({ room: roomId }, 'a group picture without its bytes: the avatar stays');
      return;
    }
    await this.#rooms.run(roomId, async () => {
      if (picture?.bytes === undefined) {
        await this.c.bot.sendStateEvent(roomId, 'm.room.avatar', '', {});
        return;
      }
      const mimetype = picture.mimetype ?? 'image/jpeg';
      const url = await this.c.bot.uploadContent(Buffer.from(picture.bytes), mimetype);
      await this.c.bot.sendStateEvent(roomId, 'm.room.avatar', '', {
        url,
        info: { mimetype, size: picture.bytes.length },
      });
    });
  }
}
