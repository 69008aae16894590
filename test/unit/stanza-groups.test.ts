import {
  IQ_OPS,
  StanzaInvalidError,
  StanzaUnencodableError,
  StanzaUnknownError,
  decodeStanza,
  toBytes,
  type GroupInfo,
  type IqBody,
  type MessageStanza,
  type Stanza,
} from '../../src/protocol/stanza/index.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);
/** `n` bytes counting up from `seed`, so that every ciphertext in a test is distinct. */
const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i) % 256);

const GROUP = '120363025246125486@g.wa.interop';
const ALICE = 'alice@matrixbridge.interop';
const BOB = '4915112345678@wa.interop';
const CAROL = '4930123456@wa.interop';

const iq = (body: IqBody, extra: Partial<{ to: string; from: string }> = {}): Stanza => ({
  kind: 'iq',
  id: 'g1',
  ...extra,
  body,
});

const hiking: GroupInfo = {
  jid: GROUP,
  subject: 'Hiking, Saturday',
  creator: BOB,
  creation: 1_767_225_600,
  version: 7,
  description: { id: '3EB0D35C', text: 'Meet at the station.\nBring water.' },
  announce: false,
  locked: true,
  pictureId: '1767225700',
  participants: [
    { jid: BOB, admin: true },
    { jid: ALICE, admin: false },
    { jid: CAROL, admin: false },
  ],
};

/** One example of every group iq operation, notification and message form. */
const examples: Array<[string, Stanza]> = [
  [
    'create',
    iq(
      {
        op: 'group_create',
        subject: 'Hiking, Saturday',
        key: '3EB0A1B2C3',
        participants: [ALICE, CAROL],
        announce: false,
        locked: true,
      },
      { to: 'g.wa.interop' },
    ),
  ],
  [
    'create answer with a participant not added',
    iq({
      op: 'group_info_result',
      group: { ...hiking, version: 1, description: undefined, pictureId: undefined },
      failed: [{ jid: '4917000000000@wa.interop', error: 404 }],
    }),
  ],
  ['info', iq({ op: 'group_info' }, { to: GROUP })],
  ['info answer', iq({ op: 'group_info_result', group: hiking }, { from: GROUP })],
  ['list', iq({ op: 'group_list' }, { to: 'g.wa.interop' })],
  [
    'list answer',
    iq({
      op: 'group_list_result',
      groups: [hiking, { ...hiking, jid: '120363000000000001@g.wa.interop', announce: true }],
    }),
  ],
  ['list answer, no groups', iq({ op: 'group_list_result', groups: [] })],
  ['add', iq({ op: 'group_participants', action: 'add', participants: [CAROL] }, { to: GROUP })],
  ['remove', iq({ op: 'group_participants', action: 'remove', participants: [CAROL] }, { to: GROUP })],
  ['promote', iq({ op: 'group_participants', action: 'promote', participants: [ALICE] }, { to: GROUP })],
  ['demote', iq({ op: 'group_participants', action: 'demote', participants: [ALICE] }, { to: GROUP })],
  [
    'add answer',
    iq({
      op: 'group_participants_result',
      action: 'add',
      participants: [{ jid: CAROL }, { jid: '4917000000000@wa.interop', error: 404 }],
    }),
  ],
  ['leave', iq({ op: 'group_leave', group: GROUP }, { to: 'g.wa.interop' })],
  ['subject', iq({ op: 'group_subject', subject: 'Hiking, Sunday' }, { to: GROUP })],
  [
    'description',
    iq(
      { op: 'group_description', id: '3EB0D35D', prev: '3EB0D35C', description: ' Indented\r\n' },
      { to: GROUP },
    ),
  ],
  ['description deleted', iq({ op: 'group_description', id: '3EB0D35E', prev: '3EB0D35D' }, { to: GROUP })],
  ['first description', iq({ op: 'group_description', id: '3EB0D35F', description: 'x' }, { to: GROUP })],
  ['announcement', iq({ op: 'group_setting', setting: 'announcement' }, { to: GROUP })],
  ['not_announcement', iq({ op: 'group_setting', setting: 'not_announcement' }, { to: GROUP })],
  ['locked', iq({ op: 'group_setting', setting: 'locked' }, { to: GROUP })],
  ['unlocked', iq({ op: 'group_setting', setting: 'unlocked' }, { to: GROUP })],
  ['invite code', iq({ op: 'group_invite' }, { to: GROUP })],
  ['invite reset', iq({ op: 'group_invite_reset' }, { to: GROUP })],
  ['invite answer', iq({ op: 'group_invite_result', code: 'AbCdEfGhIjKlMnOpQrStUv' })],
  ['invite info', iq({ op: 'group_invite_info', code: 'AbCdEfGhIjKlMnOpQrStUv' }, { to: 'g.wa.interop' })],
  ['invite join', iq({ op: 'group_invite_join', code: 'AbCdEfGhIjKlMnOpQrStUv' })],
];

const notification = (
  body: Extract<Stanza, { type: 'w:gp2' }>['body'],
  extra: { participant?: string } = { participant: BOB },
): Stanza => ({
  kind: 'notification',
  id: 'n7',
  type: 'w:gp2',
  from: GROUP,
  ...extra,
  t: 1_767_225_610,
  version: 8,
  body,
});

const notifications: Array<[string, Stanza]> = [
  ['created', notification({ event: 'group_created', group: { ...hiking, version: 1 } })],
  ['added', notification({ event: 'participants_changed', action: 'add', participants: [CAROL] })],
  [
    'joined by invite',
    notification(
      { event: 'participants_changed', action: 'add', participants: [CAROL], reason: 'invite' },
      { participant: CAROL },
    ),
  ],
  [
    'left',
    notification(
      { event: 'participants_changed', action: 'remove', participants: [ALICE] },
      { participant: ALICE },
    ),
  ],
  [
    'promoted by the gateway',
    notification({ event: 'participants_changed', action: 'promote', participants: [ALICE] }, {}),
  ],
  ['demoted', notification({ event: 'participants_changed', action: 'demote', participants: [ALICE] })],
  ['subject', notification({ event: 'subject_changed', subject: 'Hiking, Sunday' })],
  ['description', notification({ event: 'description_changed', id: '3EB0D35D', description: 'New text' })],
  ['description deleted', notification({ event: 'description_changed', id: '3EB0D35E' })],
  ['announcement', notification({ event: 'setting_changed', setting: 'announcement' })],
  ['unlocked', notification({ event: 'setting_changed', setting: 'unlocked' })],
];

const sent: MessageStanza = {
  kind: 'message',
  id: '3EB0C0FFEE',
  to: GROUP,
  type: 'text',
  t: 1_767_225_601,
  encs: [{ type: 'skmsg', ciphertext: bytes(60, 20) }],
  participants: [
    { jid: '4915112345678:0@wa.interop', enc: { type: 'pkmsg', ciphertext: bytes(150, 21) } },
    { jid: '4930123456:0@wa.interop', enc: { type: 'msg', ciphertext: bytes(90, 22) } },
  ],
};

const messages: Array<[string, Stanza]> = [
  ['sent with sender keys for two devices', sent],
  ['sent by a device every participant already has the key of', { ...sent, participants: undefined }],
  [
    'delivered with the sender key for this device',
    {
      kind: 'message',
      id: '3EB0C0FFEE',
      from: GROUP,
      participant: 'alice:1@matrixbridge.interop',
      notify: 'Alice 🏔',
      type: 'media',
      t: 1_767_225_601,
      encs: [
        { type: 'pkmsg', mediaType: 'image', ciphertext: bytes(150, 21) },
        { type: 'skmsg', mediaType: 'image', ciphertext: bytes(60, 20) },
      ],
    },
  ],
  [
    'resent to one device after its retry receipt',
    {
      kind: 'message',
      id: '3EB0C0FFEE',
      to: GROUP,
      participant: '4930123456:0@wa.interop',
      type: 'text',
      t: 1_767_225_601,
      encs: [{ type: 'pkmsg', ciphertext: bytes(200, 23) }],
    },
  ],
  [
    'read receipt sent to a group',
    { kind: 'receipt', id: '3EB0C0FFEE', to: GROUP, participant: ALICE, type: 'read', t: 1_767_225_620 },
  ],
  [
    'receipt delivered from a group',
    {
      kind: 'receipt',
      id: '3EB0C0FFEE',
      from: GROUP,
      participant: '4930123456:0@wa.interop',
      t: 1_767_225_621,
    },
  ],
];

describe('group stanza round trip', () => {
  test.each([...examples, ...notifications, ...messages])(
    '%s decodes to the value it was encoded from',
    (_name, stanza) => {
      expect(decodeStanza(toBytes(stanza))).toEqual(stanza);
    },
  );

  test('every group operation has an example', () => {
    const groupOps = Object.keys(IQ_OPS).filter((op) => op.startsWith('group_'));
    const covered = new Set(examples.flatMap(([, s]) => (s.kind === 'iq' ? [s.body.op] : [])));
    expect(groupOps.filter((op) => !covered.has(op as IqBody['op']))).toEqual([]);
  });
});

describe('group stanzas on the wire', () => {
  test('a create names the subject and key, lists the others, and goes to the group server', () => {
    const [, create] = examples.find(([name]) => name === 'create')!;
    expect(text(toBytes(create))).toBe(
      '<iq id="g1" type="set" xmlns="w:g2" to="g.wa.interop"><create subject="Hiking, Saturday" key="3EB0A1B2C3">' +
        `<participant jid="${ALICE}"/><participant jid="${CAROL}"/><locked/></create></iq>`,
    );
  });

  test('a group is described by one element, admins marked by type', () => {
    expect(text(toBytes(iq({ op: 'group_info_result', group: hiking })))).toBe(
      `<iq id="g1" type="result"><group jid="${GROUP}" subject="Hiking, Saturday" creator="${BOB}" creation="1767225600" v="7">` +
        '<description id="3EB0D35C"><body>Meet at the station.\nBring water.</body></description>' +
        '<locked/><picture id="1767225700"/>' +
        `<participant jid="${BOB}" type="admin"/><participant jid="${ALICE}"/><participant jid="${CAROL}"/></group></iq>`,
    );
  });

  test('a sent group message has one skmsg, then the pairwise sender keys per device', () => {
    expect(text(toBytes(sent))).toMatch(
      /^<message id="3EB0C0FFEE" to="120363025246125486@g\.wa\.interop" type="text" t="1767225601"><enc v="2" type="skmsg">[^<]+<\/enc><participants><to jid="4915112345678:0@wa\.interop"><enc v="2" type="pkmsg">[^<]+<\/enc><\/to><to jid="4930123456:0@wa\.interop"><enc v="2" type="msg">/,
    );
  });

  test('a group change is announced with its author and the new version', () => {
    const [, left] = notifications.find(([name]) => name === 'left')!;
    expect(text(toBytes(left))).toBe(
      `<notification id="n7" type="w:gp2" from="${GROUP}" t="1767225610" participant="${ALICE}" v="8">` +
        `<remove><participant jid="${ALICE}"/></remove></notification>`,
    );
  });

  test("free text keeps its white space, which is the user's", () => {
    const stanza = decodeStanza(
      utf8(`<iq id="g" type="set" xmlns="w:g2" to="${GROUP}"><subject>  Two  spaces </subject></iq>`),
    );
    expect(stanza).toMatchObject({ body: { op: 'group_subject', subject: '  Two  spaces ' } });
  });

  test('a pretty-printed group answer from another implementation decodes', () => {
    const stanza = decodeStanza(
      utf8(`<iq id="g" type="result">
  <group jid="${GROUP}" subject="S" creator="${BOB}" creation="1" v="1">
    <participant jid="${BOB}" type="admin"/>
  </group>
</iq>`),
    );
    expect(stanza).toMatchObject({
      body: { op: 'group_info_result', group: { participants: [{ jid: BOB, admin: true }] } },
    });
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

const SK = '<enc v="2" type="skmsg">AAAA</enc>';

describe('group stanzas with missing or bad fields', () => {
  test.each([
    ['<iq id="q" type="set" xmlns="w:g2"><subject>S</subject></iq>', 'to'],
    ['<iq id="q" type="get" xmlns="w:g2"><query/></iq>', 'to'],
    [`<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><subject/></iq>`, 'subject'],
    ['<iq id="q" type="set" xmlns="w:g2"><create key="k"/></iq>', 'create.subject'],
    ['<iq id="q" type="set" xmlns="w:g2"><create subject="S"/></iq>', 'create.key'],
    ['<iq id="q" type="set" xmlns="w:g2"><create subject="S" key="a b"/></iq>', 'create.key'],
    [
      `<iq id="q" type="set" xmlns="w:g2"><create subject="S" key="k"><participant jid="${ALICE}"/><participant jid="${ALICE}"/></create></iq>`,
      'create.participant[1].jid',
    ],
    [`<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><add/></iq>`, 'add.participant'],
    [
      `<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><remove><participant/></remove></iq>`,
      'remove.participant[0].jid',
    ],
    ['<iq id="q" type="set" xmlns="w:g2"><leave/></iq>', 'leave.group'],
    [`<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><description id="d"/></iq>`, 'description'],
    [
      `<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><description id="d" delete="true"><body>x</body></description></iq>`,
      'description',
    ],
    [
      `<iq id="q" type="set" xmlns="w:g2" to="${GROUP}"><description id="d"><body/></description></iq>`,
      'description.body',
    ],
    ['<iq id="q" type="set" xmlns="w:g2"><invite code="no spaces"/></iq>', 'invite.code'],
    ['<iq id="q" type="result"><invite/></iq>', 'invite.code'],
    [
      `<iq id="q" type="result"><group jid="${GROUP}" subject="S" creator="${BOB}" creation="1" v="1"/></iq>`,
      'group.participant',
    ],
    [
      `<iq id="q" type="result"><group jid="${GROUP}" subject="S" creator="${BOB}" creation="1" v="0"><participant jid="${BOB}"/></group></iq>`,
      'group.v',
    ],
    [
      `<iq id="q" type="result"><group jid="${GROUP}" subject="S" creator="${BOB}" creation="1" v="1"><participant jid="${BOB}" type="owner"/></group></iq>`,
      'group.participant[0].type',
    ],
    ['<iq id="q" type="result"><add/></iq>', 'add.participant'],
    [`<notification id="n" type="w:gp2" from="${GROUP}" t="1"><locked/></notification>`, 'v'],
    [
      `<notification id="n" type="w:gp2" from="${GROUP}" t="1" v="2"><remove reason="invite"><participant jid="${ALICE}"/></remove></notification>`,
      'remove.reason',
    ],
    [`<message id="m" to="${GROUP}" type="text" t="1">${SK}${SK}</message>`, 'enc[1].type'],
    [
      `<message id="m" to="${GROUP}" type="text" t="1"><enc v="2" type="skmsg" device="0">AAAA</enc></message>`,
      'enc[0].device',
    ],
    [
      `<message id="m" from="${GROUP}" type="text" t="1"><enc v="2" type="msg">AAAA</enc><enc v="2" type="pkmsg">AAAA</enc>${SK}</message>`,
      'enc[1].type',
    ],
    [
      `<message id="m" to="${BOB}" type="text" t="1"><enc v="2" type="msg">AAAA</enc><participants><to jid="x"><enc v="2" type="msg">AAAA</enc></to></participants></message>`,
      'participants',
    ],
    [`<message id="m" to="${GROUP}" type="text" t="1">${SK}<participants/></message>`, 'participants.to'],
    [
      `<message id="m" to="${GROUP}" type="text" t="1">${SK}<participants><to jid="x"/></participants></message>`,
      'participants.to[0].enc',
    ],
    [
      `<message id="m" to="${GROUP}" type="text" t="1">${SK}<participants><to jid="x">${SK}</to></participants></message>`,
      'participants.to[0].enc.type',
    ],
    [
      `<message id="m" to="${GROUP}" type="text" t="1">${SK}<participants><to jid="x"><enc v="2" type="msg" device="1">AAAA</enc></to></participants></message>`,
      'participants.to[0].enc.device',
    ],
    [
      `<message id="m" to="${GROUP}" type="text" t="1">${SK}<participants><to jid="x"><enc v="2" type="msg">AAAA</enc></to><to jid="x"><enc v="2" type="msg">AAAA</enc></to></participants></message>`,
      'participants.to[1].jid',
    ],
    [`<message id="m" to="${GROUP}" participant="" type="text" t="1">${SK}</message>`, 'participant'],
  ])('%s is stanza_invalid naming "%s"', (xml, field) => {
    const err = decodeError(xml);
    expect(err).toBeInstanceOf(StanzaInvalidError);
    expect(err).toMatchObject({ code: 'stanza_invalid', field });
  });

  test.each([
    ['<iq id="q" type="set" xmlns="w:g2"><membership_approval_mode/></iq>'],
    [`<iq id="q" type="get" xmlns="w:g2" to="${GROUP}"><subject/></iq>`],
    [
      `<notification id="n" type="w:gp2" from="${GROUP}" t="1" v="2"><ephemeral expiration="86400"/></notification>`,
    ],
  ])('%s is stanza_unknown, answered with 501', (xml) => {
    const err = decodeError(xml);
    expect(err).toBeInstanceOf(StanzaUnknownError);
    expect(err).toMatchObject({ code: 'stanza_unknown', stanza: { id: expect.any(String) } });
  });
});

describe('encoding group values the protocol cannot carry', () => {
  const message = (m: Partial<MessageStanza>): Stanza => ({ ...sent, ...m });
  test.each<[string, Stanza, string]>([
    ['a request about a group without the group', iq({ op: 'group_subject', subject: 'S' }), 'to'],
    ['an empty subject', iq({ op: 'group_subject', subject: '' }, { to: GROUP }), 'subject'],
    [
      'an add of nobody',
      iq({ op: 'group_participants', action: 'add', participants: [] }, { to: GROUP }),
      'participants',
    ],
    [
      'a participant twice',
      iq({ op: 'group_participants', action: 'remove', participants: [ALICE, ALICE] }, { to: GROUP }),
      'participants[1]',
    ],
    ['an invite code with a space', iq({ op: 'group_invite_join', code: 'a b' }), 'code'],
    [
      'a group without participants',
      iq({ op: 'group_info_result', group: { ...hiking, participants: [] } }),
      'group.participants',
    ],
    [
      'an empty description',
      iq({ op: 'group_description', id: 'd', description: '' }, { to: GROUP }),
      'description.text',
    ],
    ['two skmsg', message({ encs: [sent.encs[0]!, sent.encs[0]!] }), 'encs'],
    ['a skmsg naming a device', message({ encs: [{ ...sent.encs[0]!, device: 1 }] }), 'encs[0].device'],
    [
      'participants without a skmsg',
      message({ to: BOB, encs: [{ type: 'msg', device: 0, ciphertext: bytes(4) }] }),
      'participants',
    ],
    ['empty participants', message({ participants: [] }), 'participants'],
    [
      'a skmsg for a participant',
      message({ participants: [{ jid: 'x', enc: { type: 'skmsg', ciphertext: bytes(4) } }] }),
      'participants[0].enc.type',
    ],
    [
      'a notification at version 0',
      {
        kind: 'notification',
        id: 'n',
        type: 'w:gp2',
        from: GROUP,
        t: 1,
        version: 0,
        body: { event: 'setting_changed', setting: 'locked' },
      },
      'version',
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
