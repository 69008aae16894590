/**
 * The gatekeeper's (WhatsApp's) lightweight text markup, parsed into a tiny tree and rendered back.
 *
 *   parseMarkup(text: string): MarkupNode[]            text -> blocks
 *   renderMarkup(nodes: readonly MarkupNode[]): string  blocks -> text
 *   renderInline(nodes, mono?): string                  spans -> text (a hook for inline monospace)
 *
 * The tree has two levels. Blocks (`MarkupNode`) are separated by one line feed each:
 *   paragraph  lines of spans; a line break inside it is a `break` span
 *   quote      consecutive lines starting with "> "; its content is parsed again as blocks
 *              (so quotes nest, up to MAX_QUOTE_DEPTH)
 *   list       consecutive lines starting with "- ", "* " (bullets) or "12. " (numbered); one
 *              line per item, the exact marker is kept ("-", "*", "12.")
 * Spans (`MarkupInline`): text, break, bold (*x*), italic (_x_), strike (~x~), code (`x`), mono
 * (```x```, may span lines when it stands in a paragraph), link (a bare http(s) URL).
 *
 * The rules, as the gatekeeper's clients apply them:
 *   - an opening marker is at the start of a line or after a character that is not a letter or a
 *     digit, and is followed by a non-space character; a closing marker is preceded by a non-space
 *     character and followed by the end of the line or a character that is not a letter or digit
 *     (so snake_case_name and 2*3*4 stay literal);
 *   - a span closes at the first valid closing marker of its kind on the same line, and is never
 *     empty; a marker that finds no partner is plain text;
 *   - code and mono content is literal (no spans inside); they are found first, so a * inside
 *     `code` never closes a bold; a URL is atomic too (its _ and * are literal);
 *   - ``` needs non-blank content and no letter or digit right before it or right after its end.
 * Line feeds separate lines; a CR is kept as an ordinary (white-space) character, so CRLF text
 * survives unchanged.
 *
 * Invariant (tested): renderMarkup(parseMarkup(s)) === s for every string s. Trees built by hand
 * (e.g. from Matrix HTML) are rendered best-effort: white space inside a span moves outside its
 * markers, a span never crosses a line, and empty spans vanish.
 *
 * Every step is linear or n·log n in the input, so hostile text cannot stall the bridge.
 */

export type MarkupSpanType = 'bold' | 'italic' | 'strike';

export type MarkupInline =
  | { readonly type: 'text'; readonly text: string }
  | { readonly type: 'break' }
  | { readonly type: MarkupSpanType; readonly children: readonly MarkupInline[] }
  | { readonly type: 'code'; readonly text: string }
  | { readonly type: 'mono'; readonly text: string }
  | { readonly type: 'link'; readonly url: string };

export interface MarkupListItem {
  /** "-", "*" or a number with its dot ("3."). */
  readonly marker: string;
  readonly children: readonly MarkupInline[];
}

export type MarkupNode =
  | { readonly type: 'paragraph'; readonly children: readonly MarkupInline[] }
  | { readonly type: 'quote'; readonly children: readonly MarkupNode[] }
  | { readonly type: 'list'; readonly ordered: boolean; readonly items: readonly MarkupListItem[] };

/** The marker of each span kind (the same in the gatekeeper's markup and in XEP-0393). */
export const SPAN_MARKERS: Readonly<Record<MarkupSpanType, string>> = { bold: '*', italic: '_', strike: '~' };

/** Deeper quotes are plain text (bounds the recursion on hostile input). */
export const MAX_QUOTE_DEPTH = 16;

const SPAN_OF: Readonly<Record<string, MarkupSpanType>> = { '*': 'bold', _: 'italic', '~': 'strike' };
const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/u;
const ORDERED = /\d{1,9}\. /y;
const URL = /https?:\/\/[^\s<>"`]+/y;

/** The code point ending just before index i ('' at the start). */
function before(s: string, i: number): string {
  if (i <= 0) return '';
  const c = s.charCodeAt(i - 1);
  if (c >= 0xdc00 && c <= 0xdfff && i >= 2) {
    const h = s.charCodeAt(i - 2);
    if (h >= 0xd800 && h <= 0xdbff) return s.slice(i - 2, i);
  }
  return s.charAt(i - 1);
}

/** The code point starting at index i ('' at the end). */
function at(s: string, i: number): string {
  const cp = s.codePointAt(i);
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

const isWord = (ch: string): boolean => ch !== '' && WORD.test(ch);
const isSpace = (ch: string): boolean => ch !== '' && SPACE.test(ch);

/** First element of a sorted array that is >= min, or undefined. */
function firstAtLeast(sorted: readonly number[], min: number): number | undefined {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? 0) < min) lo = mid + 1;
    else hi = mid;
  }
  return sorted[lo];
}

function lineEndFrom(s: string, pos: number): number {
  const i = s.indexOf('\n', pos);
  return i === -1 ? s.length : i;
}

function isQuoteLine(s: string, pos: number): boolean {
  return s.startsWith('> ', pos);
}

/** The list marker a line starts with ("-", "*", "12."), or undefined. */
function listMarker(s: string, pos: number): string | undefined {
  const c = s[pos];
  if ((c === '-' || c === '*') && s[pos + 1] === ' ') return c;
  if (c !== undefined && c >= '0' && c <= '9') {
    ORDERED.lastIndex = pos;
    const m = ORDERED.exec(s);
    if (m) return m[0].slice(0, -1);
  }
  return undefined;
}

/** The length of a bare URL starting at pos (0 if none), without trailing punctuation. */
function urlLength(s: string, pos: number, end: number): number {
  if (isWord(before(s, pos))) return 0;
  URL.lastIndex = pos;
  const m = URL.exec(s);
  if (!m) return 0;
  let len = Math.min(m[0].length, end - pos);
  let open = 0;
  let close = 0;
  for (let k = pos; k < pos + len; k++) {
    if (s[k] === '(') open++;
    else if (s[k] === ')') close++;
  }
  const scheme = s.startsWith('https', pos) ? 8 : 7;
  while (len > scheme) {
    const last = s.charAt(pos + len - 1);
    // A closing span marker right after a URL is the span's, when the span opened just before it.
    if (".,;:!?'".includes(last) || ('*_~'.includes(last) && s[pos - 1] === last)) len--;
    else if (last === ')' && close > open) {
      len--;
      close--;
    } else break;
  }
  return len > scheme ? len : 0;
}

interface Token {
  readonly from: number;
  readonly to: number;
  readonly node: MarkupInline;
}

/** Parses one container (the whole text, or a quote's content). */
class Parser {
  /** Positions of a ``` that may close monospace (not followed by a letter or digit). */
  private readonly monoClosers: number[] = [];

  constructor(private readonly s: string) {
    for (let i = s.indexOf('```'); i !== -1; i = s.indexOf('```', i + 1)) {
      if (!isWord(at(s, i + 3))) this.monoClosers.push(i);
    }
  }

  /**
   * The spans of the line starting at `start`. With `multiline`, a ``` opened on this line may
   * close on a later one; the line then ends on the line of the closer. Returns the end (the
   * index of the line feed that ends the line, or the text's length).
   */
  line(start: number, multiline: boolean): { nodes: MarkupInline[]; end: number } {
    const s = this.s;
    let end = lineEndFrom(s, start);
    const tokens: Token[] = [];
    let p = start;
    while (p < end) {
      const ch = s[p];
      if (ch === '`') {
        const tok = this.backtickToken(p, end, multiline);
        if (tok) {
          tokens.push(tok);
          if (tok.to > end) end = lineEndFrom(s, tok.to);
          p = tok.to;
          continue;
        }
      } else if (ch === 'h' && (s.startsWith('http://', p) || s.startsWith('https://', p))) {
        const n = urlLength(s, p, end);
        if (n > 0) {
          tokens.push({ from: p, to: p + n, node: { type: 'link', url: s.slice(p, p + n) } });
          p += n;
          continue;
        }
      }
      p++;
    }
    // Spans never cross a line: split at monospace tokens that hold a line feed.
    const nodes: MarkupInline[] = [];
    let segStart = start;
    let segTokens: Token[] = [];
    for (const tok of tokens) {
      if (tok.node.type === 'mono' && tok.node.text.includes('\n')) {
        this.spans(segStart, tok.from, segTokens, nodes);
        nodes.push(tok.node);
        segStart = tok.to;
        segTokens = [];
      } else segTokens.push(tok);
    }
    this.spans(segStart, end, segTokens, nodes);
    return { nodes, end };
  }

  private backtickToken(p: number, end: number, multiline: boolean): Token | undefined {
    const s = this.s;
    const prev = before(s, p);
    if (prev === '`' || isWord(prev)) return undefined;
    if (s.startsWith('```', p)) {
      const q = firstAtLeast(this.monoClosers, p + 4);
      if (q !== undefined && (multiline || q + 3 <= end)) {
        const text = s.slice(p + 3, q);
        if (/\S/u.test(text)) return { from: p, to: q + 3, node: { type: 'mono', text } };
      }
    }
    const next = s[p + 1];
    if (next === undefined || next === '`' || isSpace(at(s, p + 1))) return undefined;
    const q = s.indexOf('`', p + 1);
    const after = at(s, q + 1);
    if (q === -1 || q >= end || isSpace(before(s, q)) || after === '`' || isWord(after)) return undefined;
    return { from: p, to: q + 1, node: { type: 'code', text: s.slice(p + 1, q) } };
  }

  /** Bold, italic and strike spans in [a, b) around the atomic tokens, appended to `out`. */
  private spans(a: number, b: number, tokens: readonly Token[], out: MarkupInline[]): void {
    const s = this.s;
    const tokenAt = new Map<number, Token>();
    for (const t of tokens) tokenAt.set(t.from, t);
    // A closer's validity depends only on its neighbours, so collect them once.
    const closers: Record<string, number[]> = { '*': [], _: [], '~': [] };
    for (let q = a; q < b;) {
      const t = tokenAt.get(q);
      if (t) {
        q = t.to;
        continue;
      }
      const list = closers[s.charAt(q)];
      if (list && q > a && !isSpace(before(s, q)) && !isWord(at(s, q + 1))) list.push(q);
      q++;
    }
    this.spanRange(a, b, tokenAt, closers, out);
  }

  private spanRange(
    a: number,
    b: number,
    tokenAt: ReadonlyMap<number, Token>,
    closers: Readonly<Record<string, number[]>>,
    out: MarkupInline[],
  ): void {
    const s = this.s;
    let textStart = a;
    const flush = (to: number): void => {
      if (to > textStart) out.push({ type: 'text', text: s.slice(textStart, to) });
    };
    let p = a;
    while (p < b) {
      const t = tokenAt.get(p);
      if (t) {
        flush(p);
        out.push(t.node);
        p = t.to;
        textStart = p;
        continue;
      }
      const ch = s.charAt(p);
      const type = SPAN_OF[ch];
      if (type && p + 1 < b && !isWord(before(s, p)) && !isSpace(at(s, p + 1))) {
        const q = firstAtLeast(closers[ch] ?? [], p + 2);
        if (q !== undefined && q < b) {
          flush(p);
          const children: MarkupInline[] = [];
          this.spanRange(p + 1, q, tokenAt, closers, children);
          out.push({ type, children });
          p = q + 1;
          textStart = p;
          continue;
        }
      }
      p++;
    }
    flush(b);
  }

  blocks(depth: number): MarkupNode[] {
    const s = this.s;
    const blocks: MarkupNode[] = [];
    if (s === '') return blocks;
    const quoteHere = (pos: number): boolean => depth < MAX_QUOTE_DEPTH && isQuoteLine(s, pos);
    let pos = 0;
    for (;;) {
      let end: number;
      if (quoteHere(pos)) {
        end = lineEndFrom(s, pos);
        const inner = [s.slice(pos + 2, end)];
        while (end < s.length && quoteHere(end + 1)) {
          const next = lineEndFrom(s, end + 1);
          inner.push(s.slice(end + 3, next));
          end = next;
        }
        blocks.push({ type: 'quote', children: new Parser(inner.join('\n')).blocks(depth + 1) });
      } else if (listMarker(s, pos) !== undefined) {
        const ordered = listMarker(s, pos) !== '-' && listMarker(s, pos) !== '*';
        const items: MarkupListItem[] = [];
        let cur = pos;
        for (;;) {
          const marker = listMarker(s, cur) ?? '';
          const { nodes, end: e } = this.line(cur + marker.length + 1, false);
          items.push({ marker, children: nodes });
          end = e;
          if (end >= s.length) break;
          const next = listMarker(s, end + 1);
          if (next === undefined || (next !== '-' && next !== '*') !== ordered) break;
          cur = end + 1;
        }
        blocks.push({ type: 'list', ordered, items });
      } else {
        const children: MarkupInline[] = [];
        let cur = pos;
        for (;;) {
          const { nodes, end: e } = this.line(cur, true);
          for (const n of nodes) children.push(n);
          end = e;
          if (end >= s.length || quoteHere(end + 1) || listMarker(s, end + 1) !== undefined) break;
          children.push({ type: 'break' });
          cur = end + 1;
        }
        blocks.push({ type: 'paragraph', children });
      }
      if (end >= s.length) return blocks;
      pos = end + 1;
    }
  }
}

/** The blocks of a text in the gatekeeper's markup ([] for the empty string). */
export function parseMarkup(text: string): MarkupNode[] {
  return new Parser(text).blocks(0);
}

/** A text in the gatekeeper's markup; the inverse of parseMarkup. */
export function renderMarkup(nodes: readonly MarkupNode[]): string {
  return nodes.map(renderBlock).join('\n');
}

function renderBlock(node: MarkupNode): string {
  switch (node.type) {
    case 'paragraph':
      return renderInline(node.children);
    case 'quote':
      return prefixLines(renderMarkup(node.children), '> ');
    case 'list':
      return node.items.map((item) => `${item.marker} ${renderInline(item.children)}`).join('\n');
  }
}

/** Puts `prefix` before every line of `text`. */
export function prefixLines(text: string, prefix: string): string {
  return prefix + text.split('\n').join('\n' + prefix);
}

/**
 * The text of spans. `mono` renders monospace content (default: ```…```); the XMPP adapter uses it
 * to write inline monospace its own way.
 */
export function renderInline(
  nodes: readonly MarkupInline[],
  mono: (text: string) => string = renderMono,
): string {
  let out = '';
  for (const node of nodes) {
    switch (node.type) {
      case 'text':
        out += node.text;
        break;
      case 'break':
        out += '\n';
        break;
      case 'link':
        out += node.url;
        break;
      case 'code':
        out += renderCode(node.text);
        break;
      case 'mono':
        out += mono(node.text);
        break;
      default:
        out += wrapSpan(SPAN_MARKERS[node.type], renderInline(node.children, mono));
    }
  }
  return out;
}

function renderMono(text: string): string {
  return /\S/u.test(text) ? '```' + text + '```' : text;
}

function renderCode(text: string): string {
  const trimmed = splitSpace(text);
  if (trimmed.lead === '' && trimmed.trail === '' && trimmed.core !== '' && !/[`\n]/.test(text)) {
    return '`' + text + '`';
  }
  // Content `x` cannot hold: monospace can.
  return trimmed.core !== '' && !text.includes('```') ? '```' + text + '```' : text;
}

/** Leading white space, the rest, trailing white space. */
export function splitSpace(text: string): { lead: string; core: string; trail: string } {
  let i = 0;
  while (i < text.length && SPACE.test(text.charAt(i))) i++;
  let j = text.length;
  while (j > i && SPACE.test(text.charAt(j - 1))) j--;
  return { lead: text.slice(0, i), core: text.slice(i, j), trail: text.slice(j) };
}

/** `marker` around each line's non-blank part (a span hugs its text and never crosses a line). */
function wrapSpan(marker: string, inner: string): string {
  return inner
    .split('\n')
    .map((line) => {
      const { lead, core, trail } = splitSpace(line);
      return core === '' ? line : lead + marker + core + marker + trail;
    })
    .join('\n');
}
