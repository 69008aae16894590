/**
 * What an XMPP user sees when something goes wrong, on real Prosody and ejabberd: error stanzas
 * with a human-readable text for an unregistered sender, a number not on the interop network, a
 * message that failed for good, a contact JID that is no number, and a contact's changed identity.
 * (An over-size file is in xmpp-adapter-media.test.ts.)
 */
import { xml, type Element } from '@xmpp/xml';
import type { TestUser, XmppServerKind } from '../support/xmpp-servers.js';
import { chat, contactJid, DOMAIN, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

async function errorFor(u: TestUser, id: string): Promise<{ condition: string; text: string; el: Element }> {
  const el = await u.waitForStanza(
    (s) => s.name === 'message' && s.attrs.type === 'error' && s.attrs.id === id,
    20_000,
  );
  const error = el.getChild('error')!;
  const condition =
    error.getChildElements().find((c) => c.name !== 'text' && c.attrs.xmlns === STANZAS)?.name ?? '';
  return { condition, text: error.getChild('text')?.getText() ?? '', el };
}

describe.each(KINDS)('XMPP adapter errors on %s', (kind) => {
  let h: XmppBridgeHarness;
  let seq = 0;
  const phone = () => `+491550000${kind === 'prosody' ? 1 : 2}${String(++seq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind);
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('a message from a user who is not registered is refused with registration-required', async () => {
    const u = await h.user();
    await u.client.send(chat(contactJid(phone()), 'hello?', 'unreg-1'));
    const e = await errorFor(u, 'unreg-1');
    expect(e.condition).toBe('registration-required');
    expect(e.text).toMatch(/^You are not registered with the bridge: send "register" to wa\.localhost/);
  });

  test('a message to a number that is not on the interop network is refused with item-not-found', async () => {
    const u = await h.registeredUser();
    const nobody = phone();
    await u.client.send(chat(contactJid(nobody), 'anyone there?', 'nobody-1'));
    const e = await errorFor(u, 'nobody-1');
    expect(e.el.attrs.from).toBe(contactJid(nobody));
    expect(e.condition).toBe('item-not-found');
    expect(e.text).toBe(
      `${nobody} is not on the interop network (not a WhatsApp user, or not reachable through interoperability): the message was not sent.`,
    );
  });

  test('a message to a contact JID that is not a phone number is refused with jid-malformed', async () => {
    const u = await h.registeredUser();
    await u.client.send(chat(`bob@${DOMAIN}`, 'hi', 'bad-1'));
    const e = await errorFor(u, 'bad-1');
    expect(e.condition).toBe('jid-malformed');
    expect(e.text).toMatch(/contacts are \+<phone number in international format>@wa\.localhost/);
  });

  test('a message the bridge could not send in the end comes back as an error on that message', async () => {
    const u = await h.registeredUser();
    // In the directory, but never connected: no device with keys to send to.
    const keyless = phone();
    h.emulator.gateway.createNativeUser(keyless);
    await u.client.send(chat(contactJid(keyless), 'are you there?', 'fail-1'));
    const e = await errorFor(u, 'fail-1');
    expect(e.el.attrs.from).toBe(contactJid(keyless));
    // Addressed to the resource that sent it, so that the client marks that message.
    expect(e.el.attrs.to).toMatch(new RegExp(`^${u.jid}/.+`));
    expect(e.condition).toBe('recipient-unavailable');
    expect(e.text).toBe(
      `Not delivered: ${keyless} has no device that can receive interop messages yet: the message was not sent`,
    );
  });

  test("a contact's changed identity is shown as an error from that contact, with the new safety number", async () => {
    const u = await h.registeredUser();
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    await u.client.send(chat(contactJid(bobPhone), 'hi', 'idc-1'));
    await bob.waitForMessage();
    await u.waitForStanza((s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'idc-1');
    await bob.close();
    await h.native(bobPhone); // the same number on a new phone: a new identity key

    const el = await u.waitForStanza(
      (s) => s.name === 'message' && s.attrs.type === 'error' && s.attrs.from === contactJid(bobPhone),
      20_000,
    );
    const text = el.getChild('error')?.getChild('text')?.getText() ?? '';
    expect(el.getChild('error')?.getChild('not-acceptable', STANZAS)).toBeDefined();
    expect(text).toMatch(
      new RegExp(
        `^The security code of \\${bobPhone} changed \\(a new phone or a reinstall\\)\\. Safety number: (\\d{5} ){11}\\d{5}\\.`,
      ),
    );
    // Messages still flow under trust-on-first-use.
    await u.client.send(
      xml('message', { type: 'chat', to: contactJid(bobPhone), id: 'idc-2' }, xml('body', {}, 'new phone?')),
    );
    await u.waitForStanza((s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'idc-2', 20_000);
  });
});

describe.each(KINDS)('XMPP adapter for other domains only, on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { allowedDomains: ['example.org'] });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('a user of a domain not in xmpp.allowed_domains can neither register nor send', async () => {
    const u = await h.user();
    const answer = await u.iq(
      xml('iq', { type: 'set', to: DOMAIN }, xml('query', { xmlns: 'jabber:iq:register' })),
    );
    expect(answer.attrs.type).toBe('error');
    expect(answer.getChild('error')?.getChild('forbidden', STANZAS)).toBeDefined();
    expect(answer.getChild('error')?.getChild('text')?.getText()).toBe(
      'Users of localhost may not use this gateway (it serves example.org).',
    );
    expect(await h.store.puppets.byLocalId(u.jid)).toBeUndefined();
    await u.client.send(chat(contactJid('+4915500009999'), 'hi', 'denied-1'));
    const e = await errorFor(u, 'denied-1');
    expect(e.condition).toBe('not-allowed');
  });
});

describe.each(KINDS)('XMPP adapter under block_until_confirmed on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { identityPolicy: 'block_until_confirmed' });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('messages to a changed identity fail with an error until the user sends "confirm +number"', async () => {
    const u = await h.registeredUser();
    const bobPhone = kind === 'prosody' ? '+4915500000901' : '+4915500000902';
    const bob = await h.native(bobPhone);
    await u.client.send(chat(contactJid(bobPhone), 'hi', 'blk-1'));
    await bob.waitForMessage();
    await u.waitForStanza((s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'blk-1');
    await bob.close();
    const newBob = await h.native(bobPhone);

    const notice = await u.waitForStanza(
      (s) => s.name === 'message' && s.attrs.type === 'error' && s.attrs.from === contactJid(bobPhone),
      20_000,
    );
    expect(notice.getChild('error')?.attrs.type).toBe('auth');
    expect(notice.getChild('error')?.getChild('text')?.getText()).toMatch(
      /Messages to \+\d+ are held until you confirm: send "confirm \+\d+" to wa\.localhost\.$/,
    );
    await u.client.send(chat(contactJid(bobPhone), 'not yet', 'blk-2'));
    const refused = await errorFor(u, 'blk-2');
    expect(refused.text).toMatch(/security code changed: compare the safety number and confirm it/);

    await u.client.send(xml('message', { type: 'chat', to: DOMAIN }, xml('body', {}, `confirm ${bobPhone}`)));
    await u.waitForStanza(
      (s) => s.attrs.from === DOMAIN && (s.getChild('body')?.getText() ?? '').startsWith('Confirmed'),
    );
    await u.client.send(chat(contactJid(bobPhone), 'now', 'blk-3'));
    await newBob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'now');
  });
});
