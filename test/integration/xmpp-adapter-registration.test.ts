/**
 * Registration and contacts through the XMPP adapter on real Prosody and ejabberd: XEP-0077,
 * XEP-0050 ad-hoc commands and chat commands to the component JID; XEP-0100 number translation;
 * presence subscriptions both ways; disco, caps, vCard and ping.
 */
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import type { TestUser, XmppServerKind } from '../support/xmpp-servers.js';
import { bodyOf, contactJid, DOMAIN, register, until, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];

const iq = (type: 'get' | 'set', to: string, child: Element) => xml('iq', { type, to }, child);

/** Sends a chat command to the component and resolves with its answer's text. */
async function command(u: TestUser, text: string, answer: RegExp): Promise<string> {
  const before = u.messages.length;
  await u.client.send(xml('message', { type: 'chat', to: DOMAIN }, xml('body', {}, text)));
  const [m] = await u
    .waitForMessages((ms) => ms.slice(before).some((x) => x.attrs.from === DOMAIN && answer.test(bodyOf(x))))
    .then((ms) => ms.slice(before).filter((x) => x.attrs.from === DOMAIN && answer.test(bodyOf(x))));
  return bodyOf(m!);
}

/** XEP-0115 verification string of a disco#info result (no forms), as a client computes it. */
function verOf(query: Element): string {
  const ids = query
    .getChildren('identity')
    .map((i) => `${i.attrs.category}/${i.attrs.type}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`)
    .sort();
  const features = query
    .getChildren('feature')
    .map((f) => f.attrs.var ?? '')
    .sort();
  return createHash('sha1')
    .update([...ids, ...features].map((s) => `${s}<`).join(''))
    .digest('base64');
}

describe.each(KINDS)('XMPP adapter registration and contacts on %s', (kind) => {
  let h: XmppBridgeHarness;
  let seq = 0;
  const phone = () => `+491540000${kind === 'prosody' ? 1 : 2}${String(++seq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind);
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('XEP-0077: the form explains registration; registering enlists the user and unregistering with <remove/> opts out', async () => {
    const u = await h.user();
    const form = await u.iq(iq('get', DOMAIN, xml('query', { xmlns: 'jabber:iq:register' })));
    const query = form.getChild('query', 'jabber:iq:register')!;
    expect(query.getChild('instructions')?.getText()).toMatch(/opts you in/);
    expect(query.getChild('registered')).toBeUndefined();

    await register(u);
    expect((await h.store.puppets.byLocalId(u.jid))?.state).toBe('enlisted');
    // XEP-0100: the gateway asks for the user's presence.
    await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === DOMAIN && s.attrs.type === 'subscribe',
    );
    const again = await u.iq(iq('get', DOMAIN, xml('query', { xmlns: 'jabber:iq:register' })));
    expect(again.getChild('query')?.getChild('registered')).toBeDefined();

    const removed = await u.iq(
      iq('set', DOMAIN, xml('query', { xmlns: 'jabber:iq:register' }, xml('remove'))),
      30_000,
    );
    expect(removed.attrs.type).toBe('result');
    expect(await h.store.puppets.byLocalId(u.jid)).toBeUndefined();
  });

  test('XEP-0050: the component lists its ad-hoc commands, and register and status run', async () => {
    const u = await h.user();
    const items = await u.iq(
      iq(
        'get',
        DOMAIN,
        xml('query', {
          xmlns: 'http://jabber.org/protocol/disco#items',
          node: 'http://jabber.org/protocol/commands',
        }),
      ),
    );
    expect(
      items
        .getChild('query')!
        .getChildren('item')
        .map((i) => i.attrs.node),
    ).toEqual(['register', 'unregister', 'status']);

    const run = (node: string) =>
      u.iq(
        iq(
          'set',
          DOMAIN,
          xml('command', { xmlns: 'http://jabber.org/protocol/commands', node, action: 'execute' }),
        ),
        30_000,
      );
    const registered = (await run('register')).getChild('command')!;
    expect(registered.attrs.status).toBe('completed');
    expect(registered.getChild('note')?.getText()).toBe('You are registered.');
    expect((await h.store.puppets.byLocalId(u.jid))?.state).toBe('enlisted');
    await h.connected(u.jid);
    const status = (await run('status')).getChild('command')!;
    expect(status.getChild('note')?.getText()).toMatch(/^Registered as .* Gateway connection: connected\./);
  });

  test("a user's registration requests and commands are handled in order: a status sent right after registering reports it", async () => {
    const u = await h.user();
    const adhoc = (node: string) =>
      u.iq(
        iq(
          'set',
          DOMAIN,
          xml('command', { xmlns: 'http://jabber.org/protocol/commands', node, action: 'execute' }),
        ),
        30_000,
      );
    // XEP-0077, then a chat command without waiting for the answer.
    const registering = register(u);
    expect(await command(u, 'status', /^(Registered as|Not registered)/)).toMatch(/^Registered as /);
    await registering;
    // Ad-hoc unregister, then ad-hoc status without waiting.
    const [removed, status] = await Promise.all([adhoc('unregister'), adhoc('status')]);
    expect(removed.attrs.type).toBe('result');
    expect(status.getChild('command')?.getChild('note')?.getText()).toMatch(/^Not registered/);
    expect(await h.store.puppets.byLocalId(u.jid)).toBeUndefined();
  });

  test('chat commands: help, register, status, add, safety and unregister', async () => {
    const u = await h.user();
    expect(await command(u, 'help', /^Commands/)).toMatch(/add \+4915112345678: adds a WhatsApp contact/);
    expect(await command(u, 'status', /^Not registered/)).toBe('Not registered. Send "register" to opt in.');
    expect(await command(u, 'register', /^You are registered/)).toMatch(
      /appear as \+<phone number>@wa\.localhost/,
    );
    await h.connected(u.jid);
    expect(await command(u, 'status', /^Registered/)).toMatch(
      /Gateway connection: connected\. Messages waiting to be sent: 0\. Contacts: 0\./,
    );

    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    expect(await command(u, `add ${bobPhone}`, /is on WhatsApp/)).toBe(
      `${contactJid(bobPhone)} is on WhatsApp: accept its contact request to see it in your contact list.`,
    );
    const ask = await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.type === 'subscribe' && s.attrs.from === contactJid(bobPhone),
    );
    expect(ask.getChild('nick', 'http://jabber.org/protocol/nick')?.getText()).toBe(bobPhone);
    expect(await command(u, 'add +4915400009999', /not on the interop network/)).toMatch(
      /^add failed: \+4915400009999 is not/,
    );

    // A safety number exists once the two have a session.
    await u.client.send(
      xml('message', { type: 'chat', to: contactJid(bobPhone), id: 's1' }, xml('body', {}, 'hi')),
    );
    await bob.waitForMessage();
    expect(await command(u, `safety ${bobPhone}`, /^Safety number/)).toMatch(
      /^Safety number with \+\d+:\n(\d{5} ){11}\d{5}$/,
    );

    expect(await command(u, 'unregister', /^You are unregistered/)).toMatch(/keys are deleted/);
    expect(await h.store.puppets.byLocalId(u.jid)).toBeUndefined();
    expect(await command(u, 'bogus', /^Unknown command/)).toBe(
      'Unknown command "bogus". Send "help" for the list.',
    );
  });

  test('XEP-0100: a phone number in any common notation translates to the contact JID', async () => {
    const u = await h.user();
    const prompt = await u.iq(iq('get', DOMAIN, xml('query', { xmlns: 'jabber:iq:gateway' })));
    expect(prompt.getChild('query')?.getChild('prompt')?.getText()).toBe('Phone number');
    const answer = await u.iq(
      iq(
        'set',
        DOMAIN,
        xml('query', { xmlns: 'jabber:iq:gateway' }, xml('prompt', {}, '0049 (151) 1234-5678')),
      ),
    );
    expect(answer.getChild('query')?.getChild('jid')?.getText()).toBe('+4915112345678@wa.localhost');
    const bad = await u.iq(
      iq('set', DOMAIN, xml('query', { xmlns: 'jabber:iq:gateway' }, xml('prompt', {}, 'bob'))),
    );
    expect(bad.attrs.type).toBe('error');
    expect(bad.getChild('error')?.getChild('text')?.getText()).toMatch(/not a phone number/);
  });

  test('subscribing to a contact is approved and returned, with presence and caps that match disco', async () => {
    const u = await h.registeredUser();
    const bobPhone = phone();
    await h.native(bobPhone);
    const bob = contactJid(bobPhone);

    await u.client.send(xml('presence', { to: bob, type: 'subscribe' }));
    await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bob && s.attrs.type === 'subscribed',
    );
    const available = await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bob && s.attrs.type === undefined,
    );
    const ask = await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bob && s.attrs.type === 'subscribe',
    );
    expect(ask.getChild('nick')?.getText()).toBe(bobPhone);
    await u.client.send(xml('presence', { to: bob, type: 'subscribed' }));
    await until(
      async () => h.xmpp !== undefined && (await contactRow(h, u.jid, bobPhone))?.subFrom === true,
      'the subscription',
    );
    expect(await contactRow(h, u.jid, bobPhone)).toMatchObject({
      subTo: true,
      subFrom: true,
      remote: `${bobPhone.slice(1)}@wa.interop`,
    });

    const caps = available.getChild('c', 'http://jabber.org/protocol/caps')!;
    const info = await u.iq(iq('get', bob, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const query = info.getChild('query')!;
    expect(verOf(query)).toBe(caps.attrs.ver);
    expect(query.getChildren('feature').map((f) => f.attrs.var)).toEqual(
      expect.arrayContaining([
        'urn:xmpp:receipts',
        'urn:xmpp:chat-markers:0',
        'http://jabber.org/protocol/chatstates',
        'jabber:x:oob',
      ]),
    );

    // Unsubscribing ends the contact's presence.
    await u.client.send(xml('presence', { to: bob, type: 'unsubscribe' }));
    await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bob && s.attrs.type === 'unavailable',
    );
    expect((await contactRow(h, u.jid, bobPhone))?.subTo).toBe(false);
  });

  test('subscribing to a number that is not on the interop network is refused with an error', async () => {
    const u = await h.registeredUser();
    const nobody = contactJid('+4915400008888');
    await u.client.send(xml('presence', { to: nobody, type: 'subscribe' }));
    const error = await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === nobody && s.attrs.type === 'error',
    );
    expect(error.getChild('error')?.getChild('item-not-found')).toBeDefined();
    expect(error.getChild('error')?.getChild('text')?.getText()).toMatch(/not on the interop network/);
  });

  test('the component answers disco, vCard and ping for itself and for contacts', async () => {
    const u = await h.user();
    const info = await u.iq(
      iq('get', DOMAIN, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })),
    );
    const identity = info.getChild('query')!.getChild('identity')!;
    expect(identity.attrs).toMatchObject({ category: 'gateway', type: 'whatsapp', name: 'WhatsApp' });
    expect(
      info
        .getChild('query')!
        .getChildren('feature')
        .map((f) => f.attrs.var),
    ).toEqual(
      expect.arrayContaining([
        'jabber:iq:register',
        'jabber:iq:gateway',
        'http://jabber.org/protocol/commands',
        'urn:xmpp:ping',
      ]),
    );
    const vcard = await u.iq(iq('get', contactJid('+4915112345678'), xml('vCard', { xmlns: 'vcard-temp' })));
    expect(vcard.getChild('vCard')?.getChild('TEL')?.getChild('NUMBER')?.getText()).toBe('+4915112345678');
    for (const to of [DOMAIN, contactJid('+4915112345678')]) {
      const pong = await u.iq(iq('get', to, xml('ping', { xmlns: 'urn:xmpp:ping' })));
      expect(pong.attrs.type).toBe('result');
    }
  });
});

describe.each(KINDS)('XMPP adapter presence lifecycle on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { lifecycle: 'presence' });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test("the puppet is connected while its user is online, following the user's XMPP presence", async () => {
    const u = await h.user();
    await register(u);
    // The user approves the gateway's subscription, so the server sends it the user's presence.
    await u.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === DOMAIN && s.attrs.type === 'subscribe',
    );
    await u.client.send(xml('presence', { to: DOMAIN, type: 'subscribed' }));
    await u.client.send(xml('presence', {}));
    await h.connected(u.jid);

    await u.client.send(xml('presence', { type: 'unavailable' }));
    await until(
      async () => (await h.bridge.status(u.jid)).connection !== 'connected',
      'the puppet to disconnect',
    );
    await u.client.send(xml('presence', {}));
    await h.connected(u.jid);
  });

  test('presence from a user who is not registered is ignored: the bridge is not told they are online', async () => {
    const seen: string[] = [];
    const setOnline = h.bridge.setOnline.bind(h.bridge);
    h.bridge.setOnline = (user, online) => {
      seen.push(user);
      setOnline(user, online);
    };
    try {
      const u = await h.user();
      await u.client.send(xml('presence', { to: DOMAIN }));
      await u.client.send(xml('presence', { to: contactJid('+4915112345678') }));
      // Stanzas reach the component in order: once the ping is answered, the presence was handled.
      const pong = await u.iq(iq('get', DOMAIN, xml('ping', { xmlns: 'urn:xmpp:ping' })));
      expect(pong.attrs.type).toBe('result');
      expect(seen).not.toContain(u.jid);
    } finally {
      h.bridge.setOnline = setOnline;
    }
  });
});

function contactRow(h: XmppBridgeHarness, user: string, phone: string) {
  return h.xmppStore.contact(user, phone);
}
