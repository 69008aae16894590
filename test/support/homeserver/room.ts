import { randomBytes } from 'node:crypto';
import { isObject } from './spec-files.js';

/** An event as the client-server API returns it and appservice transactions carry it. */
export interface ClientEvent {
  event_id: string;
  type: string;
  sender: string;
  room_id: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
  state_key?: string;
  redacts?: string;
  unsigned?: Record<string, unknown>;
}

export type Membership = 'invite' | 'join' | 'leave' | 'ban' | 'knock';

/** A refusal by the room's rules, turned into an error response by the server. */
export class RoomRuleError extends Error {
  constructor(
    readonly errcode: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const newEventId = (): string => `$${randomBytes(32).toString('base64url')}`;

/** Defaults of `m.room.power_levels` when an event or key is absent (client-server spec). */
const DEFAULT_LEVELS = { events_default: 0, state_default: 50, users_default: 0, invite: 0, redact: 50 };

/**
 * A simple room: current state keyed by (type, state_key), a linear timeline, and the authorization
 * rules a bridge can trip over (membership transitions, power levels for events and state, users'
 * own state keys). No federation, no state resolution: one server, one order of events.
 */
export class Room {
  readonly state = new Map<string, ClientEvent>();
  readonly timeline: ClientEvent[] = [];
  /** Users currently typing, with the time their typing expires. */
  readonly typing = new Map<string, number>();
  /** Receipts: receipt type -> user -> { eventId, ts, threadId? }. */
  readonly receipts = new Map<string, Map<string, { eventId: string; ts: number; threadId?: string }>>();

  constructor(
    readonly roomId: string,
    readonly version: string,
  ) {}

  stateEvent(type: string, stateKey: string): ClientEvent | undefined {
    return this.state.get(`${type}\u0000${stateKey}`);
  }

  membership(userId: string): Membership | undefined {
    const m = this.stateEvent('m.room.member', userId)?.content['membership'];
    return typeof m === 'string' ? (m as Membership) : undefined;
  }

  members(membership: Membership): string[] {
    return [...this.state.values()]
      .filter((e) => e.type === 'm.room.member' && e.content['membership'] === membership)
      .map((e) => e.state_key as string);
  }

  get encrypted(): boolean {
    return this.stateEvent('m.room.encryption', '') !== undefined;
  }

  powerLevel(userId: string): number {
    const pl = this.stateEvent('m.room.power_levels', '')?.content;
    if (pl === undefined) {
      // Before power levels exist, the creator may do everything (auth rules of room versions 1-11).
      return this.stateEvent('m.room.create', '')?.sender === userId ? 100 : 0;
    }
    const users = isObject(pl['users']) ? pl['users'] : {};
    const level = users[userId] ?? pl['users_default'] ?? DEFAULT_LEVELS.users_default;
    return typeof level === 'number' ? level : 0;
  }

  /** The level an action needs: `invite`, `redact`, or sending an event of a type. */
  requiredLevel(action: { event: string; state: boolean } | 'invite' | 'redact'): number {
    const pl = this.stateEvent('m.room.power_levels', '')?.content;
    if (pl === undefined) return 0;
    if (typeof action === 'string') {
      const v = pl[action] ?? DEFAULT_LEVELS[action];
      return typeof v === 'number' ? v : 0;
    }
    const events = isObject(pl['events']) ? pl['events'] : {};
    const v =
      events[action.event] ??
      (action.state
        ? (pl['state_default'] ?? DEFAULT_LEVELS.state_default)
        : (pl['events_default'] ?? DEFAULT_LEVELS.events_default));
    return typeof v === 'number' ? v : 0;
  }

  /**
   * Checks that `sender` may send this event (everything but membership changes, which go through
   * `authorizeMembership`). Throws a RoomRuleError naming the rule.
   */
  authorizeEvent(sender: string, type: string, stateKey: string | undefined): void {
    if (this.membership(sender) !== 'join') {
      throw new RoomRuleError('M_FORBIDDEN', 403, `${sender} is not joined to ${this.roomId}`);
    }
    const needed = this.requiredLevel({ event: type, state: stateKey !== undefined });
    const has = this.powerLevel(sender);
    if (has < needed) {
      throw new RoomRuleError(
        'M_FORBIDDEN',
        403,
        `${sender} has power level ${has}, but ${type} needs ${needed} in ${this.roomId}`,
      );
    }
    if (stateKey !== undefined && stateKey.startsWith('@') && stateKey !== sender) {
      throw new RoomRuleError(
        'M_FORBIDDEN',
        403,
        `only ${stateKey} may set state with its own user ID as state key`,
      );
    }
  }

  /** A change of power levels may not grant or take away more than the sender's own level. */
  authorizePowerLevels(sender: string, next: Record<string, unknown>): void {
    const own = this.powerLevel(sender);
    const before = this.stateEvent('m.room.power_levels', '')?.content ?? {};
    const beforeUsers = isObject(before['users']) ? before['users'] : {};
    const nextUsers = isObject(next['users']) ? next['users'] : {};
    for (const user of new Set([...Object.keys(beforeUsers), ...Object.keys(nextUsers)])) {
      const a = beforeUsers[user];
      const b = nextUsers[user];
      if (a === b) continue;
      if (typeof b === 'number' && b > own) {
        throw new RoomRuleError('M_FORBIDDEN', 403, `${sender} (level ${own}) cannot raise ${user} to ${b}`);
      }
      if (user !== sender && typeof a === 'number' && a >= own) {
        throw new RoomRuleError(
          'M_FORBIDDEN',
          403,
          `${sender} (level ${own}) cannot change the level of ${user} (${a})`,
        );
      }
    }
  }

  /**
   * Membership transitions as the spec's authorization rules allow them: invite by a joined member
   * with the invite level to someone not joined or banned; join when invited, already joined, or the
   * room is public; leave from invite (reject) or join, or kick of another member.
   */
  authorizeMembership(sender: string, target: string, membership: Membership): void {
    const current = this.membership(target);
    const joinRule = this.stateEvent('m.room.join_rules', '')?.content['join_rule'] ?? 'invite';
    switch (membership) {
      case 'invite':
        if (this.membership(sender) !== 'join') {
          throw new RoomRuleError(
            'M_FORBIDDEN',
            403,
            `${sender} is not joined to ${this.roomId} and cannot invite`,
          );
        }
        if (this.powerLevel(sender) < this.requiredLevel('invite')) {
          throw new RoomRuleError('M_FORBIDDEN', 403, `${sender} lacks the power level to invite`);
        }
        if (current === 'join' || current === 'ban') {
          throw new RoomRuleError(
            'M_FORBIDDEN',
            403,
            `${target} is already ${current === 'join' ? 'in the room' : 'banned'}`,
          );
        }
        return;
      case 'join':
        if (sender !== target)
          throw new RoomRuleError('M_FORBIDDEN', 403, 'users can only join for themselves');
        if (current === 'ban')
          throw new RoomRuleError('M_FORBIDDEN', 403, `${target} is banned from ${this.roomId}`);
        if (current === 'invite' || current === 'join' || joinRule === 'public') return;
        throw new RoomRuleError('M_FORBIDDEN', 403, `${target} is not invited to ${this.roomId}`);
      case 'leave':
        if (sender === target) {
          if (current === 'join' || current === 'invite' || current === 'knock') return;
          throw new RoomRuleError('M_FORBIDDEN', 403, `${target} is not in ${this.roomId}`);
        }
        this.authorizeEvent(sender, 'm.room.member', undefined);
        return;
      default:
        throw new RoomRuleError(
          'M_FORBIDDEN',
          403,
          `the stand-in homeserver does not support membership ${membership}`,
        );
    }
  }

  /** Appends an authorized event: to the timeline, and to the current state if it is a state event. */
  append(event: ClientEvent): void {
    this.timeline.push(event);
    if (event.state_key !== undefined) this.state.set(`${event.type}\u0000${event.state_key}`, event);
  }

  event(eventId: string): ClientEvent | undefined {
    return this.timeline.find((e) => e.event_id === eventId);
  }
}
