/**
 * Text, receipts, typing, portals and failures between a Matrix user (matrix-js-sdk on Synapse)
 * and a native user (through the emulator); with the bridge's database on SQLite, and the scenarios
 * that carry messages also on a real PostgreSQL (every table there: core, Signal, the adapter's).
 * The rest touch the adapter's store only through methods the store contract tests run on both
 * backends (test/unit/adapter-stores.test.ts), so they run on SQLite alone.
 */
import type { NativeUser } from '../../emulator/native-user.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import { revokeContent } from '../../src/protocol/content.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, replyTarget, until, useSynapse } from './matrix-harness.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';

const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);

const synapse = useSynapse();

describe.each(['sqlite', 'postgres'] as const)('the bridge on %s', (backend) => {
  let h: MatrixHarness;
  let alice: SdkUser;
  let management: string;
  let postgres: PostgresServer | undefined;

  beforeAll(async () => {
    if (backend === 'postgres') postgres = await startPostgres();
  });
  afterAll(() => postgres?.stop());
  const sqliteOnly = backend === 'sqlite' ? test : test.skip;

  beforeEach(async () => {
    h = await MatrixHarness.start({ synapse: synapse(), ...(postgres ? { postgres } : {}) });
    alice = await h.user('alice', 'Alice');
    management = await h.login(alice);
  });

  afterEach(async () => {
    await h.close();
    h.assertNoViolations();
  });

  /** Alice's portal with Bob, opened with start-chat. */
  async function portalWithBob(): Promise<{ bob: NativeUser; portal: string }> {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    return { bob, portal };
  }

  const fromGhost = (portal: string, text: RegExp) =>
    alice.waitFor(portal, (e) => e.sender === GHOST && e.type === 'm.room.message' && text.test(bodyOf(e)));

  test('a native user’s first message creates the portal: the ghost invites the user and shows the formatted text', async () => {
    const bob = await h.native(BOB);
    const id = await bob.sendText(
      await h.jidOf(alice),
      '*Hello* _Alice_, see ~this~ ```code```\nsecond line',
      {
        devices: [0],
      },
    );

    const portal = await alice.waitForInvite((e) => e.sender === GHOST);
    await alice.join(portal);
    const msg = await fromGhost(portal, /Hello/);
    expect(msg.content['msgtype']).toBe('m.text');
    expect(msg.content['format']).toBe('org.matrix.custom.html');
    expect(msg.content['formatted_body']).toMatch(
      /<strong>Hello<\/strong> <em>Alice<\/em>, see <del>this<\/del> <code>code<\/code><br\s*\/?>second line/,
    );
    expect(await alice.membership(portal, BOT)).toBe('join');
    expect((await h.adapter.store.portalOf(alice.userId, bob.jid))?.roomId).toBe(portal);
    // The core marks it delivered once the homeserver accepted it: the sender gets the delivery receipt.
    await bob.waitForReceipt(id, 'delivery');
  });

  test('formatted text, notices and emotes from Matrix reach the native user as markup, once each', async () => {
    const { bob, portal } = await portalWithBob();
    await alice.sendText(
      portal,
      'bold and italic',
      '<b>bold</b> and <i>italic</i> <a href="https://example.org">link</a>',
    );
    await alice.sendText(portal, 'a notice', undefined, 'm.notice');
    await alice.sendText(portal, 'waves', undefined, 'm.emote');
    await bob.waitForMessage(() => bob.received.length === 3);

    const texts = bob.received.map((m) => (m.content.kind === 'text' ? m.content.text : m.content.kind));
    expect(texts[0]).toMatch(/^\*bold\* and _italic_ /);
    expect(texts[0]).toContain('https://example.org');
    expect(texts.slice(1)).toEqual(['a notice', '/me waves']);
    await h.transactionsIdle();
    await new Promise((r) => setTimeout(r, 200));
    expect(bob.received).toHaveLength(3);
  });

  test('replies are carried both ways', async () => {
    const { bob, portal } = await portalWithBob();
    const question = await alice.sendText(portal, 'lunch?');
    const got = await bob.waitForMessage();
    await bob.sendText(await h.jidOf(alice), 'yes!', { devices: [0], replyTo: got.id });
    const answer = await fromGhost(portal, /yes!/);
    expect(replyTarget(answer)).toBe(question);

    await alice.sendEvent(portal, 'm.room.message', {
      msgtype: 'm.text',
      body: '> <@wa_4915112345678:example.test> yes!\n\ngreat',
      'm.relates_to': { 'm.in_reply_to': { event_id: answer.event_id } },
    });
    const reply = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'great');
    // The quoted message is Bob's own, by its wire id; the reply fallback is not repeated.
    expect(reply.content.kind === 'text' && reply.content.replyTo?.id).toBeTruthy();
    expect(reply.content.kind === 'text' && reply.content.text).toBe('great');
  });

  test('read receipts and typing go both ways', async () => {
    const { bob, portal } = await portalWithBob();
    // Matrix -> native: Alice types, then reads Bob's two messages with one receipt on the latest.
    await alice.setTyping(portal, true);
    await until(() => bob.chatstates.some((c) => c.composing), 'Bob to see Alice typing');
    const first = await bob.sendText(await h.jidOf(alice), 'one', { devices: [0] });
    const second = await bob.sendText(await h.jidOf(alice), 'two', { devices: [0] });
    const two = await fromGhost(portal, /^two$/);
    await alice.sendReceipt(portal, two.event_id);
    await bob.waitForReceipt(first, 'read');
    await bob.waitForReceipt(second, 'read');

    // Native -> Matrix: Bob types, then reads Alice's message: the ghost's read receipt.
    await bob.typing(await h.jidOf(alice), true);
    await alice.waitUntil(() => alice.typing(portal).includes(GHOST), 'the ghost to type');
    const mine = await alice.sendText(portal, 'did you read this?');
    const m = await bob.waitForMessage(
      (x) => x.content.kind === 'text' && x.content.text === 'did you read this?',
    );
    await bob.sendReceipt(m.from, [m.id], 'read', m.fromDevice);
    await alice.waitUntil(() => alice.readUpTo(portal, GHOST) === mine, 'the ghost’s read receipt');
  });

  sqliteOnly('a ghost invited to a new direct chat joins it, and the chat is bridged', async () => {
    const bob = await h.native(BOB);
    const room = await alice.createDirectRoom(GHOST);
    await alice.waitFor(
      room,
      (e) => e.type === 'm.room.member' && e.state_key === GHOST && e.content['membership'] === 'join',
    );
    await alice.waitFor(
      room,
      (e) => e.type === 'm.room.member' && e.state_key === BOT && e.content['membership'] === 'join',
    );

    await alice.sendText(room, 'hi from a room I made');
    const got = await bob.waitForMessage();
    expect(got.content.kind === 'text' && got.content.text).toBe('hi from a room I made');
    await bob.sendText(await h.jidOf(alice), 'hi back', { devices: [0] });
    await fromGhost(room, /hi back/);
    expect((await h.adapter.store.portalOf(alice.userId, bob.jid))?.roomId).toBe(room);
    expect((await alice.state(room)).some((e) => e.type === 'm.bridge')).toBe(true);
  });

  sqliteOnly(
    'an encrypted room: the bridge says plainly that it cannot read it, instead of dropping messages silently',
    async () => {
      const bob = await h.native(BOB);
      const room = await alice.createDirectRoom(GHOST, {
        initial_state: [
          { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        ],
      });
      const notice = await alice.waitFor(
        room,
        (e) => e.type === 'm.room.message' && /encrypted/.test(bodyOf(e)),
      );
      expect(bodyOf(notice)).toMatch(/cannot read Matrix-encrypted messages/);
      expect(bodyOf(notice)).toMatch(/Nothing you send here reaches \+4915112345678/);

      // Encryption turned on in a working portal: said once, and nothing more is bridged from it.
      const portal = await h.startChat(alice, management, BOB);
      await alice.enableEncryption(portal);
      await alice.waitFor(
        portal,
        (e) => e.sender === BOT && /cannot read Matrix-encrypted messages/.test(bodyOf(e)),
      );
      await alice.sendRaw(portal, 'm.room.encrypted', {
        algorithm: 'm.megolm.v1.aes-sha2',
        ciphertext: 'AwgAEnAC',
        sender_key: 'SENDERKEY',
        session_id: 'SESSION',
        device_id: 'DEVICE',
      });
      await h.transactionsIdle();
      await new Promise((r) => setTimeout(r, 200));
      expect(bob.received).toHaveLength(0);
    },
  );

  sqliteOnly(
    'an encrypted DM with a ghost or with the bot is declined, and the working portal and management room stay',
    async () => {
      const { bob, portal } = await portalWithBob();
      const encrypted = {
        initial_state: [
          { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
        ],
      };
      const withGhost = await alice.createDirectRoom(GHOST, encrypted);
      await alice.waitFor(
        withGhost,
        (e) => e.sender === GHOST && /cannot read Matrix-encrypted messages/.test(bodyOf(e)),
      );
      const withBot = await alice.createDirectRoom(BOT, encrypted);
      await alice.waitFor(
        withBot,
        (e) => e.sender === BOT && /cannot read Matrix-encrypted messages/.test(bodyOf(e)),
      );
      await alice.waitFor(withBot, (e) => e.state_key === BOT && e.content['membership'] === 'leave');

      // The old portal still carries messages both ways, and the old management room takes commands.
      await alice.sendText(portal, 'still here?');
      await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'still here?');
      await bob.sendText(await h.jidOf(alice), 'yes', { devices: [0] });
      await fromGhost(portal, /^yes$/);
      expect(await h.command(alice, management, 'status')).toMatch(/Opted in/);
      expect((await h.adapter.store.portalOf(alice.userId, bob.jid))?.roomId).toBe(portal);
    },
  );

  sqliteOnly(
    'a message that cannot be delivered is answered in the room with a notice naming the reason',
    async () => {
      // A WhatsApp account with no device: reachable in the directory, but nothing can be sent to it.
      const jid = h.running.gateway.createNativeUser('+4917600000001');
      const ghost = ghostOf('+4917600000001');
      const room = await alice.createDirectRoom(ghost);
      await alice.waitFor(room, (e) => e.state_key === BOT && e.content['membership'] === 'join');
      const id = await alice.sendText(room, 'anyone there?');

      const notice = await alice.waitFor(room, (e) => e.sender === BOT && replyTarget(e) === id);
      expect(notice.content['msgtype']).toBe('m.notice');
      expect(bodyOf(notice)).toMatch(/^Not delivered to \+4917600000001: /);
      expect(jid).toBe('4917600000001@wa.interop');
    },
  );

  sqliteOnly(
    'a contact’s identity change is announced in the portal with the new safety number',
    async () => {
      const { bob, portal } = await portalWithBob();
      await alice.sendText(portal, 'hi');
      await bob.waitForMessage();
      await bob.close();
      h.natives.splice(h.natives.indexOf(bob), 1);
      await h.native(BOB); // same number, new phone: a new identity key

      const notice = await alice.waitFor(portal, (e) => e.sender === BOT && /security code/.test(bodyOf(e)));
      expect(notice.content['msgtype']).toBe('m.notice');
      expect(bodyOf(notice)).toMatch(
        /^The security code of \+4915112345678 changed .* Safety number: (\d{5} ){11}\d{5}\.$/,
      );
    },
  );

  sqliteOnly(
    'a ghost removed from its portal, seen or unseen, gets a new portal for the next message',
    async () => {
      const bob = await h.native(BOB);
      // A direct chat Alice makes as a plain private chat: she alone has the power to remove the ghost
      // (in the bridge's own portals, made as trusted private chats, the ghost is her equal).
      const ownChat = async (text: string): Promise<string> => {
        const room = await alice.createRoom({ preset: 'private_chat', is_direct: true, invite: [GHOST] });
        await alice.waitFor(room, (e) => e.state_key === GHOST && e.content['membership'] === 'join');
        await alice.sendText(room, text);
        await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === text);
        return room;
      };
      const portal = await ownChat('my own room');
      // Alice removes the ghost: the bridge forgets the portal.
      await alice.setState(portal, 'm.room.member', GHOST, { membership: 'leave' });
      await until(
        async () => (await h.adapter.store.room(portal)) === undefined,
        'the portal to be forgotten',
      );
      await bob.sendText(await h.jidOf(alice), 'after the kick', { devices: [0] });
      const second = await alice.waitForInvite((e) => e.sender === GHOST && e.room_id !== portal);
      await alice.join(second);
      await fromGhost(second, /after the kick/);

      // A portal the bridge still maps although the ghost is gone (a removal it never saw): the
      // homeserver's M_FORBIDDEN makes the bridge forget it and open a new one, once.
      const third = await ownChat('another room of mine');
      await alice.setState(third, 'm.room.member', GHOST, { membership: 'leave' });
      await until(
        async () => (await h.adapter.store.room(third)) === undefined,
        'the third room to be forgotten',
      );
      await h.adapter.store.putRoom({
        roomId: third,
        kind: 'portal',
        localUser: alice.userId,
        remoteJid: bob.jid,
      });
      const id = await bob.sendText(await h.jidOf(alice), 'after the unseen kick', { devices: [0] });
      const fourth = await alice.waitForInvite(
        (e) => e.sender === GHOST && ![portal, second, third].includes(e.room_id),
      );
      await alice.join(fourth);
      await fromGhost(fourth, /after the unseen kick/);
      await bob.waitForReceipt(id, 'delivery');
      expect((await h.adapter.store.portalOf(alice.userId, bob.jid))?.roomId).toBe(fourth);
    },
  );

  sqliteOnly(
    'presence goes both ways: the puppet follows the Matrix user, the ghost shows the contact',
    async () => {
      const { bob, portal } = await portalWithBob();
      await alice.sendText(portal, 'hi');
      await bob.waitForMessage();
      const aliceJid = await h.jidOf(alice);

      // Native -> Matrix: Bob's presence is the ghost's.
      bob.presence(true, aliceJid);
      await alice.waitUntil(() => alice.presenceOf(GHOST) === 'online', 'the ghost online');
      bob.presence(false, aliceJid);
      await alice.waitUntil(() => alice.presenceOf(GHOST) === 'offline', 'the ghost offline');

      // Matrix -> native: Alice goes away and comes back; her puppet says so.
      const last = () => bob.presences.filter((p) => p.from === aliceJid).at(-1);
      await alice.setPresence('offline');
      await until(() => last()?.available === false, 'Bob to see Alice gone');
      // (Synapse's presence rate limit, one change per 10 s, makes this one wait.)
      await alice.setPresence('online');
      await until(() => last()?.available === true, 'Bob to see Alice back', 30_000);
    },
  );

  test('edits, reactions and redactions go both ways, each as itself', async () => {
    const { bob, portal } = await portalWithBob();
    const aliceJid = await h.jidOf(alice);

    // Matrix -> native: Alice edits her message, reacts to Bob's, and redacts her message.
    const mine = await alice.sendText(portal, 'lunch at 12?');
    const wire = await bob.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === 'lunch at 12?',
    );
    await alice.sendEvent(portal, 'm.room.message', {
      msgtype: 'm.text',
      body: '* lunch at 1?',
      'm.new_content': { msgtype: 'm.text', body: 'lunch at 1?' },
      'm.relates_to': { rel_type: 'm.replace', event_id: mine },
    });
    const edit = await bob.waitForMessage((m) => m.content.kind === 'edit');
    expect(edit.content.kind === 'edit' && edit.content.target.id).toBe(wire.id);
    expect(edit.content.kind === 'edit' && edit.content.replacement.conversation).toBe('lunch at 1?');

    const theirs = await bob.sendText(aliceJid, 'sure', { devices: [0] });
    const shown = await fromGhost(portal, /^sure$/);
    const reaction = await alice.sendEvent(portal, 'm.reaction', {
      'm.relates_to': { rel_type: 'm.annotation', event_id: shown.event_id, key: '👍' },
    });
    const reacted = await bob.waitForMessage((m) => m.content.kind === 'reaction');
    expect(reacted.content.kind === 'reaction' && reacted.content).toMatchObject({
      emoji: '👍',
      target: { id: theirs },
    });
    await alice.redact(portal, reaction);
    await bob.waitForMessage((m) => m.content.kind === 'reaction' && m.content.emoji === '');
    await alice.redact(portal, mine);
    const revoked = await bob.waitForMessage((m) => m.content.kind === 'revoke');
    expect(revoked.content.kind === 'revoke' && revoked.content.target.id).toBe(wire.id);

    // Native -> Matrix: Bob edits, reacts to Alice's message, and deletes his message.
    await bob.sendChange(aliceJid, { id: theirs, fromMe: true }, 'sure, 1 it is', { devices: [0] });
    const replaced = await alice.waitFor(
      portal,
      (e) =>
        e.sender === GHOST &&
        (e.content['m.relates_to'] as { rel_type?: string } | undefined)?.rel_type === 'm.replace',
    );
    expect((replaced.content['m.relates_to'] as { event_id: string }).event_id).toBe(shown.event_id);
    expect((replaced.content['m.new_content'] as { body: string }).body).toBe('sure, 1 it is');
    const another = await alice.sendText(portal, 'see you');
    const onWire = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'see you');
    await bob.sendChange(aliceJid, { id: onWire.id, fromMe: false }, { emoji: '🙂' }, { devices: [0] });
    const annotation = await alice.waitFor(portal, (e) => e.sender === GHOST && e.type === 'm.reaction');
    expect(annotation.content['m.relates_to']).toMatchObject({
      rel_type: 'm.annotation',
      event_id: another,
      key: '🙂',
    });
    await bob.sendChange(aliceJid, { id: theirs, fromMe: true }, null, { devices: [0] });
    const redaction = await alice.waitFor(portal, (e) => e.sender === GHOST && e.type === 'm.room.redaction');
    expect(redaction['redacts'] ?? (redaction.content['redacts'] as string | undefined)).toBe(shown.event_id);
  });

  sqliteOnly(
    'every content kind a native user sends arrives as Matrix shows it, and what the bridge cannot carry as a notice',
    async () => {
      const { bob, portal } = await portalWithBob();
      const aliceJid = await h.jidOf(alice);
      const question = await alice.sendText(portal, 'where and who?');
      const asked = await bob.waitForMessage((m) => m.content.kind === 'text');
      const send = (content: Parameters<NativeUser['send']>[1]) =>
        bob.send(aliceJid, content, { devices: [0] });
      const next = (match: (e: ClientEvent) => boolean) =>
        alice.waitFor(portal, (e) => e.sender === GHOST && match(e));

      // A mention of Alice herself and of another contact: pills, and Alice is notified.
      await send({
        kind: 'text',
        text: 'ask @4915199999999, or you @x',
        mentions: ['+4915199999999', aliceJid],
      });
      const mention = await next((e) => bodyOf(e).startsWith('ask'));
      const aliceToken = `@${aliceJid.split('@')[0]}`;
      const mentioned = mention.content['m.mentions'] as { user_ids: string[] };
      expect(mentioned.user_ids.sort()).toEqual([ghostOf('+4915199999999'), alice.userId].sort());
      expect(mention.content['formatted_body']).toContain(
        `<a href="https://matrix.to/#/${encodeURIComponent(ghostOf('+4915199999999'))}">`,
      );
      expect(bodyOf(mention)).not.toContain('@4915199999999');
      expect(bodyOf(mention)).not.toContain(aliceToken);

      // A reply with a location, and a contact card.
      await send({
        kind: 'location',
        latitude: 52.5163,
        longitude: 13.3777,
        name: 'Brandenburger Tor',
        reply_to: asked.id,
      });
      const place = await next((e) => e.content['msgtype'] === 'm.location');
      expect(place.content['geo_uri']).toBe('geo:52.5163,13.3777');
      expect(bodyOf(place)).toContain('Brandenburger Tor');
      expect(replyTarget(place)).toBe(question);
      await send({ kind: 'contact', cards: [{ name: 'Jane Doe', phone: '+4915122223333' }] });
      await next((e) => bodyOf(e) === '👤 Jane Doe: +4915122223333');

      // A video, a file and a voice note, each as its own Matrix message type.
      await send({ kind: 'video', caption: 'the match' });
      const video = await next((e) => e.content['msgtype'] === 'm.video');
      expect(bodyOf(video)).toBe('the match');
      await send({ kind: 'document', file_name: 'plan.pdf' });
      const file = await next((e) => e.content['msgtype'] === 'm.file');
      expect(file.content['filename']).toBe('plan.pdf');
      await send({ kind: 'voice' });
      const voice = await next((e) => e.content['msgtype'] === 'm.audio');
      expect(voice.content['org.matrix.msc3245.voice']).toEqual({});

      // A poll: a notice naming it, and the delivery receipt is for a message Alice did see.
      const poll = await send({ kind: 'poll', question: 'Lunch?', options: ['12', '1'] });
      await next((e) => /^\(sent a poll, which this bridge cannot show/.test(bodyOf(e)));
      await bob.waitForReceipt(poll, 'delivery');

      // And Alice's location back: a place on Bob's side, not a text.
      await alice.sendEvent(portal, 'm.room.message', {
        msgtype: 'm.location',
        body: 'Location',
        geo_uri: 'geo:48.8584,2.2945',
      });
      const back = await bob.waitForMessage((m) => m.content.kind === 'location');
      // A pill of Bob's ghost is a mention of Bob.
      await alice.sendText(
        portal,
        'thanks Bob',
        `thanks <a href="https://matrix.to/#/${encodeURIComponent(GHOST)}">${BOB}</a>`,
      );
      const thanks = await bob.waitForMessage(
        (m) => m.content.kind === 'text' && m.content.text.startsWith('thanks'),
      );
      expect(thanks.content).toMatchObject({ text: 'thanks @4915112345678', mentions: [bob.jid] });
      expect(back.content.kind === 'location' && back.content.place).toEqual({
        latitude: 48.8584,
        longitude: 2.2945,
      });
    },
  );

  sqliteOnly(
    'double puppeting: what the user sends from another device appears as theirs, with their read receipt, and goes to the contact once',
    async () => {
      const { bob, portal } = await portalWithBob();
      await alice.sendText(portal, 'hi');
      await bob.waitForMessage();
      const aliceJid = await h.jidOf(alice);
      // Alice's other device on the gatekeeper's side (device 1 of her interop account).
      const phone = await h.companion(alice);

      // Not turned on: the bot shows it, saying whose it is.
      await phone.sendFromThisDevice(bob.jid, 'from my phone', [0], [0]);
      await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'from my phone');
      await alice.waitFor(
        portal,
        (e) => e.sender === BOT && bodyOf(e) === 'You, from another device: from my phone',
      );

      // Turned on: as Alice herself, and her read receipt moves to it.
      expect(await h.command(alice, management, 'double-puppet on')).toMatch(/Double puppeting is on/);
      const id = await phone.sendFromThisDevice(bob.jid, 'from my phone again', [0], [0]);
      const mine = await alice.waitFor(
        portal,
        (e) =>
          e.sender === alice.userId && e.type === 'm.room.message' && bodyOf(e) === 'from my phone again',
      );
      await alice.waitUntil(
        () => alice.readUpTo(portal, alice.userId) === mine.event_id,
        'her own read receipt',
      );
      // Bob reads it (his receipt goes to every device of her account): the ghost's receipt shows it.
      const got = await bob.waitForMessage(
        (m) => m.content.kind === 'text' && m.content.text === 'from my phone again',
      );
      expect(got.id).toBe(id);
      await bob.sendReceipt(aliceJid, [id], 'read');
      await alice.waitUntil(
        () => alice.readUpTo(portal, GHOST) === mine.event_id,
        'Bob’s read receipt on it',
      );

      // What the bridge sent as Alice is not taken for a new message of hers: Bob has each once. What
      // she sends from Matrix reaches her phone too, as a copy naming Bob and the id he got.
      await alice.sendText(portal, 'and from Matrix');
      const fromMatrix = await bob.waitForMessage(
        (m) => m.content.kind === 'text' && m.content.text === 'and from Matrix',
      );
      const copy = await phone.waitForMessage(
        (m) => m.raw.deviceSentMessage?.message?.conversation === 'and from Matrix',
      );
      expect(copy.raw.deviceSentMessage?.destinationJid).toBe(bob.jid);
      expect(copy.raw.deviceSentMessage?.messageId).toBe(fromMatrix.id);
      await h.transactionsIdle();
      const texts = bob.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
      expect(texts).toEqual(['hi', 'from my phone', 'from my phone again', 'and from Matrix']);

      // She deletes it from her phone: redacted in Matrix by her, and Bob gets one deletion, not two.
      await phone.sendFromThisDevice(
        bob.jid,
        revokeContent({ remoteJid: bob.jid, fromMe: true, id }),
        [0],
        [0],
      );
      await alice.waitFor(
        portal,
        (e) =>
          e.type === 'm.room.redaction' &&
          e.sender === alice.userId &&
          (e['redacts'] ?? e.content['redacts']) === mine.event_id,
      );
      await bob.waitForMessage((m) => m.content.kind === 'revoke');
      await h.transactionsIdle();
      await new Promise((r) => setTimeout(r, 500));
      expect(bob.received.filter((m) => m.content.kind === 'revoke')).toHaveLength(1);

      expect(await h.command(alice, management, 'double-puppet off')).toMatch(/Double puppeting is off/);
    },
  );
});
