/**
 * Restarts in the middle of a conversation, on real Prosody and ejabberd: the bridge (core and
 * adapter, same database) and the XMPP server. Nothing is lost, and nothing arrives twice (XMPP
 * messages are counted once per stanza id, as clients do: the component link resends an
 * unconfirmed stanza with the same id after a drop, docs/XMPP.md).
 */
import type { OutgoingEvent } from '../../src/bridge/events.js';
import type { TestUser, XmppServerKind } from '../support/xmpp-servers.js';
import {
  bodiesFrom,
  chat,
  contactJid,
  nativeTexts,
  until,
  XmppBridgeHarness,
} from '../support/xmpp-bridge.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];
const range = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

/** Every message with a body from `from` has one id per text: no text was sent twice as new. */
function idsPerText(u: TestUser, from: string): Map<string, Set<string>> {
  const ids = new Map<string, Set<string>>();
  for (const m of u.messages) {
    if ((m.attrs.from ?? '').split('/')[0] !== from || m.attrs.type === 'error') continue;
    const body = m.getChild('body')?.getText();
    if (body === undefined) continue;
    const set = ids.get(body) ?? new Set<string>();
    set.add(m.attrs.id ?? '');
    ids.set(body, set);
  }
  return ids;
}

describe.each(KINDS)('XMPP adapter restarts on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind);
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('a bridge restart in the middle of a conversation loses nothing and duplicates nothing', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = kind === 'prosody' ? '+4915600000101' : '+4915600000201';
    const bob = await h.native(bobPhone);
    const contact = contactJid(bobPhone);
    await alice.client.send(chat(contact, 'before', 'r0'));
    const first = await bob.waitForMessage();
    await bob.sendText(first.from, 'b0', { devices: [0] });
    await alice.waitForMessages(() => bodiesFrom(alice, contact).includes('b0'));

    // Alice's burst is taken by the bridge, which stops before the gateway's acks come back (they
    // are held up): after the restart it sends the burst again, and the gateway drops the repeats.
    const faults = h.emulator.gateway.faults;
    const puppet = await h.puppetJid(alice.jid);
    faults.delay(puppet, 3000);
    const submitted = new Set<string>();
    h.xmpp.on('submitted', (e: OutgoingEvent) => submitted.add(e.localId));
    for (const [i, text] of range('a', 5).entries())
      await alice.client.send(chat(contact, text, `ra${i + 1}`));
    await until(() => submitted.size === 5, 'the burst to be accepted');
    await h.stopBridge();
    expect(await h.bridgeQueued(alice.jid)).toBeGreaterThan(0);
    faults.delay(puppet, 0);
    // Bob writes while the bridge is down: the gateway keeps it.
    for (const text of range('b', 5)) await bob.sendText(first.from, text, { devices: [0] });
    await h.startBridge();

    await bob.waitForMessage(() => bob.received.length === 6, 20_000);
    await alice.waitForMessages(() => bodiesFrom(alice, contact).length === 6, 20_000);
    expect(nativeTexts(bob)).toEqual(['before', ...range('a', 5)]);
    expect(bodiesFrom(alice, contact)).toEqual(['b0', ...range('b', 5)]);
    for (const ids of idsPerText(alice, contact).values()) expect(ids.size).toBe(1);
    // And the conversation goes on.
    await alice.client.send(chat(contact, 'after', 'r-after'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'after');
  });

  test('an XMPP server restart in the middle of a conversation loses nothing and duplicates nothing', async () => {
    let alice = await h.registeredUser('alice');
    const bobPhone = kind === 'prosody' ? '+4915600000102' : '+4915600000202';
    const bob = await h.native(bobPhone);
    const contact = contactJid(bobPhone);
    await alice.client.send(chat(contact, 'before', 's0'));
    const first = await bob.waitForMessage();

    // Bob keeps writing while the server goes down and comes back.
    const sent = (async () => {
      for (const text of range('b', 6)) {
        await bob.sendText(first.from, text, { devices: [0] });
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await h.server.restart();
    await sent;
    await until(() => h.xmpp.link.status === 'online', 'the component to reconnect', 20_000);
    // Everything for Alice is with her server before she logs back in: ejabberd hands stored
    // messages over asynchronously, so one delivered live during her login could overtake them.
    await until(
      async () => (await h.store.inbox.countPending()) === 0,
      "the bridge to deliver Bob's messages",
      20_000,
    );
    await h.xmpp.link.drained();
    alice = await h.reconnectUser(alice);

    await alice.waitForMessages(() => bodiesFrom(alice, contact).length === 6, 20_000);
    expect(bodiesFrom(alice, contact)).toEqual(range('b', 6));
    for (const ids of idsPerText(alice, contact).values()) expect(ids.size).toBe(1);
    // Alice answers after the restart; Bob gets each message once.
    for (const [i, text] of range('a', 3).entries())
      await alice.client.send(chat(contact, text, `sa${i + 1}`));
    await bob.waitForMessage(() => bob.received.length === 4, 20_000);
    expect(nativeTexts(bob)).toEqual(['before', ...range('a', 3)]);
  });
});
