/**
 * Conversations through the XMPP adapter on real Prosody and ejabberd: a logged-in XMPP user and a
 * native user of the emulator exchange text with styling, receipts, displayed markers and chat
 * states, and a 64 KiB message of markup and emoji, in both directions; on Prosody also with the
 * bridge's database on a real PostgreSQL (every table there: core, Signal, the adapter's).
 */
import { xml, type Element } from '@xmpp/xml';
import { UNSUPPORTED } from '../../src/protocol/content.js';
import type { XmppServerKind } from '../support/xmpp-servers.js';
import {
  bodiesFrom,
  chat,
  contactJid,
  nativeTexts,
  until,
  XmppBridgeHarness,
} from '../support/xmpp-bridge.js';

const CASES: [XmppServerKind, 'sqlite' | 'postgres'][] = [
  ['prosody', 'sqlite'],
  ['ejabberd', 'sqlite'],
  ['prosody', 'postgres'],
];

describe.each(CASES)('XMPP adapter messages on %s, the bridge on %s', (kind, database) => {
  let h: XmppBridgeHarness;
  let phoneSeq = 0;
  const phone = () =>
    `+491510000${kind === 'prosody' ? (database === 'sqlite' ? 1 : 3) : 2}${String(++phoneSeq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { database });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('text with styling reaches the native user, and the answer reaches the XMPP user as a contact', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);

    await alice.client.send(chat(contactJid(bobPhone), 'Hi *Bob*, _really_ ~not~ late', 'm1'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    expect(got.content.kind === 'text' && got.content.text).toBe('Hi *Bob*, _really_ ~not~ late');
    expect(got.from).toBe(await h.puppetJid(alice.jid));

    // The gatekeeper's ```monospace``` is XEP-0393's `monospace`.
    await bob.sendText(got.from, 'Hello *Alice*, ```v2``` is out', { devices: [0] });
    const m = await alice.waitForStanza(
      (s) => s.name === 'message' && s.getChild('body')?.getText() === 'Hello *Alice*, `v2` is out',
    );
    expect(m.attrs.from).toBe(contactJid(bobPhone));
    expect(m.attrs.type).toBe('chat');
    // Clients are asked for receipts and markers, and the id is kept as the origin-id.
    expect(m.getChild('request', 'urn:xmpp:receipts')).toBeDefined();
    expect(m.getChild('markable', 'urn:xmpp:chat-markers:0')).toBeDefined();
    expect(m.getChild('origin-id', 'urn:xmpp:sid:0')?.attrs.id).toBe(m.attrs.id);
    // A contact the user did not have yet asks for a subscription, with its number as nick.
    const ask = await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.type === 'subscribe' && s.attrs.from === contactJid(bobPhone),
    );
    expect(ask.getChild('nick', 'http://jabber.org/protocol/nick')?.getText()).toBe(bobPhone);
  });

  test('delivery receipts and read markers go both ways', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);

    // XMPP -> native: the native user's receipts come back as XEP-0184 and XEP-0333.
    await alice.client.send(chat(contactJid(bobPhone), 'did you get this?', 'ask-1'));
    const got = await bob.waitForMessage();
    const received = await alice.waitForStanza(
      (s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'ask-1',
    );
    expect(received.attrs.from).toBe(contactJid(bobPhone));
    await bob.sendReceipt(got.from, [got.id], 'read');
    const displayed = await alice.waitForStanza(
      (s) => s.getChild('displayed', 'urn:xmpp:chat-markers:0')?.attrs.id === 'ask-1',
    );
    expect(displayed.attrs.from).toBe(contactJid(bobPhone));

    // native -> XMPP: delivered once the server took it; read when the user sends a marker. A
    // marker on the newest message reads the ones before it too (XEP-0333), each once.
    const id = await bob.sendText(got.from, 'yes', { devices: [0] });
    const id2 = await bob.sendText(got.from, 'and this?', { devices: [0] });
    const m = await alice.waitForStanza(
      (s) => s.name === 'message' && s.getChild('body')?.getText() === 'and this?',
    );
    await bob.waitForReceipt(id, 'delivery');
    await bob.waitForReceipt(id2, 'delivery');
    const marker = (markerId: string, of: string) =>
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: markerId },
        xml('displayed', { xmlns: 'urn:xmpp:chat-markers:0', id: of }),
      );
    await alice.client.send(marker('mk-1', String(m.attrs.id)));
    const read = await bob.waitForReceipt(id, 'read');
    expect(read.from).toBe(got.from);
    await bob.waitForReceipt(id2, 'read');
    // The same marker again: nothing more is read.
    await alice.client.send(marker('mk-2', String(m.attrs.id)));
    await alice.client.send(chat(contactJid(bobPhone), 'after the marker', 'ask-2'));
    await bob.waitForMessage((x) => x.content.kind === 'text' && x.content.text === 'after the marker');
    expect(bob.receipts.filter((r) => r.type === 'read' && r.id === id)).toHaveLength(1);
  });

  test('chat states become typing and typing becomes chat states', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    await alice.client.send(chat(contactJid(bobPhone), 'hello', 'cs-0'));
    const first = await bob.waitForMessage();

    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: 'cs-1' },
        xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' }),
      ),
    );
    await until(() => bob.chatstates.some((c) => c.composing), 'composing at the native user');
    expect(bob.chatstates[0]).toEqual({ from: first.from, composing: true });
    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: 'cs-2' },
        xml('paused', { xmlns: 'http://jabber.org/protocol/chatstates' }),
      ),
    );
    await until(() => bob.chatstates.some((c) => !c.composing), 'paused at the native user');

    await bob.typing(first.from, true);
    const composing = await alice.waitForStanza(
      (s) =>
        s.name === 'message' &&
        s.getChild('composing', 'http://jabber.org/protocol/chatstates') !== undefined,
    );
    expect(composing.attrs.from).toBe(contactJid(bobPhone));
    await bob.typing(first.from, false);
    await alice.waitForStanza(
      (s) =>
        s.name === 'message' && s.getChild('paused', 'http://jabber.org/protocol/chatstates') !== undefined,
    );
  });

  test('a correction, a reaction and a retraction reach the native user as an edit, a reaction and a revoke of that message', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    await alice.client.send(chat(contactJid(bobPhone), 'see you at 5', 'orig-1'));
    const original = await bob.waitForMessage();

    await alice.client.send(
      chat(contactJid(bobPhone), 'see you at 6', 'fix-1', [
        xml('replace', { xmlns: 'urn:xmpp:message-correct:0', id: 'orig-1' }),
      ]),
    );
    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: 'react-1' },
        xml('reactions', { xmlns: 'urn:xmpp:reactions:0', id: 'orig-1' }, xml('reaction', {}, '👍')),
      ),
    );
    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: 'retract-1' },
        xml('retract', { xmlns: 'urn:xmpp:message-retract:1', id: 'orig-1' }),
        xml('body', {}, 'This person attempted to retract a previous message.'),
      ),
    );
    await bob.waitForMessage(() => bob.received.length === 4);

    const [, edit, reaction, revoke] = bob.received.map((m) => m.content);
    expect(edit).toMatchObject({ kind: 'edit', target: { id: original.id } });
    expect(edit?.kind === 'edit' && edit.replacement.conversation).toBe('see you at 6');
    expect(reaction).toMatchObject({ kind: 'reaction', emoji: '👍', target: { id: original.id } });
    expect(revoke).toMatchObject({ kind: 'revoke', target: { id: original.id } });
  });

  // Content kinds are the adapter's and the core's, not the database's: on SQLite only.
  const sqliteOnly = database === 'sqlite' ? test : test.skip;
  sqliteOnly(
    'every content kind a native user sends arrives as XMPP shows it, with replies and locations both ways',
    async () => {
      const alice = await h.registeredUser('alice');
      const bobPhone = phone();
      const bob = await h.native(bobPhone);
      await alice.client.send(chat(contactJid(bobPhone), 'where and who?', 'q-1'));
      const asked = await bob.waitForMessage();
      const aliceJid = asked.from;
      const send = (content: Parameters<typeof bob.send>[1]) => bob.send(aliceJid, content, { devices: [0] });
      const next = (match: (s: Element) => boolean) =>
        alice.waitForStanza((s) => s.name === 'message' && s.attrs.from === contactJid(bobPhone) && match(s));
      const body = (s: Element) => s.getChild('body')?.getText() ?? '';

      const helloId = await bob.sendText(aliceJid, 'hello', { devices: [0] });
      const hello = await next((s) => body(s) === 'hello');

      // A reply (XEP-0461) that mentions another contact and Alice herself (XEP-0372).
      await send({
        kind: 'text',
        text: 'ask @4915199999999',
        mentions: ['+4915199999999', aliceJid],
        reply_to: asked.id,
      });
      const mention = await next((s) => body(s).startsWith('ask @4915199999999'));
      expect(mention.getChild('reply', 'urn:xmpp:reply:0')?.attrs.id).toBe('q-1');
      const refs = mention.getChildren('reference', 'urn:xmpp:reference:0').map((r) => r.attrs);
      const aliceToken = `@${aliceJid.split('@')[0]}`;
      expect(refs).toEqual([
        {
          xmlns: 'urn:xmpp:reference:0',
          type: 'mention',
          begin: '4',
          end: '18',
          uri: `xmpp:${contactJid('+4915199999999')}`,
        },
        {
          xmlns: 'urn:xmpp:reference:0',
          type: 'mention',
          begin: String(19),
          end: String(19 + aliceToken.length),
          uri: `xmpp:${alice.jid}`,
        },
      ]);

      // An edit, a reaction and a deletion (XEP-0308, XEP-0444, XEP-0424), each of the right message.
      await send({ kind: 'edit', target: helloId, text: 'hello again' });
      const edit = await next((s) => s.getChild('replace', 'urn:xmpp:message-correct:0') !== undefined);
      expect(edit.getChild('replace', 'urn:xmpp:message-correct:0')?.attrs.id).toBe(hello.attrs.id);
      expect(body(edit)).toBe('hello again');
      await send({ kind: 'reaction', target: asked.id, emoji: '👍' });
      const reaction = await next((s) => s.getChild('reactions', 'urn:xmpp:reactions:0') !== undefined);
      expect(reaction.getChild('reactions', 'urn:xmpp:reactions:0')?.attrs.id).toBe('q-1');
      expect(reaction.getChild('reactions', 'urn:xmpp:reactions:0')?.getChild('reaction')?.getText()).toBe(
        '👍',
      );
      await send({ kind: 'delete', target: helloId });
      const retraction = await next((s) => s.getChild('retract', 'urn:xmpp:message-retract:1') !== undefined);
      expect(retraction.getChild('retract', 'urn:xmpp:message-retract:1')?.attrs.id).toBe(hello.attrs.id);

      // A location (a geo: URI body, XEP-0080, its name after it) and a contact card.
      await send({ kind: 'location', latitude: 52.5163, longitude: 13.3777, name: 'Brandenburger Tor' });
      const place = await next((s) => body(s) === 'geo:52.5163,13.3777');
      expect(place.getChild('geoloc', 'http://jabber.org/protocol/geoloc')?.getChild('lat')?.getText()).toBe(
        '52.5163',
      );
      await next((s) => body(s) === 'Brandenburger Tor');
      await send({ kind: 'contact', cards: [{ name: 'Jane Doe', phone: '+4915122223333' }] });
      await next((s) => body(s) === '👤 Jane Doe: +4915122223333');

      // A video and a file, by URL (XEP-0066), the caption after the video.
      await send({ kind: 'video', caption: 'the match' });
      const video = await next((s) => s.getChild('x', 'jabber:x:oob') !== undefined);
      expect(video.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText()).toMatch(/^https?:\/\/.+\.mp4$/);
      await next((s) => body(s) === 'the match');
      await send({ kind: 'document', file_name: 'plan.pdf' });
      const file = await next((s) =>
        (s.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText() ?? '').endsWith('plan.pdf'),
      );
      expect(file).toBeDefined();

      // A poll: a notice naming it, and the delivery receipt is for a message Alice did see.
      const poll = await send({ kind: 'poll', question: 'Lunch?', options: ['12', '1'] });
      await next((s) => /^\(sent a poll, which this bridge cannot show/.test(body(s)));
      await bob.waitForReceipt(poll, 'delivery');

      // XMPP -> native: a reply to Bob's message (its fallback stripped) and a location.
      await alice.client.send(
        chat(contactJid(bobPhone), '> hello again\nyes', 'r-1', [
          xml('reply', { xmlns: 'urn:xmpp:reply:0', to: contactJid(bobPhone), id: String(mention.attrs.id) }),
          xml(
            'fallback',
            { xmlns: 'urn:xmpp:fallback:0', for: 'urn:xmpp:reply:0' },
            xml('body', { start: '0', end: '14' }),
          ),
        ]),
      );
      const replied = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'yes');
      expect(replied.content.kind === 'text' && replied.content.replyTo?.id).toBeTruthy();
      // An XEP-0372 mention of another contact (code points: the emoji counts as one).
      await alice.client.send(
        chat(contactJid(bobPhone), '🙂 ask Jane please', 'm-1', [
          xml('reference', {
            xmlns: 'urn:xmpp:reference:0',
            type: 'mention',
            begin: '6',
            end: '10',
            uri: `xmpp:${contactJid('+4915122223333')}`,
          }),
        ]),
      );
      const mentioned = await bob.waitForMessage(
        (m) => m.content.kind === 'text' && m.content.text.endsWith('please'),
      );
      expect(mentioned.content).toMatchObject({
        text: '🙂 ask @4915122223333 please',
        mentions: ['4915122223333@wa.interop'],
      });
      await alice.client.send(chat(contactJid(bobPhone), 'geo:48.8584,2.2945', 'loc-1'));
      const back = await bob.waitForMessage((m) => m.content.kind === 'location');
      expect(back.content.kind === 'location' && back.content.place).toEqual({
        latitude: 48.8584,
        longitude: 2.2945,
      });
    },
  );

  test('each content the bridge cannot show arrives as a notice naming it, delivered only then', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    await alice.client.send(chat(contactJid(bobPhone), 'show me', 'o-1'));
    const aliceJid = (await bob.waitForMessage()).from;
    const body = (s: Element) => s.getChild('body')?.getText() ?? '';
    for (const [field, what] of UNSUPPORTED) {
      const id = await bob.send(aliceJid, { kind: 'other', field }, { devices: [0] });
      const notice = await alice.waitForStanza(
        (s) =>
          s.name === 'message' &&
          s.attrs.from === contactJid(bobPhone) &&
          body(s).startsWith(`(sent ${what},`),
      );
      expect(body(notice)).toBe(
        `(sent ${what}, which this bridge cannot show: ask them to send it another way)`,
      );
      await bob.waitForReceipt(id, 'delivery');
    }
  });

  test('a 64 KiB message full of markup characters and emoji arrives intact both ways, and the component stays connected', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    // Markup that means the same in both syntaxes, so the text must arrive byte for byte.
    const unit = '*b* _i_ ~s~ `m` <a href="x">&amp;</a> \' " & < > 😀👍🏽🇪🇺 \n> q\n';
    let big = '';
    while (Buffer.byteLength(big) < 64 * 1024) big += unit;
    const dropsBefore = h.linkDrops;

    await alice.client.send(chat(contactJid(bobPhone), big, 'big-1'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text', 20_000);
    expect(got.content.kind === 'text' && got.content.text).toBe(big);

    // Control characters XML forbids are dropped rather than breaking the stream.
    await bob.sendText(got.from, `${big}\u0001\u0008`, { devices: [0] });
    await alice.waitForMessages((ms) => ms.some((m) => m.getChild('body')?.getText() === big), 20_000);
    await bob.sendText(got.from, 'still there?', { devices: [0] });
    await alice.waitForMessages(() => bodiesFrom(alice, contactJid(bobPhone)).includes('still there?'));
    expect(h.linkDrops).toBe(dropsBefore);
    expect(h.xmpp.link.status).toBe('online');
    expect(nativeTexts(bob)).toEqual([big]);
  });
});
