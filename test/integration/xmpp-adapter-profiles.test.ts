/**
 * Contacts' profiles on real Prosody and ejabberd (and the adapter's store on PostgreSQL too): a
 * native user's push name, about text and picture reach the XMPP user as the contact's nick
 * (XEP-0172), vCard (FN, DESC, PHOTO), avatar hash in its presence (XEP-0153) and XEP-0084 avatar
 * (the contact JID's PEP nodes, and an event at each change), and follow each change made through
 * the emulator.
 */
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import type { TestUser, XmppServerKind } from '../support/xmpp-servers.js';
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

    // XEP-0084: the contact JID is an account with a PEP service; its picture came as an event,
    // and its metadata and data nodes answer with the same bytes.
    const info = await alice.iq(
      xml(
        'iq',
        { type: 'get', to: bobJid },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    expect(
      info
        .getChild('query')
        ?.getChildren('identity')
        .map((i) => i.attrs),
    ).toEqual(expect.arrayContaining([expect.objectContaining({ category: 'pubsub', type: 'pep' })]));
    const first = await alice.waitForStanza((s) => avatarEventOf(s, bobJid)?.attrs.id === sha1(picture));
    expect(infoOf(avatarEventOf(first, bobJid))).toEqual({
      bytes: String(picture.length),
      id: sha1(picture),
      type: 'image/jpeg',
    });
    const meta = await alice.iq(avatarGet(bobJid, META));
    expect(meta.attrs.type).toBe('result');
    const metaItem = itemOf(meta, META);
    expect(metaItem?.attrs.id).toBe(sha1(picture));
    expect(infoOf(metaItem)).toEqual({
      bytes: String(picture.length),
      id: sha1(picture),
      type: 'image/jpeg',
    });
    expect(await avatarData(alice, bobJid, sha1(picture))).toEqual(picture);
    expect(await avatarData(alice, bobJid)).toEqual(picture); // no id: the current one

    // A new name, then a new picture: a presence with each, and the vCard follows.
    await bob.profile.setName('Bobby');
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && nickOf(s) === 'Bobby');
    const other = jpeg(2, 1500);
    await bob.profile.setPicture(other);
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && photoHashOf(s) === sha1(other));
    const changed = await alice.waitForStanza((s) => avatarEventOf(s, bobJid)?.attrs.id === sha1(other));
    expect(infoOf(avatarEventOf(changed, bobJid))?.bytes).toBe(String(other.length));
    expect(await avatarData(alice, bobJid, sha1(other))).toEqual(other);
    const old = await alice.iq(avatarGet(bobJid, DATA, sha1(picture)));
    expect(old.attrs.type).toBe('error');
    expect(old.getChild('error')?.getChild('item-not-found')).toBeDefined();
    const again = await vcard();
    expect(again?.getChild('FN')?.getText()).toBe('Bobby');
    expect(Buffer.from(again?.getChild('PHOTO')?.getChild('BINVAL')?.getText() ?? '', 'base64')).toEqual(
      other,
    );

    // Removed: an empty photo hash, and no PHOTO any more.
    await bob.profile.removePicture();
    await alice.waitForStanza((s) => presenceOf(s, bobJid) && photoHashOf(s) === '' && nickOf(s) === 'Bobby');
    expect((await vcard())?.getChild('PHOTO')).toBeUndefined();
    // XEP-0084: an event with an empty <metadata/>, which the metadata node now holds; no data.
    const removed = await alice.waitForStanza((s) => {
      const item = avatarEventOf(s, bobJid);
      return item !== undefined && item.getChild('metadata', META)?.children.length === 0;
    });
    expect(avatarEventOf(removed, bobJid)?.attrs.id).toBeUndefined();
    const none = itemOf(await alice.iq(avatarGet(bobJid, META)), META);
    expect(none?.getChild('metadata', META)?.children).toEqual([]);
    expect(itemOf(await alice.iq(avatarGet(bobJid, DATA)), DATA)).toBeUndefined();
    expect((await alice.iq(avatarGet(bobJid, DATA, sha1(other)))).attrs.type).toBe('error');
  });

  it("a contact's avatar is only for the users who have the contact, and only for registered ones", async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    const picture = jpeg(3, 800);
    await bob.profile.setPicture(picture);
    const bobJid = contactJid(bobPhone);
    await alice.client.send(xml('presence', { to: bobJid, type: 'subscribe' }));
    await alice.waitForStanza(
      (s) => s.name === 'presence' && s.attrs.from === bobJid && s.attrs.type === 'subscribed',
    );
    await alice.client.send(chat(bobJid, 'hello', 'p-2'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    await bob.sendText(got.from, 'hi!', { devices: [0] });
    await alice.waitForStanza((s) => avatarEventOf(s, bobJid)?.attrs.id === sha1(picture));

    // Another registered user, who never talked to Bob: no picture of Bob's.
    const carol = await h.registeredUser('carol');
    const meta = await carol.iq(avatarGet(bobJid, META));
    expect(meta.attrs.type).toBe('result');
    expect(itemOf(meta, META)?.getChild('metadata', META)?.children).toEqual([]);
    const data = await carol.iq(avatarGet(bobJid, DATA, sha1(picture)));
    expect(data.getChild('error')?.getChild('item-not-found')).toBeDefined();
    // A user who is not registered: told to register.
    const dave = await h.user('dave');
    const refused = await dave.iq(avatarGet(bobJid, META));
    expect(refused.getChild('error')?.getChild('registration-required')).toBeDefined();
  });
});

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const META = 'urn:xmpp:avatar:metadata';
const DATA = 'urn:xmpp:avatar:data';

/** A pubsub retrieve-items request for an avatar node of `to`, for one item or the current one. */
const avatarGet = (to: string, node: string, id?: string) =>
  xml(
    'iq',
    { type: 'get', to },
    xml('pubsub', { xmlns: PUBSUB }, xml('items', { node }, id ? xml('item', { id }) : null)),
  );
const itemOf = (answer: Element, node: string): Element | undefined => {
  const items = answer.getChild('pubsub', PUBSUB)?.getChild('items');
  return items?.attrs.node === node ? items.getChild('item') : undefined;
};
/** The picture's bytes from the data node (the current one without `id`). */
async function avatarData(u: TestUser, to: string, id?: string): Promise<Buffer | undefined> {
  const item = itemOf(await u.iq(avatarGet(to, DATA, id)), DATA);
  const data = item?.getChild('data', DATA)?.getText();
  return data === undefined ? undefined : Buffer.from(data, 'base64');
}
/** The item of an avatar metadata event (XEP-0163 PEP notification) from `from`. */
const avatarEventOf = (s: Element, from: string): Element | undefined => {
  if (s.name !== 'message' || s.attrs.from !== from) return undefined;
  const items = s.getChild('event', 'http://jabber.org/protocol/pubsub#event')?.getChild('items');
  return items?.attrs.node === META ? items.getChild('item') : undefined;
};
const infoOf = (item: Element | undefined) => item?.getChild('metadata', META)?.getChild('info')?.attrs;

const presenceOf = (s: Element, from: string) =>
  s.name === 'presence' && s.attrs.from === from && s.attrs.type === undefined;
const nickOf = (s: Element) => s.getChild('nick', 'http://jabber.org/protocol/nick')?.getText();
const photoHashOf = (s: Element) => s.getChild('x', 'vcard-temp:x:update')?.getChild('photo')?.getText();
