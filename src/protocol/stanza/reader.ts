/**
 * Reading an Element as a stanza: required and optional attributes, children and values, each
 * failure a `stanza_invalid` naming the field as a path from the root (`list.key[3].value`).
 * Shared by decode.ts and the feature files (group.ts, profile.ts).
 */
import type { Element } from '@xmpp/xml';

import { StanzaInvalidError, type StanzaContext } from './errors.js';
import type { ErrorInfo } from './types.js';
import { fromBase64, fromBigEndian, parseDecimal } from './values.js';
import { TOKEN } from './vocabulary.js';

const EDGE_SPACE = /^[ \t\n]+|[ \t\n]+$/g;

/** An element being read, with the path used to name fields in errors (`list.key[3].value`). */
export class Node {
  constructor(
    readonly ctx: StanzaContext,
    readonly el: Element,
    readonly path: string,
  ) {}

  field(name: string): string {
    return this.path === '' ? name : `${this.path}.${name}`;
  }

  invalid(field: string, message: string): never {
    const where = this.ctx.id === undefined ? `<${this.ctx.name}>` : `<${this.ctx.name} id="${this.ctx.id}">`;
    throw new StanzaInvalidError(
      this.ctx,
      field,
      `invalid ${where}: ${field === '' ? '' : `"${field}" `}${message}`,
    );
  }

  optAttr(name: string): string | undefined {
    // Own properties only: ltx keeps attributes in a plain object, whose prototype has "constructor".
    if (!Object.hasOwn(this.el.attrs, name)) return undefined;
    const value = this.el.attrs[name];
    if (value === undefined) return undefined;
    if (value === '') this.invalid(this.field(name), 'must not be empty');
    return value;
  }

  attr(name: string): string {
    const value = this.optAttr(name);
    if (value === undefined) this.invalid(this.field(name), 'is a required attribute and is missing');
    return value;
  }

  optUint(name: string, max: number): number | undefined {
    const raw = this.optAttr(name);
    if (raw === undefined) return undefined;
    const n = parseDecimal(raw);
    if (n === undefined || n > max)
      this.invalid(this.field(name), `must be a decimal integer from 0 to ${max}, got "${raw}"`);
    return n;
  }

  uint(name: string, max: number): number {
    const n = this.optUint(name, max);
    if (n === undefined) this.invalid(this.field(name), 'is a required attribute and is missing');
    return n;
  }

  time(name: string): number {
    return this.uint(name, Number.MAX_SAFE_INTEGER);
  }

  optOneOf<T extends string>(name: string, values: readonly T[]): T | undefined {
    const raw = this.optAttr(name);
    if (raw === undefined) return undefined;
    const found = values.find((v) => v === raw);
    if (found === undefined)
      this.invalid(this.field(name), `must be one of ${values.join(', ')}, got "${raw}"`);
    return found;
  }

  oneOf<T extends string>(name: string, values: readonly T[]): T {
    const v = this.optOneOf(name, values);
    if (v === undefined) this.invalid(this.field(name), 'is a required attribute and is missing');
    return v;
  }

  elements(): Element[] {
    return this.el.getChildElements();
  }

  children(name: string): Node[] {
    return this.el.getChildren(name).map((c, i) => new Node(this.ctx, c, `${this.field(name)}[${i}]`));
  }

  optChild(name: string): Node | undefined {
    const found = this.el.getChildren(name);
    if (found.length > 1) this.invalid(this.field(name), 'must appear once');
    const [el] = found;
    return el === undefined ? undefined : new Node(this.ctx, el, this.field(name));
  }

  child(name: string): Node {
    const c = this.optChild(name);
    if (c === undefined) this.invalid(this.field(name), 'is a required child element and is missing');
    return c;
  }

  /** Text content, without surrounding white space (which pretty-printing peers may add). */
  text(): string {
    const t = this.el.getText().replace(EDGE_SPACE, '');
    if (t === '') this.invalid(this.path, 'must have text content');
    return t;
  }

  /**
   * Free text (a subject, a description, an about text), exactly as written: not stripped, since
   * its white space is the user's. May be empty.
   */
  freeText(): string {
    return this.el.getText();
  }

  /** An opaque token attribute (invite code, create key, picture or description id). */
  optToken(name: string): string | undefined {
    const value = this.optAttr(name);
    if (value !== undefined && !TOKEN.test(value))
      this.invalid(this.field(name), `must be 1 to 64 of A-Z a-z 0-9 _ -, got "${value}"`);
    return value;
  }

  token(name: string): string {
    const value = this.optToken(name);
    if (value === undefined) this.invalid(this.field(name), 'is a required attribute and is missing');
    return value;
  }

  /** The `jid` attributes of the children `name`, at least one, no two alike. */
  jids(name: string): string[] {
    const seen = new Set<string>();
    const jids = this.children(name).map((c) => {
      const jid = c.attr('jid');
      if (seen.has(jid)) c.invalid(`${c.path}.jid`, `"${jid}" appears twice`);
      seen.add(jid);
      return jid;
    });
    if (jids.length === 0) this.invalid(this.field(name), 'at least one is required');
    return jids;
  }

  /** Whether the empty flag element `name` (`<locked/>`) is present. */
  flag(name: string): boolean {
    return this.optChild(name) !== undefined;
  }

  bytes(size?: number): Uint8Array {
    const b = fromBase64(this.text());
    if (b === undefined) this.invalid(this.path, 'must be base64 (RFC 4648, padded, no line breaks)');
    if (size !== undefined && b.byteLength !== size)
      this.invalid(this.path, `must be ${size} bytes, got ${b.byteLength}`);
    if (b.byteLength === 0) this.invalid(this.path, 'must not be empty');
    return b;
  }

  bigEndian(size: number): number {
    return fromBigEndian(this.bytes(size));
  }

  /** Stanzas between users: at least one of to and from. */
  peer(): { to?: string; from?: string } {
    const to = this.optAttr('to');
    const from = this.optAttr('from');
    if (to === undefined && from === undefined)
      this.invalid('to', 'or "from" is required and both are missing');
    return { ...(to === undefined ? {} : { to }), ...(from === undefined ? {} : { from }) };
  }
}

export function errorInfo(n: Node): ErrorInfo {
  const text = n.optAttr('text');
  return { code: n.uint('code', 999), ...(text === undefined ? {} : { text }) };
}

export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
