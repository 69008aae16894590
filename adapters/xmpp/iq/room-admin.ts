/**
 * Moderation of a group's room from the user's client (XEP-0045's `muc#admin` namespace), carried
 * to the gateway as group requests, and the member lists clients ask for:
 *
 * - a kick (`role="none"` by nick) or a ban (`affiliation="outcast"`, or `none`) removes the member;
 * - `affiliation="admin"` or `"owner"` (or `role="moderator"`) promotes; `"member"` demotes an admin
 *   or adds someone not in the group yet, and so does `role="participant"` for an admin;
 * - the user setting their own affiliation to `none` leaves the group (XEP-0045 has no other way
 *   to end a membership: leaving the room only leaves the room);
 * - a get for the `owner`, `admin`, `member` or `outcast` list answers from the group's state.
 *
 * The gateway decides who may do what: a refusal (the user is not an admin, a locked group) comes
 * back as `not-allowed` with its reason. The room shows the change when the gateway announces it.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import type { BridgeCore, GroupRequest } from '../../../src/bridge/adapter.js';
import type { GroupMember, GroupSnapshot } from '../../../src/bridge/events.js';
import { bareJid, contactJidOfRemote, remoteOfContact } from '../jids.js';
import { stanzaError } from '../stanzas.js';

export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';

export interface RoomAdminContext {
  readonly domain: string;
  readonly core: Pick<BridgeCore, 'group' | 'changeGroup'>;
  /** The group of a room JID, if it is one. */
  groupOf(room: string): string | undefined;
  /** The member a nick names in the user's view of the room. */
  memberByNick(user: string, snapshot: GroupSnapshot, nick: string): Promise<GroupMember | undefined>;
}

const LISTS = new Set(['owner', 'admin', 'member', 'outcast']);

export class RoomAdmin {
  constructor(private readonly ctx: RoomAdminContext) {}

  /** `<iq type="get"><query xmlns="muc#admin"><item affiliation="..."/></query></iq>`. */
  async get({ stanza, element }: IqContext): Promise<Element> {
    const found = await this.room(stanza);
    if ('error' in found) return found.error;
    const affiliation = element.getChild('item')?.attrs.affiliation as string | undefined;
    if (!affiliation || !LISTS.has(affiliation)) {
      return stanzaError('modify', 'bad-request', 'Ask for the owner, admin, member or outcast list.');
    }
    // Admins are the room's admins; the group has no owners or outcasts of its own.
    const listed = found.snapshot.members.filter((m) =>
      affiliation === 'admin' ? m.admin : affiliation === 'member' ? !m.admin : false,
    );
    return xml(
      'query',
      { xmlns: NS_MUC_ADMIN },
      ...listed.map((m) =>
        xml('item', {
          affiliation,
          jid: m.self ? found.user : contactJidOfRemote(m.remote, this.ctx.domain),
        }),
      ),
    );
  }

  /** `<iq type="set"><query xmlns="muc#admin"><item .../></query></iq>`: one request per item. */
  async set({ stanza, element }: IqContext): Promise<Element | boolean> {
    const found = await this.room(stanza);
    if ('error' in found) return found.error;
    const { user, group, snapshot } = found;
    const requests: GroupRequest[] = [];
    for (const item of element.getChildren('item')) {
      const request = await this.requestOf(user, snapshot, item);
      if ('error' in request) return request.error;
      requests.push(request.request);
    }
    if (requests.length === 0) return stanzaError('modify', 'bad-request', 'Name at least one item.');
    try {
      for (const request of requests) await this.ctx.core.changeGroup?.(user, group, request);
    } catch (err) {
      return stanzaError('cancel', 'not-allowed', `The group did not change: ${(err as Error).message}`);
    }
    return true;
  }

  private async requestOf(
    user: string,
    snapshot: GroupSnapshot,
    item: Element,
  ): Promise<{ request: GroupRequest } | { error: Element }> {
    const { affiliation, role, nick, jid } = item.attrs as Record<string, string | undefined>;
    const bad = (text: string) => ({ error: stanzaError('modify', 'bad-request', text) });
    let remote: string | undefined;
    let member: GroupMember | undefined;
    if (jid !== undefined) {
      if (bareJid(jid) === user) member = snapshot.members.find((m) => m.self);
      else {
        remote = remoteOfContact(bareJid(jid));
        if (remote === undefined) return bad(`${jid} is not a contact of this gateway.`);
        member = snapshot.members.find((m) => m.remote === remote);
      }
    } else if (nick !== undefined) {
      member = await this.ctx.memberByNick(user, snapshot, nick);
      if (!member)
        return { error: stanzaError('cancel', 'item-not-found', `No one is called ${nick} here.`) };
    } else {
      return bad('Name the occupant by nick or by jid.');
    }
    const target = member?.remote ?? remote!;
    if (member?.self) {
      if (affiliation === 'none' || affiliation === 'outcast') return { request: { action: 'leave' } };
      return {
        error: stanzaError(
          'cancel',
          'not-allowed',
          'You can only leave the group (your affiliation to none).',
        ),
      };
    }
    const change = (action: 'add' | 'remove' | 'promote' | 'demote') => ({
      request: { action, members: [target] } as GroupRequest,
    });
    if (affiliation === 'outcast' || affiliation === 'none' || role === 'none') {
      return member ? change('remove') : bad(`${jid ?? nick} is not in the group.`);
    }
    if (affiliation === 'admin' || affiliation === 'owner' || role === 'moderator') {
      return member ? change('promote') : bad('Add them to the group first (affiliation member).');
    }
    if (affiliation === 'member' || role === 'participant') {
      if (!member) return change('add');
      if (member.admin) return change('demote');
      return bad(`${jid ?? nick} is a member already.`);
    }
    return bad(
      'Set an affiliation (owner, admin, member, none, outcast) or a role (moderator, participant, none).',
    );
  }

  private async room(
    stanza: Element,
  ): Promise<{ user: string; group: string; snapshot: GroupSnapshot } | { error: Element }> {
    const user = bareJid(stanza.attrs.from ?? '');
    const group = this.ctx.groupOf(bareJid(stanza.attrs.to ?? ''));
    const snapshot = group ? await this.ctx.core.group?.(user, group) : undefined;
    if (!group || !snapshot) {
      return { error: stanzaError('cancel', 'item-not-found', 'You are not a member of this group.') };
    }
    return { user, group, snapshot };
  }
}
