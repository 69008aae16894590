/**
 * What crosses a group portal besides plain text, between a Matrix user (matrix-js-sdk on Synapse)
 * and two native members of the group (through the emulator): files, replies, reactions, edits,
 * deletions and mentions both ways, each as the other side shows it and each once; and read
 * receipts both ways, a member's as their ghost's read receipt; the group's picture as the room's
 * avatar. One harness and one group for the
 * file: each test uses texts of its own.
 */
import { randomBytes } from 'node:crypto';
import type { NativeUser } from '../../emulator/native-user.js';
import type { ReceivedMessage } from '../../emulator/native-types.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, replyTarget, until, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';
const CAROL = '+4915122223333';

const synapse = useSynapse();

let h: MatrixHarness;
let alice: SdkUser;
let aliceJid: string;
let bob: NativeUser;
let carol: NativeUser;
let group: string;
let portal: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bob makes the group "Lunch" with Alice and Carol; Alice joins its room. */
beforeAll(async () => {
  h = await MatrixHarness.start({ synapse: synapse() });
  alice = await h.user('alice', 'Alice');
  await h.login(alice);
  aliceJid = await h.jidOf(alice);
  [bob, carol] = [await h.native(BOB), await h.native(CAROL)];
  group = (await bob.groups.create('Lunch', [aliceJid, carol.jid])).group.jid;
  portal = await alice.waitForInvite((e) => e.sender === BOT);
  await alice.join(portal);
  for (const ghost of [ghostOf(BOB), ghostOf(CAROL)]) {
    await until(async () => (await alice.membership(portal, ghost)) === 'join', `${ghost} in the room`);
  }
}, 60_000);

afterAll(async () => {
  await h.close();
  h.assertNoViolations();
});

const relation = (e: ClientEvent) =>
  (e.content['m.relates_to'] ?? {}) as { rel_type?: string; event_id?: string; key?: string };

/** The next event of the member's ghost in the room that matches. */
const byGhost = (phone: string, match: (e: ClientEvent) => boolean) =>
  alice.waitFor(portal, (e) => e.sender === ghostOf(phone) && match(e));

/** A message of the group the member received (already or to come). */
const inGroup = (user: NativeUser, match: (m: ReceivedMessage) => boolean) =>
  user.waitForMessage((m) => m.group === group && match(m), 20_000);

const textIs = (text: string) => (m: ReceivedMessage) => m.content.kind === 'text' && m.content.text === text;

/** Both members' copies of what Alice sent: one message, the same wire id. */
async function toBoth(match: (m: ReceivedMessage) => boolean): Promise<ReceivedMessage> {
  const [toBob, toCarol] = await Promise.all([inGroup(bob, match), inGroup(carol, match)]);
  expect(toBob.from).toBe(aliceJid);
  expect(toCarol.id).toBe(toBob.id);
  return toBob;
}

/** Nothing more is coming: the homeserver has nothing for the bridge, and the gateway a moment. */
async function settled(): Promise<void> {
  await h.transactionsIdle();
  await sleep(500);
}

/** How many messages of the group from Alice the member received that match. */
const countIn = (user: NativeUser, match: (m: ReceivedMessage) => boolean) =>
  user.received.filter((m) => m.group === group && m.from === aliceJid && match(m)).length;

describe('a group portal carries every kind of message both ways', () => {
  test("a member's file, reply, reaction, edit, deletion and mention show as Matrix shows them, by their ghost, once each", async () => {
    const question = await alice.sendText(portal, 'who brings what?');
    const asked = await toBoth(textIs('who brings what?'));

    // An image and a file: uploaded to the media repository, by the sender's ghost.
    const picture = randomBytes(3000);
    await bob.send(group, {
      kind: 'image',
      data_base64: picture.toString('base64'),
      mimetype: 'image/jpeg',
      caption: 'the table',
    });
    const image = await byGhost(BOB, (e) => e.content['msgtype'] === 'm.image');
    expect(bodyOf(image)).toBe('the table');
    expect(String(image.content['url'])).toMatch(/^mxc:\/\//);
    expect((image.content['info'] as Record<string, unknown>)['mimetype']).toBe('image/jpeg');
    expect((await alice.download(String(image.content['url']))).bytes.equals(picture)).toBe(true);
    await carol.send(group, { kind: 'document', file_name: 'menu.pdf' });
    const file = await byGhost(CAROL, (e) => e.content['msgtype'] === 'm.file');
    expect(file.content['filename'] ?? bodyOf(file)).toBe('menu.pdf');
    expect(String(file.content['url'])).toMatch(/^mxc:\/\//);

    // A reply to Alice's message, and a reaction to it.
    await bob.send(group, { kind: 'text', text: 'I bring bread', reply_to: asked.id });
    const answer = await byGhost(BOB, (e) => bodyOf(e) === 'I bring bread');
    expect(replyTarget(answer)).toBe(question);
    await carol.send(group, { kind: 'reaction', target: asked.id, emoji: '👍' });
    const reaction = await byGhost(CAROL, (e) => e.type === 'm.reaction');
    expect(relation(reaction)).toEqual({ rel_type: 'm.annotation', event_id: question, key: '👍' });

    // Bob edits his message, then deletes it: a replacement and a redaction by his ghost.
    const noon = await bob.send(group, { kind: 'text', text: 'at noon' });
    const shown = await byGhost(BOB, (e) => bodyOf(e) === 'at noon');
    await bob.send(group, { kind: 'edit', target: noon, text: 'at one' });
    const edit = await byGhost(BOB, (e) => relation(e).rel_type === 'm.replace');
    expect(relation(edit).event_id).toBe(shown.event_id);
    expect((edit.content['m.new_content'] as Record<string, unknown>)['body']).toBe('at one');
    await bob.send(group, { kind: 'delete', target: noon });
    const redaction = await byGhost(BOB, (e) => e.type === 'm.room.redaction');
    expect(redaction.redacts ?? redaction.content['redacts']).toBe(shown.event_id);

    // Carol mentions Alice and Bob: pills of Alice herself and of Bob's ghost.
    await carol.send(group, { kind: 'text', text: 'thanks', mentions: [aliceJid, BOB] });
    const mention = await byGhost(CAROL, (e) => bodyOf(e).startsWith('thanks'));
    const mentioned = (mention.content['m.mentions'] as { user_ids: string[] }).user_ids;
    expect([...mentioned].sort()).toEqual([alice.userId, ghostOf(BOB)].sort());
    expect(mention.content['formatted_body']).toContain(
      `<a href="https://matrix.to/#/${encodeURIComponent(alice.userId)}">`,
    );
    expect(mention.content['formatted_body']).toContain(
      `<a href="https://matrix.to/#/${encodeURIComponent(ghostOf(BOB))}">`,
    );
    expect(bodyOf(mention)).not.toContain(`@${aliceJid.split('@')[0]}`);

    // Each once, by the ghost that stands for its sender.
    await settled();
    const events = await alice.messages(portal);
    const count = (sender: string, match: (e: ClientEvent) => boolean) =>
      events.filter((e) => e.sender === sender && match(e)).length;
    expect(count(ghostOf(BOB), (e) => e.content['msgtype'] === 'm.image')).toBe(1);
    expect(count(ghostOf(CAROL), (e) => e.content['msgtype'] === 'm.file')).toBe(1);
    expect(count(ghostOf(BOB), (e) => bodyOf(e) === 'I bring bread')).toBe(1);
    expect(count(ghostOf(CAROL), (e) => e.type === 'm.reaction')).toBe(1);
    expect(count(ghostOf(BOB), (e) => relation(e).rel_type === 'm.replace')).toBe(1);
    expect(count(ghostOf(BOB), (e) => e.type === 'm.room.redaction')).toBe(1);
    expect(count(ghostOf(CAROL), (e) => bodyOf(e).startsWith('thanks'))).toBe(1);
    expect(events.filter((e) => e.sender === BOT && e.type === 'm.room.message')).toEqual([]);
  });

  test("the user's image, reply, reaction, edit and redaction reach every member once", async () => {
    const bobsId = await bob.send(group, { kind: 'text', text: 'pizza or pasta?' });
    const bobs = await byGhost(BOB, (e) => bodyOf(e) === 'pizza or pasta?');

    // An image, uploaded to the media repository: both members get the file.
    const picture = randomBytes(20_000);
    await alice.sendMedia(portal, 'm.image', {
      bytes: picture,
      mimetype: 'image/png',
      filename: 'pizza.png',
      caption: 'this one',
      info: { w: 64, h: 48 },
    });
    const isImage = (m: ReceivedMessage) => m.content.kind === 'image' && m.content.caption === 'this one';
    const image = await toBoth(isImage);
    expect((await bob.downloadMedia(image)).equals(picture)).toBe(true);
    const carolsImage = await inGroup(carol, isImage);
    expect((await carol.downloadMedia(carolsImage)).equals(picture)).toBe(true);

    // A reply to Bob's message: it quotes his message by its wire id, naming him.
    await alice.sendEvent(portal, 'm.room.message', {
      msgtype: 'm.text',
      body: `> <${ghostOf(BOB)}> pizza or pasta?\n\npizza`,
      'm.relates_to': { 'm.in_reply_to': { event_id: bobs.event_id } },
    });
    const reply = await toBoth(textIs('pizza'));
    expect(reply.content.kind === 'text' && reply.content.replyTo).toEqual({
      id: bobsId,
      participant: bob.jid,
    });
    const context = reply.raw.extendedTextMessage?.contextInfo;
    expect(context?.stanzaId).toBe(bobsId);
    expect(context?.participant).toBe(bob.jid);

    // A reaction to Bob's message.
    await alice.sendEvent(portal, 'm.reaction', {
      'm.relates_to': { rel_type: 'm.annotation', event_id: bobs.event_id, key: '🍕' },
    });
    const reacted = await toBoth((m) => m.content.kind === 'reaction' && m.content.emoji === '🍕');
    expect(reacted.content.kind === 'reaction' && reacted.content.target).toMatchObject({
      id: bobsId,
      fromMe: false,
      participant: bob.jid,
    });

    // Alice edits her own message, then redacts it.
    const mine = await alice.sendText(portal, 'at 12');
    const wire = await toBoth(textIs('at 12'));
    await alice.sendEvent(portal, 'm.room.message', {
      msgtype: 'm.text',
      body: '* at 1',
      'm.new_content': { msgtype: 'm.text', body: 'at 1' },
      'm.relates_to': { rel_type: 'm.replace', event_id: mine },
    });
    const edit = await toBoth((m) => m.content.kind === 'edit' && m.content.target.id === wire.id);
    expect(edit.content.kind === 'edit' && edit.content.replacement.conversation).toBe('at 1');
    await alice.redact(portal, mine);
    await toBoth((m) => m.content.kind === 'revoke' && m.content.target.id === wire.id);

    await settled();
    for (const member of [bob, carol]) {
      expect(countIn(member, isImage)).toBe(1);
      expect(countIn(member, textIs('pizza'))).toBe(1);
      expect(countIn(member, (m) => m.content.kind === 'reaction')).toBe(1);
      expect(countIn(member, textIs('at 12'))).toBe(1);
      expect(countIn(member, (m) => m.content.kind === 'edit')).toBe(1);
      expect(countIn(member, (m) => m.content.kind === 'revoke')).toBe(1);
    }
  });

  test("read receipts cross both ways: the user's to the member, each member's as their ghost's", async () => {
    // Alice reads Bob's message, after Carol's: each gets her read receipt, in the group.
    const carols = await carol.send(group, { kind: 'text', text: 'read me too' });
    await byGhost(CAROL, (e) => bodyOf(e) === 'read me too');
    const id = await bob.send(group, { kind: 'text', text: 'read me' });
    const shown = await byGhost(BOB, (e) => bodyOf(e) === 'read me');
    await alice.sendReceipt(portal, shown.event_id);
    expect(await bob.waitForReceipt(id, 'read')).toMatchObject({ from: aliceJid, group });
    expect(await carol.waitForReceipt(carols, 'read')).toMatchObject({ from: aliceJid, group });

    // Both members get Alice's message (their delivery receipts show nothing in Matrix) ...
    const mine = await alice.sendText(portal, 'seen?');
    const wire = await toBoth(textIs('seen?'));
    await settled();
    expect(bob.receipts.filter((r) => r.id === id && r.type === 'read')).toHaveLength(1);
    expect(carol.receipts.filter((r) => r.id === carols && r.type === 'read')).toHaveLength(1);
    expect(alice.readUpTo(portal, ghostOf(CAROL))).not.toBe(mine);
    expect(alice.readUpTo(portal, ghostOf(BOB))).not.toBe(mine);

    // ... then read it, each in turn: each one's ghost's read receipt.
    await carol.sendReceipt(group, [wire.id], 'read');
    await alice.waitUntil(() => alice.readUpTo(portal, ghostOf(CAROL)) === mine, "Carol's read receipt");
    expect(alice.readUpTo(portal, ghostOf(BOB))).not.toBe(mine);
    await bob.sendReceipt(group, [wire.id], 'read');
    await alice.waitUntil(() => alice.readUpTo(portal, ghostOf(BOB)) === mine, "Bob's read receipt");
    expect(alice.readUpTo(portal, ghostOf(CAROL))).toBe(mine);
  });

  test("the group's picture is the room's avatar, and follows a change and a removal", async () => {
    const avatar = async () => (await alice.state(portal)).find((e) => e.type === 'm.room.avatar')?.content;
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(2_000)]);
    await bob.profile.setPicture(jpeg, group);
    await until(async () => typeof (await avatar())?.['url'] === 'string', 'the group picture as the avatar');
    const first = String((await avatar())?.['url']);
    expect((await alice.download(first)).bytes).toEqual(jpeg);

    const other = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(3_000)]);
    await bob.profile.setPicture(other, group);
    await until(async () => String((await avatar())?.['url']) !== first, 'the new group picture');
    expect((await alice.download(String((await avatar())?.['url']))).bytes).toEqual(other);

    await bob.profile.removePicture(group);
    await until(async () => (await avatar())?.['url'] === undefined, 'the group picture removed');
  });
});
