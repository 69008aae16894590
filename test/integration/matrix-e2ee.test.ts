/**
 * End-to-end encrypted Matrix portals (`matrix.encryption`): the bot and each ghost have their own
 * devices (MSC4190) and keys, fed by appservice transactions (MSC2409, MSC3202), on a real Synapse,
 * with a Matrix user whose client (matrix-js-sdk, Rust crypto) encrypts and decrypts as Element
 * does; with the bridge's database (and so its crypto store) on SQLite and on a real PostgreSQL.
 * After every test, no event in any room of the user's client is one it could not decrypt. The
 * refusals with encryption off are in matrix-messages.test.ts; a SIGKILL of the daemon is in
 * matrix-e2ee-crash.test.ts; a new device of the user and a restart of Synapse in
 * matrix-e2ee-faults.test.ts.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import { EventShieldColour } from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { NativeMedia } from '../../emulator/native-media.js';
import type { NativeUser } from '../../emulator/native-user.js';
import type { MediaToSend } from '../support/homeserver/local-user.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, replyTarget, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);
const ENCRYPTED = {
  initial_state: [
    { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
  ],
};

const synapse = useSynapse();

describe.each(['sqlite', 'postgres'] as const)('encrypted portals, the bridge on %s', (backend) => {
  let h: MatrixHarness;
  let alice: SdkUser;
  /** Events a test makes unreadable on purpose (a message whose key never comes). */
  let unreadableOnPurpose: Set<string>;
  let management: string;
  let postgres: PostgresServer | undefined;

  beforeAll(async () => {
    if (backend === 'postgres') postgres = await startPostgres();
  });
  afterAll(() => postgres?.stop());
  // On PostgreSQL only what its stores carry: the crypto store and the held events (the rest is
  // the adapter's code, the same on both; the store contract tests cover both backends).
  const sqliteOnly = backend === 'sqlite' ? test : test.skip;

  beforeEach(async () => {
    unreadableOnPurpose = new Set();
    h = await MatrixHarness.start({
      synapse: synapse(),
      encryption: { allow: true, default: true },
      ...(postgres ? { postgres } : {}),
    });
    alice = await h.user('alice', 'Alice', { crypto: true });
    management = await h.login(alice);
  }, 60_000);

  afterEach(async () => {
    try {
      // Over the whole test, in every room: 0 events the user's client could not decrypt.
      if (alice !== undefined) await expectEverythingDecrypted(alice, unreadableOnPurpose);
    } finally {
      await h.close();
    }
    h.assertNoViolations();
  });

  const textOf = (m: { content: { kind: string; text?: string } }) =>
    m.content.kind === 'text' ? (m.content.text ?? '') : '';
  const fromGhost = (room: string, text: RegExp): Promise<ClientEvent> =>
    alice.waitFor(room, (e) => e.sender === GHOST && e.type === 'm.room.message' && text.test(bodyOf(e)));
  const toBob = (bob: NativeUser, text: string) => bob.waitForMessage((m) => textOf(m) === text, 20_000);

  /** Every event the homeserver stored for the room, as Synapse keeps it (its SQLite file). */
  function storedEvents(roomId: string): string[] {
    const db = new Database(path.join(h.synapse!.synapse.dir, 'homeserver.db'), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      return (
        db.prepare('SELECT json FROM event_json WHERE room_id = ?').all(roomId) as { json: string }[]
      ).map((r) => r.json);
    } finally {
      db.close();
    }
  }

  /** Messages both ways in the room, each read by the other side; returns the markers sent. */
  async function exchange(bob: NativeUser, room: string, tag: string): Promise<string[]> {
    const fromBob = `bob-says-${tag}-${Date.now()}`;
    await bob.sendText(await h.jidOf(alice), fromBob, { devices: [0] });
    const shown = await fromGhost(room, new RegExp(fromBob));
    expect(shown.content['msgtype']).toBe('m.text');
    const fromAlice = `alice-says-${tag}-${Date.now()}`;
    await alice.sendText(room, fromAlice);
    await toBob(bob, fromAlice);
    return [fromBob, fromAlice];
  }

  test('a portal is created encrypted, carries text both ways, and the user’s client decrypts every event', async () => {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    expect((await alice.state(portal)).some((e) => e.type === 'm.room.encryption')).toBe(true);

    const markers = await exchange(bob, portal, 'first');
    // A reply and an edit of Bob's, each encrypted by the ghost's device.
    await bob.sendText(await h.jidOf(alice), 'second from bob', { devices: [0] });
    await fromGhost(portal, /second from bob/);
    const question = await alice.sendText(portal, 'lunch?');
    const got = await toBob(bob, 'lunch?');
    await bob.sendText(await h.jidOf(alice), 'yes!', { devices: [0], replyTo: got.id });
    expect(replyTarget(await fromGhost(portal, /yes!/))).toBe(question);

    expect(alice.undecryptable(portal)).toEqual([]);
    // On the wire and on the homeserver, the room holds only encrypted messages.
    const wire = await alice.messages(portal);
    expect(wire.filter((e) => e.type === 'm.room.message')).toEqual([]);
    expect(
      wire.filter((e) => e.type === 'm.room.encrypted' && e.sender === GHOST).length,
    ).toBeGreaterThanOrEqual(3);
    const stored = storedEvents(portal).join('\n');
    for (const m of [...markers, 'second from bob', 'lunch?', 'yes!']) expect(stored).not.toContain(m);
  });

  sqliteOnly(
    'a group portal is created encrypted too: members’ messages and the user’s decrypt, and reach every member',
    async () => {
      const [bob, carol] = [await h.native(BOB), await h.native('+4915122223333')];
      const { group } = await bob.groups.create('Encrypted lunch', [await h.jidOf(alice), carol.jid]);
      const portal = await alice.waitForInvite((e) => e.sender === BOT);
      await alice.join(portal);
      expect((await alice.state(portal)).some((e) => e.type === 'm.room.encryption')).toBe(true);
      const fromBob = `bob-in-group-${Date.now()}`;
      await bob.send(group.jid, { kind: 'text', text: fromBob });
      await fromGhost(portal, new RegExp(fromBob));
      const fromAlice = `alice-in-group-${Date.now()}`;
      await alice.sendText(portal, fromAlice);
      for (const member of [bob, carol]) {
        await member.waitForMessage((m) => m.group === group.jid && textOf(m) === fromAlice, 20_000);
      }
      const wire = await alice.messages(portal);
      expect(wire.filter((e) => e.type === 'm.room.message')).toEqual([]);
      const stored = storedEvents(portal).join('\n');
      expect(stored).not.toContain(fromBob);
      expect(stored).not.toContain(fromAlice);
    },
  );

  sqliteOnly(
    'edits, reactions and redactions go both ways in an encrypted portal, each as itself',
    async () => {
      const bob = await h.native(BOB);
      const portal = await h.startChat(alice, management, BOB);
      const aliceJid = await h.jidOf(alice);

      const mine = await alice.sendText(portal, 'lunch at 12?');
      const wire = await toBob(bob, 'lunch at 12?');
      await alice.sendEvent(portal, 'm.room.message', {
        msgtype: 'm.text',
        body: '* lunch at 1?',
        'm.new_content': { msgtype: 'm.text', body: 'lunch at 1?' },
        'm.relates_to': { rel_type: 'm.replace', event_id: mine },
      });
      const edit = await bob.waitForMessage((m) => m.content.kind === 'edit', 20_000);
      expect(edit.content.kind === 'edit' && edit.content.target.id).toBe(wire.id);
      expect(edit.content.kind === 'edit' && edit.content.replacement.conversation).toBe('lunch at 1?');

      const theirs = await bob.sendText(aliceJid, 'sure', { devices: [0] });
      const shown = await fromGhost(portal, /^sure$/);
      const reaction = await alice.sendEvent(portal, 'm.reaction', {
        'm.relates_to': { rel_type: 'm.annotation', event_id: shown.event_id, key: '👍' },
      });
      const reacted = await bob.waitForMessage((m) => m.content.kind === 'reaction', 20_000);
      expect(reacted.content.kind === 'reaction' && reacted.content).toMatchObject({
        emoji: '👍',
        target: { id: theirs },
      });
      await alice.redact(portal, reaction);
      await bob.waitForMessage((m) => m.content.kind === 'reaction' && m.content.emoji === '', 20_000);
      await alice.redact(portal, mine);
      const revoked = await bob.waitForMessage((m) => m.content.kind === 'revoke', 20_000);
      expect(revoked.content.kind === 'revoke' && revoked.content.target.id).toBe(wire.id);

      await bob.sendChange(aliceJid, { id: theirs, fromMe: true }, 'sure, 1 it is', { devices: [0] });
      const replaced = await alice.waitFor(
        portal,
        (e) =>
          e.sender === GHOST &&
          e.type === 'm.room.message' &&
          (e.content['m.relates_to'] as { rel_type?: string } | undefined)?.rel_type === 'm.replace',
      );
      expect((replaced.content['m.relates_to'] as { event_id: string }).event_id).toBe(shown.event_id);
      expect((replaced.content['m.new_content'] as { body: string }).body).toBe('sure, 1 it is');
      const another = await alice.sendText(portal, 'see you');
      const onWire = await toBob(bob, 'see you');
      await bob.sendChange(aliceJid, { id: onWire.id, fromMe: false }, { emoji: '🙂' }, { devices: [0] });
      const annotation = await alice.waitFor(portal, (e) => e.sender === GHOST && e.type === 'm.reaction');
      expect(annotation.content['m.relates_to']).toMatchObject({
        rel_type: 'm.annotation',
        event_id: another,
        key: '🙂',
      });
      expect(alice.undecryptable(portal)).toEqual([]);
      const stored = storedEvents(portal).join('\n');
      for (const m of ['lunch at 1?', 'sure, 1 it is', 'see you']) expect(stored).not.toContain(m);
    },
  );

  sqliteOnly('formatting, read receipts and typing go both ways in an encrypted portal', async () => {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    const aliceJid = await h.jidOf(alice);
    // Formatting, Matrix -> native: the HTML inside the encrypted event becomes markup.
    await alice.sendText(
      portal,
      'bold and italic',
      '<b>bold</b> and <i>italic</i> <del>gone</del> <code>x = 1</code>',
    );
    const formatted = await bob.waitForMessage((m) => /^\*bold\*/.test(textOf(m)), 20_000);
    expect(textOf(formatted)).toMatch(/^\*bold\* and _italic_ ~gone~ .*x = 1/);
    // Native -> Matrix: markup becomes HTML, encrypted by the ghost's device.
    await bob.sendText(aliceJid, '*Hello* _Alice_, see ~this~ ```code```', { devices: [0] });
    const html = await fromGhost(portal, /Hello/);
    expect(html.content['format']).toBe('org.matrix.custom.html');
    expect(html.content['formatted_body']).toMatch(
      /<strong>Hello<\/strong> <em>Alice<\/em>, see <del>this<\/del> <code>code<\/code>/,
    );

    // Typing and read receipts are not encrypted (the specification has them in the clear), and
    // work as in any portal: Alice types, then reads Bob's two messages with one receipt.
    await alice.setTyping(portal, true);
    await until(async () => bob.chatstates.some((c) => c.composing), 'Bob to see Alice typing');
    const first = await bob.sendText(aliceJid, 'one', { devices: [0] });
    const second = await bob.sendText(aliceJid, 'two', { devices: [0] });
    const two = await fromGhost(portal, /^two$/);
    await alice.sendReceipt(portal, two.event_id);
    await bob.waitForReceipt(first, 'read', 20_000);
    await bob.waitForReceipt(second, 'read', 20_000);
    // Bob types, then reads Alice's message: the ghost types and sends its read receipt.
    await bob.typing(aliceJid, true);
    await alice.waitUntil(() => alice.typing(portal).includes(GHOST), 'the ghost to type');
    const mine = await alice.sendText(portal, 'did you read this?');
    const m = await toBob(bob, 'did you read this?');
    await bob.sendReceipt(m.from, [m.id], 'read', m.fromDevice);
    await alice.waitUntil(() => alice.readUpTo(portal, GHOST) === mine, 'the ghost’s read receipt');
    const stored = storedEvents(portal).join('\n');
    for (const t of ['bold and italic', 'Hello', 'did you read this?']) expect(stored).not.toContain(t);
  });

  sqliteOnly(
    'every kind of file is an encrypted attachment both ways, byte for byte',
    async () => {
      const bob = await h.native(BOB);
      const portal = await h.startChat(alice, management, BOB);
      // Matrix -> native: image, video, audio, voice message and file, each encrypted by the client.
      const fromAlice: [Parameters<SdkUser['sendMedia']>[1], MediaToSend][] = [
        [
          'm.image',
          {
            bytes: randomBytes(40_000),
            mimetype: 'image/png',
            filename: 'view.png',
            caption: 'the view',
            info: { w: 640, h: 480 },
          },
        ],
        [
          'm.video',
          {
            bytes: randomBytes(60_000),
            mimetype: 'video/mp4',
            filename: 'clip.mp4',
            info: { duration: 4000 },
          },
        ],
        [
          'm.audio',
          {
            bytes: randomBytes(12_000),
            mimetype: 'audio/mpeg',
            filename: 'song.mp3',
            info: { duration: 9000 },
          },
        ],
        [
          'm.audio',
          {
            bytes: randomBytes(8_000),
            mimetype: 'audio/ogg',
            filename: 'Voice message.ogg',
            info: { duration: 3000 },
            extraContent: { 'org.matrix.msc3245.voice': {}, 'org.matrix.msc1767.audio': { duration: 3000 } },
          },
        ],
        [
          'm.file',
          {
            bytes: randomBytes(15_000),
            mimetype: 'application/pdf',
            filename: 'Report.pdf',
            caption: 'as promised',
          },
        ],
      ];
      for (const [msgtype, media] of fromAlice) await alice.sendMedia(portal, msgtype, media);
      await bob.waitForMessage(() => bob.received.length === fromAlice.length, 30_000);
      expect(bob.received.map((m) => m.content.kind)).toEqual([
        'image',
        'video',
        'audio',
        'voice',
        'document',
      ]);
      const received = await Promise.all(bob.received.map((m) => bob.downloadMedia(m)));
      expect(received.map((b, i) => b.equals(fromAlice[i]![1].bytes))).toEqual([
        true,
        true,
        true,
        true,
        true,
      ]);
      const [image, , , voice, doc] = bob.received.map((m) => m.content);
      expect(image?.kind === 'image' && image.caption).toBe('the view');
      expect(voice?.kind === 'voice' && voice.media.ptt).toBe(true);
      expect(doc?.kind === 'document' && doc.media.fileName).toBe('Report.pdf');

      // Native -> Matrix: each an encrypted attachment of the ghost's, in an encrypted event.
      const fromBob: NativeMedia[] = [
        { kind: 'image', bytes: randomBytes(30_000), mimetype: 'image/jpeg', caption: 'sunset' },
        { kind: 'video', bytes: randomBytes(50_000), mimetype: 'video/mp4' },
        { kind: 'audio', bytes: randomBytes(10_000), mimetype: 'audio/mpeg' },
        { kind: 'voice', bytes: randomBytes(7_000), mimetype: 'audio/ogg; codecs=opus' },
        { kind: 'document', bytes: randomBytes(15_000), mimetype: 'application/pdf', fileName: 'Plan.pdf' },
      ];
      const msgtypes = ['m.image', 'm.video', 'm.audio', 'm.audio', 'm.file'];
      const aliceJid = await h.jidOf(alice);
      for (const media of fromBob) await bob.sendMedia(aliceJid, media, { devices: [0] });
      const shown: ClientEvent[] = [];
      for (const msgtype of msgtypes) {
        shown.push(
          await alice.waitFor(
            portal,
            (e) =>
              e.sender === GHOST &&
              e.content['msgtype'] === msgtype &&
              !shown.some((s) => s.event_id === e.event_id),
          ),
        );
      }
      for (const [i, e] of shown.entries()) {
        expect(e.content['url']).toBeUndefined();
        expect((e.content['info'] as Record<string, unknown>)['mimetype']).toBe(fromBob[i]!.mimetype);
        const file = e.content['file'] as Record<string, unknown>;
        const bytes = Buffer.from(fromBob[i]!.bytes);
        expect((await alice.downloadEncrypted(file)).equals(bytes)).toBe(true);
        // The homeserver holds ciphertext only.
        expect((await alice.download(String(file['url']))).bytes.equals(bytes)).toBe(false);
      }
      expect('org.matrix.msc3245.voice' in shown[2]!.content).toBe(false);
      expect(shown[3]!.content['org.matrix.msc3245.voice']).toEqual({});
      expect(bodyOf(shown[0]!)).toBe('sunset');
      expect(shown[4]!.content['filename']).toBe('Plan.pdf');
      // Every one of them an m.room.encrypted event on the wire.
      const wire = await alice.messages(portal);
      expect(wire.filter((e) => e.type === 'm.room.message')).toEqual([]);
      const stored = storedEvents(portal).join('\n');
      for (const t of ['the view', 'Report.pdf', 'sunset', 'Plan.pdf']) expect(stored).not.toContain(t);
    },
    60_000,
  );

  sqliteOnly(
    'an encrypted message whose key never comes is held, then its sender is told it could not be read',
    async () => {
      await h.stopBridge();
      await h.startBridge({ encryption: { ...h.config.matrix.encryption, key_wait_seconds: 3 } });
      const bob = await h.native(BOB);
      const portal = await h.startChat(alice, management, BOB);
      await exchange(bob, portal, 'before');
      // What a client sends when its room key never reaches the bridge's devices.
      const lost = await alice.sendRaw(portal, 'm.room.encrypted', {
        algorithm: 'm.megolm.v1.aes-sha2',
        sender_key: 'c2VuZGVyIGtleSBvZiBhIGRldmljZSB0aGF0IGlzIGdvbmU',
        session_id: 'bm8gc3VjaCBzZXNzaW9u',
        device_id: 'GONE',
        ciphertext: 'AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg2yyOAKgVnu8jX5N8ETQ',
      });
      unreadableOnPurpose.add(lost);
      const held = await h.adapter.store.inboundState(lost);
      expect(held?.state).not.toBe('failed');
      const notice = await alice.waitFor(
        portal,
        (e) => e.sender === BOT && e.type === 'm.room.message' && replyTarget(e) === lost,
      );
      expect(bodyOf(notice)).toMatch(/could not be bridged: the bridge never received the key/);
      // The room goes on.
      await exchange(bob, portal, 'after');
    },
  );

  test('an encrypted message whose key comes late is held, and bridged as soon as the key arrives', async () => {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    await bob.sendText(await h.jidOf(alice), 'hi alice', { devices: [0] });
    await fromGhost(portal, /hi alice/);
    // Alice's first message opens her Megolm session: its key travels to-device, held back here
    // while the bridge tries three times (1 s, then 2 s apart).
    const late = h.proxy.holdToDevice();
    const text = `held-until-the-key-${Date.now()}`;
    const id = await alice.sendText(portal, text);
    await until(
      async () => ((await h.adapter.store.inboundState(id))?.attempts ?? 0) >= 3,
      'the event to wait for its key',
    );
    expect(bob.received.some((m) => textOf(m) === text)).toBe(false);

    const released = Date.now();
    await late.release();
    await toBob(bob, text);
    // At once: the next try after three was 4 s away (and the wait, 300 s, is far from over).
    expect(Date.now() - released).toBeLessThan(1500);
    expect((await h.adapter.store.inboundState(id))?.state).toBe('done');
  });

  test('after a restart of the bridge on the same database, the same devices carry more messages both ways', async () => {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    await exchange(bob, portal, 'before');
    const devices = async () =>
      (
        (await alice.call('POST', '/_matrix/client/v3/keys/query', { device_keys: { [GHOST]: [] } })) as {
          device_keys: Record<string, Record<string, unknown>>;
        }
      ).device_keys[GHOST] ?? {};
    const before = Object.keys(await devices());

    await h.stopBridge();
    await h.startBridge();
    const markers = await exchange(bob, portal, 'after');
    await bob.sendText(await h.jidOf(alice), 'and once more', { devices: [0] });
    await fromGhost(portal, /and once more/);

    expect(Object.keys(await devices())).toEqual(before);
    expect(alice.undecryptable(portal)).toEqual([]);
    const stored = storedEvents(portal).join('\n');
    for (const m of markers) expect(stored).not.toContain(m);
  });

  test('the bridge’s devices are cross-signed by their users, once: the user’s client shows their messages as from a device its owner signed', async () => {
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    await bob.sendText(await h.jidOf(alice), 'signed by its owner', { devices: [0] });
    const shown = await fromGhost(portal, /signed by its owner/);
    const crypto = alice.client.getCrypto()!;
    // The devices this bridge made (MSC4190: `PUT /devices/{id}` as the user).
    const deviceOf = (user: string): string => {
      const made = h.proxy.requests.find(
        (r) => r.viaAppservice && r.method === 'PUT' && r.userId === user && r.path.includes('/devices/'),
      );
      return decodeURIComponent(made!.path.split('/').pop()!);
    };
    for (const user of [BOT, GHOST]) {
      await crypto.getUserDeviceInfo([user], true);
      const status = await crypto.getDeviceVerificationStatus(user, deviceOf(user));
      expect(status?.signedByOwner).toBe(true);
    }
    // Element shows no "encrypted by a device not verified by its owner" on the ghost's message.
    const event = alice.client.getRoom(portal)!.findEventById(shown.event_id)!;
    expect(await crypto.getEncryptionInfoForEvent(event)).toEqual({
      shieldColour: EventShieldColour.NONE,
      shieldReason: null,
    });
    // Published without user-interactive auth (an application service), and once: a restart
    // publishes nothing again.
    const published = () =>
      h.proxy.requests.filter((r) => r.operationId === 'uploadCrossSigningKeys' && r.status === 200);
    expect(published().map((r) => r.userId)).toEqual([BOT, GHOST]);
    await h.stopBridge();
    await h.startBridge();
    await exchange(bob, portal, 'after a restart');
    expect(published()).toHaveLength(2);
  });

  sqliteOnly('a user’s encrypted direct chat with a ghost becomes the portal, both ways', async () => {
    const bob = await h.native(BOB);
    const room = await alice.createDirectRoom(GHOST, ENCRYPTED);
    await alice.waitUntil(
      () => alice.client.getRoom(room)?.getMember(GHOST)?.membership === 'join',
      'the ghost to join',
    );
    await until(
      async () => (await h.adapter.store.portalOf(alice.userId, bob.jid))?.roomId === room,
      'the room to be the portal',
    );
    await exchange(bob, room, 'dm');
    expect(alice.undecryptable(room)).toEqual([]);
  });

  sqliteOnly('a management room Element creates encrypted answers commands, encrypted', async () => {
    const room = await alice.createDirectRoom(BOT, ENCRYPTED);
    const greeting = await alice.waitFor(room, (e) => e.sender === BOT && e.type === 'm.room.message');
    expect(bodyOf(greeting)).toMatch(/help|login/i);
    const ping = await alice.sendText(room, 'ping');
    // Decrypted: an encrypted reply shows its relation before it is read.
    const pong = await alice.waitFor(
      room,
      (e) => e.sender === BOT && e.type === 'm.room.message' && replyTarget(e) === ping,
    );
    expect(bodyOf(pong)).toMatch(/pong/);
    expect(alice.undecryptable(room)).toEqual([]);
    expect(
      (await alice.messages(room)).filter((e) => e.sender === BOT && e.type === 'm.room.message'),
    ).toEqual([]);
  });

  sqliteOnly('a user turning encryption on in a portal: messages go on both ways, encrypted', async () => {
    await h.stopBridge();
    await h.startBridge({ encryption: { ...h.config.matrix.encryption, default: false } });
    const bob = await h.native(BOB);
    const portal = await h.startChat(alice, management, BOB);
    await exchange(bob, portal, 'clear');
    await alice.enableEncryption(portal);
    await alice.waitUntil(() => alice.client.isRoomEncrypted(portal), 'the room to be encrypted');
    const markers = await exchange(bob, portal, 'encrypted');
    expect(alice.undecryptable(portal)).toEqual([]);
    const stored = storedEvents(portal).join('\n');
    for (const m of markers) expect(stored).not.toContain(m);
  });
});

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** No event in any room of the user's client is one it could not decrypt, but those `expected`. */
async function expectEverythingDecrypted(user: SdkUser, expected: ReadonlySet<string>): Promise<void> {
  const failed = (await user.undecryptableAnywhere()).filter((e) => !expected.has(e.getId() ?? ''));
  expect(
    failed.map((e) => `${e.getRoomId()} ${e.getId()} from ${e.getSender()}: ${e.decryptionFailureReason}`),
  ).toEqual([]);
}
