/**
 * Groups as XEP-0045 rooms on real Prosody and ejabberd: a group native users make with an XMPP
 * user in it arrives as an XEP-0249 invitation to `<group id>@<component>`; joining gives every
 * occupant, the user's own presence and the subject; messages cross both ways (the user's own
 * reflected, as XEP-0045 asks), members leaving show as occupants leaving, and a client that is not
 * in the room (after a component restart) learns it from an XEP-0410 self-ping.
 */
import { xml, type Element } from '@xmpp/xml';
import type { GroupEventRecord } from '../../emulator/native-groups.js';
import type { XmppServerKind } from '../support/xmpp-servers.js';
import { bodyOf, DOMAIN, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
const MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';

describe.each(['prosody', 'ejabberd'] as XmppServerKind[])('groups as rooms on %s', (kind) => {
  let h: XmppBridgeHarness;
  let seq = 0;
  const phone = () => `+491520000${kind === 'prosody' ? 1 : 2}${String(++seq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { database: 'sqlite' });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  it('an invitation, the join, messages both ways, a member removed and the user leaving', async () => {
    const alice = await h.registeredUser('alice');
    const [bob, carol] = [await h.native(phone()), await h.native(phone())];
    const me = await h.puppetJid(alice.jid);
    const bobPhone = `+${bob.jid.split('@')[0]}`;
    const carolPhone = `+${carol.jid.split('@')[0]}`;
    const { group } = await bob.groups.create('Lunch crew', [me, carol.jid]);
    const room = `${group.jid.split('@')[0]}@${DOMAIN}`;

    // XEP-0249: the invitation names the room.
    const invite = await alice.waitForStanza(
      (s) => s.name === 'message' && s.getChild('x', 'jabber:x:conference')?.attrs.jid === room,
    );
    expect(invite.getChild('x', 'jabber:x:conference')?.attrs.reason).toMatch(
      /added you to the group "Lunch crew"/,
    );

    // A message before Alice joins waits in the core (the room has no client of hers to show it);
    // after a few refusals the core's back-off is long, but joining brings it at once.
    await bob.send(group.jid, { kind: 'text', text: 'early bird' });
    await new Promise((r) => setTimeout(r, 4_000));
    expect(alice.messages.some((m) => bodyOf(m) === 'early bird')).toBe(false);

    // The join: the other occupants, then the user (110), then the subject.
    await alice.client.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: MUC })));
    const self = await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === `${room}/alice` && hasStatus(s, '110'),
    );
    expect(itemOf(self)).toMatchObject({ affiliation: 'member', role: 'participant' });
    const bobThere = alice.stanzas.find(
      (s) => s.name === 'presence' && s.attrs.from === `${room}/${bobPhone}`,
    );
    expect(bobThere && itemOf(bobThere)).toMatchObject({ affiliation: 'admin', role: 'moderator' });
    expect(alice.stanzas.some((s) => s.name === 'presence' && s.attrs.from === `${room}/${carolPhone}`)).toBe(
      true,
    );
    const subject = await alice.waitForStanza(
      (s) => s.name === 'message' && s.getChild('subject') !== undefined,
    );
    expect(subject.getChild('subject')?.getText()).toBe('Lunch crew');

    const early = await alice.waitForStanza((s) => s.name === 'message' && bodyOf(s) === 'early bird', 2_500);
    expect(early.attrs.from).toBe(`${room}/${bobPhone}`);

    // A member's message, from their occupant JID.
    await bob.send(group.jid, { kind: 'text', text: 'who is in?' });
    const asked = await alice.waitForStanza((s) => s.name === 'message' && bodyOf(s) === 'who is in?');
    expect(asked.attrs).toMatchObject({ type: 'groupchat', from: `${room}/${bobPhone}` });

    // The user's message: reflected to them, and read by every member.
    await alice.client.send(
      xml(
        'message',
        { type: 'groupchat', to: room, id: 'g-1' },
        xml('body', {}, 'me!'),
        xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id: 'g-1' }),
      ),
    );
    const reflected = await alice.waitForStanza(
      (s) => s.name === 'message' && s.attrs.type === 'groupchat' && bodyOf(s) === 'me!',
    );
    expect(reflected.attrs.from).toBe(`${room}/alice`);
    for (const member of [bob, carol]) {
      const got = await member.waitForMessage(
        (m) => m.group === group.jid && m.content.kind === 'text' && m.content.text === 'me!',
      );
      expect(got.from).toBe(me);
    }

    // Carol removed: she leaves the room (321).
    await bob.groups.participants(group.jid, 'remove', [carol.jid]);
    const gone = await alice.waitForStanza(
      (s) =>
        s.name === 'presence' && s.attrs.type === 'unavailable' && s.attrs.from === `${room}/${carolPhone}`,
    );
    expect(hasStatus(gone, '321')).toBe(true);

    // XEP-0410: in the room, a self-ping succeeds; after leaving it, it says so.
    const ping = () =>
      alice.iq(xml('iq', { type: 'get', to: `${room}/alice` }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    expect((await ping()).attrs.type).toBe('result');
    await alice.client.send(xml('presence', { to: `${room}/alice`, type: 'unavailable' }));
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.type === 'unavailable' && s.attrs.from === `${room}/alice`,
    );
    const refused = await ping();
    expect(refused.attrs.type).toBe('error');
    expect(refused.getChild('error')?.getChild('not-acceptable')).toBeDefined();
  });

  it('create-group makes a group at the gateway with the user as its admin, and invites them to its room', async () => {
    const alice = await h.registeredUser('alice');
    const bob = await h.native(phone());
    const bobPhone = `+${bob.jid.split('@')[0]}`;
    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: DOMAIN, id: 'cg-1' },
        xml('body', {}, `create-group Weekend: ${bobPhone}`),
      ),
    );
    const made = await bob.groups.waitForEvent((e) => e.event.event === 'group_created');
    expect(made.event.event === 'group_created' && made.event.group.subject).toBe('Weekend');
    const me = await h.puppetJid(alice.jid);
    expect(made.event.event === 'group_created' && made.event.group.participants).toEqual(
      expect.arrayContaining([{ jid: me, admin: true }]),
    );
    const room = `${made.group.split('@')[0]}@${DOMAIN}`;
    const reply = await alice.waitForStanza(
      (s) => s.name === 'message' && bodyOf(s).startsWith('Made the group'),
    );
    expect(bodyOf(reply)).toContain(room);
    await alice.waitForStanza(
      (s) => s.name === 'message' && s.getChild('x', 'jabber:x:conference')?.attrs.jid === room,
    );
    const usage = async (body: string) => {
      await alice.client.send(xml('message', { type: 'chat', to: DOMAIN }, xml('body', {}, body)));
    };
    await usage('create-group no numbers');
    await alice.waitForStanza((s) => s.name === 'message' && bodyOf(s).startsWith('Usage: create-group'));
  });

  it("moderation from the client is the group's: subject, kick, add, promote, demote, the lists, and leaving", async () => {
    const alice = await h.registeredUser('alice');
    const [bob, carol] = [await h.native(phone()), await h.native(phone())];
    const me = await h.puppetJid(alice.jid);
    const carolPhone = `+${carol.jid.split('@')[0]}`;
    const carolJid = `${carolPhone}@${DOMAIN}`;
    const { group } = await bob.groups.create('Moderated', [me, carol.jid]);
    const room = `${group.jid.split('@')[0]}@${DOMAIN}`;
    await alice.waitForStanza((s) => s.getChild('x', 'jabber:x:conference')?.attrs.jid === room);
    await alice.client.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: MUC })));
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('subject') !== undefined);
    const admin = (type: 'get' | 'set', ...items: Element[]) =>
      alice.iq(xml('iq', { type, to: room }, xml('query', { xmlns: MUC_ADMIN }, ...items)));
    const changed = (match: (e: GroupEventRecord['event']) => boolean) =>
      bob.groups.waitForEvent((e) => e.group === group.jid && e.author === me && match(e.event));

    // Not an admin yet: the gateway's refusal comes back as the iq's error.
    const refused = await admin('set', xml('item', { nick: carolPhone, role: 'none' }));
    expect(refused.attrs.type).toBe('error');
    expect(refused.getChild('error')?.getChild('not-allowed')).toBeDefined();
    expect(carol.groups.events.some((e) => e.event.event === 'participants_changed')).toBe(false);

    await bob.groups.participants(group.jid, 'promote', [me]);
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === `${room}/alice` && itemOf(s)?.affiliation === 'admin',
    );

    // A new subject, as clients set it.
    await alice.client.send(
      xml('message', { type: 'groupchat', to: room, id: 's-1' }, xml('subject', {}, 'Renamed')),
    );
    await changed((e) => e.event === 'subject_changed' && e.subject === 'Renamed');
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('subject')?.getText() === 'Renamed');

    // A kick by nick removes Carol; an affiliation brings her back, promotes and demotes her.
    expect((await admin('set', xml('item', { nick: carolPhone, role: 'none' }))).attrs.type).toBe('result');
    await changed((e) => e.event === 'participants_changed' && e.action === 'remove');
    await alice.waitForStanza(
      (s) =>
        s.name === 'presence' && s.attrs.type === 'unavailable' && s.attrs.from === `${room}/${carolPhone}`,
    );
    for (const [affiliation, action] of [
      ['member', 'add'],
      ['admin', 'promote'],
      ['member', 'demote'],
    ] as const) {
      const answer = await admin('set', xml('item', { jid: carolJid, affiliation }));
      expect(answer.attrs.type).toBe('result');
      await changed(
        (e) =>
          e.event === 'participants_changed' && e.action === action && e.participants.includes(carol.jid),
      );
    }

    // The lists clients ask for.
    const admins = await admin('get', xml('item', { affiliation: 'admin' }));
    const jids = admins
      .getChild('query', MUC_ADMIN)
      ?.getChildren('item')
      .map((i) => i.attrs.jid);
    expect(jids?.sort()).toEqual([alice.jid, `+${bob.jid.split('@')[0]}@${DOMAIN}`].sort());
    const members = await admin('get', xml('item', { affiliation: 'member' }));
    expect(
      members
        .getChild('query', MUC_ADMIN)
        ?.getChildren('item')
        .map((i) => i.attrs.jid),
    ).toEqual([carolJid]);

    // The user's own affiliation to none: they leave the group, and the room ends for them.
    expect((await admin('set', xml('item', { jid: alice.jid, affiliation: 'none' }))).attrs.type).toBe(
      'result',
    );
    await bob.groups.waitForEvent(
      (e) =>
        e.group === group.jid &&
        e.event.event === 'participants_changed' &&
        e.event.participants.includes(me),
    );
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.type === 'unavailable' && s.attrs.from === `${room}/alice`,
    );
  });

  it('occupants are named by their push names, made unique, and follow a change (status 303)', async () => {
    const alice = await h.registeredUser('alice');
    const [bob, carol] = [await h.native(phone()), await h.native(phone())];
    await bob.profile.setName('Sam');
    await carol.profile.setName('Sam');
    const me = await h.puppetJid(alice.jid);
    const [bobPhone, carolPhone] = [bob, carol].map((u) => `+${u.jid.split('@')[0]}`);
    const { group } = await bob.groups.create('Two Sams', [me, carol.jid]);
    const room = `${group.jid.split('@')[0]}@${DOMAIN}`;
    const invite = await alice.waitForStanza(
      (s) => s.getChild('x', 'jabber:x:conference')?.attrs.jid === room,
    );
    // (By name or by number: the inviter's profile may still be on its way.)
    expect(invite.getChild('x', 'jabber:x:conference')?.attrs.reason).toMatch(
      /^(Sam|\+\d+) added you to the group "Two Sams"$/,
    );
    await alice.client.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: MUC })));
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('subject') !== undefined);
    // At the join, or just after it once their profiles are read (then as a nick change, 303).
    for (const p of [bobPhone, carolPhone]) {
      await alice.waitForStanza(
        (s) => s.name === 'presence' && s.attrs.from === `${room}/Sam (${p})` && s.attrs.type === undefined,
      );
    }

    // Bob's message comes from his nick; then he takes another name: both nicks change.
    await bob.send(group.jid, { kind: 'text', text: 'which Sam?' });
    await alice.waitForStanza((s) => s.name === 'message' && s.attrs.from === `${room}/Sam (${bobPhone})`);
    await bob.profile.setName('Robert');
    const renamed = await alice.waitForStanza(
      (s) =>
        s.name === 'presence' &&
        s.attrs.type === 'unavailable' &&
        s.attrs.from === `${room}/Sam (${bobPhone})`,
    );
    expect(hasStatus(renamed, '303')).toBe(true);
    expect(itemOf(renamed)?.nick).toBe('Robert');
    await alice.waitForStanza((s) => s.name === 'presence' && s.attrs.from === `${room}/Robert`);
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.type === 'unavailable' && itemOf(s)?.nick === 'Sam',
    );
    await carol.send(group.jid, { kind: 'text', text: 'the only Sam now' });
    await alice.waitForStanza(
      (s) => s.name === 'message' && s.attrs.from === `${room}/Sam` && bodyOf(s) !== '',
    );
    await bob.send(group.jid, { kind: 'text', text: 'call me Robert' });
    await alice.waitForStanza((s) => s.name === 'message' && s.attrs.from === `${room}/Robert`);
  });

  it('a room the user is not in refuses the join, and a groupchat message to it', async () => {
    const alice = await h.registeredUser('alice');
    const room = `120363999999@${DOMAIN}`;
    await alice.client.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: MUC })));
    const refused = await alice.waitForStanza((s) => s.name === 'presence' && s.attrs.type === 'error');
    expect(refused.getChild('error')?.getChild('item-not-found')).toBeDefined();
    await alice.client.send(
      xml('message', { type: 'groupchat', to: room, id: 'x-1' }, xml('body', {}, 'hello?')),
    );
    const error = await alice.waitForStanza(
      (s) => s.name === 'message' && s.attrs.type === 'error' && s.attrs.id === 'x-1',
    );
    expect(error.getChild('error')?.getChild('not-acceptable')).toBeDefined();
  });
});

function hasStatus(s: Element, code: string): boolean {
  return (s.getChild('x', MUC_USER)?.getChildren('status') ?? []).some((c) => c.attrs.code === code);
}

function itemOf(s: Element): Record<string, string | undefined> | undefined {
  return s.getChild('x', MUC_USER)?.getChild('item')?.attrs;
}
