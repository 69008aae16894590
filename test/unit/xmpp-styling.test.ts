import fc from 'fast-check';
import { markupToStyling, stylingToMarkup } from '../../adapters/xmpp/styling.js';

describe('markupToStyling', () => {
  const cases: [string, string, string][] = [
    ['the empty string stays empty', '', ''],
    ['plain text is unchanged', 'hello, world', 'hello, world'],
    ['bold, italic and strike are the same', '*a* _b_ ~c~', '*a* _b_ ~c~'],
    ['inline code is the same', 'run `ls`', 'run `ls`'],
    ['inline monospace becomes a pre span', 'run ```ls -l``` now', 'run `ls -l` now'],
    ['monospace inside bold becomes a pre span', '*see ```x```*', '*see `x`*'],
    ['white space inside monospace moves outside the backticks', '```x ```!', '`x` !'],
    ['monospace holding a backtick stays plain', '```a`b```', 'a`b'],
    ['a fenced block keeps its fences', '```\nx = 1\ny = 2\n```', '```\nx = 1\ny = 2\n```'],
    ['monospace over lines gets fences of its own', '```a\nb```', '```\na\nb\n```'],
    ['text around block monospace moves to its own lines', 'see ```a\nb``` ok', 'see \n```\na\nb\n```\n ok'],
    ['a quote is the same', '> quoted *bold*\nafter', '> quoted *bold*\nafter'],
    ['monospace over lines inside a quote', '> ```a\n> b```', '> ```\n> a\n> b\n> ```'],
    ['lists pass through', '- a\n* b\n1. c', '- a\n* b\n1. c'],
    ['literal markers pass through', 'snake_case_name 2*3*4 *a *', 'snake_case_name 2*3*4 *a *'],
    ['emoji and CRLF pass through', '😀 *hi* 😀\r\nnext', '😀 *hi* 😀\r\nnext'],
    ['CRLF fences stay CRLF', '```\r\na\r\n```', '```\r\na\r\n```'],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    expect(markupToStyling(input)).toBe(expected);
  });
});

describe('stylingToMarkup', () => {
  const cases: [string, string, string][] = [
    ['the empty string stays empty', '', ''],
    ['plain text is unchanged', 'hello', 'hello'],
    ['spans are the same', '*strong* _emph_ ~strike~ `pre`', '*strong* _emph_ ~strike~ `pre`'],
    ['a block drops its language hint', '```ts\nconst x = 1;\n```', '```\nconst x = 1;\n```'],
    ['an unclosed block is closed at the end', '```\ncode', '```\ncode\n```'],
    ['block content is copied verbatim', '```\n> not a quote\n*x*\n```', '```\n> not a quote\n*x*\n```'],
    ['">text" gains the space the gatekeeper needs', '>quoted', '> quoted'],
    ['"> text" is unchanged', '> quoted\nafter', '> quoted\nafter'],
    ['nested quotes', '>> deep\n> shallow', '> > deep\n> shallow'],
    ['an empty quoted line stays inside the quote', '> a\n>\n> b', '> a\n> \n> b'],
    ['a block inside a quote ends with the quote', '> ```\n> x\nafter', '> ```\n> x\n> ```\nafter'],
    ['CRLF lines keep their CR', '```js\r\nx\r\n```\r\nok', '```\r\nx\r\n```\r\nok'],
    ['emoji pass through', '🎉 *yay* 🎉', '🎉 *yay* 🎉'],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    expect(stylingToMarkup(input)).toBe(expected);
  });
});

describe('markup -> styling -> markup', () => {
  const wellFormed = [
    'plain',
    '*bold* _italic_ ~strike~ `code`',
    '*nested _spans_ here*',
    '```\nblock\nof code\n```',
    '> a quote\n> of two lines\nand a reply',
    '- one\n- two\n\n1. first\n2. second',
    'snake_case_name, 2*3*4 and *a * stay literal',
    '😀 emoji 👩‍👩‍👧 and 𝐚𝐬𝐭𝐫𝐚𝐥 letters',
    'see https://example.org/a_b_c',
  ];
  it.each(wellFormed)('preserves %j', (text) => {
    expect(stylingToMarkup(markupToStyling(text))).toBe(text);
  });

  it('keeps the text of inline monospace (as inline code)', () => {
    expect(stylingToMarkup(markupToStyling('a ```b``` c'))).toBe('a `b` c');
  });
});

describe('styling properties', () => {
  const plain = fc.string({ unit: fc.constantFrom('a', 'Z', '9', ' ', '!', 'ß', '😀', '\n', '\t') });

  it('never throws, for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        expect(typeof markupToStyling(text)).toBe('string');
        expect(typeof stylingToMarkup(text)).toBe('string');
      }),
    );
  });

  it('leaves text without marker characters unchanged, both ways', () => {
    fc.assert(
      fc.property(plain, (text) => {
        expect(markupToStyling(text)).toBe(text);
        expect(stylingToMarkup(text)).toBe(text);
      }),
    );
  });

  it('keeps every non-marker character, in order, both ways (block hints aside)', () => {
    const markup = fc
      .array(fc.constantFrom('*', '_', '~', '`', '```', '>', '> ', '- ', '\n', ' ', 'a', '😀', 'é'), {
        maxLength: 50,
      })
      .map((parts) => parts.join(''));
    const content = (text: string): string => text.replace(/[*_~`> \n-]/g, '');
    fc.assert(
      fc.property(markup, (text) => {
        expect(content(markupToStyling(text))).toBe(content(text));
        // The text after an opening ``` is a hint XEP-0393 does not display: it is dropped.
        if (!text.includes('```')) expect(content(stylingToMarkup(text))).toBe(content(text));
      }),
      { numRuns: 500 },
    );
  });

  it('converts a 64 KiB message full of markup characters and emoji intact', () => {
    const unit = '*b* _i_ ~s~ `c` 😀 snake_case 2*3 ';
    const text = unit.repeat(Math.ceil(65536 / unit.length)).slice(0, 65536);
    expect(markupToStyling(text)).toBe(text);
    expect(stylingToMarkup(text)).toBe(text);
  });

  it('converts hostile input without stalling', () => {
    for (const text of [
      '>'.repeat(100000),
      '```\n'.repeat(30000),
      '> ```\n'.repeat(20000),
      '`'.repeat(100000),
    ]) {
      expect(typeof markupToStyling(text)).toBe('string');
      expect(typeof stylingToMarkup(text)).toBe('string');
    }
  });
});
