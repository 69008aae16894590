import {
  IQ_OPS,
  StanzaInvalidError,
  StanzaUnencodableError,
  StanzaUnknownError,
  decodeStanza,
  toBytes,
  type IqBody,
  type Stanza,
} from '../../src/protocol/stanza/index.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

const GROUP = '120363025246125486@g.wa.interop';
const BOB = '4915112345678@wa.interop';
/** The first bytes of a JPEG file (SOI, APP0 "JFIF"): what a picture upload starts with. */
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01]);

const iq = (body: IqBody, extra: Partial<{ to: string; from: string }> = {}): Stanza => ({
  kind: 'iq',
  id: 'p1',
  ...extra,
  body,
});

const examples: Array<[string, Stanza]> = [
  ['picture of a user', iq({ op: 'picture_get', target: BOB })],
  ['own picture set', iq({ op: 'picture_set', image: JPEG })],
  ['group picture set', iq({ op: 'picture_set', target: GROUP, image: JPEG })],
  ['own picture removed', iq({ op: 'picture_remove' })],
  ['group picture removed', iq({ op: 'picture_remove', target: GROUP })],
  [
    'picture answer',
    iq({
      op: 'picture_result',
      id: '1767225700',
      url: 'http://127.0.0.1:29401/pp/1767225700',
      directPath: '/pp/1767225700',
    }),
  ],
  ['profiles', iq({ op: 'profile_get', jids: [BOB, 'alice@matrixbridge.interop'] })],
  [
    'profiles answer',
    iq({
      op: 'profile_result',
      users: [
        { jid: BOB, name: 'Bob', status: 'At the gym\nback at 6', pictureId: '1767225700' },
        { jid: 'alice@matrixbridge.interop', name: 'Alice 🏔' },
        { jid: '4930123456@wa.interop', status: '' },
        { jid: '4917000000000@wa.interop', error: { code: 404, text: 'no such user' } },
      ],
    }),
  ],
  ['push name', iq({ op: 'push_name_set', name: 'Alice 🏔' })],
  ['about', iq({ op: 'status_set', status: 'Hey there! I am using interop.' })],
  ['about cleared', iq({ op: 'status_set', status: '' })],
  [
    'picture changed',
    {
      kind: 'notification',
      id: 'n1',
      type: 'picture',
      from: BOB,
      t: 1_767_225_700,
      body: { event: 'picture_set', id: '1767225700' },
    },
  ],
  [
    'group picture removed by an admin',
    {
      kind: 'notification',
      id: 'n2',
      type: 'picture',
      from: GROUP,
      participant: BOB,
      t: 1_767_225_701,
      version: 9,
      body: { event: 'picture_removed' },
    },
  ],
  [
    'push name changed',
    {
      kind: 'notification',
      id: 'n3',
      type: 'profile',
      from: BOB,
      t: 1_767_225_702,
      body: { event: 'push_name_changed', name: 'Bobby' },
    },
  ],
  [
    'about cleared',
    {
      kind: 'notification',
      id: 'n4',
      type: 'profile',
      from: BOB,
      t: 1_767_225_703,
      body: { event: 'status_changed', status: '' },
    },
  ],
];

describe('profile stanza round trip', () => {
  test.each(examples)('%s decodes to the value it was encoded from', (_name, stanza) => {
    expect(decodeStanza(toBytes(stanza))).toEqual(stanza);
  });

  test('every profile operation has an example', () => {
    const ops = Object.keys(IQ_OPS).filter((op) => /^(picture_|profile_|push_name_|status_)/.test(op));
    const covered = new Set(examples.flatMap(([, s]) => (s.kind === 'iq' ? [s.body.op] : [])));
    expect(ops.filter((op) => !covered.has(op as IqBody['op']))).toEqual([]);
  });

  test("a delivered message carries the sender's push name in notify", () => {
    const message: Stanza = {
      kind: 'message',
      id: 'm1',
      from: 'alice:1@matrixbridge.interop',
      notify: 'Alice <3 & "friends"',
      type: 'text',
      t: 1,
      encs: [{ type: 'msg', ciphertext: JPEG }],
    };
    expect(text(toBytes(message))).toContain('notify="Alice &lt;3 &amp; &quot;friends&quot;"');
    expect(decodeStanza(toBytes(message))).toEqual(message);
  });
});

describe('profile stanzas on the wire', () => {
  test("the picture of a user is asked for with WhatsApp's namespace and target", () => {
    expect(text(toBytes(iq({ op: 'picture_get', target: BOB })))).toBe(
      `<iq id="p1" type="get" xmlns="w:profile:picture" target="${BOB}"><picture type="image"/></iq>`,
    );
  });

  test('a new picture travels as base64 JPEG; removing it is a set without a child', () => {
    expect(text(toBytes(iq({ op: 'picture_set', image: JPEG })))).toBe(
      '<iq id="p1" type="set" xmlns="w:profile:picture"><picture type="image">/9j/4AAQSkZJRgAB</picture></iq>',
    );
    expect(text(toBytes(iq({ op: 'picture_remove', target: GROUP })))).toBe(
      `<iq id="p1" type="set" xmlns="w:profile:picture" target="${GROUP}"/>`,
    );
  });

  test('the about text is set with the status namespace', () => {
    expect(text(toBytes(iq({ op: 'status_set', status: 'Busy' })))).toBe(
      '<iq id="p1" type="set" xmlns="status"><status>Busy</status></iq>',
    );
  });
});

/** Decodes and returns the thrown error, failing the test if nothing was thrown. */
function decodeError(xml: string): unknown {
  try {
    decodeStanza(utf8(xml));
  } catch (err) {
    return err;
  }
  throw new Error(`expected ${xml} to be rejected`);
}

describe('profile stanzas with missing or bad fields', () => {
  test.each([
    ['<iq id="q" type="get" xmlns="w:profile:picture"><picture type="image"/></iq>', 'target'],
    [
      `<iq id="q" type="get" xmlns="w:profile:picture" target="${BOB}"><picture type="preview"/></iq>`,
      'picture.type',
    ],
    ['<iq id="q" type="set" xmlns="w:profile:picture"><picture type="image"/></iq>', 'picture'],
    [
      '<iq id="q" type="set" xmlns="w:profile:picture"><picture type="image">/9j/4A</picture></iq>',
      'picture',
    ],
    [
      '<iq id="q" type="result"><picture id="1" type="image" url="http://h/pp/1"/></iq>',
      'picture.direct_path',
    ],
    ['<iq id="q" type="result"><picture id="1/2" type="image" url="u" direct_path="p"/></iq>', 'picture.id'],
    ['<iq id="q" type="get" xmlns="w:profile"><profile/></iq>', 'profile.user'],
    [
      `<iq id="q" type="get" xmlns="w:profile"><profile><user jid="${BOB}"/><user jid="${BOB}"/></profile></iq>`,
      'profile.user[1].jid',
    ],
    ['<iq id="q" type="result"><profile><user name="x"/></profile></iq>', 'profile.user[0].jid'],
    ['<iq id="q" type="set" xmlns="w:profile"><name/></iq>', 'name'],
    [`<notification id="n" type="picture" from="${BOB}" t="1"><set/></notification>`, 'set.id'],
    [`<notification id="n" type="profile" from="${BOB}" t="1"><name></name></notification>`, 'name'],
    ['<notification id="n" type="profile" t="1"><name>x</name></notification>', 'from'],
  ])('%s is stanza_invalid naming "%s"', (xml, field) => {
    const err = decodeError(xml);
    expect(err).toBeInstanceOf(StanzaInvalidError);
    expect(err).toMatchObject({ code: 'stanza_invalid', field });
  });

  test.each([
    ['<iq id="q" type="get" xmlns="status"><status/></iq>'],
    ['<iq id="q" type="get" xmlns="w:profile:picture" target="x"/>'],
    [`<notification id="n" type="profile" from="${BOB}" t="1"><business/></notification>`],
    [`<notification id="n" type="picture" from="${BOB}" t="1"><request/></notification>`],
  ])('%s is stanza_unknown, answered with 501', (xml) => {
    const err = decodeError(xml);
    expect(err).toBeInstanceOf(StanzaUnknownError);
    expect(err).toMatchObject({ code: 'stanza_unknown' });
  });
});

describe('encoding profile values the protocol cannot carry', () => {
  test.each<[string, Stanza, string]>([
    ['a picture without bytes', iq({ op: 'picture_set', image: new Uint8Array(0) }), 'image'],
    ['a picture look-up without target', iq({ op: 'picture_get', target: '' }), 'target'],
    ['an empty push name', iq({ op: 'push_name_set', name: '' }), 'name'],
    ['a look-up of nobody', iq({ op: 'profile_get', jids: [] }), 'jids'],
    [
      'a picture id with a slash',
      iq({ op: 'picture_result', id: 'a/b', url: 'u', directPath: '/pp/a' }),
      'id',
    ],
  ])('%s is stanza_unencodable', (_name, stanza, field) => {
    expect(() => toBytes(stanza)).toThrow(StanzaUnencodableError);
    try {
      toBytes(stanza);
    } catch (err) {
      expect(err).toMatchObject({ code: 'stanza_unencodable', field });
    }
  });
});
