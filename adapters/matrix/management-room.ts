/**
 * The bridge bot's voice: each user's management room (a direct chat with the bot, where commands
 * are given and notices land when no portal fits) and the notices the bot posts in any room it is
 * in, management room or portal.
 */
import type { RetryingMatrixClient } from './client.js';
import { textContent } from './content.js';
import type { EncryptedRooms } from './encrypted-rooms.js';
import type { MatrixStore } from './store.js';

export interface ManagementRoomContext {
  readonly bot: Pick<RetryingMatrixClient, 'createRoom' | 'sendMessage' | 'sendEvent'>;
  readonly store: Pick<MatrixStore, 'managementRoomOf' | 'putRoom'>;
  /** The bot's id and, with encryption allowed, what encrypts its events in encrypted rooms. */
  readonly botUserId?: string;
  readonly encryption?: Pick<EncryptedRooms, 'seal'> | undefined;
}

export class ManagementRooms {
  constructor(private readonly c: ManagementRoomContext) {}

  /** The user's management room, created (by the bot, inviting the user) when missing. */
  async ensure(localUser: string): Promise<string> {
    const existing = await this.c.store.managementRoomOf(localUser);
    if (existing) return existing.roomId;
    const roomId = await this.c.bot.createRoom({
      preset: 'trusted_private_chat',
      is_direct: true,
      invite: [localUser],
    });
    await this.c.store.putRoom({ roomId, kind: 'management', localUser });
    return roomId;
  }

  /** A notice from the bot (optionally as a reply); HTML from the markup. Resolves with its event id. */
  async notice(roomId: string, text: string, replyTo?: string): Promise<string> {
    const content = textContent({ kind: 'text', text }, 'm.notice');
    if (replyTo !== undefined) content['m.relates_to'] = { 'm.in_reply_to': { event_id: replyTo } };
    const { encryption, botUserId } = this.c;
    if (encryption === undefined || botUserId === undefined) return this.c.bot.sendMessage(roomId, content);
    const sealed = await encryption.seal(botUserId, roomId, 'm.room.message', content);
    return this.c.bot.sendEvent(roomId, sealed.type, sealed.content);
  }
}
