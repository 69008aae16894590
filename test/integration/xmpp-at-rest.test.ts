/**
 * Plaintext only in flight on XMPP, with the real adapter on a real Prosody: marker texts both ways,
 * and none of them left in the bridge's database, its WAL or its received media after the stop;
 * the same with the puppet offline, the waiting message sealed and delivered once it is back.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { findMarkers } from '../support/at-rest.js';
import { chat, contactJid, nativeTexts, until, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const marker = (what: string) => `MARKER-${what}-${randomBytes(8).toString('hex')}`;

describe('XMPP: plaintext only in flight (Prosody)', () => {
  let h: XmppBridgeHarness;
  const files = () => {
    const db = path.join(h.tmp.dir, 'bridge.db');
    return [db, `${db}-wal`, path.join(h.tmp.dir, 'media-received')];
  };

  beforeAll(async () => {
    h = await XmppBridgeHarness.start('prosody');
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('markers sent both ways are gone from the database, its WAL and the received media once delivered', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = '+4915100007001';
    const bob = await h.native(bobPhone);
    const out = marker('xmpp-out');
    const inText = marker('xmpp-in');

    await alice.client.send(chat(contactJid(bobPhone), out, 'm-out'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === out);
    await alice.waitForStanza((s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'm-out');
    const id = await bob.sendText(got.from, inText, { devices: [0] });
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('body')?.getText() === inText);
    await bob.waitForReceipt(id, 'delivery');

    await h.stopBridge();
    expect(findMarkers(files(), [out, inText])).toEqual([]);
    await h.startBridge();
  });

  test('a message waiting for an offline puppet is sealed on disk and goes once the puppet is back', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = '+4915100007002';
    const bob = await h.native(bobPhone);
    await alice.client.send(chat(contactJid(bobPhone), 'hello', 'w-1'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'hello');

    // The puppet goes offline: what Alice sends now waits in the outbox.
    await h.bridge.puppet(alice.jid)?.disconnect();
    const waiting = marker('xmpp-waiting');
    await alice.client.send(chat(contactJid(bobPhone), waiting, 'w-2'));
    await until(async () => (await h.bridgeQueued(alice.jid)) === 1, 'the message queued in the outbox');
    await h.stopBridge();
    expect(findMarkers(files(), [waiting])).toEqual([]);

    await h.startBridge();
    await until(() => nativeTexts(bob).includes(waiting), 'the waiting message delivered');
    await until(async () => (await h.bridgeQueued(alice.jid)) === 0, 'the outbox emptied');
  });
});
