/**
 * Groups as XEP-0045 rooms the component hosts, in the manner of Slidge: the group
 * `120363001@g.wa.interop` is the room `120363001@<component>`, each member an occupant named by
 * their number (`room/+4915112345678`), admins as room admins and moderators. A user joins with
 * the usual MUC presence (Conversations and Gajim do on an XEP-0249 invitation, which the
 * component sends when the user is added to a group), gets every occupant, their own presence
 * (status 110) and the subject; what they send in the room goes to the group and is reflected to
 * their joined clients; what members send arrives from their occupant JIDs.
 *
 * Who is joined is kept in memory: after a component restart, clients find out with XEP-0410
 * self-pings (answered `not-acceptable` when they are not joined) and join again. A group message
 * for a user with no joined client is refused: the core keeps it in its inbox and offers it again,
 * so the user gets it once they join.
 */
import { xml, type Element } from '@xmpp/xml';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type {
  DeliveryUpdate,
  GroupMember,
  GroupSnapshot,
  GroupUpdate,
  IncomingEvent,
  OutgoingEvent,
} from '../../src/bridge/events.js';
import type { Logger } from '../../src/observability/logger.js';
import type { Access, Outbound, UserChain } from './context.js';
import { bareJid, contactJidOfRemote, localPartOf, resourceOf } from './jids.js';
import { XmppUserError } from './errors.js';
import { derivedId, NS, stanzaError, xmlSafe } from './stanzas.js';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_CONFERENCE = 'jabber:x:conference';
const GROUP_SERVER = 'g.wa.interop';
/** What a 1:1 message carries that a room message does not (receipts, markers, chat states, its own origin-id). */
const ONE_TO_ONE_ONLY: ReadonlySet<string> = new Set([NS.receipts, NS.markers, NS.chatstates, NS.sid]);
const ROOM_FEATURES = [
  NS_MUC,
  'muc_persistent',
  'muc_membersonly',
  'muc_nonanonymous',
  'muc_unsecured',
  NS.sid,
  NS.reply,
  NS.reactions,
  NS.correct,
  NS.retract,
  NS.markers,
] as const;

export interface RoomsContext {
  readonly domain: string;
  readonly core: Pick<BridgeCore, 'submit' | 'group' | 'retryDeliveries' | 'changeGroup'>;
  readonly out: Outbound;
  readonly access: Access;
  readonly chain: UserChain;
  readonly log: Logger | undefined;
}

/** A user in a room: the nick they chose and their joined clients (full JIDs). */
interface Occupancy {
  nick: string;
  readonly resources: Set<string>;
}

/** The room of a group, and back. */
export const roomOfGroup = (group: string, domain: string): string => `${group.split('@')[0]}@${domain}`;
export function groupOfRoom(room: string, domain: string): string | undefined {
  const local = localPartOf(room);
  if (!local || !/^[1-9][0-9]{0,31}$/.test(local) || bareJid(room).split('@')[1] !== domain) return undefined;
  return `${local}@${GROUP_SERVER}`;
}

/** The nick a member has in the room: their number (or the account's user part). */
export const nickOf = (m: { remote: string; phone?: string | undefined }): string =>
  m.phone ?? m.remote.split('@')[0] ?? m.remote;

export class Rooms {
  /** By room JID, then by user (bare JID). */
  private readonly joined = new Map<string, Map<string, Occupancy>>();

  constructor(private readonly ctx: RoomsContext) {}

  /** The member (not the user) a nick names in the user's view of a room. */
  async memberByNick(user: string, snapshot: GroupSnapshot, nick: string): Promise<GroupMember | undefined> {
    return snapshot.members.find((m) => !m.self && nickOf(m) === nick);
  }

  /** A new subject from the user (XEP-0045 8.1): the group's once the gateway agrees, then shown. */
  async setSubject(user: string, room: string, subject: string): Promise<void> {
    const group = groupOfRoom(room, this.ctx.domain);
    if (!group || !this.joined.get(room)?.has(user)) {
      throw new XmppUserError('xmpp_not_in_room', 'cancel', 'not-acceptable', 'Join the room first.');
    }
    try {
      await this.ctx.core.changeGroup?.(user, group, { action: 'subject', subject });
    } catch (err) {
      throw new XmppUserError('xmpp_group_refused', 'auth', 'forbidden', (err as Error).message);
    }
  }

  /** Whether `jid` (bare) is a room of this component. */
  isRoom(jid: string): boolean {
    return groupOfRoom(jid, this.ctx.domain) !== undefined;
  }

  /** A presence to a room occupant JID: joining (available) or leaving (unavailable). */
  presence(el: Element): void {
    const from = el.attrs.from as string;
    const to = el.attrs.to as string;
    const user = bareJid(from);
    const room = bareJid(to);
    const nick = resourceOf(to);
    if ((el.attrs.type ?? 'available') === 'unavailable') {
      this.ctx.chain.queue(user, () => this.leave(user, from, room));
      return;
    }
    if ((el.attrs.type ?? 'available') !== 'available') return;
    this.ctx.chain.queue(user, () => this.join(user, from, room, nick, el));
  }

  private async join(user: string, full: string, room: string, nick: string | undefined, el: Element) {
    const { out, domain } = this.ctx;
    const refuse = (condition: string, text: string, type = 'cancel') =>
      out.fire(
        xml(
          'presence',
          { from: room + (nick ? `/${nick}` : ''), to: full, type: 'error', id: el.attrs.id },
          xml('x', { xmlns: NS_MUC }),
          stanzaError(type as 'cancel', condition, text),
        ),
      );
    if (!nick) return refuse('jid-malformed', 'Join with a nickname: room@server/nick.', 'modify');
    if (!this.ctx.access.mayUse(user)) return refuse('forbidden', this.ctx.access.notAllowed(user).message);
    if (!(await this.ctx.access.isRegistered(user)))
      return refuse('registration-required', `Register with ${domain} first.`, 'auth');
    const group = await this.snapshot(user, room);
    if (!group) return refuse('item-not-found', 'You are not a member of this group.');
    const occupants = this.occupantsOf(room);
    const mine = occupants.get(user) ?? { nick, resources: new Set<string>() };
    mine.nick = nick;
    mine.resources.add(full);
    occupants.set(user, mine);
    // Everyone else first, then the user (110: this is you; 100: the room shows real JIDs).
    for (const m of group.members) {
      if (m.self) continue;
      out.fire(occupantPresence(room, full, nickOf(m), m.admin, contactJidOfRemote(m.remote, domain)));
    }
    const self = group.members.find((m) => m.self);
    out.fire(occupantPresence(room, full, nick, self?.admin ?? false, full, ['110', '100']));
    out.fire(
      xml(
        'message',
        { type: 'groupchat', from: room, to: full, id: derivedId('subject', room, group.subject) },
        xml('subject', {}, xmlSafe(group.subject)),
      ),
    ); // What waited for the user to join comes now (the core kept it).
    await this.ctx.core.retryDeliveries?.(user);
  }

  private async leave(user: string, full: string, room: string): Promise<void> {
    const occupancy = this.joined.get(room)?.get(user);
    if (!occupancy?.resources.delete(full)) return;
    this.ctx.out.fire(occupantGone(room, full, occupancy.nick, ['110']));
    if (occupancy.resources.size === 0) this.joined.get(room)?.delete(user);
  }

  /**
   * A groupchat message from the user to a room: handed to the core as a message to the group
   * (`submit`), then reflected to every client of the user in the room, as XEP-0045 asks.
   */
  async fromUser(
    el: Element,
    localId: string,
    event: OutgoingEvent['event'],
    taken: () => void,
  ): Promise<void> {
    const from = el.attrs.from as string;
    const user = bareJid(from);
    const room = bareJid(el.attrs.to as string);
    const occupancy = this.joined.get(room)?.get(user);
    const group = groupOfRoom(room, this.ctx.domain);
    if (!occupancy || !group) {
      this.ctx.out.fire(
        xml(
          'message',
          { type: 'error', from: room, to: from, id: el.attrs.id },
          stanzaError('cancel', 'not-acceptable', 'Join the room before you send to it.'),
        ),
      );
      return;
    }
    await this.ctx.core.submit({ localUser: user, localId, remote: group, event });
    taken();
    // The room's stanza-id is the id the core knows the message by: clients name it in replies,
    // reactions, retractions and markers (XEP-0461, XEP-0444, XEP-0424 and XEP-0333 in groupchat).
    const children = el
      .getChildElements()
      .filter((c) => c.attrs.xmlns !== NS.receipts && !(c.name === 'stanza-id' && c.attrs.xmlns === NS.sid));
    const stanzaId =
      event.type === 'receipt' ? [] : [xml('stanza-id', { xmlns: NS.sid, id: localId, by: room })];
    for (const to of occupancy.resources) {
      this.ctx.out.fire(
        xml(
          'message',
          { type: 'groupchat', from: `${room}/${occupancy.nick}`, to, id: el.attrs.id ?? localId },
          ...children,
          ...stanzaId,
        ),
      );
    }
  }

  /**
   * A member's receipt for the user's message: a read one is that member's XEP-0333 displayed
   * marker in the room (as Conversations shows who read what); delivery receipts are not shown in
   * rooms. Nothing for a user with no joined client: the marker is worth nothing later.
   */
  async receipt(update: DeliveryUpdate): Promise<{ confirmed?: Promise<void> }> {
    const room = roomOfGroup(update.remote, this.ctx.domain);
    const occupancy = this.joined.get(room)?.get(update.localUser);
    if (update.state !== 'read' || update.by === undefined || !occupancy) return {};
    const group = await this.ctx.core.group?.(update.localUser, update.remote);
    const nick = nickOf(group?.members.find((m) => m.remote === update.by) ?? { remote: update.by });
    const id = derivedId('read', update.localUser, update.by, update.localId);
    const sends = [...occupancy.resources].map((to) =>
      this.ctx.out.send(
        xml(
          'message',
          { type: 'groupchat', from: `${room}/${nick}`, to, id },
          xml('displayed', { xmlns: NS.markers, id: update.localId }),
        ),
      ),
    );
    return { confirmed: Promise.all(sends).then(() => undefined) };
  }

  /**
   * A member's message in the group, to each of the user's clients in the room; refused (the core
   * offers it again later) while none is joined. Resolves with the stanza id once the server has it.
   */
  async deliver(event: IncomingEvent, stanzas: readonly Element[]): Promise<string> {
    const room = roomOfGroup(event.remote, this.ctx.domain);
    const occupancy = this.joined.get(room)?.get(event.localUser);
    if (!occupancy || occupancy.resources.size === 0) {
      throw new Error(`${event.localUser} has not joined ${room}: the message waits`);
    }
    const group = await this.ctx.core.group?.(event.localUser, event.remote);
    const author = group?.members.find((m) => m.remote === event.author);
    const nick = author ? nickOf(author) : nickOf({ remote: event.author ?? 'someone@unknown' });
    // Each stanza the chat form would have (a text; a file and its caption) as a groupchat message,
    // under the same ids, without what only 1:1 chats use (receipts, markers, chat states).
    const sends: Promise<void>[] = [];
    for (const stanza of stanzas) {
      const id = String(stanza.attrs.id);
      const children = stanza.getChildElements().filter((c) => !ONE_TO_ONE_ONLY.has(c.attrs.xmlns ?? ''));
      for (const to of occupancy.resources) {
        sends.push(
          this.ctx.out.send(
            xml(
              'message',
              { type: 'groupchat', from: `${room}/${nick}`, to, id },
              ...children,
              xml('origin-id', { xmlns: NS.sid, id }),
              xml('stanza-id', { xmlns: NS.sid, id, by: room }),
            ),
          ),
        );
      }
    }
    await Promise.all(sends);
    return String(stanzas[0]?.attrs.id ?? derivedId('wa', event.localUser, event.remote, event.remoteId));
  }

  /**
   * A change of a group: an invitation when the user was added (created), occupants' presences and
   * the subject for the user's joined clients, and the end of the room when the user is gone.
   */
  async update(u: GroupUpdate): Promise<void> {
    const { out, domain } = this.ctx;
    const room = roomOfGroup(u.snapshot.group, domain);
    const clients = [...(this.joined.get(room)?.get(u.localUser)?.resources ?? [])];
    switch (u.change.kind) {
      case 'created':
        return this.invite(u, room);
      case 'gone': {
        const mine = this.joined.get(room)?.get(u.localUser);
        for (const to of clients) out.fire(occupantGone(room, to, mine?.nick ?? 'you', ['110', '321']));
        this.joined.get(room)?.delete(u.localUser);
        return;
      }
      case 'subject':
        for (const to of clients)
          out.fire(
            xml(
              'message',
              { type: 'groupchat', from: room, to },
              xml('subject', {}, xmlSafe(u.snapshot.subject)),
            ),
          );
        return;
      case 'added':
      case 'promoted':
      case 'demoted': {
        const changed = new Set(u.change.members);
        // The user added to a group they were not in: an invitation to its room.
        if (
          u.change.kind === 'added' &&
          u.snapshot.members.some((m) => m.self === true && changed.has(m.remote))
        ) {
          return this.invite(u, room);
        }
        const mine = this.joined.get(room)?.get(u.localUser);
        for (const m of u.snapshot.members) {
          if (!changed.has(m.remote)) continue;
          for (const to of clients) {
            // The user's own new affiliation too (110), so their client offers what admins may do.
            out.fire(
              m.self
                ? occupantPresence(room, to, mine?.nick ?? 'me', m.admin, to, ['110'])
                : occupantPresence(room, to, nickOf(m), m.admin, contactJidOfRemote(m.remote, domain)),
            );
          }
        }
        return;
      }
      case 'removed':
        for (const remote of u.change.members)
          for (const to of clients)
            out.fire(occupantGone(room, to, nickOf({ remote, phone: phoneOf(remote) }), ['321']));
        return;
      default:
        return;
    }
  }

  /** XEP-0249: an invitation to the room of a group the user was added to (clients offer to join). */
  private async invite(u: GroupUpdate, room: string): Promise<void> {
    const by = u.snapshot.members.find((m) => m.remote === u.by && !m.self);
    const reason = `${by ? nickOf(by) : 'Someone'} added you to the group "${u.snapshot.subject}"`;
    await this.ctx.out.send(
      xml(
        'message',
        { from: room, to: u.localUser, id: derivedId('invite', room, u.updateId) },
        xml('x', { xmlns: NS_CONFERENCE, jid: room, reason: xmlSafe(reason) }),
        xml('body', {}, xmlSafe(`${reason}: xmpp:${room}?join`)),
      ),
    );
  }

  /** XEP-0410: a client asks whether it is still in the room (after our restart it is not). */
  isJoined(full: string, room: string): boolean {
    return this.joined.get(bareJid(room))?.get(bareJid(full))?.resources.has(full) === true;
  }

  /** disco#info of a room: a members-only, non-anonymous, persistent text conference. */
  async info(user: string, room: string): Promise<Element[] | undefined> {
    const group = await this.snapshot(user, room);
    if (!group) return undefined;
    return [
      xml('identity', { category: 'conference', type: 'text', name: xmlSafe(group.subject) }),
      ...ROOM_FEATURES.map((v) => xml('feature', { var: v })),
    ];
  }

  private occupantsOf(room: string): Map<string, Occupancy> {
    let occupants = this.joined.get(room);
    if (!occupants) {
      occupants = new Map();
      this.joined.set(room, occupants);
    }
    return occupants;
  }

  private async snapshot(user: string, room: string): Promise<GroupSnapshot | undefined> {
    const group = groupOfRoom(room, this.ctx.domain);
    return group ? this.ctx.core.group?.(user, group) : undefined;
  }
}

const phoneOf = (remote: string): string | undefined => {
  const user = remote.split('@')[0] ?? '';
  return remote.endsWith('@wa.interop') && /^[1-9][0-9]{5,14}$/.test(user) ? `+${user}` : undefined;
};

/** An occupant's presence: its affiliation and role, and its real JID (the room is non-anonymous). */
function occupantPresence(
  room: string,
  to: string,
  nick: string,
  admin: boolean,
  jid: string,
  codes: readonly string[] = [],
): Element {
  return xml(
    'presence',
    { from: `${room}/${nick}`, to },
    xml(
      'x',
      { xmlns: NS_MUC_USER },
      xml('item', {
        affiliation: admin ? 'admin' : 'member',
        role: admin ? 'moderator' : 'participant',
        jid,
      }),
      ...codes.map((code) => xml('status', { code })),
    ),
  );
}

/** An occupant leaving (or removed: 321, members-only room, no longer a member). */
function occupantGone(room: string, to: string, nick: string, codes: readonly string[]): Element {
  return xml(
    'presence',
    { from: `${room}/${nick}`, to, type: 'unavailable' },
    xml(
      'x',
      { xmlns: NS_MUC_USER },
      xml('item', { affiliation: codes.includes('321') ? 'none' : 'member', role: 'none' }),
      ...codes.map((code) => xml('status', { code })),
    ),
  );
}
