/**
 * A small, tolerant HTML reader for Matrix's `formatted_body` (no dependency), written for hostile
 * input: it never throws, reads each input character a bounded number of times (an unterminated
 * tag at the end is plain text; nesting deeper than MAX_HTML_DEPTH is flattened), drops the content
 * of script-like elements, and decodes character references.
 */

/** Elements nested deeper than this are flattened into their ancestor (bounds every recursion). */
export const MAX_HTML_DEPTH = 64;

export interface HtmlElement {
  readonly kind: 'element';
  readonly name: string;
  readonly attrs: ReadonlyMap<string, string>;
  readonly children: HtmlNode[];
}
export interface HtmlText {
  readonly kind: 'text';
  readonly text: string;
}
export type HtmlNode = HtmlElement | HtmlText;

const VOID = new Set([
  'area',
  'base',
  'br',
  'col',
  'embed',
  'hr',
  'img',
  'input',
  'link',
  'meta',
  'param',
  'source',
  'track',
  'wbr',
]);
/** Elements whose content is not HTML and is dropped. */
const RAW = new Set(['script', 'style', 'textarea', 'title']);

const NAMED: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  ensp: '\u2002',
  emsp: '\u2003',
  thinsp: '\u2009',
  zwnj: '\u200c',
  zwj: '\u200d',
  shy: '\u00ad',
  ndash: '\u2013',
  mdash: '\u2014',
  hellip: '\u2026',
  lsquo: '\u2018',
  rsquo: '\u2019',
  ldquo: '\u201c',
  rdquo: '\u201d',
  laquo: '\u00ab',
  raquo: '\u00bb',
  bull: '\u2022',
  middot: '\u00b7',
  copy: '\u00a9',
  reg: '\u00ae',
  trade: '\u2122',
  deg: '\u00b0',
  times: '\u00d7',
  divide: '\u00f7',
  euro: '\u20ac',
  pound: '\u00a3',
  yen: '\u00a5',
  cent: '\u00a2',
  sect: '\u00a7',
  para: '\u00b6',
};

/** Character references decoded; unknown names stay as written. */
export function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(
    /&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[a-zA-Z][a-zA-Z0-9]{0,31});/g,
    (whole, ref: string) => {
      if (ref.startsWith('#')) {
        const cp =
          ref[1] === 'x' || ref[1] === 'X'
            ? Number.parseInt(ref.slice(2), 16)
            : Number.parseInt(ref.slice(1), 10);
        const valid = cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        return valid ? String.fromCodePoint(cp) : '\ufffd';
      }
      return NAMED[ref] ?? NAMED[ref.toLowerCase()] ?? whole;
    },
  );
}

const isSpaceCode = (c: number): boolean =>
  c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
const isLetterCode = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

interface Tag {
  readonly name: string;
  readonly attrs: Map<string, string>;
  readonly selfClosing: boolean;
  /** The index just after the tag's ">". */
  readonly end: number;
}

/** The tag starting at html[i] === '<' (a letter follows), or undefined if the input ends inside it. */
function readTag(html: string, i: number, closing: boolean): Tag | undefined {
  const n = html.length;
  let j = i + (closing ? 2 : 1);
  const nameStart = j;
  while (j < n && !isSpaceCode(html.charCodeAt(j)) && html[j] !== '/' && html[j] !== '>') j++;
  const name = html.slice(nameStart, j).toLowerCase();
  const attrs = new Map<string, string>();
  for (;;) {
    while (j < n && isSpaceCode(html.charCodeAt(j))) j++;
    if (j >= n) return undefined;
    const c = html[j];
    if (c === '>') return { name, attrs, selfClosing: false, end: j + 1 };
    if (c === '/') {
      j++;
      if (html[j] === '>') return { name, attrs, selfClosing: true, end: j + 1 };
      continue;
    }
    const attrStart = j;
    j++; // an attribute name has at least one character, even "="
    while (j < n && !isSpaceCode(html.charCodeAt(j)) && html[j] !== '/' && html[j] !== '>' && html[j] !== '=')
      j++;
    const attr = html.slice(attrStart, j).toLowerCase();
    while (j < n && isSpaceCode(html.charCodeAt(j))) j++;
    let value = '';
    if (html[j] === '=') {
      j++;
      while (j < n && isSpaceCode(html.charCodeAt(j))) j++;
      const q = html[j];
      if (q === '"' || q === "'") {
        const close = html.indexOf(q, j + 1);
        if (close === -1) return undefined;
        value = html.slice(j + 1, close);
        j = close + 1;
      } else {
        const valueStart = j;
        while (j < n && !isSpaceCode(html.charCodeAt(j)) && html[j] !== '>') j++;
        value = html.slice(valueStart, j);
      }
    }
    if (!attrs.has(attr)) attrs.set(attr, decodeEntities(value));
  }
}

/** A tolerant HTML tree: unknown markup is skipped, unclosed elements end with their parent. */
export function parseHtml(html: string): HtmlElement {
  const root: HtmlElement = { kind: 'element', name: '#root', attrs: new Map(), children: [] };
  const stack: HtmlElement[] = [root];
  const top = (): HtmlElement => stack[stack.length - 1] ?? root;
  const n = html.length;
  let textStart = 0;
  const flushText = (end: number): void => {
    if (end > textStart)
      top().children.push({ kind: 'text', text: decodeEntities(html.slice(textStart, end)) });
  };
  let i = 0;
  while (i < n) {
    const lt = html.indexOf('<', i);
    if (lt === -1) break;
    const next = html.charCodeAt(lt + 1);
    if (html.startsWith('<!--', lt)) {
      flushText(lt);
      const end = html.indexOf('-->', lt + 4);
      i = textStart = end === -1 ? n : end + 3;
    } else if (
      next === 0x21 /* ! */ ||
      next === 0x3f /* ? */ ||
      (next === 0x2f /* / */ && !isLetterCode(html.charCodeAt(lt + 2)))
    ) {
      flushText(lt);
      const end = html.indexOf('>', lt + 2);
      i = textStart = end === -1 ? n : end + 1;
    } else if (next === 0x2f || isLetterCode(next)) {
      const closing = next === 0x2f;
      const tag = readTag(html, lt, closing);
      if (tag === undefined) break; // the input ends inside a tag: the rest is text
      flushText(lt);
      i = textStart = tag.end;
      if (closing) {
        for (let k = stack.length - 1; k > 0; k--) {
          if (stack[k]?.name === tag.name) {
            stack.length = k;
            break;
          }
        }
      } else if (RAW.has(tag.name)) {
        const close = new RegExp(`</${tag.name}[\\s/>]`, 'gi');
        close.lastIndex = tag.end;
        const m = close.exec(html);
        const end = m ? html.indexOf('>', m.index) : -1;
        i = textStart = end === -1 ? n : end + 1;
      } else {
        // An <li> or <p> ends the open one it would otherwise nest in.
        if ((tag.name === 'li' || tag.name === 'p') && top().name === tag.name) stack.pop();
        const el: HtmlElement = { kind: 'element', name: tag.name, attrs: tag.attrs, children: [] };
        top().children.push(el);
        if (!VOID.has(tag.name) && !tag.selfClosing && stack.length <= MAX_HTML_DEPTH) stack.push(el);
      }
    } else i = lt + 1; // a "<" that starts no tag is text
  }
  flushText(n);
  return root;
}
