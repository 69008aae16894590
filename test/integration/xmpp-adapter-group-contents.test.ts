/**
 * Every content kind inside a group, on real Prosody and ejabberd: what native members send
 * (media, a file, a reply, a mention, a reaction, an edit, a deletion) arrives in the room as XMPP
 * shows it, from the member's occupant JID and naming the room's stanza-ids; what the user sends in
 * the room (a file, a reply, a reaction, a correction, a retraction) reaches every member once, with
 * the right message named; read markers cross both ways, one per member.
 */
import { randomBytes } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import type { NativeUser } from '../../emulator/native-user.js';
import type { ReceivedMessage } from '../../emulator/native-types.js';
import type { XmppServerKind } from '../support/xmpp-servers.js';
import { bodyOf, DOMAIN, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const MUC = 'http://jabber.org/protocol/muc';
const SID = 'urn:xmpp:sid:0';
const MARKERS = 'urn:xmpp:chat-markers:0';

describe.each(['prosody', 'ejabberd'] as XmppServerKind[])('every content kind in a group on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { database: 'sqlite' });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  it('media, replies, mentions, reactions, edits, deletions and read markers cross both ways', async () => {
    const n = kind === 'prosody' ? 1 : 2;
    const alice = await h.registeredUser('alice');
    const [bob, carol] = [await h.native(`+4915230${n}0001`), await h.native(`+4915230${n}0002`)];
    const me = await h.puppetJid(alice.jid);
    const bobNick = `+${bob.jid.split('@')[0]}`;
    const carolNick = `+${carol.jid.split('@')[0]}`;
    const { group } = await bob.groups.create('Contents', [me, carol.jid]);
    const room = `${group.jid.split('@')[0]}@${DOMAIN}`;
    await alice.waitForStanza((s) => s.getChild('x', 'jabber:x:conference')?.attrs.jid === room);
    await alice.client.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: MUC })));
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('subject') !== undefined);

    const fromMember = (nick: string, match: (s: Element) => boolean) =>
      alice.waitForStanza(
        (s) =>
          s.name === 'message' &&
          s.attrs.type === 'groupchat' &&
          s.attrs.from === `${room}/${nick}` &&
          match(s),
      );
    const stanzaIdOf = (s: Element) => s.getChild('stanza-id', SID)?.attrs.id as string;
    /** What each member receives from the user in the group, once: resolves when both have it. */
    const bothGet = async (match: (m: ReceivedMessage) => boolean): Promise<ReceivedMessage[]> => {
      const mine = (m: ReceivedMessage) => m.group === group.jid && m.from === me && match(m);
      const got = await Promise.all([bob, carol].map((member) => member.waitForMessage(mine)));
      await new Promise((r) => setTimeout(r, 300));
      for (const member of [bob, carol]) expect(member.received.filter(mine)).toHaveLength(1);
      return got;
    };
    const roomMessage = (id: string, ...children: Element[]) =>
      xml('message', { type: 'groupchat', to: room, id }, ...children, xml('origin-id', { xmlns: SID, id }));

    // --- The user's text: reflected with the room's stanza-id, which is what clients then name.
    await alice.client.send(roomMessage('u-1', xml('body', {}, 'lunch at noon?')));
    const reflected = await fromMember('alice', (s) => bodyOf(s) === 'lunch at noon?');
    expect(stanzaIdOf(reflected)).toBe('u-1');
    expect(reflected.getChild('stanza-id', SID)?.attrs.by).toBe(room);
    const [bobSawMine, carolSawMine] = await bothGet(
      (m) => m.content.kind === 'text' && m.content.text === 'lunch at noon?',
    );

    // --- From a member: a text, a reply to the user's message, a mention of the user.
    const helloId = await bob.send(group.jid, { kind: 'text', text: 'hello all' });
    const hello = await fromMember(bobNick, (s) => bodyOf(s) === 'hello all');
    const yesId = await bob.send(group.jid, { kind: 'text', text: 'yes!', reply_to: bobSawMine!.id });
    const reply = await fromMember(bobNick, (s) => bodyOf(s) === 'yes!');
    expect(reply.getChild('reply', 'urn:xmpp:reply:0')?.attrs.id).toBe('u-1');
    await bob.send(group.jid, { kind: 'text', text: 'see you', mentions: [me] });
    const mention = await fromMember(bobNick, (s) => bodyOf(s).startsWith('see you'));
    expect(mention.getChildren('reference', 'urn:xmpp:reference:0').map((r) => r.attrs.uri)).toEqual([
      `xmpp:${alice.jid}`,
    ]);

    // An image and a file, by URL on the server's upload service (XEP-0066).
    const picture = randomBytes(30_000);
    await bob.send(group.jid, {
      kind: 'image',
      data_base64: picture.toString('base64'),
      mimetype: 'image/jpeg',
      caption: 'the view',
    });
    const image = await fromMember(bobNick, (s) => s.getChild('x', 'jabber:x:oob') !== undefined);
    const imageUrl = image.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText() ?? '';
    expect(Buffer.from(await (await fetch(imageUrl)).arrayBuffer()).equals(picture)).toBe(true);
    await fromMember(bobNick, (s) => bodyOf(s) === 'the view');
    await bob.send(group.jid, { kind: 'document', file_name: 'plan.pdf' });
    await fromMember(bobNick, (s) =>
      (s.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText() ?? '').endsWith('plan.pdf'),
    );

    // A reaction to the user's message, an edit and a deletion of the member's own.
    await bob.send(group.jid, { kind: 'reaction', target: bobSawMine!.id, emoji: '👍' });
    const reaction = await fromMember(
      bobNick,
      (s) => s.getChild('reactions', 'urn:xmpp:reactions:0') !== undefined,
    );
    expect(reaction.getChild('reactions', 'urn:xmpp:reactions:0')?.attrs.id).toBe('u-1');
    expect(reaction.getChild('reactions', 'urn:xmpp:reactions:0')?.getChild('reaction')?.getText()).toBe(
      '👍',
    );
    await bob.send(group.jid, { kind: 'edit', target: helloId, text: 'hello everyone' });
    const edit = await fromMember(
      bobNick,
      (s) => s.getChild('replace', 'urn:xmpp:message-correct:0') !== undefined,
    );
    expect(edit.getChild('replace', 'urn:xmpp:message-correct:0')?.attrs.id).toBe(hello.attrs.id);
    expect(bodyOf(edit)).toBe('hello everyone');
    await bob.send(group.jid, { kind: 'delete', target: helloId });
    const retraction = await fromMember(
      bobNick,
      (s) => s.getChild('retract', 'urn:xmpp:message-retract:1') !== undefined,
    );
    expect(retraction.getChild('retract', 'urn:xmpp:message-retract:1')?.attrs.id).toBe(hello.attrs.id);

    // --- From the user, naming members' messages by their stanza-ids.
    const yes = stanzaIdOf(reply);
    await alice.client.send(
      roomMessage(
        'u-2',
        xml('body', {}, `${bobNick}\n> yes!\ngreat`),
        xml('reply', { xmlns: 'urn:xmpp:reply:0', to: `${room}/${bobNick}`, id: yes }),
        xml(
          'fallback',
          { xmlns: 'urn:xmpp:fallback:0', for: 'urn:xmpp:reply:0' },
          xml('body', { start: '0', end: String(`${bobNick}\n> yes!\n`.length) }),
        ),
      ),
    );
    const replies = await bothGet((m) => m.content.kind === 'text' && m.content.text === 'great');
    for (const got of replies) {
      expect(got.content.kind === 'text' && got.content.replyTo).toMatchObject({ participant: bob.jid });
    }
    expect(replies.map((m) => m.content.kind === 'text' && m.content.replyTo?.id)).toEqual([yesId, yesId]);

    await alice.client.send(
      xml(
        'message',
        { type: 'groupchat', to: room, id: 'u-3' },
        xml('reactions', { xmlns: 'urn:xmpp:reactions:0', id: yes }, xml('reaction', {}, '❤️')),
      ),
    );
    const reactions = await bothGet((m) => m.content.kind === 'reaction');
    for (const got of reactions) {
      expect(got.content.kind === 'reaction' && got.content.emoji).toBe('❤️');
      expect(got.content.kind === 'reaction' && got.content.target).toMatchObject({ participant: bob.jid });
    }

    await alice.client.send(
      roomMessage(
        'u-4',
        xml('body', {}, 'lunch at one?'),
        xml('replace', { xmlns: 'urn:xmpp:message-correct:0', id: 'u-1' }),
      ),
    );
    const edits = await bothGet((m) => m.content.kind === 'edit');
    expect(edits.map((m) => m.content.kind === 'edit' && m.content.target.id)).toEqual([
      bobSawMine!.id,
      carolSawMine!.id,
    ]);

    const service = h.server.uploadService!;
    const file = randomBytes(20_000);
    const url = await alice.upload(service, file, 'menu.jpg', 'image/jpeg');
    await alice.client.send(
      roomMessage('u-5', xml('body', {}, url), xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url))),
    );
    const [bobImage] = await bothGet((m) => m.content.kind === 'image');
    expect((await bob.downloadMedia(bobImage!)).equals(file)).toBe(true);

    await alice.client.send(
      xml(
        'message',
        { type: 'groupchat', to: room, id: 'u-6' },
        xml('retract', { xmlns: 'urn:xmpp:message-retract:1', id: 'u-1' }),
        xml('body', {}, 'This person attempted to retract a previous message.'),
      ),
    );
    const deletes = await bothGet((m) => m.content.kind === 'revoke');
    expect(deletes.map((m) => m.content.kind === 'revoke' && m.content.target.id)).toEqual([
      bobSawMine!.id,
      carolSawMine!.id,
    ]);

    // A member named by nick, as clients write it ("nick: ..."), is a mention of them.
    await alice.client.send(roomMessage('u-8', xml('body', {}, `${carolNick}: are you in?`)));
    const [, carolMentioned] = await bothGet(
      (m) => m.content.kind === 'text' && m.content.text.endsWith('are you in?'),
    );
    expect(carolMentioned!.content).toMatchObject({
      kind: 'text',
      text: `@${carol.jid.split('@')[0]}: are you in?`,
      mentions: [carol.jid],
    });

    // And by an XEP-0372 reference to their occupant JID, as clients with mention support send it.
    await alice.client.send(
      roomMessage(
        'u-9',
        xml('body', {}, `thanks ${bobNick}!`),
        xml('reference', {
          xmlns: 'urn:xmpp:reference:0',
          type: 'mention',
          begin: '7',
          end: String(7 + bobNick.length),
          uri: `xmpp:${room}/${bobNick}`,
        }),
      ),
    );
    const [bobThanked] = await bothGet(
      (m) => m.content.kind === 'text' && m.content.text.startsWith('thanks'),
    );
    expect(bobThanked!.content).toMatchObject({
      text: `thanks @${bob.jid.split('@')[0]}!`,
      mentions: [bob.jid],
    });

    // --- Read markers: the user's (XEP-0333 in the room) reaches the message's sender; each
    // member's read receipt for the user's message is that member's marker in the room.
    await alice.client.send(
      xml(
        'message',
        { type: 'groupchat', to: room, id: 'u-7' },
        xml('displayed', { xmlns: MARKERS, id: yes }),
      ),
    );
    const read = await bob.waitForReceipt(yesId, 'read');
    expect(read.group).toBe(group.jid);
    const readBy = async (member: NativeUser, nick: string, seen: ReceivedMessage) => {
      await member.sendReceipt(group.jid, [seen.id], 'read');
      const marker = await fromMember(nick, (s) => s.getChild('displayed', MARKERS) !== undefined);
      expect(marker.getChild('displayed', MARKERS)?.attrs.id).toBe('u-1');
    };
    await readBy(carol, carolNick, carolSawMine!);
    await readBy(bob, bobNick, bobSawMine!);
  });
});
