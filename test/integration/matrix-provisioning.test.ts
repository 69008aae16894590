/**
 * The provisioning API and the admin commands on real Synapse with the emulator: every endpoint
 * with good and bad input, the shared secret (right, wrong, missing) and a Matrix user's own access
 * token (checked with Synapse's whoami), each exchange checked against
 * docs/provisioning.openapi.yaml; the bot's `admin` commands for an admin, and their refusal to a
 * user.
 */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/logger.js';
import { ProvisioningApi, PROVISIONING_PREFIX } from '../../src/provisioning/api.js';
import { ProvisioningAuth } from '../../src/provisioning/auth.js';
import { ProvisioningClient, provisioningSpec } from '../support/provisioning-client.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, until, useSynapse, type MatrixUser } from './matrix-harness.js';

const SECRET = 'provisioning-secret-for-the-matrix-tests-0123456789';
const BOB = '+4915177700001';
const NOBODY = '+4915177709999';

let h: MatrixHarness;
let api: ProvisioningClient;
let viaAppservice: ProvisioningClient;
/** @boss:example.test, an admin in the permissions. */
let boss: MatrixUser & { accessToken: string; invites(): string[] };
const logged: string[] = [];
const synapse = useSynapse();

beforeAll(async () => {
  h = await MatrixHarness.start({
    synapse: synapse(),
    permissions: { 'example.test': 'user', '@boss:example.test': 'admin', '@mallory:example.test': 'none' },
  });
  const destination = new Writable({
    write(chunk, _enc, done) {
      logged.push(String(chunk));
      done();
    },
  });
  const provisioning = new ProvisioningApi({
    networks: [
      {
        network: 'matrix',
        core: h.core,
        hooks: () => h.adapter.provisioning,
        capabilities: h.adapter.capabilities,
      },
    ],
    auth: new ProvisioningAuth({ secret: SECRET, homeserverUrl: h.config.matrix.homeserver_url }),
    log: createLogger({ destination, format: 'json', level: 'trace' }),
  });
  h.http.routePrefix(PROVISIONING_PREFIX, provisioning.handle);
  h.provisioning = provisioning.handle;
  api = new ProvisioningClient(`http://127.0.0.1:${h.http.address!.port}`);
  viaAppservice = new ProvisioningClient(`http://127.0.0.1:${synapse().bridgePort}`);
  boss = await h.user('boss', undefined, { exact: true });
}, 120_000);

afterAll(async () => {
  // Every operation of the definition was exercised by this file.
  const all = provisioningSpec().operations.map((o) => o.operationId);
  expect([...api.operations].sort()).toEqual([...new Set(all)].sort());
  await h.close();
  h.assertNoViolations();
  // Neither the shared secret nor a Matrix token ever reached the log.
  const text = logged.join('');
  expect(text).toContain('provisioning request refused');
  expect(text).not.toContain(SECRET);
  expect(text).not.toMatch(/syt_[A-Za-z0-9_]+/);
});

/** Opts the user in through the API with their own token; resolves once the puppet is connected. */
async function optIn(u: MatrixUser & { accessToken: string }): Promise<void> {
  const start = await api.call('POST', '/v3/login/start/opt-in', { token: u.accessToken });
  expect(start.body.type).toBe('user_input');
  const step = await api.call(
    'POST',
    `/v3/login/step/${start.body.login_id}/${start.body.step_id}/user_input`,
    {
      token: u.accessToken,
      body: { confirm: 'yes' },
    },
  );
  expect(step.body.type).toBe('complete');
  await until(() => h.bridge.puppet(u.userId)?.connection.isConnected === true, 'the puppet to connect');
}

/**
 * The management room the bot opened at the opt-in (inviting the user), joined: where its notices
 * and command answers are read.
 */
async function managementRoom(u: MatrixUser & { invites(): string[] }): Promise<string> {
  let roomId: string | undefined;
  await until(async () => {
    roomId = (await h.adapter.store.managementRoomOf(u.userId))?.roomId;
    return roomId !== undefined && u.invites().includes(roomId);
  }, 'the invitation to the management room');
  await u.join(roomId!);
  return roomId!;
}

test('refusals: no token, a wrong one, the secret without user_id or for a user not allowed, another user through a Matrix token, unknown endpoints', async () => {
  const alice = await h.user('alice');
  const missing = await api.call('GET', '/v3/whoami');
  expect(missing).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } });
  const notBearer = await api.call('GET', '/v3/whoami', { authorization: `Basic ${SECRET}` });
  expect(notBearer).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } });
  // Not the secret, and Synapse does not know it either.
  const wrong = await api.call('GET', '/v3/whoami', { token: `${SECRET}x`, userId: alice.userId });
  expect(wrong).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } });

  const noUser = await api.call('GET', '/v3/whoami', { token: SECRET });
  expect(noUser).toMatchObject({ status: 400, body: { errcode: 'M_MISSING_PARAM' } });
  const junk = await api.call('GET', '/v3/whoami', { token: SECRET, userId: 'not a user' });
  expect(junk).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
  expect(junk.body.error).toMatch(/Matrix ID .* or an XMPP address/);
  const mallory = await api.call('GET', '/v3/whoami', { token: SECRET, userId: '@mallory:example.test' });
  expect(mallory).toMatchObject({ status: 403, body: { errcode: 'M_FORBIDDEN' } });
  const foreign = await api.call('GET', '/v3/whoami', { token: SECRET, userId: '@eve:elsewhere.test' });
  expect(foreign).toMatchObject({ status: 403, body: { errcode: 'M_FORBIDDEN' } });
  // The bridge's own users are nobody's to act as.
  const ghost = await api.call('GET', '/v3/whoami', { token: SECRET, userId: ghostOf(BOB) });
  expect(ghost.status).toBe(403);

  const other = await api.call('GET', '/v3/whoami', {
    token: alice.accessToken,
    userId: '@someone:example.test',
  });
  expect(other).toMatchObject({ status: 403, body: { errcode: 'M_FORBIDDEN' } });
  // A user's own token is not an admin's.
  const notAdmin = await api.call('GET', '/v3/admin/puppets', { token: alice.accessToken });
  expect(notAdmin).toMatchObject({ status: 403, body: { errcode: 'M_FORBIDDEN' } });

  expect(await api.call('GET', '/v3/frobnicate', { token: SECRET })).toMatchObject({
    status: 404,
    body: { errcode: 'M_UNRECOGNIZED' },
  });
  expect(
    await api.call('POST', '/v3/whoami', { token: SECRET, userId: alice.userId, invalid: true }),
  ).toMatchObject({ status: 405, body: { errcode: 'M_UNRECOGNIZED' } });
});

test("a Matrix user's own token: whoami, the opt-in with its confirmation (bad confirmations refused), capabilities", async () => {
  const alice = await h.user('alice');
  const who = await api.call('GET', '/v3/whoami', { token: alice.accessToken });
  expect(who.body).toMatchObject({
    user_id: alice.userId,
    network: 'matrix',
    permission: 'user',
    puppet: null,
  });
  // user_id naming the token's own user is allowed.
  expect(
    (await api.call('GET', '/v3/whoami', { token: alice.accessToken, userId: alice.userId })).status,
  ).toBe(200);
  expect((await api.call('GET', '/v3/login/flows', { token: alice.accessToken })).body.flows[0].id).toBe(
    'opt-in',
  );

  expect(
    await api.call('POST', '/v3/login/start/password', { token: alice.accessToken, invalid: true }),
  ).toMatchObject({
    status: 404,
    body: { errcode: 'M_NOT_FOUND' },
  });
  const start = await api.call('POST', '/v3/login/start/opt-in', { token: alice.accessToken });
  expect(start.body).toMatchObject({ type: 'user_input', step_id: 'net.interop.opt_in.confirm' });
  expect(start.body.instructions).toMatch(/interoperability account/);
  // The first call enlists nobody.
  expect(await h.store.puppets.byLocalId(alice.userId)).toBeUndefined();
  const stepPath = `/v3/login/step/${start.body.login_id}/net.interop.opt_in.confirm/user_input`;
  const bad = async (body: unknown) =>
    api.call('POST', stepPath, { token: alice.accessToken, body, invalid: true });
  expect(await bad('{"confirm": ')).toMatchObject({ status: 400, body: { errcode: 'M_NOT_JSON' } });
  expect(await bad('["yes"]')).toMatchObject({ status: 400, body: { errcode: 'M_BAD_JSON' } });
  expect(await bad({ confirm: 'no' })).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
  expect(await bad(`{"confirm": "${'y'.repeat(70 * 1024)}"}`)).toMatchObject({
    status: 413,
    body: { errcode: 'M_TOO_LARGE' },
  });
  expect(await bad('[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]')).toMatchObject({
    status: 400,
    body: { errcode: 'M_BAD_JSON' },
  });
  expect(
    await api.call('POST', '/v3/login/step/0000/net.interop.opt_in.confirm/user_input', {
      token: alice.accessToken,
      body: { confirm: 'yes' },
    }),
  ).toMatchObject({ status: 404, body: { errcode: 'M_NOT_FOUND' } });
  // Another user cannot finish alice's login.
  const carl = await h.user('carl');
  expect(
    await api.call('POST', stepPath, { token: carl.accessToken, body: { confirm: 'yes' } }),
  ).toMatchObject({
    status: 404,
  });
  expect(await h.store.puppets.byLocalId(alice.userId)).toBeUndefined();

  const done = await api.call('POST', stepPath, { token: alice.accessToken, body: { confirm: 'yes' } });
  expect(done.body).toMatchObject({ type: 'complete', step_id: 'net.interop.opt_in.complete' });
  expect((await h.store.puppets.byLocalId(alice.userId))?.state).toBe('enlisted');
  expect(done.body.complete.user_login_id).toBe(await h.jidOf(alice));
  // The login is used up.
  expect(
    (await api.call('POST', stepPath, { token: alice.accessToken, body: { confirm: 'yes' } })).status,
  ).toBe(404);
  // Starting again when opted in answers `complete` at once.
  const again = await api.call('POST', '/v3/login/start/opt-in', { token: alice.accessToken });
  expect(again.body).toMatchObject({ type: 'complete', instructions: 'You were opted in already.' });

  await until(() => h.bridge.puppet(alice.userId)?.connection.isConnected === true, 'the puppet to connect');
  const management = await managementRoom(alice);
  const after = await api.call('GET', '/v3/whoami', { token: alice.accessToken });
  expect(after.body.puppet).toMatchObject({
    user_id: alice.userId,
    state: 'enlisted',
    connection: 'connected',
    outbox_queued: 0,
    inbox_pending: 0,
    address: await h.jidOf(alice),
    last_error: null,
  });
  expect(after.body.logins).toEqual([
    { id: await h.jidOf(alice), name: await h.jidOf(alice), state: 'connected' },
  ]);
  expect(after.body.command_room).toBe(management); // the bot's welcome opened it

  const caps = await api.call('GET', '/v3/capabilities', { token: alice.accessToken });
  expect(caps.body).toMatchObject({
    network: 'matrix',
    admin: false,
    features: { media: true, edits: true },
  });
  expect(
    (await api.call('GET', '/v3/capabilities', { token: SECRET, userId: alice.userId })).body.admin,
  ).toBe(true);
});

test('resolve_identifier, create_dm (the same portal as start-chat), contacts and chats, with the shared secret', async () => {
  const dora = await h.user('dora');
  const as = { token: SECRET, userId: dora.userId };
  // Before opting in: a precise refusal.
  expect(await api.call('GET', `/v3/resolve_identifier/${BOB}`, as)).toMatchObject({
    status: 400,
    body: { errcode: 'NET.INTEROP.NOT_OPTED_IN' },
  });
  expect(await api.call('GET', '/v3/contacts', as)).toMatchObject({ status: 400 });
  await optIn(dora);
  const bob = await h.native(BOB);

  expect(await api.call('GET', '/v3/resolve_identifier/hello', as)).toMatchObject({
    status: 400,
    body: { errcode: 'M_INVALID_PARAM' },
  });
  expect(await api.call('GET', `/v3/resolve_identifier/${encodeURIComponent('%zz')}`, as)).toMatchObject({
    status: 400,
  });
  const nobody = await api.call('GET', `/v3/resolve_identifier/${NOBODY}`, as);
  expect(nobody).toMatchObject({ status: 404, body: { errcode: 'M_NOT_FOUND' } });
  expect(nobody.body.error).toMatch(/cannot be reached through interoperability/);

  const resolved = await api.call(
    'GET',
    `/v3/resolve_identifier/${encodeURIComponent('+49 151 777-00001')}`,
    as,
  );
  expect(resolved.body).toEqual({
    id: bob.jid,
    name: `${BOB} (WhatsApp)`,
    phone: BOB,
    identifiers: [`tel:${BOB}`],
    reachable: true,
    local_id: ghostOf(BOB),
    dm: null,
    mxid: ghostOf(BOB),
    dm_room_mxid: null,
  });

  const created = await api.call('POST', `/v3/create_dm/${BOB}`, as);
  expect(created.body).toMatchObject({ existed: false, mxid: ghostOf(BOB) });
  const roomId = created.body.dm as string;
  expect(created.body.dm_room_mxid).toBe(roomId);
  // The user is invited to the portal, as after start-chat, and it carries messages.
  await until(() => dora.invites().includes(roomId), 'the invitation to the portal');
  await dora.join(roomId);
  await dora.sendText(roomId, 'hello from the API');
  await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'hello from the API');

  expect((await api.call('POST', `/v3/create_dm/${BOB}`, as)).body).toMatchObject({
    existed: true,
    dm: roomId,
  });
  const room = await managementRoom(dora);
  expect(await h.command(dora, room, `start-chat ${BOB}`)).toContain(
    `You already have a chat with ${BOB}: ${roomId}`,
  );
  expect(await api.call('POST', `/v3/create_dm/${NOBODY}`, as)).toMatchObject({ status: 404 });

  const contacts = await api.call('GET', '/v3/contacts', as);
  expect(contacts.body.contacts).toEqual([expect.objectContaining({ id: bob.jid, dm: roomId, phone: BOB })]);
  const chats = await api.call('GET', '/v3/chats', { token: dora.accessToken });
  expect(chats.body.chats.map((c: { dm: string }) => c.dm)).toEqual([roomId]);
  expect((await api.call('GET', `/v3/resolve_identifier/${BOB}`, as)).body.dm).toBe(roomId);
});

test('logout: a wrong login id is refused, the right one (or "all") opts the user out', async () => {
  const erin = await h.user('erin');
  expect(await api.call('POST', '/v3/logout/all', { token: erin.accessToken })).toMatchObject({
    status: 404,
  });
  await optIn(erin);
  expect(await api.call('POST', '/v3/logout/someone-else', { token: erin.accessToken })).toMatchObject({
    status: 404,
    body: { errcode: 'M_NOT_FOUND' },
  });
  expect(
    (await api.call('POST', `/v3/logout/${await h.jidOf(erin)}`, { token: erin.accessToken })).body,
  ).toEqual({});
  expect(await h.store.puppets.byLocalId(erin.userId)).toBeUndefined();
  expect((await api.call('GET', '/v3/whoami', { token: erin.accessToken })).body.puppet).toBeNull();
});

test('admin endpoints: the secret and an admin token list puppets, reconnect one, broadcast, log one out; a user is refused', async () => {
  const fred = await h.user('fred');
  await optIn(fred);
  const fredRoom = await managementRoom(fred);

  const list = await api.call('GET', '/v3/admin/puppets', { token: SECRET });
  expect(list.body.puppets).toContainEqual(
    expect.objectContaining({
      user_id: fred.userId,
      network: 'matrix',
      state: 'enlisted',
      connection: 'connected',
    }),
  );
  expect((await api.call('GET', '/v3/admin/puppets', { token: boss.accessToken })).status).toBe(200);
  const one = await api.call('GET', `/v3/admin/puppets/${encodeURIComponent(fred.userId)}`, {
    token: SECRET,
  });
  expect(one.body).toMatchObject({ user_id: fred.userId, outbox_queued: 0 });
  expect(
    await api.call('GET', '/v3/admin/puppets/%40nobody%3Aexample.test', { token: SECRET }),
  ).toMatchObject({
    status: 404,
  });
  expect(
    await api.call('POST', '/v3/admin/reconnect/%40nobody%3Aexample.test', { token: SECRET }),
  ).toMatchObject({
    status: 404,
  });
  expect(
    await api.call('POST', `/v3/admin/reconnect/${encodeURIComponent(fred.userId)}`, {
      token: fred.accessToken,
    }),
  ).toMatchObject({ status: 403 });

  const runtime = h.bridge.puppet(fred.userId)!;
  const states: string[] = [];
  runtime.connection.on('state', (s) => states.push(s));
  expect(
    (await api.call('POST', `/v3/admin/reconnect/${encodeURIComponent(fred.userId)}`, { token: SECRET }))
      .body,
  ).toEqual({});
  await until(
    () => states.includes('connecting') && runtime.connection.isConnected,
    'the puppet to reconnect',
  );

  expect(
    await api.call('POST', '/v3/admin/broadcast', { token: SECRET, body: { text: '  ' }, invalid: true }),
  ).toMatchObject({
    status: 400,
    body: { errcode: 'M_BAD_JSON' },
  });
  expect(
    await api.call('POST', '/v3/admin/broadcast', { token: SECRET, body: 'text', invalid: true }),
  ).toMatchObject({
    status: 400,
    body: { errcode: 'M_NOT_JSON' },
  });
  const sent = await api.call('POST', '/v3/admin/broadcast', {
    token: boss.accessToken,
    body: { text: 'Maintenance at 22:00 UTC' },
  });
  expect(sent.body.sent_to).toBeGreaterThanOrEqual(1);
  await fred.waitFor(fredRoom, (e) => e.sender === BOT && /Maintenance at 22:00 UTC/.test(bodyOf(e)));

  expect(
    (await api.call('POST', `/v3/admin/logout/${encodeURIComponent(fred.userId)}`, { token: SECRET })).body,
  ).toEqual({});
  expect(await h.store.puppets.byLocalId(fred.userId)).toBeUndefined();
});

test("the bot's admin commands: an admin lists, shows, reconnects, broadcasts and logs out; a user is refused each", async () => {
  const gina = await h.user('gina');
  const ginaRoom = await h.login(gina);
  const jack = await h.user('jack');
  const jackRoom = await h.managementRoom(jack);
  const bossRoom = await h.managementRoom(boss);

  // A user: each admin command refused, none listed in help, nothing done.
  for (const c of [
    'admin puppets',
    `admin show ${gina.userId}`,
    `admin reconnect ${gina.userId}`,
    'admin broadcast hi',
    `admin logout ${gina.userId}`,
  ]) {
    expect(await h.command(jack, jackRoom, c)).toMatch(
      /`admin` commands are for the bridge's administrators/,
    );
  }
  expect(await h.command(jack, jackRoom, 'help')).not.toMatch(/admin puppets/);
  expect((await h.store.puppets.byLocalId(gina.userId))?.state).toBe('enlisted');

  expect(await h.command(boss, bossRoom, 'help')).toMatch(/`admin puppets`/);
  const line = `${gina.userId} (matrix): opted in, gateway connected, 0 queued`;
  const list = await h.command(boss, bossRoom, 'admin puppets');
  expect(list).toMatch(/^Puppets \(\d+\):/);
  expect(list).toContain(`- ${line}`);
  expect(await h.command(boss, bossRoom, `admin show ${gina.userId}`)).toBe(line);
  expect(await h.command(boss, bossRoom, 'admin show @nobody:example.test')).toMatch(/has no puppet/);
  expect(await h.command(boss, bossRoom, 'admin show')).toMatch(/^Usage: admin show <user>/);
  expect(await h.command(boss, bossRoom, 'admin frobnicate')).toMatch(/^Admin commands:/);

  const runtime = h.bridge.puppet(gina.userId)!;
  const states: string[] = [];
  runtime.connection.on('state', (s) => states.push(s));
  expect(await h.command(boss, bossRoom, `admin reconnect ${gina.userId}`)).toMatch(/^Reconnecting/);
  await until(
    () => states.includes('connecting') && runtime.connection.isConnected,
    'the puppet to reconnect',
  );

  expect(
    await h.command(boss, bossRoom, 'admin broadcast The bridge restarts at 23:00.\nBack at 23:05.'),
  ).toMatch(/^Sent to \d+ opted-in users?\./);
  await gina.waitFor(
    ginaRoom,
    (e) =>
      e.sender === BOT &&
      bodyOf(e) === "Notice from the bridge's operator: The bridge restarts at 23:00.\nBack at 23:05.",
  );

  expect(await h.command(boss, bossRoom, `admin logout ${gina.userId}`)).toMatch(/is opted out/);
  expect(await h.store.puppets.byLocalId(gina.userId)).toBeUndefined();
});

test('the API is served on the appservice listener too', async () => {
  const ivy = await h.user('ivy');
  const who = await viaAppservice.call('GET', '/v3/whoami', { token: SECRET, userId: ivy.userId });
  expect(who.body).toMatchObject({ user_id: ivy.userId, puppet: null });
  expect(await viaAppservice.call('GET', '/v3/whoami', {})).toMatchObject({ status: 401 });
});
