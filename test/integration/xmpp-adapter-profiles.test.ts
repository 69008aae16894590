/**
 * Contacts' profiles on real Prosody and ejabberd (and the adapter's store on PostgreSQL too): a
 * native user's push name, about text and picture reach the XMPP user as the contact's nick
 * (XEP-0172), vCard (FN, DESC, PHOTO) and avatar hash in its presence (XEP-0153), and follow each
 * change made through the emulator.
 */
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import type { XmppServerKind } from '../support/xmpp-servers.js';
import { chat, contactJid, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const CASES: [XmppServerKind, 'sqlite' | 'postgres'][] = [
  ['prosody', 'sqlite'],
  ['ejabberd', 'sqlite'],
  ['prosody', 'postgres'],
];
const jpeg = (fill: number, size: number) =>
  Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(size, fill)]);
const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

describe.each(CASES)("contacts' profiles on %s, the bridge on %s", (kind, database) => {
  let h: XmppBridgeHarness;
  let seq = 0;
  const phone = () =>
    `+491530000${kind === 'prosody' ? (database === 'sqlite' ? 1 : 3) : 2}${String(++seq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { database });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  it('a push name, about text and picture become nick, vCard and avatar, and follow each change', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    const picture = jpeg(1, 3000);
    await bob.profile.setName('Bob Native');
    await bob.profile.setAbout('out fishing');
    await bob.profile.setPicture(picture);
    const bobJid = contactJid(bobPhone);

    // Alice adds Bob to her roster; his first message brings his profile.
    await alice.client.send(xml('presence', { to: bobJid, type: 'subscribe' }));
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bobJid && s.attrs.type === 'subscribed',
    );
    await alice.client.send(chat(bobJid, 'hello', 'p-1'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    await bob.sendText(got.from, 'hi!', { devices: [0] });
    const named = await alice.waitForStanza((s) => presenceOf(s, bobJid) && nickOf(s) === 'Bob Native');
    expect(photoHashOf(named)).toBe(sha1(picture));

    const vcard = async () => {
      const answer = await alice.iq(
        xml('iq', { type: 'get', to: bobJid }, xml('vCard', { xmlns: 'vcard-temp' })),
      );
      return answer.getChild('vCard', 'vcard-temp');
    };
    const card = await vcard();
    expect(card?.getChild('FN')?.getText()).toBe('Bob Native');
    expect(card?.getChild('DESC')?.getText()).toBe('out fishing');
    expect(card?.getChild('PHOTO')?.getChild('TYPE')?.getText()).toBe('image/jpeg');
    expect(Buffer.from(card?.getChild('PHOTO')?.getChild('BINVAL')?.getText() ?? '', 'base64')).toEqual(
      picture,
    );

    // A new name, then a new picture: a presence with each, and the vCard follows.
    await bob.profile.setName('Bobby');
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && nickOf(s) === 'Bobby');
    const other = jpeg(2, 1500);
    await bob.profile.setPicture(other);
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && photoHashOf(s) === sha1(other));
    const again = await vcard();
    expect(again?.getChild('FN')?.getText()).toBe('Bobby');
    expect(Buffer.from(again?.getChild('PHOTO')?.getChild('BINVAL')?.getText() ?? '', 'base64')).toEqual(
      other,
    );

    // Removed: an empty photo hash, and no PHOTO any more.
    await bob.profile.removePicture();
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && photoHashOf(s) === '' && nickOf(s) === 'Bobby');
    expect((await vcard())?.getChild('PHOTO')).toBeUndefined();
  });
});

const presenceOf = (s: Element, from: string) =>
  s.name === 'presence' && s.attrs.from === from && s.attrs.type === undefined;
const nickOf = (s: Element) => s.getChild('nick', 'http://jabber.org/protocol/nick')?.getText();
const photoHashOf = (s: Element) => s.getChild('x', 'vcard-temp:x:update')?.getChild('photo')?.getText();
