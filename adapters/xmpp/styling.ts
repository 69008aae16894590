/**
 * The gatekeeper's markup <-> XEP-0393 Message Styling.
 *
 *   markupToStyling(text: string): string   gatekeeper -> XMPP <body>
 *   stylingToMarkup(text: string): string   XMPP <body> -> gatekeeper
 *
 * The two syntaxes share *strong*, _emphasis_, ~strike~, `pre` spans and "> " quotes, so both
 * functions copy the text unchanged except where the syntaxes differ:
 *   - gatekeeper ```inline``` monospace -> XEP-0393 `inline` (white space moved outside the
 *     backticks; content holding a backtick cannot be a XEP-0393 span and stays plain text);
 *   - gatekeeper ``` monospace spanning lines -> a XEP-0393 preformatted block: "```" and the
 *     closing "```" on lines of their own (one line feed right inside each fence is the fence's own);
 *   - XEP-0393 block "```lang" ... "```" -> "```" ... "```" (the language hint is dropped; an
 *     unclosed block, which XEP-0393 ends with its parent, gets its closing fence);
 *   - XEP-0393 quotes ">text" and ">>text" -> "> text" and "> > text" (the gatekeeper needs "> ").
 * Everything else (lists, emoji, CR, literal markers) passes through as is. docs/MARKUP.md lists
 * what is lossy.
 */
import {
  MAX_QUOTE_DEPTH,
  parseMarkup,
  prefixLines,
  renderInline,
  splitSpace,
  type MarkupInline,
  type MarkupNode,
} from '../../src/bridge/markup.js';

/** A gatekeeper-markup text as a XEP-0393 styled body. */
export function markupToStyling(text: string): string {
  return blocks(parseMarkup(text));
}

function blocks(nodes: readonly MarkupNode[]): string {
  return nodes
    .map((node) => {
      switch (node.type) {
        case 'paragraph':
          return paragraph(node.children);
        case 'quote':
          return prefixLines(blocks(node.children), '> ');
        case 'list':
          return node.items
            .map((item) => `${item.marker} ${renderInline(item.children, inlinePre)}`)
            .join('\n');
      }
    })
    .join('\n');
}

function paragraph(children: readonly MarkupInline[]): string {
  let out = '';
  children.forEach((child, index) => {
    if (child.type === 'mono' && child.text.includes('\n')) {
      const next = children[index + 1];
      out += preBlock(
        child.text,
        out === '' || out.endsWith('\n'),
        next === undefined || next.type === 'break',
      );
    } else out += renderInline([child], inlinePre);
  });
  return out;
}

/** Monospace on one line: a XEP-0393 `pre` span. */
function inlinePre(text: string): string {
  const { lead, core, trail } = splitSpace(text);
  if (core === '' || text.includes('`')) return text;
  return `${lead}\`${core}\`${trail}`;
}

/** Monospace over lines: a XEP-0393 preformatted block, its fences alone on their lines. */
function preBlock(text: string, atLineStart: boolean, atLineEnd: boolean): string {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  let body = text;
  if (body.startsWith('\r\n')) body = body.slice(2);
  else if (body.startsWith('\n')) body = body.slice(1);
  if (body.endsWith('\r\n')) body = body.slice(0, -2);
  else if (body.endsWith('\n')) body = body.slice(0, -1);
  return (atLineStart ? '' : eol) + '```' + eol + body + eol + '```' + (atLineEnd ? '' : eol);
}

/** A XEP-0393 styled body as gatekeeper markup. */
export function stylingToMarkup(text: string): string {
  if (text === '') return '';
  return lines(text.split('\n'), 0).join('\n');
}

function lines(input: readonly string[], depth: number): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < input.length) {
    const line = input[i] ?? '';
    i++;
    if (line.startsWith('```')) {
      // The rest of the opening line is a hint (e.g. a language) the gatekeeper cannot show.
      out.push(line.endsWith('\r') ? '```\r' : '```');
      let closed = false;
      while (i < input.length) {
        const content = input[i] ?? '';
        i++;
        out.push(content);
        if (content === '```' || content === '```\r') {
          closed = true;
          break;
        }
      }
      if (!closed) out.push('```');
    } else if (line.startsWith('>') && depth < MAX_QUOTE_DEPTH) {
      const inner = [unquote(line)];
      while (i < input.length && (input[i] ?? '').startsWith('>')) {
        inner.push(unquote(input[i] ?? ''));
        i++;
      }
      for (const l of lines(inner, depth + 1)) out.push('> ' + l);
    } else out.push(line);
  }
  return out;
}

/** A quoted line without its ">" and the one space that may follow it. */
function unquote(line: string): string {
  return line.startsWith('> ') ? line.slice(2) : line.slice(1);
}
