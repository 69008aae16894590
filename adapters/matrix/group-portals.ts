/**
 * Group portals, as mautrix-whatsapp has them: one room per (local user, group), created by the
 * bot with the group's subject as its name and its description as its topic, a ghost for every
 * member and the user invited. The room follows the group: a member added joins, one removed is
 * kicked by the bot (or leaves, if they left), admins are moderators (power level 50), the subject
 * and description are the name and topic, an announcement group lets only moderators speak.
 *
 * The group's state is the core's (`GroupUpdate.snapshot`, `BridgeCore.group`): at each change the
 * room is brought in step with it, whatever the change was, so a repeated update changes nothing
 * and a portal that is missing (lost, or the group's first message after a restart) is made from
 * it. What the user does in the room goes to the group: their messages (handlers.ts, with the group
 * as the remote), leaving the room (they leave the group), inviting a ghost (the contact is added),
 * kicking one (removed), renaming the room or changing its topic (the subject, the description),
 * raising a ghost to moderator or lowering one (promoted, demoted).
 */
import type { BridgeCore, GroupRequest } from '../../src/bridge/adapter.js';
import type { GroupSnapshot, GroupUpdate } from '../../src/bridge/events.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import type { Content } from './content.js';
import { encryptionState, type EncryptedRooms } from './encrypted-rooms.js';
import type { Ghosts } from './ghosts.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { ManagementRooms } from './management-room.js';
import { bridgeStates } from './portals.js';
import type { MatrixRoom, MatrixStore } from './store.js';

/** An admin of the group: a moderator in its room (Element's "Moderator"). */
export const ADMIN_LEVEL = 50;
/**
 * The local user when an admin of the group: above the admins' ghosts, so Matrix lets them lower a
 * ghost (a moderator cannot lower an equal), which demotes the member in the group.
 */
export const USER_ADMIN_LEVEL = 75;

export interface GroupPortalsContext {
  readonly ids: Pick<MatrixIds, 'botUserId' | 'ghostIdOf' | 'ghostDigits' | 'phoneOf'>;
  readonly store: Pick<MatrixStore, 'portalOf' | 'putRoom' | 'forgetRoom'>;
  readonly core: Pick<BridgeCore, 'group' | 'changeGroup'>;
  readonly ghosts: Pick<Ghosts, 'ensure' | 'client'>;
  readonly bot: Pick<
    RetryingMatrixClient,
    | 'createRoom'
    | 'inviteUser'
    | 'leaveRoom'
    | 'getJoinedRoomMembers'
    | 'getRoomStateEvent'
    | 'sendStateEvent'
    | 'doRequest'
  >;
  readonly rooms: Pick<ManagementRooms, 'notice' | 'ensure'>;
  /** New group portals are created encrypted (`matrix.encryption.default`, with `allow`), as 1:1 ones. */
  readonly encryptByDefault?: Pick<EncryptedRooms, 'prepare' | 'markEncrypted'> | undefined;
  readonly log: Logger;
}

/** What a room should show of a group: its ghosts (by ghost id: the member and their level). */
interface Wanted {
  readonly ghosts: ReadonlyMap<string, { readonly remote: string; readonly level: number }>;
  readonly userLevel: number;
}

export class GroupPortals {
  /** One creation at a time per (local user, group). */
  readonly #creation = new KeyedQueue();
  /** Membership changes one at a time per room (a group's update, a late author joining). */
  readonly #rooms = new KeyedQueue();

  constructor(private readonly c: GroupPortalsContext) {}

  /**
   * The user's room of the group, made from the core's state when missing; undefined when the user
   * is not (or no longer) in the group.
   */
  async roomFor(localUser: string, group: string): Promise<string | undefined> {
    const existing = await this.c.store.portalOf(localUser, group);
    if (existing) return existing.roomId;
    const snapshot = await this.c.core.group?.(localUser, group);
    if (snapshot === undefined || !snapshot.members.some((m) => m.self === true)) return undefined;
    return this.ensure(localUser, snapshot);
  }

  /** The user's room of the group, created (by the bot, in step with `snapshot`) when missing. */
  async ensure(localUser: string, snapshot: GroupSnapshot): Promise<string> {
    const existing = await this.c.store.portalOf(localUser, snapshot.group);
    if (existing) return existing.roomId;
    return this.#creation.run(`${localUser}\n${snapshot.group}`, async () => {
      const made = await this.c.store.portalOf(localUser, snapshot.group);
      return made ? made.roomId : this.#create(localUser, snapshot);
    });
  }

  /** A change of a group the user is in, shown in its room (made first when missing). */
  async update(u: GroupUpdate): Promise<void> {
    if (u.change.kind === 'gone') {
      await this.#gone(u);
      return;
    }
    if (!u.snapshot.members.some((m) => m.self === true)) return;
    const existing = await this.c.store.portalOf(u.localUser, u.snapshot.group);
    if (!existing) {
      await this.ensure(u.localUser, u.snapshot);
      return;
    }
    await this.#rooms.run(existing.roomId, () => this.#sync(existing.roomId, u.localUser, u.snapshot, u));
  }

  /**
   * Makes sure the author of a group message can send in the room: their ghost joins (a member
   * whose join failed, or whose messages came before the update that added them). False when they
   * are not a member of the group.
   */
  async admit(roomId: string, localUser: string, group: string, author: string): Promise<boolean> {
    const snapshot = await this.c.core.group?.(localUser, group);
    if (!snapshot?.members.some((m) => m.remote === author)) return false;
    await this.#rooms.run(roomId, () => this.#join(roomId, this.c.ids.ghostIdOf(author), author));
    return true;
  }

  /**
   * The user left the group's room (or was banned from it): they leave the group, and the bridge
   * leaves the room. If the gateway refuses, the user is told so in the management room; the room
   * is forgotten either way (the group's next message opens a new one).
   */
  async userLeft(room: MatrixRoom): Promise<void> {
    const group = room.remoteJid;
    if (group === null) return;
    await this.c.store.forgetRoom(room.roomId);
    try {
      await this.c.core.changeGroup?.(room.localUser, group, { action: 'leave' });
      this.c.log.info({ room: room.roomId, user: room.localUser, group }, 'the user left a group');
    } catch (err) {
      const subject = (await this.c.core.group?.(room.localUser, group))?.subject ?? group;
      await this.c.rooms.notice(
        await this.c.rooms.ensure(room.localUser),
        `You left the room of the group "${subject}", but leaving the group did not work: ${(err as Error).message}. You are still in the group: its next message opens a new room.`,
      );
    }
    await this.#vacate(room.roomId);
  }

  /**
   * The user invited a ghost into the group's room: the contact is added to the group, and the
   * ghost joins; if the gateway refuses, the ghost declines the invitation with the reason.
   */
  async ghostInvited(room: MatrixRoom, sender: string, ghostId: string, remote: string): Promise<void> {
    const ghost = this.c.ghosts.client(ghostId);
    const decline = (reason: string) =>
      ghost.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(room.roomId)}/leave`, null, {
        reason,
      });
    const group = room.remoteJid;
    if (group === null || sender !== room.localUser) {
      await decline('only the user this group chat is bridged for can add its members');
      return;
    }
    try {
      await this.c.core.changeGroup?.(sender, group, { action: 'add', members: [remote] });
    } catch (err) {
      await decline(
        `${this.c.ids.phoneOf(remote)} could not be added to the group: ${(err as Error).message}`,
      );
      return;
    }
    await this.c.ghosts.ensure(remote);
    await this.#rooms.run(room.roomId, () => ghost.joinRoom(room.roomId));
    this.c.log.info({ room: room.roomId, group, member: remote }, 'a member added from the group room');
  }

  /**
   * The user renamed the room or changed its topic (Synapse lets only moderators: the group's
   * admins): the group's subject or description changes with it. If the gateway refuses, the user
   * is told why and the room gets the group's own back.
   */
  async userChanged(room: MatrixRoom, sender: string, type: string, content: Content): Promise<void> {
    const group = room.remoteJid;
    if (group === null || !isGroupRemote(group) || sender !== room.localUser) return;
    const snapshot = await this.c.core.group?.(room.localUser, group);
    if (snapshot === undefined) return;
    const request: GroupRequest | undefined =
      type === 'm.room.name' && typeof content['name'] === 'string'
        ? content['name'] === snapshot.subject || content['name'].trim() === ''
          ? undefined
          : { action: 'subject', subject: content['name'] }
        : type === 'm.room.topic' && typeof content['topic'] === 'string'
          ? content['topic'] === (snapshot.description ?? '')
            ? undefined
            : { action: 'description', description: content['topic'] }
          : undefined;
    if (request === undefined) return;
    await this.#ask(room, snapshot, [request], type === 'm.room.name' ? 'name' : 'topic');
  }

  /**
   * The user changed the room's power levels (moderators may: the group's admins): a member's ghost
   * raised to moderator is promoted in the group, one lowered below it demoted, and so is the user
   * lowering their own level. Only the user's edits count (the bridge's own, mirroring the group,
   * come from the bot), and of them only the entries that changed (`prev_content`), so a room not
   * yet in step with the group asks nothing back. Matrix lets a moderator raise others to their own
   * level but not lower those at it: the user, at 50 as the admins' ghosts, demotes only themselves
   * (the lowering of a ghost is here for a room where the user stands higher). If the gateway
   * refuses, the user is told why and the room gets the group's admins back.
   */
  async userSetLevels(room: MatrixRoom, sender: string, content: Content, event?: Content): Promise<void> {
    const group = room.remoteJid;
    if (group === null || !isGroupRemote(group) || sender !== room.localUser) return;
    const snapshot = await this.c.core.group?.(room.localUser, group);
    if (snapshot === undefined) return;
    const now = levelsIn(content);
    const unsigned = event?.['unsigned'];
    const prevContent =
      isContent(unsigned) && isContent(unsigned['prev_content']) ? unsigned['prev_content'] : undefined;
    const before = prevContent === undefined ? undefined : levelsIn(prevContent);
    const promote: string[] = [];
    const demote: string[] = [];
    for (const m of snapshot.members) {
      const self = m.self === true;
      if (!self && phoneOfRemote(m.remote) === undefined) continue;
      const userId = self ? room.localUser : this.c.ids.ghostIdOf(m.remote);
      const admin = now(userId) >= ADMIN_LEVEL;
      if (before !== undefined && before(userId) >= ADMIN_LEVEL === admin) continue;
      // The user does not make themselves an admin (Matrix would not let them raise their level).
      if (admin && !m.admin && !self) promote.push(m.remote);
      else if (!admin && m.admin) demote.push(m.remote);
    }
    const requests: GroupRequest[] = [
      ...(promote.length > 0 ? [{ action: 'promote' as const, members: promote }] : []),
      ...(demote.length > 0 ? [{ action: 'demote' as const, members: demote }] : []),
    ];
    if (requests.length > 0) await this.#ask(room, snapshot, requests, 'admins');
  }

  /**
   * The user kicked a member's ghost out of the room (a moderator: the group's admin): the member
   * is removed from the group; if the gateway refuses, the user is told why and the ghost comes back.
   */
  async userRemoved(room: MatrixRoom, sender: string, ghostId: string): Promise<void> {
    const group = room.remoteJid;
    if (group === null || sender !== room.localUser) return;
    const snapshot = await this.c.core.group?.(room.localUser, group);
    const member = snapshot?.members.find(
      (m) =>
        m.self !== true &&
        phoneOfRemote(m.remote) !== undefined &&
        this.c.ids.ghostIdOf(m.remote) === ghostId,
    );
    if (snapshot === undefined || member === undefined) return;
    await this.#ask(room, snapshot, [{ action: 'remove', members: [member.remote] }], 'members');
  }

  /**
   * A change the user made in the room, asked of the group (request by request); refused: said, and
   * the room put back as the group is now (what the requests before the refusal changed included).
   */
  async #ask(
    room: MatrixRoom,
    snapshot: GroupSnapshot,
    requests: readonly GroupRequest[],
    what: string,
  ): Promise<void> {
    try {
      for (const request of requests) {
        await this.c.core.changeGroup?.(room.localUser, snapshot.group, request);
        this.c.log.info(
          { room: room.roomId, group: snapshot.group, action: request.action },
          'the user changed a group',
        );
      }
    } catch (err) {
      await this.c.rooms.notice(room.roomId, `The group's ${what} did not change: ${(err as Error).message}`);
      await this.#rooms.run(room.roomId, async () => {
        const current = (await this.c.core.group?.(room.localUser, snapshot.group)) ?? snapshot;
        await this.#sync(room.roomId, room.localUser, current);
      });
    }
  }

  async #create(localUser: string, snapshot: GroupSnapshot): Promise<string> {
    const encryption = this.c.encryptByDefault;
    // The bot's device reads what the user sends there: its keys are up before the user's client looks.
    if (encryption) await encryption.prepare(this.c.ids.botUserId);
    const roomId = await this.c.bot.createRoom({
      preset: 'private_chat',
      name: snapshot.subject,
      ...(snapshot.description ? { topic: snapshot.description } : {}),
      initial_state: [
        ...bridgeStates(this.c.ids, snapshot.group, undefined, snapshot.subject),
        ...(encryption ? [encryptionState()] : []),
      ],
    });
    if (encryption) encryption.markEncrypted(roomId);
    await this.c.store.putRoom({ roomId, kind: 'portal', localUser, remoteJid: snapshot.group });
    // The user is invited last: the room they open has every member in it already.
    await this.#rooms.run(roomId, () => this.#sync(roomId, localUser, snapshot));
    this.c.log.info({ room: roomId, user: localUser, group: snapshot.group }, 'group portal created');
    return roomId;
  }

  /**
   * Brings the room in step with the group: members' ghosts joined or removed, power levels, name
   * and topic, the user invited (once: a user who left is not invited again).
   */
  async #sync(roomId: string, localUser: string, snapshot: GroupSnapshot, u?: GroupUpdate): Promise<void> {
    const wanted = this.#wanted(snapshot);
    const joined = new Set(await this.c.bot.getJoinedRoomMembers(roomId));
    for (const [ghostId, m] of wanted.ghosts) {
      if (!joined.has(ghostId)) await this.#join(roomId, ghostId, m.remote);
    }
    for (const member of joined) {
      if (this.c.ids.ghostDigits(member) !== undefined && !wanted.ghosts.has(member)) {
        await this.#remove(roomId, member, u);
      }
    }
    await this.#levels(roomId, localUser, snapshot, wanted);
    const setter = this.#setterFor(u, snapshot, wanted);
    await this.#state(roomId, 'm.room.name', { name: snapshot.subject }, setter);
    await this.#state(roomId, 'm.room.topic', { topic: snapshot.description ?? '' }, setter);
    if ((await this.#membership(roomId, localUser)) === undefined) {
      await this.c.bot.inviteUser(localUser, roomId);
    }
  }

  #wanted(snapshot: GroupSnapshot): Wanted {
    const ghosts = new Map<string, { remote: string; level: number }>();
    let userLevel = 0;
    for (const m of snapshot.members) {
      const level = m.admin ? ADMIN_LEVEL : 0;
      if (m.self === true) userLevel = m.admin ? USER_ADMIN_LEVEL : 0;
      // Members of other networks have no ghost: their messages come from the bot, named.
      else if (phoneOfRemote(m.remote) !== undefined)
        ghosts.set(this.c.ids.ghostIdOf(m.remote), { remote: m.remote, level });
    }
    return { ghosts, userLevel };
  }

  /** A member's ghost: registered, invited by the bot, joined. */
  async #join(roomId: string, ghostId: string, remote: string): Promise<void> {
    await this.c.ghosts.ensure(remote);
    try {
      await this.c.bot.inviteUser(ghostId, roomId);
    } catch (err) {
      // Already invited (or joined): the join below is what counts.
      this.c.log.debug({ room: roomId, ghost: ghostId, err: (err as Error).message }, 'ghost not invited');
    }
    await this.c.ghosts.client(ghostId).joinRoom(roomId);
  }

  /** A member no longer in the group: their ghost leaves (they left) or the bot kicks it, saying who removed them. */
  async #remove(roomId: string, ghostId: string, u: GroupUpdate | undefined): Promise<void> {
    const by = u?.by;
    const byPhone = by === undefined ? undefined : phoneOfRemote(by);
    if (by !== undefined && byPhone !== undefined && this.c.ids.ghostIdOf(by) === ghostId) {
      // They left.
      await this.c.ghosts.client(ghostId).leaveRoom(roomId);
      return;
    }
    await this.c.bot.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/kick`, null, {
      user_id: ghostId,
      reason:
        byPhone === undefined ? 'no longer a member of the group' : `removed from the group by ${byPhone}`,
    });
  }

  /** Admins (the user among them) are moderators; an announcement group lets only them speak. */
  async #levels(roomId: string, localUser: string, snapshot: GroupSnapshot, wanted: Wanted): Promise<void> {
    const current = (await this.c.bot.getRoomStateEvent(roomId, 'm.room.power_levels', '')) as Content;
    const users: Record<string, number> = { ...((current['users'] ?? {}) as Record<string, number>) };
    let changed = false;
    const set = (userId: string, level: number) => {
      if ((users[userId] ?? 0) === level) return;
      if (level === 0) delete users[userId];
      else users[userId] = level;
      changed = true;
    };
    for (const userId of Object.keys(users)) {
      if (this.c.ids.ghostDigits(userId) !== undefined && !wanted.ghosts.has(userId)) set(userId, 0);
    }
    for (const [ghostId, m] of wanted.ghosts) set(ghostId, m.level);
    set(localUser, wanted.userLevel);
    const eventsDefault = snapshot.announce ? ADMIN_LEVEL : 0;
    if ((current['events_default'] ?? 0) !== eventsDefault) changed = true;
    // A locked group: only admins change its subject and description (the room's name and topic).
    // Admins promote and demote: moderators edit the power levels (userSetLevels).
    const events: Record<string, number> = { ...((current['events'] ?? {}) as Record<string, number>) };
    const editLevel = snapshot.locked ? ADMIN_LEVEL : 0;
    const eventLevels = {
      'm.room.name': editLevel,
      'm.room.topic': editLevel,
      'm.room.power_levels': ADMIN_LEVEL,
    };
    for (const [type, level] of Object.entries(eventLevels)) {
      if (events[type] !== level) {
        events[type] = level;
        changed = true;
      }
    }
    if (!changed) return;
    await this.c.bot.sendStateEvent(roomId, 'm.room.power_levels', '', {
      ...current,
      users,
      events,
      events_default: eventsDefault,
    });
  }

  /**
   * Who sets the room's name and topic: the ghost of the member who changed the group's subject or
   * description (clients then say who did; an admin, unless the group is unlocked), the bot
   * otherwise.
   */
  #setterFor(
    u: GroupUpdate | undefined,
    snapshot: GroupSnapshot,
    wanted: Wanted,
  ): Pick<RetryingMatrixClient, 'sendStateEvent'> | undefined {
    if (u?.by === undefined || (u.change.kind !== 'subject' && u.change.kind !== 'description'))
      return undefined;
    if (phoneOfRemote(u.by) === undefined) return undefined;
    const ghostId = this.c.ids.ghostIdOf(u.by);
    const member = wanted.ghosts.get(ghostId);
    return member !== undefined && (member.level >= ADMIN_LEVEL || !snapshot.locked)
      ? this.c.ghosts.client(ghostId)
      : undefined;
  }

  /** A state event (name, topic) sent when its content differs. */
  async #state(
    roomId: string,
    type: string,
    content: Content,
    setter: Pick<RetryingMatrixClient, 'sendStateEvent'> | undefined,
  ): Promise<void> {
    const key = Object.keys(content)[0] as string;
    let current: Content = {};
    try {
      current = (await this.c.bot.getRoomStateEvent(roomId, type, '')) as Content;
    } catch (err) {
      if (describeFailure(err).status !== 404) throw err;
    }
    if ((current[key] ?? '') === content[key]) return;
    if (setter !== undefined) {
      try {
        await setter.sendStateEvent(roomId, type, '', content);
        return;
      } catch (err) {
        this.c.log.debug({ room: roomId, type, err: (err as Error).message }, 'set by the bot instead');
      }
    }
    await this.c.bot.sendStateEvent(roomId, type, '', content);
  }

  /** The user's membership in the room (undefined: never invited). */
  async #membership(roomId: string, userId: string): Promise<string | undefined> {
    try {
      const m = (await this.c.bot.getRoomStateEvent(roomId, 'm.room.member', userId)) as Content;
      return typeof m['membership'] === 'string' ? m['membership'] : undefined;
    } catch (err) {
      if (describeFailure(err).status === 404) return undefined;
      throw err;
    }
  }

  /** The user is no longer in the group: told in the room, which the bridge then leaves. */
  async #gone(u: GroupUpdate): Promise<void> {
    const portal = await this.c.store.portalOf(u.localUser, u.snapshot.group);
    if (!portal) return;
    const by = u.by === undefined ? undefined : phoneOfRemote(u.by);
    await this.c.rooms.notice(
      portal.roomId,
      by === undefined
        ? `You are no longer in the group "${u.snapshot.subject}": this room is no longer bridged.`
        : `${by} removed you from the group "${u.snapshot.subject}": this room is no longer bridged.`,
    );
    await this.c.store.forgetRoom(portal.roomId);
    await this.#vacate(portal.roomId);
    this.c.log.info(
      { room: portal.roomId, user: u.localUser, group: u.snapshot.group },
      'group portal closed',
    );
  }

  /** The ghosts and the bot leave a room the bridge no longer serves (already forgotten). */
  async #vacate(roomId: string): Promise<void> {
    const members = await this.c.bot.getJoinedRoomMembers(roomId).catch(() => [] as string[]);
    for (const member of members) {
      if (this.c.ids.ghostDigits(member) === undefined) continue;
      await this.c.ghosts
        .client(member)
        .leaveRoom(roomId)
        .catch((err: unknown) =>
          this.c.log.debug({ room: roomId, err: (err as Error).message }, 'ghost did not leave'),
        );
    }
    await this.c.bot.leaveRoom(roomId).catch(() => undefined);
  }
}

const isContent = (v: unknown): v is Content => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A user's level as power levels' content gives it (`users`, else `users_default`). */
function levelsIn(content: Content): (userId: string) => number {
  const users = isContent(content['users']) ? content['users'] : {};
  const byDefault = typeof content['users_default'] === 'number' ? content['users_default'] : 0;
  return (userId) => {
    const level = users[userId];
    return typeof level === 'number' ? level : byDefault;
  };
}
