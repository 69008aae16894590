/**
 * The admin commands on XMPP (chat commands to the component JID and XEP-0050 ad-hoc commands with
 * their data forms) for `xmpp.admins`, and their refusal to everyone else; the provisioning API for
 * XMPP users with the shared secret, each exchange checked against docs/provisioning.openapi.yaml.
 * Real Prosody, the emulator, the bridge as the daemon wires it.
 */
import { xml, type Element } from '@xmpp/xml';
import { ProvisioningApi, PROVISIONING_PREFIX } from '../../src/provisioning/api.js';
import { ProvisioningAuth } from '../../src/provisioning/auth.js';
import { ProvisioningClient } from '../support/provisioning-client.js';
import type { TestUser } from '../support/xmpp-servers.js';
import { bodyOf, contactJid, DOMAIN, until, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const SECRET = 'provisioning-secret-for-the-xmpp-tests-0123456789';
const BOB = '+4915177800001';
const NOBODY = '+4915177809999';
const CMD = 'http://jabber.org/protocol/commands';
const NOT_ADMIN = "The admin commands are for the bridge's administrators (xmpp.admins) only.";

let h: XmppBridgeHarness;
let api: ProvisioningClient;
let boss: TestUser;

beforeAll(async () => {
  h = await XmppBridgeHarness.start('prosody', { admins: (domain) => [`boss1@${domain}`] });
  boss = await h.user('boss');
  const provisioning = new ProvisioningApi({
    networks: [
      { network: 'xmpp', core: h.core, hooks: () => h.xmpp.provisioning, capabilities: h.xmpp.capabilities },
    ],
    auth: new ProvisioningAuth({ secret: SECRET }),
  });
  h.http.routePrefix(PROVISIONING_PREFIX, provisioning.handle);
  api = new ProvisioningClient(`http://127.0.0.1:${h.http.address!.port}`);
}, 90_000);

afterAll(async () => {
  await h.stop();
});

/** Sends a chat command to the component and resolves with the first answer after it. */
async function command(u: TestUser, text: string): Promise<string> {
  const before = u.messages.length;
  await u.client.send(xml('message', { type: 'chat', to: DOMAIN }, xml('body', {}, text)));
  const ms = await u.waitForMessages((all) =>
    all.slice(before).some((m) => m.attrs.from === DOMAIN && bodyOf(m) !== ''),
  );
  return bodyOf(ms.slice(before).find((m) => m.attrs.from === DOMAIN && bodyOf(m) !== '')!);
}

/** Runs an ad-hoc command (optionally submitting a form) and resolves with the answer. */
function adhoc(
  u: TestUser,
  node: string,
  extra: { sessionid?: string; form?: Record<string, string> } = {},
): Promise<Element> {
  const form = extra.form
    ? [
        xml(
          'x',
          { xmlns: 'jabber:x:data', type: 'submit' },
          ...Object.entries(extra.form).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
        ),
      ]
    : [];
  return u.iq(
    xml(
      'iq',
      { type: 'set', to: DOMAIN },
      xml(
        'command',
        { xmlns: CMD, node, action: 'execute', ...(extra.sessionid ? { sessionid: extra.sessionid } : {}) },
        ...form,
      ),
    ),
    30_000,
  );
}

const noteOf = (answer: Element) => answer.getChild('command')?.getChild('note')?.getText() ?? '';

test('chat commands: an admin lists, shows, reconnects, broadcasts and logs out; anyone else is refused each', async () => {
  const user = await h.registeredUser('amy');
  const other = await h.user('ben');
  const cmds = [
    'admin puppets',
    `admin show ${user.jid}`,
    `admin reconnect ${user.jid}`,
    'admin broadcast hi',
    `admin logout ${user.jid}`,
  ];
  for (const c of cmds) expect(await command(other, c)).toBe(NOT_ADMIN);
  expect(await command(other, 'help')).not.toMatch(/admin puppets/);
  expect((await h.store.puppets.byLocalId(user.jid))?.state).toBe('enlisted');

  expect(await command(boss, 'help')).toMatch(/admin puppets: every puppet/);
  const line = `${user.jid} (xmpp): opted in, gateway connected, 0 queued`;
  const list = await command(boss, 'admin puppets');
  expect(list).toMatch(/^Puppets \(\d+\):/);
  expect(list).toContain(`- ${line}`);
  expect(await command(boss, `admin show ${user.jid}`)).toBe(line);
  expect(await command(boss, 'admin show nobody@example.org')).toMatch(/has no puppet/);

  const runtime = h.bridge.puppet(user.jid)!;
  const states: string[] = [];
  runtime.connection.on('state', (s) => states.push(s));
  expect(await command(boss, `admin reconnect ${user.jid}`)).toMatch(/^Reconnecting/);
  await until(
    () => states.includes('connecting') && runtime.connection.isConnected,
    'the puppet to reconnect',
  );

  const before = user.messages.length;
  expect(await command(boss, 'admin broadcast Maintenance tonight.\nBack soon.')).toMatch(
    /^Sent to \d+ opted-in user/,
  );
  await user.waitForMessages((ms) =>
    ms
      .slice(before)
      .some(
        (m) =>
          m.attrs.from === DOMAIN &&
          bodyOf(m) === "Notice from the bridge's operator: Maintenance tonight.\nBack soon.",
      ),
  );

  expect(await command(boss, `admin logout ${user.jid}`)).toMatch(/is opted out/);
  expect(await h.store.puppets.byLocalId(user.jid)).toBeUndefined();
});

test('ad-hoc commands: admins see and run the admin commands (forms for their argument); others neither see nor run them', async () => {
  const user = await h.registeredUser('cid');
  const items = async (u: TestUser) =>
    (
      await u.iq(
        xml(
          'iq',
          { type: 'get', to: DOMAIN },
          xml('query', { xmlns: 'http://jabber.org/protocol/disco#items', node: CMD }),
        ),
      )
    )
      .getChild('query')!
      .getChildren('item')
      .map((i) => i.attrs.node);
  expect(await items(user)).toEqual(['register', 'unregister', 'status']);
  expect(await items(boss)).toEqual([
    'register',
    'unregister',
    'status',
    'admin-puppets',
    'admin-show',
    'admin-logout',
    'admin-reconnect',
    'admin-broadcast',
  ]);

  for (const node of ['admin-puppets', 'admin-show', 'admin-logout', 'admin-reconnect', 'admin-broadcast']) {
    const refused = await adhoc(user, node);
    expect(refused.attrs.type).toBe('error');
    expect(refused.getChild('error')?.getChild('forbidden')).toBeDefined();
    expect(refused.getChild('error')?.getChild('text')?.getText()).toBe(NOT_ADMIN);
  }

  const list = await adhoc(boss, 'admin-puppets');
  expect(list.getChild('command')?.attrs.status).toBe('completed');
  expect(noteOf(list)).toContain(`${user.jid} (xmpp): opted in`);

  // Two stages: the form, then its submission.
  const first = await adhoc(boss, 'admin-show');
  const cmd = first.getChild('command')!;
  expect(cmd.attrs.status).toBe('executing');
  const field = cmd.getChild('x', 'jabber:x:data')!.getChild('field')!;
  expect(field.attrs).toMatchObject({ var: 'user', type: 'jid-single' });
  const shown = await adhoc(boss, 'admin-show', { sessionid: cmd.attrs.sessionid, form: { user: user.jid } });
  expect(shown.getChild('command')?.attrs.status).toBe('completed');
  expect(noteOf(shown)).toBe(`${user.jid} (xmpp): opted in, gateway connected, 0 queued`);
  const empty = await adhoc(boss, 'admin-show', { sessionid: cmd.attrs.sessionid, form: { user: '' } });
  expect(empty.attrs.type).toBe('error');
  expect(empty.getChild('error')?.getChild('bad-request')).toBeDefined();

  const runtime = h.bridge.puppet(user.jid)!;
  const states: string[] = [];
  runtime.connection.on('state', (s) => states.push(s));
  expect(noteOf(await adhoc(boss, 'admin-reconnect', { form: { user: user.jid } }))).toMatch(/^Reconnecting/);
  await until(
    () => states.includes('connecting') && runtime.connection.isConnected,
    'the puppet to reconnect',
  );

  const before = user.messages.length;
  expect(noteOf(await adhoc(boss, 'admin-broadcast', { form: { text: 'Upgrade at noon' } }))).toMatch(
    /^Sent to/,
  );
  await user.waitForMessages((ms) =>
    ms.slice(before).some((m) => bodyOf(m) === "Notice from the bridge's operator: Upgrade at noon"),
  );

  expect(noteOf(await adhoc(boss, 'admin-logout', { form: { user: user.jid } }))).toMatch(/is opted out/);
  expect(await h.store.puppets.byLocalId(user.jid)).toBeUndefined();
});

test('the provisioning API for an XMPP user with the shared secret: whoami, opt-in, resolve, create_dm, contacts, chats, logout', async () => {
  const dan = await h.user('dan');
  const as = { token: SECRET, userId: dan.jid };
  expect(await api.call('GET', '/v3/whoami', { token: 'some-matrix-token', userId: dan.jid })).toMatchObject({
    status: 401,
    body: { errcode: 'M_UNKNOWN_TOKEN' },
  });
  expect(
    await api.call('GET', '/v3/whoami', { token: SECRET, userId: 'eve@elsewhere.example' }),
  ).toMatchObject({
    status: 403,
    body: { errcode: 'M_FORBIDDEN' },
  });
  expect((await api.call('GET', '/v3/whoami', as)).body).toMatchObject({
    user_id: dan.jid,
    network: 'xmpp',
    permission: 'user',
    puppet: null,
    command_room: null,
  });
  expect((await api.call('GET', '/v3/whoami', { token: SECRET, userId: boss.jid })).body.permission).toBe(
    'admin',
  );

  const start = await api.call('POST', '/v3/login/start/opt-in', as);
  const step = await api.call(
    'POST',
    `/v3/login/step/${start.body.login_id}/${start.body.step_id}/user_input`,
    {
      ...as,
      body: { confirm: 'yes' },
    },
  );
  expect(step.body.type).toBe('complete');
  await h.connected(dan.jid);
  // The core's notice tells the user in chat, as after `register`.
  await dan.waitForMessages((ms) =>
    ms.some((m) => m.attrs.from === DOMAIN && /You are registered/.test(bodyOf(m))),
  );
  expect((await api.call('GET', '/v3/whoami', as)).body.puppet).toMatchObject({
    network: 'xmpp',
    connection: 'connected',
  });
  expect((await api.call('GET', '/v3/capabilities', as)).body).toMatchObject({
    network: 'xmpp',
    admin: true,
  });

  const bob = await h.native(BOB);
  expect(await api.call('GET', `/v3/resolve_identifier/${NOBODY}`, as)).toMatchObject({ status: 404 });
  const resolved = await api.call('GET', `/v3/resolve_identifier/${BOB}`, as);
  expect(resolved.body).toMatchObject({
    id: bob.jid,
    phone: BOB,
    reachable: true,
    local_id: contactJid(BOB),
  });
  expect(resolved.body.mxid).toBeUndefined();

  const created = await api.call('POST', `/v3/create_dm/${BOB}`, as);
  expect(created.body).toMatchObject({ dm: contactJid(BOB), local_id: contactJid(BOB), existed: false });
  // As after `add`: the contact asks for the user's presence subscription.
  await dan.waitForStanza(
    (s) => s.name === 'presence' && s.attrs.from === contactJid(BOB) && s.attrs.type === 'subscribe',
  );
  expect((await api.call('GET', '/v3/contacts', as)).body.contacts).toEqual([
    expect.objectContaining({ id: bob.jid, phone: BOB, dm: contactJid(BOB) }),
  ]);
  expect((await api.call('GET', '/v3/chats', as)).body.chats).toHaveLength(1);

  const list = await api.call('GET', '/v3/admin/puppets', { token: SECRET });
  expect(list.body.puppets).toContainEqual(expect.objectContaining({ user_id: dan.jid, network: 'xmpp' }));

  expect((await api.call('POST', '/v3/logout/all', as)).body).toEqual({});
  expect(await h.store.puppets.byLocalId(dan.jid)).toBeUndefined();
});
