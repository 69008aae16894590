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
import type { Bookmarks } from './bookmarks.js';
import { bareJid, contactJidOfRemote, localPartOf, resourceOf } from './jids.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import { XmppUserError } from './errors.js';
import { plainNickOf, RoomNicks } from './room-nicks.js';
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
  /** XEP-0402 bookmarks of the rooms, where the server lets the component write them (bookmarks.ts). */
  readonly bookmarks?: Pick<Bookmarks, 'add' | 'remove'> | undefined;
  /** A contact's push name as the user's view has it (their profile), for occupants' nicks. */
  readonly nameOf?: ((user: string, remote: string) => Promise<string | undefined>) | undefined;
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

export class Rooms {
  /** By room JID, then by user (bare JID). */
  private readonly joined = new Map<string, Map<string, Occupancy>>();
  /** Members' nicks, push names where known (room-nicks.ts). */
  private readonly nicks: RoomNicks;

  constructor(private readonly ctx: RoomsContext) {
    this.nicks = new RoomNicks(ctx.nameOf ?? (() => Promise.resolve(undefined)));
  }

  /** The member (not the user) a nick names in the user's view of a room. */
  async memberByNick(user: string, snapshot: GroupSnapshot, nick: string): Promise<GroupMember | undefined> {
    const room = roomOfGroup(snapshot.group, this.ctx.domain);
    const table = this.nicks.known(room, user) ?? (await this.nicks.compute(room, user, snapshot, ''));
    return snapshot.members.find((m) => !m.self && (table.get(m.remote) ?? plainNickOf(m)) === nick);
  }

  /** The member an occupant JID (`room/nick`) names in the user's view, if any. */
  async remoteOfOccupant(user: string, occupant: string): Promise<string | undefined> {
    const nick = resourceOf(occupant);
    const snapshot = await this.snapshot(user, bareJid(occupant));
    if (nick === undefined || !snapshot) return undefined;
    return (await this.memberByNick(user, snapshot, nick))?.remote;
  }

  /**
   * A contact's push name changed: in each room the user is in with them, their nick changes too
   * (XEP-0045 7.6: the old occupant leaves with status 303 naming the new nick, the new one comes).
   * Queued on the user's chain, after a join in progress: a join that read the names before this
   * one was kept has no nick table yet, and would otherwise keep the old name.
   */
  renamed(user: string, remote: string): void {
    this.ctx.chain.queue(user, async () => {
      for (const [room] of [...this.nicks.roomsWith(user, remote)]) {
        const occupancy = this.joined.get(room)?.get(user);
        const snapshot = await this.snapshot(user, room);
        if (occupancy && snapshot) await this.renick(room, user, occupancy, snapshot);
      }
    });
  }

  /**
   * Works the room's nicks out again and tells the user's clients of each that changed (a name
   * changed, or a member came or went whose name another member shares).
   */
  private async renick(room: string, user: string, occupancy: Occupancy, snapshot: GroupSnapshot) {
    const { out, domain } = this.ctx;
    const before = new Map(this.nicks.known(room, user) ?? []);
    const after = await this.nicks.compute(room, user, snapshot, occupancy.nick);
    for (const m of snapshot.members) {
      const [was, is] = [before.get(m.remote), after.get(m.remote)];
      if (m.self || was === undefined || is === undefined || was === is) continue;
      const jid = contactJidOfRemote(m.remote, domain);
      for (const to of occupancy.resources) {
        out.fire(occupantRenamed(room, to, was, is, m.admin, jid));
        out.fire(occupantPresence(room, to, is, m.admin, jid));
      }
    }
    return after;
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
    const nicks = await this.nicks.compute(room, user, group, nick);
    // Everyone else first, then the user (110: this is you; 100: the room shows real JIDs).
    for (const m of group.members) {
      if (m.self) continue;
      const shown = nicks.get(m.remote) ?? plainNickOf(m);
      out.fire(occupantPresence(room, full, shown, m.admin, contactJidOfRemote(m.remote, domain)));
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
    if (occupancy.resources.size === 0) {
      this.joined.get(room)?.delete(user);
      this.nicks.forget(room, user);
    }
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
    await this.ctx.core.submit({
      localUser: user,
      localId,
      remote: group,
      event: this.mentioning(room, user, event),
    });
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
   * Members named by nick in the user's text become mentions, as clients write them ("Sam: ..." at
   * the start, "@Sam" anywhere): the nick becomes the `@<number>` token the gatekeeper's apps show
   * as the member's name, with the member in `mentions`. The user's own clients keep what they wrote.
   */
  private mentioning(room: string, user: string, event: OutgoingEvent['event']): OutgoingEvent['event'] {
    if (event.type !== 'message' || event.body.kind !== 'text') return event;
    const nicks = [...(this.nicks.known(room, user) ?? [])].sort(([, a], [, b]) => b.length - a.length);
    let text = event.body.text;
    const mentions = [...(event.body.mentions ?? [])];
    for (const [remote, nick] of nicks) {
      const token = `@${remote.split('@')[0]}`;
      const before = text;
      if (text.startsWith(`${nick}:`) || text.startsWith(`${nick},`)) text = token + text.slice(nick.length);
      text = text.split(`@${nick}`).join(token);
      if (text !== before && !mentions.some((m) => m.remote === remote)) mentions.push({ remote, token });
    }
    if (mentions.length === (event.body.mentions?.length ?? 0)) return event;
    return { ...event, body: { ...event.body, text, mentions } };
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
    const group = async () => this.ctx.core.group?.(update.localUser, update.remote);
    const nick = await this.nicks.of(room, update.localUser, group, update.by, occupancy.nick);
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
    const nick = await this.nicks.of(
      room,
      event.localUser,
      async () => this.ctx.core.group?.(event.localUser, event.remote),
      event.author ?? 'someone@unknown',
      occupancy.nick,
    );
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
        this.ctx.bookmarks?.remove(u.localUser, room);
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
        const nicks = mine
          ? await this.renick(room, u.localUser, mine, u.snapshot)
          : new Map<string, string>();
        for (const m of u.snapshot.members) {
          if (!changed.has(m.remote)) continue;
          const jid = contactJidOfRemote(m.remote, domain);
          for (const to of clients) {
            // The user's own new affiliation too (110), so their client offers what admins may do.
            out.fire(
              m.self
                ? occupantPresence(room, to, mine?.nick ?? 'me', m.admin, to, ['110'])
                : occupantPresence(room, to, nicks.get(m.remote) ?? plainNickOf(m), m.admin, jid),
            );
          }
        }
        return;
      }
      case 'removed': {
        // Under the nicks they had (worked out again after, for those who remain).
        const gone = new Map(this.nicks.known(room, u.localUser) ?? []);
        const mine = this.joined.get(room)?.get(u.localUser);
        for (const remote of u.change.members) {
          const nick = gone.get(remote) ?? plainNickOf({ remote, phone: phoneOfRemote(remote) });
          for (const to of clients) out.fire(occupantGone(room, to, nick, ['321']));
        }
        if (mine) await this.renick(room, u.localUser, mine, u.snapshot);
        // The core says 'gone' when the user is removed; a snapshot without them means the same.
        if (!u.snapshot.members.some((m) => m.self)) this.ctx.bookmarks?.remove(u.localUser, room);
        return;
      }
      default:
        return;
    }
  }

  /** XEP-0249: an invitation to the room of a group the user was added to (clients offer to join). */
  private async invite(u: GroupUpdate, room: string): Promise<void> {
    const by = u.snapshot.members.find((m) => m.remote === u.by && !m.self);
    const byName = by ? ((await this.ctx.nameOf?.(u.localUser, by.remote)) ?? plainNickOf(by)) : 'Someone';
    const reason = `${byName} added you to the group "${u.snapshot.subject}"`;
    await this.ctx.out.send(
      xml(
        'message',
        { from: room, to: u.localUser, id: derivedId('invite', room, u.updateId) },
        xml('x', { xmlns: NS_CONFERENCE, jid: room, reason: xmlSafe(reason) }),
        xml('body', {}, xmlSafe(`${reason}: xmpp:${room}?join`)),
      ),
    );
    // Listed (and joined) by the user's clients without accepting the invitation, under the nick a
    // client would take when accepting it: the user part of their JID.
    this.ctx.bookmarks?.add(u.localUser, {
      room,
      name: u.snapshot.subject,
      nick: localPartOf(u.localUser) ?? u.localUser,
    });
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

/** An occupant's presence: its affiliation and role, and its real JID (the room is non-anonymous). */
function occupantPresence(
  room: string,
  to: string,
  nick: string,
  admin: boolean,
  jid: string,
  codes: readonly string[] = [],
  extra: { type?: 'unavailable'; newNick?: string } = {},
): Element {
  return xml(
    'presence',
    { from: `${room}/${nick}`, to, ...(extra.type ? { type: extra.type } : {}) },
    xml(
      'x',
      { xmlns: NS_MUC_USER },
      xml('item', {
        affiliation: admin ? 'admin' : 'member',
        role: admin ? 'moderator' : 'participant',
        jid,
        ...(extra.newNick !== undefined ? { nick: extra.newNick } : {}),
      }),
      ...codes.map((code) => xml('status', { code })),
    ),
  );
}

/** An occupant changing nick (XEP-0045 7.6): the old one leaves with 303, naming the new nick. */
const occupantRenamed = (
  room: string,
  to: string,
  before: string,
  after: string,
  admin: boolean,
  jid: string,
) => occupantPresence(room, to, before, admin, jid, ['303'], { type: 'unavailable', newNick: after });

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
