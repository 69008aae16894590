/**
 * The XML layer of the stanza codec: Element <-> UTF-8 bytes, one stanza per frame.
 *
 * Parsing is two steps. ltx's parser (through @xmpp/xml) builds the Element, but it is a lax,
 * non-validating parser: it silently skips DOCTYPEs and comments, accepts `<a b c="1">`, keeps the
 * last of two equal attributes and normalises nothing. So a strict scan runs first and lets through
 * only a well-formed document of the protocol's XML profile, enforcing the limits as it goes, so a
 * hostile stanza is refused before anything is built. The two steps agree on every document the
 * scan accepts, and the peer sees one precisely defined grammar (docs/PROTOCOL.md, section 5).
 *
 * Serialising walks the Element and escapes every value, so any string a caller puts into an
 * attribute or text yields well-formed XML; characters XML 1.0 cannot carry become U+FFFD.
 */
import { Parser, type Element } from '@xmpp/xml';

import { StanzaLimitError, StanzaMalformedError, StanzaUnencodableError } from './errors.js';

/** Resource limits of the parser. Each has its own error code (see errors.ts). */
export interface StanzaLimits {
  /** Encoded size of one stanza in bytes (`stanza_too_large`). */
  readonly maxBytes: number;
  /** Element nesting depth; the root is depth 1 (`stanza_too_deep`). */
  readonly maxDepth: number;
  /** Attributes on one element (`stanza_too_many_attributes`). */
  readonly maxAttributes: number;
  /** Elements in one stanza, the root included (`stanza_too_many_elements`). */
  readonly maxElements: number;
  /**
   * Length of one text run or attribute value as written, before references are expanded, in
   * UTF-16 code units (= bytes for the ASCII the protocol puts there: base64, digits) (`stanza_text_too_long`).
   */
  readonly maxTextLength: number;
}

/**
 * Defaults: 1,048,560 bytes (the plaintext that fits the default 1 MiB frame after the 16-byte
 * AES-GCM tag, so the encoder refuses exactly what the transport could not carry); depth 16 (the deepest stanza has 6 levels);
 * 32 attributes (the most any stanza uses is 6); 20,000 elements (an upload of 812 one-time
 * prekeys has about 2,450, a key fetch for 1,000 devices about 9,000); 512 KiB of text (a
 * 65,536-character text message, encrypted and base64-encoded, stays well below).
 */
export const DEFAULT_STANZA_LIMITS: StanzaLimits = Object.freeze({
  maxBytes: 1024 * 1024 - 16,
  maxDepth: 16,
  maxAttributes: 32,
  maxElements: 20_000,
  maxTextLength: 512 * 1024,
});

// XML 1.0 (fifth edition) productions 4 and 4a: NameStartChar and NameChar.
const NAME_START =
  ':A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}';
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
const NAME = `[${NAME_START}][${NAME_CHAR}]*`;

/* eslint-disable no-misleading-character-class -- NameChar includes combining marks (U+0300-U+036F) on purpose */
const NAME_ONLY = new RegExp(`^${NAME}$`, 'u');
const START_TAG_OPEN = new RegExp(`<(${NAME})`, 'uy');
// One attribute: mandatory white space, name, Eq, quoted value. The value's `&` are checked separately
// so that this pattern stays a plain character class (no backtracking on a 1 MiB value).
const ATTRIBUTE = new RegExp(`[ \\t\\n]+(${NAME})[ \\t\\n]*=[ \\t\\n]*(?:"([^<"]*)"|'([^<']*)')`, 'uy');
const START_TAG_CLOSE = /[ \t\n]*(\/?)>/y;
const END_TAG = new RegExp(`</(${NAME})[ \\t\\n]*>`, 'uy');
/* eslint-enable no-misleading-character-class */
const REFERENCE = /&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));/y;
// XML 1.0 production 23, restricted to version 1.0 and UTF-8: the only declaration that makes sense here.
const XML_DECLARATION =
  /^<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(["'])1\.0\1(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(["'])[Uu][Tt][Ff]-8\2)?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(["'])(?:yes|no)\3)?[ \t\n]*\?>/;
// Anything outside production 2 (Char). After a fatal UTF-8 decode there are no lone surrogates.
const ILLEGAL_IN_INPUT = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
// The same set as seen by the encoder, which must also catch lone surrogates in JavaScript strings.
// eslint-disable-next-line no-control-regex -- matching the control characters XML forbids is the point
const ILLEGAL_IN_OUTPUT = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\uD800-\uDFFF]/gu;
const ATTRIBUTE_ESCAPES = /[&<>"\t\n\r]/g;
const TEXT_ESCAPES = /[&<>\r]/g;
const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

function malformed(message: string, cause?: unknown): StanzaMalformedError {
  return new StanzaMalformedError(
    'stanza_malformed',
    `malformed stanza: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

/** Checks the `&` in a text run or attribute value: only the five predefined entities and character references. */
function checkReferences(run: string, where: string): void {
  let amp = run.indexOf('&');
  while (amp !== -1) {
    REFERENCE.lastIndex = amp;
    const m = REFERENCE.exec(run);
    if (m === null) {
      throw malformed(
        `${where} contains "${run.slice(amp, amp + 12)}": only &amp; &lt; &gt; &quot; &apos; and character references are allowed (no other entities exist)`,
      );
    }
    const digits = m[2] ?? m[3];
    if (digits !== undefined) {
      const cp = Number.parseInt(digits, m[2] !== undefined ? 10 : 16);
      if (!isXmlChar(cp)) {
        throw malformed(
          `${where} refers to U+${cp.toString(16).toUpperCase()}, which is not an XML 1.0 character`,
        );
      }
    }
    amp = run.indexOf('&', REFERENCE.lastIndex);
  }
}

function forbiddenMarkup(s: string, at: number): StanzaMalformedError {
  const what = s.startsWith('<!DOCTYPE', at)
    ? 'a DOCTYPE'
    : s.startsWith('<!ENTITY', at)
      ? 'an entity declaration'
      : s.startsWith('<!--', at)
        ? 'a comment'
        : s.startsWith('<![CDATA[', at)
          ? 'a CDATA section'
          : s.startsWith('<?', at)
            ? 'a processing instruction'
            : 'a markup declaration';
  return new StanzaMalformedError(
    'stanza_markup_forbidden',
    `stanza contains ${what} at offset ${at}: the gateway protocol allows elements, attributes and text only (no DTD, entities, processing instructions, comments or CDATA); fix the sender's serializer`,
  );
}

interface ScanResult {
  /** The root element's source, ready for ltx, with attribute values normalised. */
  readonly root: string;
}

/**
 * Checks well-formedness, the profile and the limits in one linear pass; throws on the first problem.
 * `s` has had its line ends normalised (XML 1.0 section 2.11).
 */
function scan(s: string, limits: StanzaLimits): ScanResult {
  const bad = ILLEGAL_IN_INPUT.exec(s);
  if (bad !== null) {
    const cp = bad[0].codePointAt(0) ?? 0;
    throw malformed(
      `U+${cp.toString(16).toUpperCase().padStart(4, '0')} at offset ${bad.index} is not an XML 1.0 character`,
    );
  }
  let pos = 0;
  const decl = XML_DECLARATION.exec(s);
  if (decl !== null) pos = decl[0].length;
  else if (/^<\?xml[ \t\n?]/.test(s))
    throw malformed('the XML declaration must say version="1.0" and, if anything, encoding="UTF-8"');

  const open: string[] = [];
  let elements = 0;
  let rootStart = -1;
  let rootEnd = -1;
  // Literal tabs and newlines in attribute values become spaces (XML 1.0 section 3.3.3); ltx would keep them.
  const normalise: Array<[number, number]> = [];

  while (pos < s.length) {
    const lt = s.indexOf('<', pos);
    const textEnd = lt === -1 ? s.length : lt;
    if (textEnd > pos) {
      if (open.length === 0) {
        if (!/^[ \t\n]*$/.test(s.slice(pos, textEnd))) {
          throw malformed(`text at offset ${pos} is outside the root element`);
        }
      } else {
        if (textEnd - pos > limits.maxTextLength) {
          throw new StanzaLimitError(
            'stanza_text_too_long',
            limits.maxTextLength,
            `text in <${open.at(-1)}> is ${textEnd - pos} characters long, above the limit of ${limits.maxTextLength}`,
          );
        }
        // Every search stays inside this run, so the scan is linear in the stanza's size.
        const run = s.slice(pos, textEnd);
        if (run.includes(']]>'))
          throw malformed(`"]]>" in text of <${open.at(-1)}> must be written "]]&gt;"`);
        checkReferences(run, `text in <${open.at(-1)}>`);
      }
    }
    if (lt === -1) break;
    pos = lt;
    const next = s.charCodeAt(pos + 1);
    if (next === 0x21 /* ! */ || next === 0x3f /* ? */) throw forbiddenMarkup(s, pos);

    if (next === 0x2f /* / */) {
      END_TAG.lastIndex = pos;
      const m = END_TAG.exec(s);
      if (m === null) throw malformed(`bad end tag at offset ${pos}`);
      const name = m[1] ?? '';
      const expected = open.pop();
      if (expected !== name) {
        throw malformed(
          expected === undefined
            ? `</${name}> at offset ${pos} closes nothing`
            : `</${name}> at offset ${pos} where </${expected}> was expected`,
        );
      }
      pos = END_TAG.lastIndex;
      if (open.length === 0) rootEnd = pos;
      continue;
    }

    START_TAG_OPEN.lastIndex = pos;
    const tag = START_TAG_OPEN.exec(s);
    if (tag === null) throw malformed(`"<" at offset ${pos} starts no element (write "&lt;" in text)`);
    const name = tag[1] ?? '';
    if (rootEnd !== -1)
      throw malformed(`second root element <${name}> at offset ${pos}: one stanza per frame`);
    if (open.length === 0) rootStart = pos;
    elements += 1;
    if (elements > limits.maxElements) {
      throw new StanzaLimitError(
        'stanza_too_many_elements',
        limits.maxElements,
        `stanza has more than ${limits.maxElements} elements`,
      );
    }
    if (open.length + 1 > limits.maxDepth) {
      throw new StanzaLimitError(
        'stanza_too_deep',
        limits.maxDepth,
        `<${name}> at offset ${pos} is nested deeper than ${limits.maxDepth} levels`,
      );
    }
    pos = START_TAG_OPEN.lastIndex;
    const seen = new Set<string>();
    for (;;) {
      ATTRIBUTE.lastIndex = pos;
      const a = ATTRIBUTE.exec(s);
      if (a === null) break;
      const attr = a[1] ?? '';
      const valueLength = (a[2] ?? a[3] ?? '').length;
      if (seen.has(attr)) throw malformed(`<${name}> has attribute "${attr}" twice`);
      // ltx stores attributes in a plain object, where this name would be swallowed by the prototype.
      if (attr === '__proto__')
        throw malformed(
          `<${name}> has an attribute named "__proto__", which this implementation cannot represent`,
        );
      seen.add(attr);
      if (seen.size > limits.maxAttributes) {
        throw new StanzaLimitError(
          'stanza_too_many_attributes',
          limits.maxAttributes,
          `<${name}> has more than ${limits.maxAttributes} attributes`,
        );
      }
      if (valueLength > limits.maxTextLength) {
        throw new StanzaLimitError(
          'stanza_text_too_long',
          limits.maxTextLength,
          `attribute "${attr}" of <${name}> is ${valueLength} characters long, above the limit of ${limits.maxTextLength}`,
        );
      }
      const value = a[2] ?? a[3] ?? '';
      const valueEnd = ATTRIBUTE.lastIndex - 1;
      const valueStart = valueEnd - valueLength;
      checkReferences(value, `attribute "${attr}" of <${name}>`);
      if (value.includes('\t') || value.includes('\n')) normalise.push([valueStart, valueEnd]);
      pos = ATTRIBUTE.lastIndex;
    }
    START_TAG_CLOSE.lastIndex = pos;
    const close = START_TAG_CLOSE.exec(s);
    if (close === null)
      throw malformed(`start tag <${name}> at offset ${tag.index} is not closed properly at offset ${pos}`);
    pos = START_TAG_CLOSE.lastIndex;
    if (close[1] === '/') {
      if (open.length === 0) rootEnd = pos;
    } else {
      open.push(name);
    }
  }

  if (rootStart === -1) throw malformed('no root element');
  if (open.length > 0) throw malformed(`truncated: <${open.at(-1)}> is never closed`);

  let root = s.slice(rootStart, rootEnd);
  if (normalise.length > 0) {
    const parts: string[] = [];
    let from = rootStart;
    for (const [start, end] of normalise) {
      parts.push(s.slice(from, start), s.slice(start, end).replace(/[\t\n]/g, ' '));
      from = end;
    }
    parts.push(s.slice(from, rootEnd));
    root = parts.join('');
  }
  return { root };
}

/** Builds the Element with ltx's parser from a document `scan` accepted. */
function build(root: string): Element {
  const parser = new Parser();
  let result: Element | undefined;
  let failure: Error | undefined;
  parser.on('start', (el) => {
    result = el;
  });
  // @xmpp/xml's parser is made for streams: it hands over the root's children one by one.
  parser.on('element', (el) => {
    result?.append(el);
  });
  parser.on('error', (err) => {
    failure ??= err;
  });
  try {
    parser.write(root);
    parser.end();
  } catch (err) {
    throw malformed('the XML parser rejected it', err);
  }
  if (failure !== undefined) throw malformed(failure.message, failure);
  if (result === undefined) throw malformed('no root element');
  return result;
}

/**
 * Parses one stanza. Throws StanzaLimitError or StanzaMalformedError (never anything else for any input);
 * which element it is, is the stanza layer's business.
 */
export function parseXml(bytes: Uint8Array, limits: StanzaLimits = DEFAULT_STANZA_LIMITS): Element {
  if (bytes.byteLength > limits.maxBytes) {
    throw new StanzaLimitError(
      'stanza_too_large',
      limits.maxBytes,
      `stanza is ${bytes.byteLength} bytes, above the limit of ${limits.maxBytes}`,
    );
  }
  let text: string;
  try {
    // A leading byte order mark is dropped by the decoder; anything that is not UTF-8 fails.
    text = utf8Decoder.decode(bytes);
  } catch (err) {
    throw malformed('the bytes are not valid UTF-8', err);
  }
  const { root } = scan(text.replace(/\r\n?/g, '\n'), limits);
  return build(root);
}

/** Replaces every character XML 1.0 cannot carry (C0 controls but TAB LF CR, U+FFFE, U+FFFF, lone surrogates) with U+FFFD. */
export function toXmlSafe(s: string): string {
  return s.replace(ILLEGAL_IN_OUTPUT, '\uFFFD');
}

function escapeAttribute(s: string): string {
  return toXmlSafe(s).replace(ATTRIBUTE_ESCAPES, (c) => ESCAPES[c] ?? c);
}

function escapeText(s: string): string {
  return toXmlSafe(s).replace(TEXT_ESCAPES, (c) => ESCAPES[c] ?? c);
}

function checkName(name: string, what: string): void {
  if (!NAME_ONLY.test(name))
    throw new StanzaUnencodableError(what, `"${name}" is not a valid XML name for ${what}`);
}

function write(el: Element, out: string[]): void {
  checkName(el.name, 'an element');
  out.push('<', el.name);
  for (const [key, value] of Object.entries(el.attrs)) {
    if (value === undefined || value === null) continue;
    checkName(key, `an attribute of <${el.name}>`);
    out.push(' ', key, '="', escapeAttribute(String(value)), '"');
  }
  const children = el.children.filter((c) => c !== '');
  if (children.length === 0) {
    out.push('/>');
    return;
  }
  out.push('>');
  for (const child of children) {
    if (typeof child === 'string') out.push(escapeText(child));
    else write(child, out);
  }
  out.push('</', el.name, '>');
}

/**
 * Serialises an Element to XML text: double-quoted attributes, `&<>"` and TAB/LF/CR escaped in
 * attributes, `&<>` and CR escaped in text, illegal characters replaced by U+FFFD. No XML declaration.
 */
export function serializeXml(el: Element): string {
  const out: string[] = [];
  write(el, out);
  return out.join('');
}

/** Serialises to the UTF-8 bytes of one frame; refuses what the peer's parser would refuse as too large. */
export function elementToBytes(el: Element, limits: StanzaLimits = DEFAULT_STANZA_LIMITS): Uint8Array {
  const bytes = utf8Encoder.encode(serializeXml(el));
  if (bytes.byteLength > limits.maxBytes) {
    throw new StanzaLimitError(
      'stanza_too_large',
      limits.maxBytes,
      `<${el.name}> would be ${bytes.byteLength} bytes, above the limit of ${limits.maxBytes}: split it (fewer prekeys per upload, fewer contacts per query)`,
    );
  }
  return bytes;
}
