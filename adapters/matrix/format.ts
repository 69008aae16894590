/**
 * The gatekeeper's markup <-> Matrix message formatting (org.matrix.custom.html).
 *
 *   markupToMatrix(text: string): MatrixFormattedText
 *     `body` is the text as written (its markup is readable as is); `format` and `formatted_body`
 *     are set only when the text has formatting (a span, a quote, a list); bare URLs and line
 *     breaks alone need none (clients link URLs in a plain body themselves).
 *   matrixToMarkup(content: { body?: unknown; format?: unknown; formatted_body?: unknown }): string
 *     the HTML when `format` is org.matrix.custom.html, else `body` (without a reply fallback).
 *
 * HTML is read with html-reader.ts (it never throws and bounds its work on any input); only what
 * the gatekeeper can show is kept. See docs/MARKUP.md for the mapping and what is lossy.
 */
import {
  MAX_QUOTE_DEPTH,
  parseMarkup,
  renderMarkup,
  type MarkupInline,
  type MarkupListItem,
  type MarkupNode,
} from '../../src/bridge/markup.js';
import { parseHtml, type HtmlElement, type HtmlNode } from './html-reader.js';

export const MATRIX_HTML_FORMAT = 'org.matrix.custom.html';

export interface MatrixFormattedText {
  body: string;
  format?: typeof MATRIX_HTML_FORMAT;
  formatted_body?: string;
}

// ---------------------------------------------------------------------------------------------
// Markup -> HTML

/** The Matrix text content for a gatekeeper-markup text. */
export function markupToMatrix(text: string): MatrixFormattedText {
  const nodes = parseMarkup(text);
  if (!nodes.some(blockHasFormatting)) return { body: text };
  return { body: text, format: MATRIX_HTML_FORMAT, formatted_body: blocksHtml(nodes) };
}

function blockHasFormatting(node: MarkupNode): boolean {
  return node.type !== 'paragraph' || node.children.some((c) => !['text', 'break', 'link'].includes(c.type));
}

export function escapeHtml(text: string): string {
  return text
    .replace(/\r/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function blocksHtml(nodes: readonly MarkupNode[]): string {
  let html = '';
  for (const node of nodes) {
    switch (node.type) {
      case 'paragraph':
        html += paragraphHtml(node.children);
        break;
      case 'quote':
        html += `<blockquote>${blocksHtml(node.children)}</blockquote>`;
        break;
      case 'list':
        html += listHtml(node.ordered, node.items);
        break;
    }
  }
  return html;
}

/**
 * Lines joined by <br>. A block (<pre>, <blockquote>, a list) ends a line by itself, so the line
 * feed after a block monospace is not written, and a last empty line gets a <br> of its own
 * (browsers show no line for a <br> that ends a run before a block).
 */
function paragraphHtml(children: readonly MarkupInline[]): string {
  let html = '';
  for (let i = 0; i < children.length; i++) {
    const child = children[i];
    if (child === undefined) continue;
    if (child.type === 'mono' && child.text.includes('\n')) {
      html += preHtml(child.text);
      if (children[i + 1]?.type === 'break') i++;
    } else html += inlineHtml(child);
  }
  const last = children[children.length - 1];
  if (last === undefined || last.type === 'break') html += '<br>';
  return html;
}

function inlineHtml(node: MarkupInline): string {
  switch (node.type) {
    case 'text':
      return escapeHtml(node.text);
    case 'break':
      return '<br>';
    case 'bold':
      return `<strong>${node.children.map(inlineHtml).join('')}</strong>`;
    case 'italic':
      return `<em>${node.children.map(inlineHtml).join('')}</em>`;
    case 'strike':
      return `<del>${node.children.map(inlineHtml).join('')}</del>`;
    case 'code':
    case 'mono':
      return node.text.includes('\n') ? preHtml(node.text) : `<code>${escapeHtml(node.text)}</code>`;
    case 'link':
      return `<a href="${escapeHtml(node.url)}">${escapeHtml(node.url)}</a>`;
  }
}

/**
 * A code block. The line feed right after an opening ``` belongs to the fence (a line feed right
 * after <code> would show as an empty first line), so it is not written; preText puts it back.
 */
function preHtml(text: string): string {
  const body = text.startsWith('\r\n') ? text.slice(2) : text.startsWith('\n') ? text.slice(1) : text;
  return `<pre><code>${escapeHtml(body)}</code></pre>`;
}

function listHtml(ordered: boolean, items: readonly MarkupListItem[]): string {
  const lis = items.map((item) => `<li>${item.children.map(inlineHtml).join('')}</li>`).join('');
  if (!ordered) return `<ul>${lis}</ul>`;
  const start = Number.parseInt(items[0]?.marker ?? '1', 10);
  return start === 1 || !Number.isSafeInteger(start) ? `<ol>${lis}</ol>` : `<ol start="${start}">${lis}</ol>`;
}

// ---------------------------------------------------------------------------------------------
// HTML tree -> markup

/** The text of a Matrix message, as gatekeeper markup. */
export function matrixToMarkup(content: {
  body?: unknown;
  format?: unknown;
  formatted_body?: unknown;
}): string {
  if (content.format === MATRIX_HTML_FORMAT && typeof content.formatted_body === 'string') {
    return htmlToMarkup(content.formatted_body);
  }
  return typeof content.body === 'string' ? stripReplyFallback(content.body) : '';
}

/** Gatekeeper markup for an HTML fragment. */
export function htmlToMarkup(html: string): string {
  return renderMarkup(blocksOf(parseHtml(html).children));
}

/**
 * A plain body without the quoted reply fallback ("> <@alice:example.org> text" lines and the
 * blank line after them) that replies carried before Matrix v1.13.
 */
function stripReplyFallback(body: string): string {
  if (!body.startsWith('> <')) return body;
  const lines = body.split('\n');
  let i = 0;
  while (i < lines.length && (lines[i] ?? '').startsWith('>')) i++;
  return i < lines.length && lines[i] === '' ? lines.slice(i + 1).join('\n') : body;
}

const PARAGRAPH = new Set(['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6']);
const BLOCK = new Set([
  'div',
  'li',
  'tr',
  'table',
  'thead',
  'tbody',
  'tfoot',
  'section',
  'article',
  'header',
  'footer',
  'aside',
  'nav',
  'details',
  'summary',
  'figure',
  'figcaption',
  'dl',
  'dt',
  'dd',
  'address',
]);
const SKIP = new Set(['mx-reply', 'head']);

/** Text outside <pre>: line feeds are layout, not content. */
function layoutText(raw: string): string {
  let text = raw.replace(/\r\n?/g, '\n');
  if (!text.includes('\n')) return text;
  let a = 0;
  let b = text.length;
  while (a < b && text[a] === '\n') a++;
  while (b > a && text[b - 1] === '\n') b--;
  text = text.slice(a, b);
  return /\S/u.test(text) ? text.replace(/\n/g, ' ') : '';
}

/** The raw text of an element (<br> as a line feed), for <pre> and <code>. */
function textContent(el: HtmlElement): string {
  let out = '';
  for (const child of el.children) {
    if (child.kind === 'text') out += child.text;
    else if (child.name === 'br') out += '\n';
    else if (!SKIP.has(child.name)) out += textContent(child);
  }
  return out;
}

/** A <pre>'s text as monospace content: it starts on the line after the opening ```. */
function preText(el: HtmlElement): string {
  const text = textContent(el).replace(/\r\n?/g, '\n');
  return text.startsWith('\n') || !/\S/u.test(text) ? text : '\n' + text;
}

/** Collects inline spans into paragraphs between blocks. */
class Blocks {
  readonly nodes: MarkupNode[] = [];
  private run: MarkupInline[] = [];
  private lastWasParagraph = false;

  inline(spans: readonly MarkupInline[]): void {
    for (const s of spans) this.run.push(s);
  }

  /** Ends the current run; a <br> that ends it makes no line of its own. */
  flush(): void {
    if (this.run.length === 0) return;
    if (this.run[this.run.length - 1]?.type === 'break') this.run.pop();
    this.nodes.push({ type: 'paragraph', children: this.run });
    this.run = [];
    this.lastWasParagraph = false;
  }

  block(nodes: readonly MarkupNode[], paragraph = false): void {
    this.flush();
    // Consecutive <p> are separated by a blank line, as they show.
    if (paragraph && this.lastWasParagraph) this.nodes.push({ type: 'paragraph', children: [] });
    for (const n of nodes) this.nodes.push(n);
    this.lastWasParagraph = paragraph;
  }
}

/**
 * `quoteDepth` counts enclosing <blockquote>s: past MAX_QUOTE_DEPTH their contents are kept but not
 * quoted again, since each level prefixes every line below it ("> " per level) and 64 nested quotes
 * around many lines would blow a 64 KiB body up to megabytes of markup.
 */
function blocksOf(children: readonly HtmlNode[], quoteDepth = 0): MarkupNode[] {
  const out = new Blocks();
  for (const child of children) {
    if (child.kind === 'text') {
      const text = layoutText(child.text);
      if (text !== '') out.inline([{ type: 'text', text }]);
      continue;
    }
    const name = child.name;
    if (SKIP.has(name)) continue;
    if (PARAGRAPH.has(name)) {
      const inner = blocksOf(child.children, quoteDepth);
      const nodes = name === 'p' ? inner : inner.map(boldBlock);
      out.block(nodes.length > 0 ? nodes : [{ type: 'paragraph', children: [] }], true);
    } else if (BLOCK.has(name)) out.block(blocksOf(child.children, quoteDepth));
    else if (name === 'blockquote') {
      const inner = blocksOf(child.children, quoteDepth + 1);
      out.block(quoteDepth < MAX_QUOTE_DEPTH ? [{ type: 'quote', children: inner }] : inner);
    } else if (name === 'ul' || name === 'ol') {
      const items = listItems(child);
      if (items.length > 0) out.block([{ type: 'list', ordered: name === 'ol', items }]);
    } else if (name === 'pre')
      out.block([{ type: 'paragraph', children: [{ type: 'mono', text: preText(child) }] }]);
    else if (name === 'hr') out.block([{ type: 'paragraph', children: [{ type: 'text', text: '---' }] }]);
    else out.inline(inlineOf(child));
  }
  out.flush();
  return out.nodes;
}

/** A heading's paragraphs in bold. */
function boldBlock(node: MarkupNode): MarkupNode {
  return node.type === 'paragraph'
    ? { type: 'paragraph', children: [{ type: 'bold', children: node.children }] }
    : node;
}

function inlineChildren(el: HtmlElement): MarkupInline[] {
  const out: MarkupInline[] = [];
  for (const child of el.children) {
    if (child.kind === 'text') {
      const text = layoutText(child.text);
      if (text !== '') out.push({ type: 'text', text });
    } else for (const span of inlineOf(child)) out.push(span);
  }
  return out;
}

function inlineOf(el: HtmlElement): MarkupInline[] {
  switch (el.name) {
    case 'br':
      return [{ type: 'break' }];
    case 'b':
    case 'strong':
      return [{ type: 'bold', children: inlineChildren(el) }];
    case 'i':
    case 'em':
      return [{ type: 'italic', children: inlineChildren(el) }];
    case 's':
    case 'del':
    case 'strike':
      return [{ type: 'strike', children: inlineChildren(el) }];
    case 'code':
      return [{ type: 'code', text: layoutText(textContent(el)) }];
    case 'pre':
      return [{ type: 'mono', text: preText(el) }];
    case 'a':
      return linkOf(el);
    case 'img': {
      const alt = el.attrs.get('alt') ?? '';
      return alt === '' ? [] : [{ type: 'text', text: alt }];
    }
    case 'mx-reply':
    case 'head':
      return [];
    default: {
      const spans = inlineChildren(el);
      // A block inside a span still ends its line.
      const blockish =
        PARAGRAPH.has(el.name) || BLOCK.has(el.name) || ['blockquote', 'ul', 'ol', 'hr'].includes(el.name);
      if (blockish && spans.length > 0 && spans[spans.length - 1]?.type !== 'break')
        spans.push({ type: 'break' });
      return spans;
    }
  }
}

/** A user's pill (a matrix.to link to a user): its text is the name to show. */
const USER_PERMALINK = /^https:\/\/matrix\.to\/#\/[@]/;

function linkOf(el: HtmlElement): MarkupInline[] {
  const href = (el.attrs.get('href') ?? '').trim();
  const spans = inlineChildren(el);
  if (href === '' || USER_PERMALINK.test(href)) return spans;
  const text = textContent(el).trim();
  if (text === '') return [{ type: 'link', url: href }];
  const same = [text, `mailto:${text}`, `http://${text}`, `https://${text}`, `${text}/`].includes(href);
  return same ? spans : [...spans, { type: 'text', text: ` (${href})` }];
}

function listItems(list: HtmlElement): MarkupListItem[] {
  const ordered = list.name === 'ol';
  const startAttr = Number.parseInt(list.attrs.get('start') ?? '1', 10);
  let n = Number.isSafeInteger(startAttr) && startAttr >= 0 && startAttr < 1e9 ? startAttr : 1;
  const items: MarkupListItem[] = [];
  const add = (children: MarkupInline[]): void => {
    while (children[0]?.type === 'break') children.shift();
    while (children[children.length - 1]?.type === 'break') children.pop();
    items.push({ marker: ordered ? `${n++}.` : '-', children });
  };
  for (const child of list.children) {
    if (child.kind === 'text') {
      const text = layoutText(child.text).trim();
      if (text !== '') add([{ type: 'text', text }]);
    } else if (child.name === 'ul' || child.name === 'ol') {
      // The gatekeeper has no nested lists: nested items follow their parent.
      for (const item of listItems(child)) items.push(item);
    } else if (child.name === 'li') {
      const spans: MarkupInline[] = [];
      const nested: MarkupListItem[] = [];
      for (const part of child.children) {
        if (part.kind === 'text') {
          const text = layoutText(part.text);
          if (text !== '') spans.push({ type: 'text', text });
        } else if (part.name === 'ul' || part.name === 'ol') {
          for (const item of listItems(part)) nested.push(item);
        } else for (const span of inlineOf(part)) spans.push(span);
      }
      add(spans);
      for (const item of nested) items.push(item);
    } else if (!SKIP.has(child.name)) add(inlineOf(child));
  }
  return items;
}
