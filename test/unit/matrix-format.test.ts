import fc from 'fast-check';
import { markupToMatrix, matrixToMarkup } from '../../adapters/matrix/format.js';

const html = (formatted_body: string): { format: string; formatted_body: string; body: string } => ({
  format: 'org.matrix.custom.html',
  formatted_body,
  body: 'the plain body',
});

/**
 * Checks that `markup` is well-formed HTML as markupToMatrix writes it: only known tags, each one
 * closed in order, no raw "<", ">" or stray "&" in text. Returns the text with tags removed.
 */
function checkWellFormed(markup: string): string {
  const allowed = new Set(['strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'br']);
  const stack: string[] = [];
  let text = '';
  const re = /<(\/?)([a-z]+)((?: [a-z]+="[^"<>]*")*)>|([^<]+)|(<)/gy;
  for (let m = re.exec(markup); m !== null; m = re.exec(markup)) {
    if (m[5] !== undefined) throw new Error(`raw "<" at ${m.index}`);
    if (m[4] !== undefined) {
      if (m[4].includes('>')) throw new Error(`raw ">" at ${m.index}`);
      if (/&(?!(?:amp|lt|gt|quot|#39);)/.test(m[4])) throw new Error(`stray "&" at ${m.index}`);
      text += m[4];
      continue;
    }
    const [, close, name = ''] = m;
    if (!allowed.has(name)) throw new Error(`unexpected <${name}>`);
    if (name === 'br') continue;
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes nothing open`);
    } else stack.push(name);
  }
  if (stack.length > 0) throw new Error(`unclosed ${stack.join(',')}`);
  return text;
}

describe('markupToMatrix', () => {
  const cases: [string, string, string | undefined][] = [
    ['plain text needs no HTML', 'hello world', undefined],
    ['line breaks alone need no HTML', 'a\nb', undefined],
    ['a bare URL alone needs no HTML', 'see https://example.org', undefined],
    ['bold', '*a*', '<strong>a</strong>'],
    ['italic and strike', '_a_ ~b~', '<em>a</em> <del>b</del>'],
    ['inline code and monospace', '`a` ```b```', '<code>a</code> <code>b</code>'],
    ['block monospace', '```a\nb```', '<pre><code>a\nb</code></pre>'],
    ['block monospace then text', '```a\nb```\nc', '<pre><code>a\nb</code></pre>c'],
    [
      "the line feed after an opening fence is the fence's",
      '```\nx = 1\n```',
      '<pre><code>x = 1\n</code></pre>',
    ],
    ['line breaks inside formatted text', '*a*\nb', '<strong>a</strong><br>b'],
    ['a quote', '> *q*\nreply', '<blockquote><strong>q</strong></blockquote>reply'],
    ['a bullet list', '- a\n- *b*', '<ul><li>a</li><li><strong>b</strong></li></ul>'],
    ['a numbered list from 3', '3. a\n4. b', '<ol start="3"><li>a</li><li>b</li></ol>'],
    [
      'a URL in formatted text is a link',
      '*x* https://a.org/?q=1&r=2',
      '<strong>x</strong> <a href="https://a.org/?q=1&amp;r=2">https://a.org/?q=1&amp;r=2</a>',
    ],
    ['HTML in the text is escaped', '*<b>"&\'*', '<strong>&lt;b&gt;&quot;&amp;&#39;</strong>'],
    ['a blank line between blocks', '> a\n\n> b', '<blockquote>a</blockquote><br><blockquote>b</blockquote>'],
    ['CR is dropped from HTML', '*a*\r\nb', '<strong>a</strong><br>b'],
  ];
  it.each(cases)('%s', (_name, text, formatted) => {
    const content = markupToMatrix(text);
    expect(content.body).toBe(text);
    if (formatted === undefined) {
      expect(content).toEqual({ body: text });
    } else {
      expect(content.format).toBe('org.matrix.custom.html');
      expect(content.formatted_body).toBe(formatted);
    }
  });
});

describe('matrixToMarkup', () => {
  const cases: [string, string, string][] = [
    [
      'bold, italic, strike',
      '<b>a</b> <strong>b</strong> <i>c</i> <em>d</em> <s>e</s> <del>f</del> <strike>g</strike>',
      '*a* *b* _c_ _d_ ~e~ ~f~ ~g~',
    ],
    ['inline code', 'run <code>ls -l</code>', 'run `ls -l`'],
    [
      'a code block',
      '<pre><code class="language-ts">const x = 1;\nconst y = 2;\n</code></pre>',
      '```\nconst x = 1;\nconst y = 2;\n```',
    ],
    [
      'a link with other text shows its URL',
      '<a href="https://example.org">the site</a>',
      'the site (https://example.org)',
    ],
    [
      'a link showing its URL shows it once',
      '<a href="https://example.org">https://example.org</a>',
      'https://example.org',
    ],
    [
      'a user pill shows the name',
      '<a href="https://matrix.to/#/@alice:example.org">Alice</a>: hi',
      'Alice: hi',
    ],
    ['<br> breaks lines', 'a<br>b<br/>c<br />d', 'a\nb\nc\nd'],
    ['paragraphs are separated by a blank line', '<p>a</p>\n<p>b</p>', 'a\n\nb'],
    ['divs are lines', '<div>a</div><div>b</div>', 'a\nb'],
    ['a quote', '<blockquote>\n<p>quoted</p>\n</blockquote>\n<p>reply</p>', '> quoted\nreply'],
    ['a nested quote', '<blockquote><blockquote>a</blockquote>b</blockquote>', '> > a\n> b'],
    ['a bullet list', '<ul>\n<li>one</li>\n<li><em>two</em></li>\n</ul>', '- one\n- _two_'],
    ['a numbered list with a start', '<ol start="5"><li>five</li><li>six</li></ol>', '5. five\n6. six'],
    [
      'a nested list follows its parent item',
      '<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>',
      '- a\n- b\n- c',
    ],
    [
      'the reply fallback is stripped',
      '<mx-reply><blockquote><a href="x">In reply to</a> <a href="https://matrix.to/#/@bob:x">@bob:x</a><br>original</blockquote></mx-reply>the answer',
      'the answer',
    ],
    [
      'unknown tags keep their text',
      '<span data-mx-color="#f00">red</span> <u>under</u> <font>f</font>',
      'red under f',
    ],
    [
      'entities are decoded',
      '&lt;tag&gt; &amp; &quot;q&quot; &#39;s&#39; &#x1F600; &#128512; &nbsp;&hellip; &bogus;',
      '<tag> & "q" \'s\' 😀 😀 \u00a0… &bogus;',
    ],
    ['headings are bold lines', '<h1>Title</h1><p>text</p>', '*Title*\n\ntext'],
    ['script and style content is dropped', '<script>alert(1)</script><style>p{}</style>ok', 'ok'],
    ['comments are dropped', 'a<!-- hidden -->b', 'ab'],
    ['an image shows its alt text', '<img src="mxc://x/y" alt=":cat:"> meow', ':cat: meow'],
    ['layout line feeds are spaces', 'a\nb', 'a b'],
    ['white space inside a span moves outside its markers', 'a<b> b </b>c', 'a *b* c'],
    [
      'attributes with quotes and ">" inside',
      '<a title=\'x > "y"\' href="https://e.org/?a=1&amp;b=2">e</a>',
      'e (https://e.org/?a=1&b=2)',
    ],
    ['an unclosed tag at the end is text', 'a <b', 'a <b'],
    ['unclosed elements end with the message', '<b>bold <i>both', '*bold _both_*'],
    ['a stray "<" is text', '1 < 2 and 3 <> 4', '1 < 2 and 3 <> 4'],
    ['stray closing tags are ignored', '</b>a</i>', 'a'],
  ];
  it.each(cases)('%s', (_name, formatted, expected) => {
    expect(matrixToMarkup(html(formatted))).toBe(expected);
  });

  it('uses the body when the format is not HTML', () => {
    expect(matrixToMarkup({ body: '*a* <b>', format: 'something/else', formatted_body: '<i>x</i>' })).toBe(
      '*a* <b>',
    );
    expect(matrixToMarkup({ body: 'plain' })).toBe('plain');
    expect(matrixToMarkup({ body: 'b', format: 'org.matrix.custom.html', formatted_body: 42 })).toBe('b');
  });

  it('strips the reply fallback from a plain body', () => {
    expect(matrixToMarkup({ body: '> <@bob:x> original\n> more\n\nthe answer' })).toBe('the answer');
    expect(matrixToMarkup({ body: '> a real quote\nreply' })).toBe('> a real quote\nreply');
  });

  it('returns the empty string for content without a text', () => {
    expect(matrixToMarkup({})).toBe('');
    expect(matrixToMarkup({ body: 7, format: null })).toBe('');
  });
});

describe('markup -> Matrix HTML -> markup', () => {
  const wellFormed = [
    '*bold* _italic_ ~strike~ `code`',
    '*nested _spans_ ~here~*',
    'line one\nline *two*\n\nafter a blank line',
    '```\nconst x = 1;\n```\nafter the block',
    'before\n```\na\nb```',
    '> a *quote*\n> of two lines\nreply',
    '> a\n\n> b',
    '- one\n- _two_\n\n1. first\n2. second',
    '3. from three\n4. on',
    'a list follows\n- x\n- y\nand text after',
    '*<script>alert("x")</script>* & &amp; < >',
    '*formatted* and https://example.org/a_b?x=1&y=2',
    '😀 *emoji* 👩‍👩‍👧 and _𝐚𝐬𝐭𝐫𝐚𝐥_',
    '  *indented*  with  double  spaces  ',
    '*trailing*\n',
    '*a*\n\n\n',
  ];
  it.each(wellFormed)('preserves %j', (text) => {
    const content = markupToMatrix(text);
    expect(content.formatted_body).toBeDefined();
    expect(matrixToMarkup(content)).toBe(text);
  });

  it('gives block monospace its canonical form: content from the line after the fence', () => {
    expect(matrixToMarkup(markupToMatrix('```a\nb```'))).toBe('```\na\nb```');
  });
});

describe('Matrix format properties', () => {
  const markupText = fc
    .array(
      fc.constantFrom(
        '*',
        '_',
        '~',
        '`',
        '```',
        '> ',
        '- ',
        '1. ',
        '\n',
        ' ',
        'a',
        '<',
        '&',
        '"',
        '😀',
        'https://x.org/',
      ),
      {
        maxLength: 60,
      },
    )
    .map((parts) => parts.join(''));

  it('never throws, for any string, both ways', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        expect(markupToMatrix(text).body).toBe(text);
        expect(typeof matrixToMarkup(html(text))).toBe('string');
      }),
    );
  });

  it('writes well-formed HTML with every "<" of the text escaped', () => {
    fc.assert(
      fc.property(fc.oneof(markupText, fc.string({ unit: 'binary', maxLength: 200 })), (text) => {
        const { formatted_body } = markupToMatrix(text);
        if (formatted_body === undefined) return;
        checkWellFormed(formatted_body);
        const lts = text.split('<').length - 1;
        expect(formatted_body.split('&lt;').length - 1).toBe(lts);
      }),
      { numRuns: 500 },
    );
  });

  it('leaves text without marker characters unchanged, with no HTML', () => {
    const plain = fc.string({ unit: fc.constantFrom('a', 'Z', '9', ' ', '!', ',', 'ü', '😀', '\n') });
    fc.assert(
      fc.property(plain, (text) => {
        expect(markupToMatrix(text)).toEqual({ body: text });
        expect(matrixToMarkup({ body: text })).toBe(text);
      }),
    );
  });

  it('reads HTML made of tag soup without throwing', () => {
    const soup = fc
      .array(
        fc.constantFrom(
          '<',
          '>',
          '</',
          '/>',
          '<b>',
          '</b>',
          '<a href="',
          '"',
          "'",
          '&',
          '&amp;',
          '<!--',
          '-->',
          '<pre>',
          '<li>',
          'x',
          ' ',
          '\n',
        ),
        {
          maxLength: 80,
        },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(soup, (text) => {
        expect(typeof matrixToMarkup(html(text))).toBe('string');
      }),
      { numRuns: 500 },
    );
  });

  it('converts a 64 KiB message full of markup characters and emoji intact', () => {
    const unit = '*b* _i_ ~s~ `c` 😀 <tag> & snake_case 2*3\n';
    const text = unit.repeat(Math.ceil(65536 / unit.length)).slice(0, 65536);
    const content = markupToMatrix(text);
    checkWellFormed(content.formatted_body ?? '');
    expect(matrixToMarkup(content)).toBe(text);
  });

  it.each([
    ['1 MiB of "<"', '<'.repeat(1 << 20)],
    ['1 MiB of "<a "', '<a '.repeat(350000)],
    ['deeply nested tags', '<b><i>'.repeat(100000) + 'x'],
    ['deeply nested quotes', '<blockquote>'.repeat(100000) + 'x'],
    ['an unclosed attribute quote', '<a href="' + 'x'.repeat(1 << 20)],
    ['many unclosed comments', '<!-'.repeat(300000)],
    ['many attributes', '<b ' + 'a="1" '.repeat(150000) + '>x</b>'],
    ['a long run of line feeds', '\n'.repeat(1 << 20) + 'x'],
  ])('reads hostile HTML (%s) without throwing', (_name, input) => {
    expect(typeof matrixToMarkup(html(input))).toBe('string');
  });

  it('reads deeply nested tags with their text', () => {
    expect(matrixToMarkup(html('<span>'.repeat(10000) + 'deep' + '</span>'.repeat(10000)))).toBe('deep');
  });
});

describe('matrixToMarkup on deeply nested quotes', () => {
  it('quotes at most MAX_QUOTE_DEPTH levels deep, so 64 nested quotes cannot blow a body up to megabytes', () => {
    const html = `${'<blockquote>'.repeat(64)}${'<p>x</p>'.repeat(7000)}${'</blockquote>'.repeat(64)}`;
    const text = matrixToMarkup({ body: 'x', format: 'org.matrix.custom.html', formatted_body: html });
    const deepest = Math.max(
      ...text.split('\n').map((l) => /^(?:> ?)*/.exec(l)![0].replace(/ /g, '').length),
    );
    expect(deepest).toBe(16);
    expect(text.length).toBeLessThan(html.length * 10);
    expect(text.split('\n').filter((l) => l.endsWith('x'))).toHaveLength(7000);
  });
});
