import fc from 'fast-check';
import {
  parseMarkup,
  renderInline,
  renderMarkup,
  type MarkupInline,
  type MarkupNode,
} from '../../src/bridge/markup.js';

// Small builders: the trees the tests expect.
const t = (text: string): MarkupInline => ({ type: 'text', text });
const br: MarkupInline = { type: 'break' };
const b = (...children: MarkupInline[]): MarkupInline => ({ type: 'bold', children });
const i = (...children: MarkupInline[]): MarkupInline => ({ type: 'italic', children });
const s = (...children: MarkupInline[]): MarkupInline => ({ type: 'strike', children });
const code = (text: string): MarkupInline => ({ type: 'code', text });
const mono = (text: string): MarkupInline => ({ type: 'mono', text });
const link = (url: string): MarkupInline => ({ type: 'link', url });
const p = (...children: MarkupInline[]): MarkupNode => ({ type: 'paragraph', children });
const quote = (...children: MarkupNode[]): MarkupNode => ({ type: 'quote', children });
const ul = (...items: [string, MarkupInline[]][]): MarkupNode => ({
  type: 'list',
  ordered: false,
  items: items.map(([marker, children]) => ({ marker, children })),
});
const ol = (...items: [string, MarkupInline[]][]): MarkupNode => ({
  type: 'list',
  ordered: true,
  items: items.map(([marker, children]) => ({ marker, children })),
});

describe('parseMarkup', () => {
  const cases: [string, string, MarkupNode[]][] = [
    ['the empty string has no blocks', '', []],
    ['plain text is one paragraph', 'hello world', [p(t('hello world'))]],
    ['*x* is bold', 'a *bold* word', [p(t('a '), b(t('bold')), t(' word'))]],
    ['_x_ is italic', '_it_', [p(i(t('it')))]],
    ['~x~ is strike-through', '~gone~', [p(s(t('gone')))]],
    ['`x` is inline code', 'run `ls -l` now', [p(t('run '), code('ls -l'), t(' now'))]],
    ['```x``` is monospace', '```mono```', [p(mono('mono'))]],
    ['monospace may span lines', '```a\nb```', [p(mono('a\nb'))]],
    ['a code block with fences on their own lines', '```\nx = 1\n```', [p(mono('\nx = 1\n'))]],
    ['spans nest', '*bold _and italic_*', [p(b(t('bold '), i(t('and italic'))))]],
    ['code inside bold', '*see `x`*', [p(b(t('see '), code('x')))]],
    ['markers inside code are literal', '`*a* _b_`', [p(code('*a* _b_'))]],
    ['markers inside monospace are literal', '```*a* `b```', [p(mono('*a* `b'))]],
    ['a backtick right after a backtick does not open', 'x ``a`', [p(t('x ``a`'))]],
    ['a * inside code does not close bold', '*a `b*` c*', [p(b(t('a '), code('b*'), t(' c')))]],
    ['snake_case_name stays literal', 'snake_case_name', [p(t('snake_case_name'))]],
    ['2*3*4 stays literal', '2*3*4', [p(t('2*3*4'))]],
    ['a marker followed by a space does not open', '* not bold*', [ul(['*', [t('not bold*')]])]],
    ['an opener before a space stays literal', 'a * b * c', [p(t('a * b * c'))]],
    ['a closer after a space does not close', '*a *', [p(t('*a *'))]],
    ['a closer before a letter does not close', '*a*b', [p(t('*a*b'))]],
    ['the first valid closer closes', '*a*b* c', [p(b(t('a*b')), t(' c'))]],
    ['punctuation around markers is fine', '(*yes*)!', [p(t('('), b(t('yes')), t(')!'))]],
    ['an unmatched marker is literal', '*never closed', [p(t('*never closed'))]],
    ['only markers are literal', '** __ ~~ ``', [p(t('** __ ~~ ``'))]],
    ['spans do not cross lines', '*a\nb*', [p(t('*a'), br, t('b*'))]],
    ['an empty span is literal', '**', [p(t('**'))]],
    ['emoji around markers', '😀*hi*😀', [p(t('😀'), b(t('hi')), t('😀'))]],
    ['astral letters are letters', '𝐚*b*', [p(t('𝐚*b*'))]],
    ['CRLF keeps its CR', '*a*\r\nb', [p(b(t('a')), t('\r'), br, t('b'))]],
    ['a quote', '> quoted *text*', [quote(p(t('quoted '), b(t('text'))))]],
    ['a two-line quote', '> a\n> b\nafter', [quote(p(t('a'), br, t('b'))), p(t('after'))]],
    ['quotes nest', '> > deep', [quote(quote(p(t('deep'))))]],
    ['">" without a space is text', '>no', [p(t('>no'))]],
    ['a bullet list', '- one\n* two', [ul(['-', [t('one')]], ['*', [t('two')]])]],
    [
      'a numbered list',
      'intro\n1. one\n2. _two_',
      [p(t('intro')), ol(['1.', [t('one')]], ['2.', [i(t('two'))]])],
    ],
    ['a list then a paragraph', '- a\nb', [ul(['-', [t('a')]]), p(t('b'))]],
    ['a trailing line feed is an empty line', 'a\n', [p(t('a'), br)]],
    ['blank lines stay', 'a\n\nb', [p(t('a'), br, br, t('b'))]],
    [
      'a bare URL is a link',
      'see https://example.org/a_b_c.',
      [p(t('see '), link('https://example.org/a_b_c'), t('.'))],
    ],
    ['markers in a URL are literal', 'https://x.org/_a_', [p(link('https://x.org/_a_'))]],
    ['a URL inside italic', '_https://x.org_', [p(i(link('https://x.org')))]],
    ['a URL in parentheses', '(https://x.org/a)', [p(t('('), link('https://x.org/a'), t(')'))]],
    ['monospace blocks take precedence over lists', '```a\n- b```', [p(mono('a\n- b'))]],
    ['monospace needs non-blank content', '``` ```', [p(t('``` ```'))]],
    ['monospace after a letter is literal', 'a```b```', [p(t('a```b```'))]],
  ];

  it.each(cases)('%s', (_name, input, expected) => {
    expect(parseMarkup(input)).toEqual(expected);
  });

  it.each(cases)('renders back exactly: %s', (_name, input) => {
    expect(renderMarkup(parseMarkup(input))).toBe(input);
  });
});

describe('renderMarkup on trees built by hand', () => {
  const cases: [string, MarkupNode[], string][] = [
    ['white space moves outside span markers', [p(t('a'), b(t(' b ')), t('c'))], 'a *b* c'],
    ['an empty span vanishes', [p(t('a'), b(), i(t(' ')))], 'a '],
    ['a span with a line break is wrapped per line', [p(b(t('a'), br, t('b')))], '*a*\n*b*'],
    ['code with a backtick becomes monospace', [p(code('a`b'))], '```a`b```'],
    ['code with blank content is plain', [p(code(' '))], ' '],
    ['a quote prefixes every line', [quote(p(t('a'), br, t('b')))], '> a\n> b'],
    ['a numbered list keeps its markers', [ol(['3.', [t('x')]], ['4.', [t('y')]])], '3. x\n4. y'],
  ];
  it.each(cases)('%s', (_name, nodes, expected) => {
    expect(renderMarkup(nodes)).toBe(expected);
  });

  it('renders monospace through the hook when given one', () => {
    expect(renderInline([b(mono('x'))], (text) => `[${text}]`)).toBe('*[x]*');
  });
});

describe('markup properties', () => {
  const markupChars = fc.constantFrom(
    '*',
    '_',
    '~',
    '`',
    '```',
    '> ',
    '- ',
    '1. ',
    '\n',
    '\r\n',
    ' ',
    'a',
    'é',
    '😀',
    'https://x.org/',
  );
  const markupText = fc.array(markupChars, { maxLength: 60 }).map((parts) => parts.join(''));

  it('never throws and renders back exactly, for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        expect(renderMarkup(parseMarkup(text))).toBe(text);
      }),
    );
  });

  it('renders back exactly, for text dense with markup', () => {
    fc.assert(
      fc.property(markupText, (text) => {
        expect(renderMarkup(parseMarkup(text))).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it('parses text without marker characters (nor "1. " list markers) as one plain paragraph', () => {
    const plain = fc.string({ unit: fc.constantFrom('a', 'B', '1', ' ', '!', ',', 'ü', '😀', '\t') });
    fc.assert(
      fc.property(plain, (text) => {
        const nodes = parseMarkup(text);
        expect(nodes).toEqual(text === '' ? [] : [p(t(text))]);
      }),
    );
  });

  it('parses a 64 KiB message full of markup characters and emoji intact', () => {
    const unit = '*b* _i_ ~s~ `c` ```m``` 😀 > - 1. snake_case 2*3 ';
    const text = unit.repeat(Math.ceil(65536 / unit.length)).slice(0, 65536);
    expect(renderMarkup(parseMarkup(text))).toBe(text);
  });

  it('parses hostile runs of markers (unmatched openers, backticks) intact', () => {
    for (const text of [
      '*a '.repeat(30000),
      '`'.repeat(100000),
      '```x'.repeat(20000),
      '> '.repeat(50000),
      '_'.repeat(100000),
      '> a\n'.repeat(20000),
      'https://x.org/' + ')'.repeat(200000),
      'http://'.repeat(100000),
    ]) {
      expect(renderMarkup(parseMarkup(text))).toBe(text);
    }
  });
});
