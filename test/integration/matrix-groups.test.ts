/**
 * Groups and contacts' profiles between a Matrix user (matrix-js-sdk on Synapse) and native users
 * (through the emulator): a group is a room of its own (the portal of the user and the group) with
 * a ghost for every member, kept in step with the group; messages cross both ways; the user makes
 * a group from the management room and leaves one by leaving its room; a restart changes nothing.
 * A contact's push name and picture are their ghost's display name and avatar (on SQLite and on a
 * real PostgreSQL: the avatar set is kept in the adapter's store).
 */
import type { NativeUser } from '../../emulator/native-user.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, until, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';
const CAROL = '+4915122223333';
const DAVE = '+4915133334444';

const synapse = useSynapse();

let h: MatrixHarness;
let alice: SdkUser;
let management: string;

/** Alice, opted in, on a bridge on SQLite or on a real PostgreSQL. */
function withAlice(postgres: () => PostgresServer | undefined = () => undefined): void {
  beforeEach(async () => {
    const pg = postgres();
    h = await MatrixHarness.start({ synapse: synapse(), ...(pg ? { postgres: pg } : {}) });
    alice = await h.user('alice', 'Alice');
    management = await h.login(alice);
  });

  afterEach(async () => {
    await h.close();
    h.assertNoViolations();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bob makes the group "Lunch" with Alice and Carol; Alice accepts the bot's invitation to its room. */
async function lunchGroup(): Promise<{ bob: NativeUser; carol: NativeUser; group: string; portal: string }> {
  const [bob, carol] = [await h.native(BOB), await h.native(CAROL)];
  const { group } = await bob.groups.create('Lunch', [await h.jidOf(alice), carol.jid]);
  const portal = await alice.waitForInvite((e) => e.sender === BOT);
  await alice.join(portal);
  return { bob, carol, group: group.jid, portal };
}

/** The content of a state event of the room, as the user reads it ({} when there is none). */
async function stateOf(room: string, type: string, stateKey = ''): Promise<Record<string, unknown>> {
  const e = (await alice.state(room)).find((s) => s.type === type && s.state_key === stateKey);
  return e?.content ?? {};
}

const levelsOf = async (room: string) =>
  ((await stateOf(room, 'm.room.power_levels'))['users'] ?? {}) as Record<string, number>;

const membershipBecomes = (room: string, userId: string, membership: string) =>
  until(async () => (await alice.membership(room, userId)) === membership, `${userId}: ${membership}`);

const groupText = (user: NativeUser, group: string, text: string) =>
  user.waitForMessage((m) => m.group === group && m.content.kind === 'text' && m.content.text === text);

const textsIn = (user: NativeUser, group: string, text: string) =>
  user.received.filter((m) => m.group === group && m.content.kind === 'text' && m.content.text === text);

const fromGhost = (room: string, phone: string, text: string) =>
  alice.waitFor(
    room,
    (e: ClientEvent) => e.sender === ghostOf(phone) && e.type === 'm.room.message' && bodyOf(e) === text,
  );

describe('group portals', () => {
  withAlice();

  test('a group made on the gatekeeper side becomes a room: the subject its name, the members ghosts, the admins moderators', async () => {
    const { group, portal } = await lunchGroup();

    expect((await stateOf(portal, 'm.room.name'))['name']).toBe('Lunch');
    for (const member of [ghostOf(BOB), ghostOf(CAROL), BOT]) {
      expect(await alice.membership(portal, member)).toBe('join');
    }
    const levels = await levelsOf(portal);
    expect(levels[ghostOf(BOB)]).toBe(50);
    expect(levels[ghostOf(CAROL)] ?? 0).toBe(0);
    expect(levels[alice.userId] ?? 0).toBe(0);
    expect((await h.adapter.store.portalOf(alice.userId, group))?.roomId).toBe(portal);
    // Not a direct chat: no ghost invited Alice to it.
    expect(await h.adapter.store.portalOf(alice.userId, `${BOB.slice(1)}@wa.interop`)).toBeUndefined();
  });

  test('a user added to an existing group gets its room', async () => {
    const [bob, carol] = [await h.native(BOB), await h.native(CAROL)];
    const { group } = await bob.groups.create('Book club', [carol.jid]);
    await bob.send(group.jid, { kind: 'text', text: 'before Alice' });

    await bob.groups.participants(group.jid, 'add', [await h.jidOf(alice)]);
    const portal = await alice.waitForInvite((e) => e.sender === BOT);
    await alice.join(portal);
    expect((await stateOf(portal, 'm.room.name'))['name']).toBe('Book club');
    expect(await alice.membership(portal, ghostOf(CAROL))).toBe('join');
    await bob.send(group.jid, { kind: 'text', text: 'welcome Alice' });
    await fromGhost(portal, BOB, 'welcome Alice');
  });

  test('messages cross both ways: a member’s by their ghost, the user’s to every member, once each', async () => {
    const { bob, carol, group, portal } = await lunchGroup();
    const me = await h.jidOf(alice);

    const id = await bob.send(group, { kind: 'text', text: 'who is in?' });
    await fromGhost(portal, BOB, 'who is in?');
    await bob.waitForReceipt(id, 'delivery');
    await carol.send(group, { kind: 'text', text: 'me, at one' });
    await fromGhost(portal, CAROL, 'me, at one');

    await alice.sendText(portal, 'me too!');
    const [toBob, toCarol] = await Promise.all([
      groupText(bob, group, 'me too!'),
      groupText(carol, group, 'me too!'),
    ]);
    expect(toBob.from).toBe(me);
    expect(toCarol.id).toBe(toBob.id);
    await h.transactionsIdle();
    await sleep(300);
    expect(textsIn(bob, group, 'me too!')).toHaveLength(1);
    expect(textsIn(carol, group, 'me too!')).toHaveLength(1);
    const shown = (await alice.readMessages(portal)).filter((e) => bodyOf(e) === 'who is in?');
    expect(shown).toHaveLength(1);
  });

  test('members added, promoted and removed, a new subject and new settings on the gatekeeper side show in the room', async () => {
    const { bob, carol, group, portal } = await lunchGroup();
    const dave = await h.native(DAVE);

    await bob.groups.participants(group, 'add', [dave.jid]);
    await membershipBecomes(portal, ghostOf(DAVE), 'join');
    await bob.groups.participants(group, 'promote', [dave.jid]);
    await until(async () => (await levelsOf(portal))[ghostOf(DAVE)] === 50, 'Dave a moderator');

    await bob.groups.participants(group, 'remove', [carol.jid]);
    await membershipBecomes(portal, ghostOf(CAROL), 'leave');
    const kick = (await alice.state(portal)).find(
      (e) => e.type === 'm.room.member' && e.state_key === ghostOf(CAROL),
    );
    expect(kick?.sender).toBe(BOT);
    expect(kick?.content['reason']).toBe(`removed from the group by ${BOB}`);

    await bob.groups.setSubject(group, 'Dinner');
    const renamed = await alice.waitFor(
      portal,
      (e) => e.type === 'm.room.name' && e.content['name'] === 'Dinner',
    );
    // Bob changed it, an admin: clients say so.
    expect(renamed.sender).toBe(ghostOf(BOB));

    // An announcement group: only moderators speak; a locked one: only they rename it.
    await bob.groups.setSetting(group, 'announcement');
    await until(
      async () => (await stateOf(portal, 'm.room.power_levels'))['events_default'] === 50,
      'only moderators speaking',
    );
    const editLevel = async () =>
      ((await stateOf(portal, 'm.room.power_levels'))['events'] as Record<string, number>)['m.room.name'];
    expect(await editLevel()).toBe(0);
    await bob.groups.setSetting(group, 'locked');
    await until(async () => (await editLevel()) === 50, 'only moderators renaming');

    // The user made an admin: a moderator in the room.
    await bob.groups.participants(group, 'promote', [await h.jidOf(alice)]);
    await until(
      async () => (await levelsOf(portal))[alice.userId] === 75,
      'Alice an admin (above the admins’ ghosts)',
    );
  });

  test('create-group makes the group at the gateway and its room; its admin renames it, kicks and invites ghosts: the group follows', async () => {
    const [bob, carol] = [await h.native(BOB), await h.native(CAROL)];

    const reply = await h.command(alice, management, `create-group Lunch crew ${BOB} ${CAROL}`);
    expect(reply).toMatch(/^Made the group "Lunch crew"/);
    const room = /(![A-Za-z0-9_\-+/=]+(?::[^\s.]+(?:\.[a-z]+)*)?)/.exec(reply)?.[1];
    if (room === undefined) throw new Error(`no room in "${reply}"`);
    const created = await bob.groups.waitForEvent((e) => e.event.event === 'group_created');
    expect(created.event.event === 'group_created' && created.event.group.subject).toBe('Lunch crew');
    await carol.groups.waitForEvent((e) => e.group === created.group && e.event.event === 'group_created');

    await alice.join(room);
    expect((await stateOf(room, 'm.room.name'))['name']).toBe('Lunch crew');
    expect(await alice.membership(room, ghostOf(BOB))).toBe('join');
    expect(await alice.membership(room, ghostOf(CAROL))).toBe('join');
    // Alice made it: its admin, a moderator.
    expect((await levelsOf(room))[alice.userId]).toBe(75);

    await alice.sendText(room, 'first!');
    await Promise.all([groupText(bob, created.group, 'first!'), groupText(carol, created.group, 'first!')]);
    await bob.send(created.group, { kind: 'text', text: 'hi all' });
    await fromGhost(room, BOB, 'hi all');

    // Alice, its admin, renames the room: the group's subject; she kicks Carol's ghost: removed.
    await alice.setState(room, 'm.room.name', '', { name: 'Lunch crew (Fri)' });
    await bob.groups.waitForEvent(
      (e) =>
        e.group === created.group &&
        e.event.event === 'subject_changed' &&
        e.event.subject === 'Lunch crew (Fri)',
    );
    await alice.client.kick(room, ghostOf(CAROL), 'not coming');
    await bob.groups.waitForEvent(
      (e) =>
        e.group === created.group &&
        e.event.event === 'participants_changed' &&
        e.event.action === 'remove' &&
        e.event.participants.includes(carol.jid),
    );

    // She invites Dave's ghost into the room: Dave is added to the group.
    const dave = await h.native(DAVE);
    await alice.invite(room, ghostOf(DAVE));
    await bob.groups.waitForEvent(
      (e) =>
        e.group === created.group &&
        e.event.event === 'participants_changed' &&
        e.event.action === 'add' &&
        e.event.participants.includes(dave.jid),
    );
    await membershipBecomes(room, ghostOf(DAVE), 'join');
  });

  test("the user's power-level edits promote and demote members; a refusal puts them back", async () => {
    const bob = await h.native(BOB);
    await h.native(CAROL);
    const reply = await h.command(alice, management, `create-group Levels ${BOB} ${CAROL}`);
    const room = /(![A-Za-z0-9_\-+/=]+(?::[^\s.]+(?:\.[a-z]+)*)?)/.exec(reply)?.[1];
    if (room === undefined) throw new Error(`no room in "${reply}"`);
    const { group } = await bob.groups.waitForEvent((e) => e.event.event === 'group_created');
    await alice.join(room);
    const me = await h.jidOf(alice);
    // Alice, its only admin, is a moderator: moderators edit the power levels.
    const powerLevels = () => stateOf(room, 'm.room.power_levels');
    expect((await levelsOf(room))[alice.userId]).toBe(75);
    expect(((await powerLevels())['events'] as Record<string, number>)['m.room.power_levels']).toBe(50);
    const withLevel = async (userId: string, level: number) => {
      const content = await powerLevels();
      const users = { ...(content['users'] as Record<string, number>), [userId]: level };
      await alice.setState(room, 'm.room.power_levels', '', { ...content, users });
    };
    const participants = (action: 'promote' | 'demote', jid: string) =>
      bob.groups.waitForEvent(
        (e) =>
          e.group === group &&
          e.event.event === 'participants_changed' &&
          e.event.action === action &&
          e.event.participants.includes(jid),
      );

    // The last admin stepping down: the gateway refuses, the bot says why and puts her level back.
    await withLevel(alice.userId, 0);
    await alice.waitFor(
      room,
      (e) => e.sender === BOT && bodyOf(e).startsWith("The group's admins did not change: "),
    );
    await until(async () => (await levelsOf(room))[alice.userId] === 75, 'Alice an admin again');

    // She raises Bob's ghost to moderator: Bob is promoted, by her.
    await withLevel(ghostOf(BOB), 50);
    const promoted = await participants('promote', bob.jid);
    expect(promoted.author).toBe(me);
    // And lowers him again (she is above the admins' ghosts): Bob is demoted, then promoted anew.
    await withLevel(ghostOf(BOB), 0);
    expect((await participants('demote', bob.jid)).author).toBe(me);
    await withLevel(ghostOf(BOB), 50);
    await bob.groups.waitForEvent(
      (e) =>
        e.group === group &&
        e.event.event === 'participants_changed' &&
        e.event.action === 'promote' &&
        e.event.participants.includes(bob.jid) &&
        e.version > promoted.version,
    );

    // Bob an admin, she steps down: demoted in the group, and no longer a moderator in the room.
    await withLevel(alice.userId, 0);
    const demoted = await participants('demote', me);
    expect(demoted.author).toBe(me);
    await h.transactionsIdle();
    await sleep(300);
    const levels = await levelsOf(room);
    expect(levels[alice.userId] ?? 0).toBe(0);
    expect(levels[ghostOf(BOB)]).toBe(50);
    // The bridge's own writes (mirroring the group) asked nothing back of it.
    expect(
      bob.groups.events.filter((e) => e.group === group && e.event.event === 'participants_changed'),
    ).toHaveLength(4);
  });

  test('the user leaving the room leaves the group', async () => {
    const { bob, carol, group, portal } = await lunchGroup();
    const me = await h.jidOf(alice);

    await alice.leave(portal);
    const removed = (who: NativeUser) =>
      who.groups.waitForEvent(
        (e) =>
          e.group === group &&
          e.event.event === 'participants_changed' &&
          e.event.action === 'remove' &&
          e.event.participants.includes(me),
      );
    await Promise.all([removed(bob), removed(carol)]);
    await until(
      async () => (await h.adapter.store.portalOf(alice.userId, group)) === undefined,
      'the room forgotten',
    );
    await until(
      async () => (await h.core.group!(alice.userId, group)) === undefined,
      'the group gone for Alice',
    );
  });

  test('the user removed from the group is told so in the room, which the bridge leaves', async () => {
    const { bob, group, portal } = await lunchGroup();

    await bob.groups.participants(group, 'remove', [await h.jidOf(alice)]);
    await alice.waitFor(
      portal,
      (e) =>
        e.sender === BOT &&
        bodyOf(e) === `${BOB} removed you from the group "Lunch": this room is no longer bridged.`,
    );
    for (const member of [ghostOf(BOB), ghostOf(CAROL), BOT])
      await membershipBecomes(portal, member, 'leave');
    expect(await h.adapter.store.portalOf(alice.userId, group)).toBeUndefined();
    expect(await alice.membership(portal, alice.userId)).toBe('join');
  });

  test('after a bridge restart the room carries messages both ways, and what came meanwhile', async () => {
    const { bob, group, portal } = await lunchGroup();

    await h.stopBridge();
    await bob.send(group, { kind: 'text', text: 'while you were away' });
    await h.startBridge();
    await until(() => h.bridge.puppet(alice.userId)?.connection.isConnected === true, 'the puppet again');

    await fromGhost(portal, BOB, 'while you were away');
    await bob.send(group, { kind: 'text', text: 'and now' });
    await fromGhost(portal, BOB, 'and now');
    await alice.sendText(portal, 'back');
    await groupText(bob, group, 'back');
    expect(await h.adapter.store.portalOf(alice.userId, group)).toMatchObject({ roomId: portal });
  });
});

// The ghost's profile is kept in the adapter's store (migration 015): on both backends.
describe.each(['sqlite', 'postgres'] as const)("ghosts' profiles on %s", (backend) => {
  let postgres: PostgresServer | undefined;
  beforeAll(async () => {
    if (backend === 'postgres') postgres = await startPostgres();
  });
  afterAll(() => postgres?.stop());
  withAlice(() => postgres);

  test("a contact's push name and picture are their ghost's display name and avatar, and follow each change", async () => {
    const GHOST = ghostOf(BOB);
    const bob = await h.native(BOB);
    await bob.profile.setName('Bob');
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(1000, 7)]);
    await bob.profile.setPicture(jpeg);
    const profile = () => alice.profile(GHOST);
    const avatarBytes = async () => (await alice.download(String((await profile())['avatar_url']))).bytes;

    await bob.sendText(await h.jidOf(alice), 'hi', { devices: [0] });
    const portal = await alice.waitForInvite((e) => e.sender === GHOST);
    await alice.join(portal);
    await until(async () => {
      const p = await profile();
      return p['displayname'] === 'Bob (WhatsApp)' && typeof p['avatar_url'] === 'string';
    }, 'the ghost named Bob, with his picture');
    expect(await avatarBytes()).toEqual(jpeg);
    // The room shows it too (the ghost's member event).
    await alice.waitFor(
      portal,
      (e) =>
        e.type === 'm.room.member' && e.state_key === GHOST && e.content['displayname'] === 'Bob (WhatsApp)',
    );

    await bob.profile.setName('Bobby');
    await until(async () => (await profile())['displayname'] === 'Bobby (WhatsApp)', 'the new name');
    const other = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe1]), Buffer.alloc(500, 9)]);
    const before = String((await profile())['avatar_url']);
    await bob.profile.setPicture(other);
    await until(async () => String((await profile())['avatar_url']) !== before, 'the new picture');
    expect(await avatarBytes()).toEqual(other);

    // A restart: the core shows Bob's profile again with his next message; nothing is set twice.
    const profileCalls = () =>
      h.proxy.requests.filter(
        (r) =>
          r.userId === GHOST &&
          (r.path.includes('/profile/') || r.path.includes('/upload')) &&
          r.method !== 'GET',
      ).length;
    const calls = profileCalls();
    await h.stopBridge();
    await h.startBridge();
    await bob.sendText(await h.jidOf(alice), 'still me', { devices: [0] });
    await alice.waitFor(portal, (e) => e.sender === GHOST && bodyOf(e) === 'still me');
    await sleep(1500);
    expect(profileCalls()).toBe(calls);

    await bob.profile.removePicture();
    await until(async () => (await profile())['avatar_url'] === undefined, 'the picture removed');
    expect((await profile())['displayname']).toBe('Bobby (WhatsApp)');
  });
});
