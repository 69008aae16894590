import {
  StanzaInvalidError,
  StanzaUnencodableError,
  StanzaUnknownError,
  decodeStanza,
  encodeStanza,
  serializeXml,
  toBytes,
  type IqBody,
  type Stanza,
} from '../../src/protocol/stanza/index.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);
/** `n` bytes counting up from `seed`, so that every key in a test is distinct. */
const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i) % 256);

const signedPreKey = { id: 0xabcdef, publicKey: bytes(32, 7), signature: bytes(64, 9) };
const iq = (body: IqBody, extra: Partial<{ to: string; from: string }> = {}): Stanza => ({
  kind: 'iq',
  id: 'q1',
  ...extra,
  body,
});

/** One example of every stanza and every iq operation. */
const examples: Array<[string, Stanza]> = [
  ['success', { kind: 'success', t: 1_767_225_600, account: 'alice@matrixbridge.interop', device: 3 }],
  ['failure', { kind: 'failure', reason: 'token_expired', text: 'token expired at 12:00:00' }],
  [
    'prekey upload',
    iq(
      {
        op: 'prekey_upload',
        registrationId: 0xfedcba98,
        identityKey: bytes(32, 1),
        preKeys: [
          { id: 1, publicKey: bytes(32, 2) },
          { id: 0xffffff, publicKey: bytes(32, 3) },
        ],
        signedPreKey,
      },
      { to: 'wa.interop' },
    ),
  ],
  ['prekey count', iq({ op: 'prekey_count' })],
  ['prekey count result', iq({ op: 'prekey_count_result', count: 17 }, { from: 'wa.interop' })],
  [
    'prekey fetch',
    iq({ op: 'prekey_fetch', jids: ['4915112345678:0@wa.interop', '4915112345678:1@wa.interop'] }),
  ],
  [
    'prekey fetch result',
    iq({
      op: 'prekey_fetch_result',
      users: [
        {
          jid: '4915112345678:0@wa.interop',
          registrationId: 42,
          identityKey: bytes(32, 4),
          signedPreKey,
          preKey: { id: 5, publicKey: bytes(32, 5) },
        },
        { jid: '4915112345678:1@wa.interop', registrationId: 43, identityKey: bytes(32, 6), signedPreKey },
        { jid: '4915199999999:0@wa.interop', error: { code: 404, text: 'no such user' } },
      ],
    }),
  ],
  ['usync query', iq({ op: 'usync_query', contacts: ['+4915112345678', '+4930123456'] })],
  [
    'usync result',
    iq({
      op: 'usync_result',
      entries: [
        { contact: '+4915112345678', onNetwork: true, jid: '4915112345678@wa.interop', devices: [0, 2] },
        { contact: '+4930123456', onNetwork: false, devices: [] },
      ],
    }),
  ],
  ['enlist', iq({ op: 'enlist', t: 1_767_225_600, identityKey: bytes(32, 8), signature: bytes(64, 10) })],
  ['unenlist', iq({ op: 'unenlist' })],
  ['media conn', iq({ op: 'media_conn' })],
  [
    'media conn result',
    iq({
      op: 'media_conn_result',
      auth: 'AbC-123_x',
      ttl: 300,
      hosts: ['media.wa.interop', 'media2.wa.interop'],
    }),
  ],
  ['ping', iq({ op: 'ping' })],
  ['empty result', iq({ op: 'result' })],
  ['error result', iq({ op: 'error', error: { code: 404, text: 'item not found' } })],
  [
    'message to two devices',
    {
      kind: 'message',
      id: '3EB0C0FFEE',
      to: '4915112345678@wa.interop',
      type: 'text',
      t: 1_767_225_601,
      encs: [
        { type: 'pkmsg', device: 0, ciphertext: bytes(100, 11) },
        { type: 'msg', device: 1, ciphertext: bytes(57, 12) },
      ],
    },
  ],
  [
    'delivered media message',
    {
      kind: 'message',
      id: '3EB0C0FFEF',
      from: 'alice:1@matrixbridge.interop',
      type: 'media',
      t: 1_767_225_602,
      encs: [{ type: 'msg', mediaType: 'ptt', ciphertext: bytes(300, 13) }],
    },
  ],
  ['message ack', { kind: 'ack', class: 'message', id: '3EB0C0FFEE', from: 'wa.interop', t: 1_767_225_603 }],
  ['refusing ack', { kind: 'ack', class: 'receipt', id: 'r9', to: 'wa.interop', error: 409 }],
  [
    'delivery receipt',
    { kind: 'receipt', id: '3EB0C0FFEE', from: '4915112345678:0@wa.interop', t: 1_767_225_604 },
  ],
  [
    'read receipt',
    { kind: 'receipt', id: '3EB0C0FFEE', to: 'alice@matrixbridge.interop', type: 'read', t: 1_767_225_605 },
  ],
  [
    'first retry receipt',
    {
      kind: 'receipt',
      id: '3EB0C0FFEE',
      to: '4915112345678:0@wa.interop',
      type: 'retry',
      t: 1_767_225_606,
      retry: { count: 1, id: '3EB0C0FFEE', t: 1_767_225_601, registrationId: 77 },
    },
  ],
  [
    'second retry receipt with keys',
    {
      kind: 'receipt',
      id: '3EB0C0FFEE',
      to: '4915112345678:0@wa.interop',
      type: 'retry',
      t: 1_767_225_607,
      retry: {
        count: 2,
        id: '3EB0C0FFEE',
        t: 1_767_225_601,
        registrationId: 77,
        keys: { identityKey: bytes(32, 14), signedPreKey, preKey: { id: 99, publicKey: bytes(32, 15) } },
      },
    },
  ],
  ['composing', { kind: 'chatstate', to: '4915112345678@wa.interop', state: 'composing' }],
  ['paused', { kind: 'chatstate', from: '4915112345678@wa.interop', state: 'paused' }],
  [
    'presence',
    { kind: 'presence', type: 'unavailable', from: '4915112345678@wa.interop', last: 1_767_225_000 },
  ],
  [
    'identity change notification',
    {
      kind: 'notification',
      id: 'n1',
      type: 'encrypt',
      from: '4915112345678@wa.interop',
      t: 1_767_225_608,
      body: { event: 'identity_changed' },
    },
  ],
  [
    'low prekey notification',
    {
      kind: 'notification',
      id: 'n2',
      type: 'encrypt',
      from: 'wa.interop',
      t: 1_767_225_609,
      body: { event: 'prekey_low', count: 4 },
    },
  ],
];

describe('stanza round trip', () => {
  test.each(examples)('%s decodes to the value it was encoded from', (_name, stanza) => {
    expect(decodeStanza(toBytes(stanza))).toEqual(stanza);
  });

  test('every stanza kind and every iq operation has an example', () => {
    const kinds = new Set(examples.map(([, s]) => s.kind));
    const ops = new Set(examples.flatMap(([, s]) => (s.kind === 'iq' ? [s.body.op] : [])));
    expect([...kinds].sort()).toEqual(
      [
        'ack',
        'chatstate',
        'failure',
        'iq',
        'message',
        'notification',
        'presence',
        'receipt',
        'success',
      ].sort(),
    );
    expect(ops.size).toBe(14);
  });
});

describe('stanza wire form', () => {
  test('a prekey upload carries ids as big-endian bytes and keys as base64', () => {
    const [, upload] = examples.find(([name]) => name === 'prekey upload')!;
    const xml = text(toBytes(upload));
    expect(xml).toContain(
      '<iq id="q1" type="set" xmlns="encrypt" to="wa.interop"><registration>/ty6mA==</registration>',
    );
    expect(xml).toContain('<key><id>AAAB</id><value>');
    expect(xml).toContain('<skey><id>q83v</id>');
  });

  test('a message has one enc per device, each naming its device', () => {
    const [, message] = examples.find(([name]) => name === 'message to two devices')!;
    expect(serializeXml(encodeStanza(message))).toMatch(
      /^<message id="3EB0C0FFEE" to="4915112345678@wa.interop" type="text" t="1767225601"><enc v="2" type="pkmsg" device="0">[A-Za-z0-9+/=]+<\/enc><enc v="2" type="msg" device="1">/,
    );
  });

  test('results carry no xmlns; requests carry the xmlns of their operation', () => {
    expect(text(toBytes(iq({ op: 'ping' })))).toBe('<iq id="q1" type="get" xmlns="w:p"><ping/></iq>');
    expect(text(toBytes(iq({ op: 'media_conn' })))).toBe(
      '<iq id="q1" type="set" xmlns="w:m"><media_conn/></iq>',
    );
    expect(text(toBytes(iq({ op: 'result' })))).toBe('<iq id="q1" type="result"/>');
  });

  test('a pretty-printed stanza from another implementation decodes', () => {
    const stanza = decodeStanza(
      utf8(`<?xml version="1.0" encoding="UTF-8"?>
<iq id='7' type='result'>
  <count value='12'/>
</iq>
`),
    );
    expect(stanza).toEqual({ kind: 'iq', id: '7', body: { op: 'prekey_count_result', count: 12 } });
  });

  test('unknown attributes and children of a known stanza are ignored', () => {
    const stanza = decodeStanza(utf8('<ack class="message" id="m1" future="yes"><extension/></ack>'));
    expect(stanza).toEqual({ kind: 'ack', class: 'message', id: 'm1' });
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

describe('stanzas the codec does not know', () => {
  test('an unknown root yields stanza_unknown with the id to answer', () => {
    const err = decodeError('<call id="c1" from="4915112345678@wa.interop"/>');
    expect(err).toBeInstanceOf(StanzaUnknownError);
    expect(err).toMatchObject({
      code: 'stanza_unknown',
      stanza: { name: 'call', id: 'c1', from: '4915112345678@wa.interop' },
    });
  });

  test('an iq with an unknown namespace yields stanza_unknown with the iq id', () => {
    expect(decodeError('<iq id="q9" type="get" xmlns="w:biz"><verified_name/></iq>')).toMatchObject({
      code: 'stanza_unknown',
      stanza: { name: 'iq', id: 'q9' },
    });
  });

  test('an iq result with an unknown child yields stanza_unknown', () => {
    expect(decodeError('<iq id="q9" type="result"><verified_name/></iq>')).toMatchObject({
      code: 'stanza_unknown',
    });
  });

  test('a notification of an unknown type yields stanza_unknown', () => {
    expect(decodeError('<notification id="n" type="devices" from="wa.interop" t="1"/>')).toMatchObject({
      code: 'stanza_unknown',
      stanza: { id: 'n' },
    });
  });
});

describe('known stanzas with missing or bad fields', () => {
  test.each([
    ['<message to="a@wa.interop" type="text" t="1"><enc v="2" type="msg">AAAA</enc></message>', 'id'],
    ['<message id="m" type="text" t="1"><enc v="2" type="msg">AAAA</enc></message>', 'to'],
    ['<message id="m" to="x" type="text" t="1"/>', 'enc'],
    ['<message id="m" to="x" type="text" t="1"><enc v="3" type="msg">AAAA</enc></message>', 'enc[0].v'],
    ['<message id="m" to="x" type="text" t="01"><enc v="2" type="msg">AAAA</enc></message>', 't'],
    ['<message id="m" to="x" type="text" t="1"><enc v="2" type="msg">AAA</enc></message>', 'enc[0]'],
    ['<message id="m" to="x" type="video" t="1"><enc v="2" type="msg">AAAA</enc></message>', 'type'],
    [
      '<message id="m" to="x" type="text" t="1"><enc v="2" type="msg" device="1">AAAA</enc><enc v="2" type="msg" device="1">AAAA</enc></message>',
      'enc[1].device',
    ],
    ['<iq id="q" type="set" xmlns="encrypt"><registration>AAAAAQ==</registration></iq>', 'identity'],
    [
      '<iq id="q" type="set" xmlns="encrypt"><registration>AAAB</registration><identity/><list/><skey/></iq>',
      'registration',
    ],
    ['<iq id="q" type="get" xmlns="encrypt"><key/></iq>', 'key.user'],
    [
      '<iq id="q" type="get" xmlns="usync"><usync><query><contact>015112345678</contact></query></usync></iq>',
      'usync.query.contact[0]',
    ],
    ['<iq id="q" type="error"><error text="x"/></iq>', 'error.code'],
    ['<iq id="q" type="fetch"/>', 'type'],
    ['<iq type="get" xmlns="w:p"><ping/></iq>', 'id'],
    [
      '<receipt id="r" to="x" type="retry" t="1"><retry count="2" id="m" t="1"/><registration>AAAAAQ==</registration></receipt>',
      'keys',
    ],
    ['<receipt id="r" to="x" type="retry" t="1"><retry count="6" id="m" t="1"/></receipt>', 'retry.count'],
    ['<chatstate to="x"><recording/></chatstate>', ''],
    ['<success t="1" account="a"/>', 'device'],
    ['<failure reason="Token Expired"/>', 'reason'],
    ['<ack class="message" id=""/>', 'id'],
  ])('%s is stanza_invalid naming "%s"', (xml, field) => {
    const err = decodeError(xml);
    expect(err).toBeInstanceOf(StanzaInvalidError);
    expect(err).toMatchObject({ code: 'stanza_invalid', field });
  });

  test('the error names the stanza and its id so the sender can be answered', () => {
    expect(decodeError('<iq id="q7" type="get" xmlns="encrypt"><key/></iq>')).toMatchObject({
      stanza: { name: 'iq', id: 'q7' },
      message: expect.stringContaining('<iq id="q7">'),
    });
  });
});

describe('encoding values the protocol cannot carry', () => {
  test.each<[string, Stanza, string]>([
    [
      'a 33-byte identity key',
      iq({ op: 'enlist', t: 1, identityKey: bytes(33), signature: bytes(64) }),
      'identityKey',
    ],
    [
      'a prekey id above 2^24-1',
      iq({
        op: 'prekey_upload',
        registrationId: 1,
        identityKey: bytes(32),
        preKeys: [{ id: 0x1000000, publicKey: bytes(32) }],
        signedPreKey,
      }),
      'preKeys[0].id',
    ],
    [
      'a message without ciphertexts',
      { kind: 'message', id: 'm', to: 'x', type: 'text', t: 1, encs: [] },
      'encs',
    ],
    [
      'a second retry without keys',
      {
        kind: 'receipt',
        id: 'r',
        to: 'x',
        type: 'retry',
        t: 1,
        retry: { count: 2, id: 'm', t: 1, registrationId: 1 },
      },
      'retry.keys',
    ],
    [
      'a usync query for a number without "+"',
      iq({ op: 'usync_query', contacts: ['4915112345678'] }),
      'contacts[0]',
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
