import fc from 'fast-check';
import { xml } from '@xmpp/xml';

import { InteropError } from '../../src/errors.js';
import {
  DEFAULT_STANZA_LIMITS,
  StanzaLimitError,
  StanzaMalformedError,
  decodeStanza,
  elementToBytes,
  parseXml,
  toBytes,
  type StanzaLimits,
} from '../../src/protocol/stanza/index.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** The documented policy, written independently of the codec: non-XML-1.0 characters become U+FFFD. */
function xmlSafe(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    const legal =
      cp === 0x9 ||
      cp === 0xa ||
      cp === 0xd ||
      (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) ||
      (cp >= 0x10000 && cp <= 0x10ffff);
    out += legal ? ch : '\uFFFD';
  }
  return out;
}

/** Characters chosen to break naive serialisers, plus any code point and lone surrogates. */
const hostileChar = fc.oneof(
  fc.constantFrom(
    '<',
    '>',
    '&',
    '"',
    "'",
    '\t',
    '\n',
    '\r',
    '\r\n',
    ']]>',
    '&amp;',
    '&#0;',
    '\0',
    '\u0001',
    '\u001f',
  ),
  fc.constantFrom('\uFFFE', '\uFFFF', '\uFFFD', '\u0085', '\u2028', '😀', '👩‍👩‍👧', 'ä', '\u0300'),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((u) => String.fromCharCode(u)),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);
const hostileString = fc.string({ unit: hostileChar, maxLength: 40 });

/** Parses the serialisation of an element holding `s` as an attribute value and as text. */
function roundTrip(s: string): { attr: string | undefined; text: string } {
  const el = parseXml(elementToBytes(xml('x', { a: s }, xml('t', {}, s))));
  return { attr: el.attrs.a, text: el.getChild('t')?.getText() ?? '' };
}

describe('serialising any string', () => {
  test('output always parses, and strings come back exactly as written per the illegal-character policy', () => {
    fc.assert(
      fc.property(hostileString, (s) => {
        expect(roundTrip(s)).toEqual({ attr: xmlSafe(s), text: xmlSafe(s) });
      }),
      { numRuns: 500 },
    );
  });

  test('strings of legal XML characters come back unchanged, including CR, TAB and newlines', () => {
    fc.assert(
      fc.property(hostileString, (raw) => {
        const s = xmlSafe(raw);
        expect(roundTrip(s)).toEqual({ attr: s, text: s });
      }),
    );
  });

  test('64 KiB strings of hostile characters round-trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: hostileChar, minLength: 1, maxLength: 64 }), (piece) => {
        const s = piece.repeat(Math.ceil(65536 / piece.length)).slice(0, 65536);
        expect(roundTrip(s)).toEqual({ attr: xmlSafe(s), text: xmlSafe(s) });
      }),
      { numRuns: 20 },
    );
  });

  test('a lone surrogate in an id becomes U+FFFD on the wire', () => {
    const decoded = decodeStanza(toBytes({ kind: 'ack', class: 'message', id: 'a\uD800b\u0007c' }));
    expect(decoded).toMatchObject({ id: 'a\uFFFDb\uFFFDc' });
  });

  test('markup characters in values are escaped, never interpreted', () => {
    const bytes = toBytes({ kind: 'failure', reason: 'bad_token', text: '"/><success t="1"/><x a="' });
    expect(decodeStanza(bytes)).toEqual({
      kind: 'failure',
      reason: 'bad_token',
      text: '"/><success t="1"/><x a="',
    });
  });
});

/** Runs `fn` and returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

const parseError = (s: string, limits?: StanzaLimits): unknown => thrown(() => parseXml(utf8(s), limits));

describe('hostile input', () => {
  test('100,000 nested elements hit the depth limit', () => {
    const deep = '<a>'.repeat(100_000) + '</a>'.repeat(100_000);
    expect(parseError(deep)).toMatchObject({
      code: 'stanza_too_deep',
      limit: DEFAULT_STANZA_LIMITS.maxDepth,
    });
  });

  test('a billion-laughs document is refused for its DTD, before any entity is expanded', () => {
    const entities = Array.from(
      { length: 9 },
      (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`,
    ).join('');
    const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">${entities}]><lolz>&lol9;</lolz>`;
    const err = parseError(bomb);
    expect(err).toBeInstanceOf(StanzaMalformedError);
    expect(err).toMatchObject({
      code: 'stanza_markup_forbidden',
      message: expect.stringContaining('DOCTYPE'),
    });
  });

  test('1 MB of attributes hits the attribute limit', () => {
    const attrs: string[] = [];
    for (let i = 0, size = 3; size < 1_000_000; i++) {
      const a = ` a${i}="v"`;
      attrs.push(a);
      size += a.length;
    }
    expect(parseError(`<a${attrs.join('')}/>`)).toMatchObject({
      code: 'stanza_too_many_attributes',
      limit: DEFAULT_STANZA_LIMITS.maxAttributes,
    });
  });

  test('a 1 MB attribute value hits the text length limit', () => {
    expect(parseError(`<a v="${'x'.repeat(1_000_000)}"/>`)).toMatchObject({
      code: 'stanza_text_too_long',
      limit: DEFAULT_STANZA_LIMITS.maxTextLength,
    });
  });

  test('a stanza above the size limit is refused before it is decoded', () => {
    const big = utf8(`<a>${'x'.repeat(DEFAULT_STANZA_LIMITS.maxBytes)}</a>`);
    expect(thrown(() => parseXml(big))).toMatchObject({
      code: 'stanza_too_large',
      limit: DEFAULT_STANZA_LIMITS.maxBytes,
    });
  });

  test('a stanza with too many elements hits the element limit', () => {
    expect(parseError(`<a>${'<b/>'.repeat(20_001)}</a>`)).toMatchObject({ code: 'stanza_too_many_elements' });
  });

  test('each limit is configurable', () => {
    const tight: StanzaLimits = {
      maxBytes: 100,
      maxDepth: 2,
      maxAttributes: 1,
      maxElements: 3,
      maxTextLength: 4,
    };
    expect(parseError('<a><b><c/></b></a>', tight)).toMatchObject({ code: 'stanza_too_deep', limit: 2 });
    expect(parseError('<a x="1" y="2"/>', tight)).toMatchObject({
      code: 'stanza_too_many_attributes',
      limit: 1,
    });
    expect(parseError('<a><b/><b/><b/></a>', tight)).toMatchObject({
      code: 'stanza_too_many_elements',
      limit: 3,
    });
    expect(parseError('<a>12345</a>', tight)).toMatchObject({ code: 'stanza_text_too_long', limit: 4 });
    expect(parseError(`<a>${' '.repeat(100)}</a>`, tight)).toMatchObject({
      code: 'stanza_too_large',
      limit: 100,
    });
    expect(parseXml(utf8('<a><b x="1">1234</b></a>'), tight).getChild('b')?.getText()).toBe('1234');
  });

  test('the encoder refuses a stanza the peer would refuse as too large', () => {
    const err = thrown(() =>
      elementToBytes(xml('a', {}, 'x'.repeat(200)), { ...DEFAULT_STANZA_LIMITS, maxBytes: 100 }),
    );
    expect(err).toBeInstanceOf(StanzaLimitError);
    expect(err).toMatchObject({ code: 'stanza_too_large' });
  });

  test.each([
    ['<!DOCTYPE a><a/>', 'DOCTYPE'],
    ['<a><!ENTITY x "y"></a>', 'entity declaration'],
    ['<?xml-stylesheet href="x"?><a/>', 'processing instruction'],
    ['<a><?php echo 1; ?></a>', 'processing instruction'],
    ['<a><!-- note --></a>', 'comment'],
    ['<a><![CDATA[x]]></a>', 'CDATA'],
  ])('%s is refused as forbidden markup (%s)', (doc, what) => {
    expect(parseError(doc)).toMatchObject({
      code: 'stanza_markup_forbidden',
      message: expect.stringContaining(what),
    });
  });

  test.each([
    ['an empty frame', ''],
    ['white space only', '  \n'],
    ['an unclosed root', '<a>'],
    ['a truncated start tag', '<a x="1"'],
    ['a mismatched end tag', '<a><b></a></b>'],
    ['a stray end tag', '</a>'],
    ['an unquoted attribute', '<a x=1/>'],
    ['an attribute without value', '<a x/>'],
    ['attributes without space between', '<a x="1"y="2"/>'],
    ['a duplicate attribute', '<a x="1" x="2"/>'],
    ['"<" in an attribute value', '<a x="<"/>'],
    ['a bare "&"', '<a>fish & chips</a>'],
    ['an undeclared entity', '<a>&nbsp;</a>'],
    ['a reference to U+0000', '<a>&#0;</a>'],
    ['a reference to U+FFFE', '<a x="&#xFFFE;"/>'],
    ['a literal control character', '<a>\u0001</a>'],
    ['"]]>" in text', '<a>]]></a>'],
    ['text before the root', 'x<a/>'],
    ['text after the root', '<a/>x'],
    ['two roots', '<a/><b/>'],
    ['an invalid element name', '<1a/>'],
    ['a name with a bad character', '<a"b/>'],
    ['an XML 1.1 declaration', '<?xml version="1.1"?><a/>'],
    ['a Latin-1 declaration', '<?xml version="1.0" encoding="ISO-8859-1"?><a/>'],
    ['an attribute named __proto__', '<a __proto__="x"/>'],
  ])('%s is stanza_malformed', (_what, doc) => {
    const err = parseError(doc);
    expect(err).toBeInstanceOf(StanzaMalformedError);
    expect(err).toMatchObject({ code: 'stanza_malformed' });
  });

  test('bytes that are not UTF-8 are stanza_malformed', () => {
    expect(thrown(() => parseXml(Uint8Array.from([0x3c, 0x61, 0xff, 0x2f, 0x3e])))).toMatchObject({
      code: 'stanza_malformed',
    });
  });

  test('XML 1.0 line-end and attribute-value normalisation apply to what peers write literally', () => {
    const el = parseXml(utf8('<a x="1\t2\n3" y="1&#9;2&#10;3&#13;">l1\r\nl2\rl3&#13;</a>'));
    expect(el.attrs).toEqual({ x: '1 2 3', y: '1\t2\n3\r' });
    expect(el.getText()).toBe('l1\nl2\nl3\r');
  });

  test('a byte order mark and an XML declaration are accepted', () => {
    const bytes = Uint8Array.from([
      0xef,
      0xbb,
      0xbf,
      ...utf8("<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n<a/>"),
    ]);
    expect(parseXml(bytes).name).toBe('a');
  });
});

describe('decoding anything', () => {
  /** decodeStanza either returns or throws an InteropError, never anything else. */
  function decodesOrThrowsInteropError(bytes: Uint8Array): void {
    try {
      decodeStanza(bytes);
    } catch (err) {
      if (!(err instanceof InteropError)) throw err;
    }
  }

  test('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), decodesOrThrowsInteropError), {
      numRuns: 1000,
    });
  });

  const token = fc.constantFrom(
    '<',
    '>',
    '</',
    '/>',
    '<iq',
    '<message',
    '<enc',
    '<receipt',
    '<key',
    '</iq>',
    '</enc>',
    '</message>',
    ' id="1"',
    ' type="get"',
    ' type="result"',
    ' xmlns="encrypt"',
    ' v="2"',
    ' t="1"',
    ' to="x"',
    '="',
    '"',
    "'",
    ' ',
    '=',
    '&',
    '&amp;',
    '&#0;',
    '&#x41;',
    '&lol;',
    '<!--',
    '-->',
    '<?',
    '?>',
    '<!DOCTYPE',
    '<![CDATA[',
    ']]>',
    'AAAA',
    'count',
    'ping',
    '\u0000',
    '\uFFFF',
    '😀',
    '\uD800',
  );

  test('random almost-XML', () => {
    fc.assert(
      fc.property(fc.array(token, { maxLength: 60 }), (tokens) =>
        decodesOrThrowsInteropError(utf8(tokens.join(''))),
      ),
      { numRuns: 2000 },
    );
  });

  test('valid stanzas with a few bytes changed', () => {
    const valid = utf8(
      '<message id="m1" to="4915112345678@wa.interop" type="text" t="1"><enc v="2" type="msg" device="1">AAECAw==</enc></message>',
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (edits) => {
          const bytes = Uint8Array.from(valid);
          for (const [at, b] of edits) bytes[at] = b;
          decodesOrThrowsInteropError(bytes);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
