/**
 * The bridge bot and its management room, with matrix-js-sdk on Synapse and the emulator:
 * login after a confirmation, status, list, safety, start-chat, ping, a refused user, logout.
 */
import { BOT, HS_TOKEN, MatrixHarness, bodyOf, ghostOf, replyTarget, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';

let h: MatrixHarness;
const synapse = useSynapse();

beforeEach(async () => {
  h = await MatrixHarness.start({
    synapse: synapse(),
    permissions: { 'example.test': 'user', '@mallory:example.test': 'none' },
  });
});

afterEach(async () => {
  await h.close();
  h.assertNoViolations();
});

test('the bot joins a direct chat, greets with the commands, and answers ping and help', async () => {
  const alice = await h.user('alice', 'Alice');
  const room = await h.managementRoom(alice);

  expect(await alice.membership(room, BOT)).toBe('join');
  const greeting = (await alice.readMessages(room)).find((e) => e.sender === BOT)!;
  expect(bodyOf(greeting)).toMatch(/start-chat \+<number>/);
  expect(await h.command(alice, room, 'ping')).toMatch(/^pong/);
  expect(await h.command(alice, room, 'help')).toMatch(/safety \+<number>/);
  expect(await h.command(alice, room, 'frobnicate')).toMatch(/Unknown command "frobnicate"/);
});

test('login explains what opting in means and enlists only after the confirmation', async () => {
  const alice = await h.user('alice', 'Alice');
  const room = await h.managementRoom(alice);

  const explanation = await h.command(alice, room, 'login');
  expect(explanation).toMatch(/interoperability account/);
  expect(explanation).toMatch(/login confirm/);
  expect(await h.store.puppets.byLocalId(alice.userId)).toBeUndefined();
  expect(await h.command(alice, room, 'status')).toMatch(/not opted in yet: reply `login confirm`/);

  await h.command(alice, room, 'login confirm');
  await alice.waitFor(room, (e) => e.sender === BOT && /You are now connected/.test(bodyOf(e)));
  expect((await h.store.puppets.byLocalId(alice.userId))?.state).toBe('enlisted');
  await new Promise((r) => setTimeout(r, 0));
  expect(await h.command(alice, room, 'login')).toMatch(/already opted in/);
});

test('status, start-chat, list and safety for an enlisted user', async () => {
  const alice = await h.user('alice', 'Alice');
  const bob = await h.native(BOB);
  const room = await h.login(alice);

  expect(await h.command(alice, room, 'status')).toMatch(
    /^Opted in\. Gateway connection: connected\. Messages waiting to be sent: 0\./,
  );
  const portal = await h.startChat(alice, room, BOB);
  expect(await alice.membership(portal, ghostOf(BOB))).toBe('join');
  expect(await alice.membership(portal, alice.userId)).toBe('join');
  expect(await alice.membership(portal, BOT)).toBe('join');
  expect((await alice.profile(ghostOf(BOB)))['displayname']).toBe('+4915112345678 (WhatsApp)');
  const bridgeInfo = (await alice.state(portal)).find((e) => e.type === 'm.bridge');
  expect(bridgeInfo?.content['channel']).toEqual({ id: bob.jid, displayname: BOB });
  // Matrix clients list it as a direct chat with the contact: the ghost invited the user.
  const invite = (await alice.messages(portal)).find(
    (e) => e.type === 'm.room.member' && e.state_key === alice.userId && e.content['membership'] === 'invite',
  );
  expect(invite?.sender).toBe(ghostOf(BOB));
  expect(invite?.content['is_direct']).toBe(true);

  expect(await h.command(alice, room, `start-chat ${BOB}`)).toMatch(/already have a chat/);
  expect(await h.command(alice, room, 'list')).toContain(`${BOB}: ${portal}`);
  // A safety number needs the contact's identity key: known once a message went through.
  await alice.sendText(portal, 'hello Bob');
  await bob.waitForMessage((m) => m.content.kind === 'text');
  const safety = await h.command(alice, room, `safety ${BOB}`);
  expect(safety).toMatch(/^Safety number with \+4915112345678:\n(\d{5} ){11}\d{5}\n/);
  expect(await h.command(alice, room, 'start-chat +4930000000')).toMatch(
    /cannot be reached through interoperability/,
  );
  expect(await h.command(alice, room, 'start-chat hello')).toMatch(/is not a phone number/);
});

test('a user the permissions do not allow has the invite rejected without the bot joining', async () => {
  const mallory = await h.user('mallory', 'Mallory', { exact: true });
  const room = await mallory.createDirectRoom(BOT);
  const rejected = await mallory.waitFor(
    room,
    (e) => e.type === 'm.room.member' && e.state_key === BOT && e.content['membership'] === 'leave',
  );

  expect(rejected.content['reason']).toMatch(/not open to your account/);
  const events = await mallory.messages(room);
  expect(events.some((e) => e.state_key === BOT && e.content['membership'] === 'join')).toBe(false);
  expect(events.some((e) => e.sender === BOT && e.type === 'm.room.message')).toBe(false);
  // Inviting a ghost does not work either: it declines.
  await h.native(BOB);
  const dm = await mallory.createDirectRoom(ghostOf(BOB));
  const left = await mallory.waitFor(
    dm,
    (e) => e.type === 'm.room.member' && e.state_key === ghostOf(BOB) && e.content['membership'] === 'leave',
  );
  expect(left.content['reason']).toMatch(/not open to your account/);
  expect(await h.store.puppets.byLocalId(mallory.userId)).toBeUndefined();
});

test('logout opts the user out, deletes the puppet and closes the portals', async () => {
  const alice = await h.user('alice', 'Alice');
  await h.native(BOB);
  const room = await h.login(alice);
  const portal = await h.startChat(alice, room, BOB);

  await h.command(alice, room, 'logout');
  await alice.waitFor(room, (e) => e.sender === BOT && /You have opted out/.test(bodyOf(e)));
  await alice.waitFor(
    portal,
    (e) => e.type === 'm.room.member' && e.state_key === ghostOf(BOB) && e.content['membership'] === 'leave',
  );

  expect(await h.store.puppets.byLocalId(alice.userId)).toBeUndefined();
  expect(await h.adapter.store.portalsOf(alice.userId)).toEqual([]);
  expect(await h.command(alice, room, 'status')).toMatch(/not opted in/);
  const portalNotice = (await alice.readMessages(portal)).find((e) => /no longer bridged/.test(bodyOf(e)));
  expect(portalNotice?.sender).toBe(BOT);
});

test('the bot takes commands only as m.text in a direct chat and never answers a notice', async () => {
  const alice = await h.user('alice', 'Alice');
  const room = await h.managementRoom(alice);
  const notice = await alice.sendText(room, 'ping', undefined, 'm.notice');
  const emote = await alice.sendText(room, 'ping', undefined, 'm.emote');
  expect(await h.command(alice, room, 'ping')).toMatch(/^pong/);
  const answered = (await alice.readMessages(room)).filter((e) => e.sender === BOT).map(replyTarget);
  expect(answered).not.toContain(notice);
  expect(answered).not.toContain(emote);

  // A room invite without is_direct is no management room: the bot says so and takes no command.
  const group = await alice.createRoom({ preset: 'private_chat', invite: [BOT] });
  await alice.waitFor(
    group,
    (e) => e.sender === BOT && /only take commands in a direct chat/.test(bodyOf(e)),
  );
  const ping = await alice.sendText(group, 'ping');
  expect(await h.command(alice, room, 'ping')).toMatch(/^pong/);
  expect(await h.adapter.store.room(group)).toBeUndefined();
  expect((await alice.readMessages(group)).some((e) => replyTarget(e) === ping)).toBe(false);
});

test('bridge state: portals carry m.bridge and uk.half-shot.bridge; the connection state is answered and said in the management room when it changes', async () => {
  const alice = await h.user('alice', 'Alice');
  const bob = await h.native(BOB);
  const room = await h.login(alice);
  const portal = await h.startChat(alice, room, BOB);
  const state = await alice.state(portal);
  for (const type of ['m.bridge', 'uk.half-shot.bridge']) {
    const s = state.find((e) => e.type === type);
    expect(s?.state_key).toBe(`net.interop.bridge://whatsapp/${bob.jid}`);
    expect(s?.content['bridgebot']).toBe(BOT);
  }

  const bridgeState = async (userId: string) => {
    const res = await fetch(
      `http://127.0.0.1:${h.config.matrix.listen_port}/_matrix/app/com.beeper.bridge_state`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${HS_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: userId }),
      },
    );
    expect(res.status).toBe(200);
    return (await res.json()) as {
      bridgeState: { state_event: string };
      remoteState: Record<string, { state_event: string; user_id: string }>;
    };
  };
  const connected = await bridgeState(alice.userId);
  expect(connected.bridgeState.state_event).toBe('RUNNING');
  expect(connected.remoteState[alice.userId]).toMatchObject({
    state_event: 'CONNECTED',
    user_id: alice.userId,
  });
  expect((await bridgeState('@nobody:example.test')).remoteState['@nobody:example.test']?.state_event).toBe(
    'UNCONFIGURED',
  );

  // The gateway drops the connection and refuses new ones for a moment: said, then said again when back.
  const jid = await h.jidOf(alice);
  h.running.gateway.faults.refuseConnections(true);
  expect(h.running.gateway.faults.disconnect(jid)).toBeGreaterThan(0);
  await alice.waitFor(room, (e) => e.sender === BOT && /connection to WhatsApp was lost/.test(bodyOf(e)));
  expect((await bridgeState(alice.userId)).remoteState[alice.userId]?.state_event).not.toBe('CONNECTED');
  h.running.gateway.faults.refuseConnections(false);
  await alice.waitFor(room, (e) => e.sender === BOT && /Connected to WhatsApp again/.test(bodyOf(e)));
  expect((await bridgeState(alice.userId)).remoteState[alice.userId]?.state_event).toBe('CONNECTED');
});
