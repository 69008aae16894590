/**
 * Bytes -> Element -> stanza values. Every failure is typed: limit and syntax errors from codec.ts,
 * `stanza_unknown` for what this codec does not know (answer it, keep the connection), and
 * `stanza_invalid` naming the missing or bad field. Unknown attributes and unknown children of known
 * elements are ignored, so a peer may add to the protocol without breaking this side.
 */
import type { Element } from '@xmpp/xml';

import { DEFAULT_STANZA_LIMITS, parseXml, type StanzaLimits } from './codec.js';
import { StanzaInvalidError, StanzaUnknownError, type StanzaContext } from './errors.js';
import type {
  DirectoryEntry,
  Enc,
  ErrorInfo,
  IqBody,
  IqStanza,
  MessageStanza,
  NotificationStanza,
  PreKey,
  PreKeyFetchEntry,
  ReceiptStanza,
  RetryKeys,
  SignedPreKey,
  Stanza,
} from './types.js';
import {
  KEY_BYTES,
  MAX_PREKEY_ID,
  MAX_RETRY_COUNT,
  PREKEY_ID_BYTES,
  REGISTRATION_ID_BYTES,
  SIGNATURE_BYTES,
  fromBase64,
  fromBigEndian,
  parseDecimal,
} from './values.js';
import {
  ACK_CLASSES,
  E164,
  ENC_TYPES,
  ENC_VERSION,
  IQ_OPS,
  IQ_TYPES,
  MEDIA_TYPES,
  REASON,
} from './vocabulary.js';

const EDGE_SPACE = /^[ \t\n]+|[ \t\n]+$/g;

/** An element being read, with the path used to name fields in errors (`list.key[3].value`). */
class Node {
  constructor(
    readonly ctx: StanzaContext,
    readonly el: Element,
    readonly path: string,
  ) {}

  private field(name: string): string {
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

function registration(n: Node): number {
  return n.child('registration').bigEndian(REGISTRATION_ID_BYTES);
}

function identityKey(n: Node): Uint8Array {
  return n.child('identity').bytes(KEY_BYTES);
}

function preKey(n: Node): PreKey {
  return { id: n.child('id').bigEndian(PREKEY_ID_BYTES), publicKey: n.child('value').bytes(KEY_BYTES) };
}

function signedPreKey(n: Node): SignedPreKey {
  return { ...preKey(n), signature: n.child('signature').bytes(SIGNATURE_BYTES) };
}

function errorInfo(n: Node): ErrorInfo {
  const text = n.optAttr('text');
  return { code: n.uint('code', 999), ...(text === undefined ? {} : { text }) };
}

function fetchEntry(user: Node): PreKeyFetchEntry {
  const jid = user.attr('jid');
  const error = user.optChild('error');
  if (error !== undefined) return { jid, error: errorInfo(error) };
  const key = user.optChild('key');
  return {
    jid,
    registrationId: registration(user),
    identityKey: identityKey(user),
    signedPreKey: signedPreKey(user.child('skey')),
    ...(key === undefined ? {} : { preKey: preKey(key) }),
  };
}

function directoryEntry(user: Node): DirectoryEntry {
  const contactNode = user.child('contact');
  const contact = contactNode.text();
  if (!E164.test(contact))
    contactNode.invalid(contactNode.path, `must be an E.164 number with "+", got "${contact}"`);
  const onNetwork = contactNode.oneOf('type', ['in', 'out'] as const) === 'in';
  if (!onNetwork) return { contact, onNetwork, devices: [] };
  const devices = user.optChild('devices')?.children('device') ?? [];
  return { contact, onNetwork, jid: user.attr('jid'), devices: devices.map((d) => d.uint('id', 65535)) };
}

function unknownIq(iq: Node, what: string): never {
  throw new StanzaUnknownError(
    iq.ctx,
    `unknown iq ${what}: answer with <iq type="error"><error code="501"/></iq>`,
  );
}

/** Requests are recognised by (type, xmlns, child); results by their child alone, as they carry no xmlns. */
function iqBody(iq: Node, type: 'get' | 'set' | 'result' | 'error'): IqBody {
  if (type === 'error') return { op: 'error', error: errorInfo(iq.child('error')) };
  const [first] = iq.elements();
  const child = first?.name;
  if (type === 'result') {
    switch (child) {
      case undefined:
        return { op: 'result' };
      case 'count':
        return { op: 'prekey_count_result', count: iq.child('count').uint('value', MAX_PREKEY_ID + 1) };
      case 'list':
        return { op: 'prekey_fetch_result', users: iq.child('list').children('user').map(fetchEntry) };
      case 'usync':
        return {
          op: 'usync_result',
          entries: iq.child('usync').child('list').children('user').map(directoryEntry),
        };
      case 'media_conn': {
        const mc = iq.child('media_conn');
        const hosts = mc.children('host').map((h) => h.attr('hostname'));
        if (hosts.length === 0) mc.invalid('media_conn.host', 'at least one is required');
        return { op: 'media_conn_result', auth: mc.attr('auth'), ttl: mc.time('ttl'), hosts };
      }
      default:
        return unknownIq(iq, `result <${child}>`);
    }
  }
  const xmlns = iq.attr('xmlns');
  const op = Object.entries(IQ_OPS).find(
    ([name, o]) => o.type === type && o.xmlns === xmlns && requestChild(name) === child,
  )?.[0];
  switch (op) {
    case 'prekey_upload':
      return {
        op,
        registrationId: registration(iq),
        identityKey: identityKey(iq),
        preKeys: iq.child('list').children('key').map(preKey),
        signedPreKey: signedPreKey(iq.child('skey')),
      };
    case 'prekey_count':
    case 'unenlist':
    case 'media_conn':
    case 'ping':
      return { op };
    case 'prekey_fetch': {
      const jids = iq
        .child('key')
        .children('user')
        .map((u) => u.attr('jid'));
      if (jids.length === 0) iq.invalid('key.user', 'at least one is required');
      return { op, jids };
    }
    case 'usync_query': {
      const query = iq.child('usync').child('query');
      const contacts = query.children('contact').map((c) => {
        const number = c.text();
        if (!E164.test(number)) c.invalid(c.path, `must be an E.164 number with "+", got "${number}"`);
        return number;
      });
      if (contacts.length === 0) query.invalid('usync.query.contact', 'at least one is required');
      return { op, contacts };
    }
    case 'enlist': {
      const enlist = iq.child('enlist');
      return {
        op,
        t: enlist.time('t'),
        identityKey: identityKey(enlist),
        signature: enlist.child('signature').bytes(SIGNATURE_BYTES),
      };
    }
    default:
      return unknownIq(iq, `${type} xmlns="${xmlns}" <${child ?? ''}>`);
  }
}

/** The child element that names a request op. */
function requestChild(op: string): string | undefined {
  switch (op) {
    case 'prekey_upload':
      return 'registration';
    case 'prekey_count':
      return 'count';
    case 'prekey_fetch':
      return 'key';
    case 'usync_query':
      return 'usync';
    default:
      return op; // enlist, unenlist, media_conn, ping: the child has the op's name
  }
}

function decodeIq(n: Node): IqStanza {
  const id = n.attr('id');
  const type = n.oneOf('type', IQ_TYPES);
  return {
    kind: 'iq',
    id,
    ...optional('to', n.optAttr('to')),
    ...optional('from', n.optAttr('from')),
    body: iqBody(n, type),
  };
}

function decodeMessage(n: Node): MessageStanza {
  const devices = new Set<number | undefined>();
  const encs = n.children('enc').map((e): Enc => {
    const v = e.attr('v');
    if (v !== ENC_VERSION) e.invalid(`${e.path}.v`, `must be "${ENC_VERSION}", got "${v}"`);
    const device = e.optUint('device', 65535);
    if (devices.has(device)) e.invalid(`${e.path}.device`, 'two <enc> for the same device');
    devices.add(device);
    const mediaType = e.optOneOf('mediatype', MEDIA_TYPES);
    return {
      type: e.oneOf('type', ENC_TYPES),
      ...(device === undefined ? {} : { device }),
      ...(mediaType === undefined ? {} : { mediaType }),
      ciphertext: e.bytes(),
    };
  });
  if (encs.length === 0) n.invalid('enc', 'at least one is required');
  return {
    kind: 'message',
    id: n.attr('id'),
    ...n.peer(),
    type: n.oneOf('type', ['text', 'media'] as const),
    t: n.time('t'),
    encs,
  };
}

function retryKeys(keys: Node): RetryKeys {
  const key = keys.optChild('key');
  return {
    identityKey: identityKey(keys),
    signedPreKey: signedPreKey(keys.child('skey')),
    ...(key === undefined ? {} : { preKey: preKey(key) }),
  };
}

function decodeReceipt(n: Node): ReceiptStanza {
  const type = n.optOneOf('type', ['read', 'retry'] as const);
  const base = { kind: 'receipt' as const, id: n.attr('id'), ...n.peer(), t: n.time('t') };
  if (type === undefined) return base;
  if (type === 'read') return { ...base, type };
  const r = n.child('retry');
  const count = r.uint('count', MAX_RETRY_COUNT);
  if (count < 1) r.invalid('retry.count', `must be 1 to ${MAX_RETRY_COUNT}`);
  const keys = n.optChild('keys');
  if (count >= 2 && keys === undefined) n.invalid('keys', 'is required from the second retry on');
  return {
    ...base,
    type,
    retry: {
      count,
      id: r.attr('id'),
      t: r.time('t'),
      registrationId: registration(n),
      ...(keys === undefined ? {} : { keys: retryKeys(keys) }),
    },
  };
}

function decodeNotification(n: Node): NotificationStanza {
  const base = { kind: 'notification' as const, id: n.attr('id'), from: n.attr('from'), t: n.time('t') };
  const type = n.attr('type');
  if (type !== 'encrypt') {
    throw new StanzaUnknownError(
      n.ctx,
      `unknown notification type "${type}": answer with <ack class="notification" error="501">`,
    );
  }
  const [child] = n.elements();
  switch (child?.name) {
    case 'identity':
      return { ...base, type, body: { event: 'identity_changed' } };
    case 'count':
      return {
        ...base,
        type,
        body: { event: 'prekey_low', count: n.child('count').uint('value', MAX_PREKEY_ID + 1) },
      };
    default:
      throw new StanzaUnknownError(
        n.ctx,
        `unknown encrypt notification <${child?.name ?? ''}>: answer with <ack class="notification" error="501">`,
      );
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** Turns a parsed Element into a stanza value. */
export function elementToStanza(el: Element): Stanza {
  const attr = (name: string): string | undefined =>
    Object.hasOwn(el.attrs, name) ? el.attrs[name] : undefined;
  const ctx: StanzaContext = { name: el.name, id: attr('id'), from: attr('from'), to: attr('to') };
  const n: Node = new Node(ctx, el, '');
  switch (el.name) {
    case 'success':
      return { kind: 'success', t: n.time('t'), account: n.attr('account'), device: n.uint('device', 65535) };
    case 'failure': {
      const reason = n.attr('reason');
      if (!REASON.test(reason)) n.invalid('reason', `must be a snake_case token, got "${reason}"`);
      return { kind: 'failure', reason, ...optional('text', n.optAttr('text')) };
    }
    case 'iq':
      return decodeIq(n);
    case 'message':
      return decodeMessage(n);
    case 'ack':
      return {
        kind: 'ack',
        class: n.oneOf('class', ACK_CLASSES),
        id: n.attr('id'),
        ...optional('to', n.optAttr('to')),
        ...optional('from', n.optAttr('from')),
        ...optional('t', n.optUint('t', Number.MAX_SAFE_INTEGER)),
        ...optional('error', n.optUint('error', 999)),
      };
    case 'receipt':
      return decodeReceipt(n);
    case 'chatstate': {
      const state = n.elements()[0]?.name;
      if (state !== 'composing' && state !== 'paused') {
        n.invalid('', `must contain <composing/> or <paused/>, got <${state ?? ''}>`);
      }
      return { kind: 'chatstate', ...n.peer(), state };
    }
    case 'presence':
      return {
        kind: 'presence',
        type: n.oneOf('type', ['available', 'unavailable'] as const),
        ...optional('to', n.optAttr('to')),
        ...optional('from', n.optAttr('from')),
        ...optional('last', n.optUint('last', Number.MAX_SAFE_INTEGER)),
      };
    case 'notification':
      return decodeNotification(n);
    default:
      throw new StanzaUnknownError(
        ctx,
        `unknown stanza <${el.name}>: answer with an error and keep the connection`,
      );
  }
}

/**
 * Decodes the bytes of one frame. Throws only InteropErrors: StanzaLimitError and StanzaMalformedError
 * (close the connection), StanzaUnknownError and StanzaInvalidError (answer with an error).
 */
export function decodeStanza(bytes: Uint8Array, limits: StanzaLimits = DEFAULT_STANZA_LIMITS): Stanza {
  return elementToStanza(parseXml(bytes, limits));
}
