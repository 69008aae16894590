/**
 * Bytes -> Element -> stanza values. Every failure is typed: limit and syntax errors from codec.ts,
 * `stanza_unknown` for what this codec does not know (answer it, keep the connection), and
 * `stanza_invalid` naming the missing or bad field. Unknown attributes and unknown children of known
 * elements are ignored, so a peer may add to the protocol without breaking this side.
 */
import type { Element } from '@xmpp/xml';

import { DEFAULT_STANZA_LIMITS, parseXml, type StanzaLimits } from './codec.js';
import { StanzaUnknownError, type StanzaContext } from './errors.js';
import { readGroupNotification, readGroupRequest, readGroupResult } from './group.js';
import {
  readPictureNotification,
  readProfileNotification,
  readProfileRequest,
  readProfileResult,
} from './profile.js';
import { Node, errorInfo, optional } from './reader.js';
import type {
  DirectoryEntry,
  Enc,
  IqBody,
  IqStanza,
  MessageStanza,
  NotificationStanza,
  ParticipantEnc,
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
} from './values.js';
import {
  ACK_CLASSES,
  E164,
  ENC_TYPES,
  ENC_VERSION,
  GROUP_ADDRESSED,
  IQ_OPS,
  IQ_TYPES,
  MEDIA_TYPES,
  REASON,
  XMLNS,
} from './vocabulary.js';

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
        return (
          readGroupResult(iq, child) ?? readProfileResult(iq, child) ?? unknownIq(iq, `result <${child}>`)
        );
    }
  }
  const xmlns = iq.attr('xmlns');
  const unknown = (): never => unknownIq(iq, `${type} xmlns="${xmlns}" <${child ?? ''}>`);
  if (xmlns === XMLNS.groups) {
    const body = readGroupRequest(iq, type) ?? unknown();
    if (GROUP_ADDRESSED.has(body.op) && iq.optAttr('to') === undefined)
      iq.invalid('to', 'is required: a request about a group is sent to the group');
    return body;
  }
  if (xmlns === XMLNS.picture || xmlns === XMLNS.profile || xmlns === XMLNS.status)
    return readProfileRequest(iq, type, xmlns) ?? unknown();
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
      return unknown();
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

function readEnc(e: Node): Enc {
  const v = e.attr('v');
  if (v !== ENC_VERSION) e.invalid(`${e.path}.v`, `must be "${ENC_VERSION}", got "${v}"`);
  const device = e.optUint('device', 65535);
  const mediaType = e.optOneOf('mediatype', MEDIA_TYPES);
  return {
    type: e.oneOf('type', ENC_TYPES),
    ...optional('device', device),
    ...optional('mediaType', mediaType),
    ciphertext: e.bytes(),
  };
}

/** A group message: one skmsg, at most one pairwise enc beside it (delivered), none naming a device. */
function checkGroupEncs(encNodes: readonly Node[], encs: readonly Enc[]): void {
  let pairwise = 0;
  encs.forEach((e, i) => {
    const node = encNodes[i] as Node;
    if (e.device !== undefined)
      node.invalid(`${node.path}.device`, 'the encs of a group message name no device');
    if (e.type === 'skmsg') return;
    if (++pairwise > 1)
      node.invalid(`${node.path}.type`, 'a group message has one skmsg and at most one other enc');
  });
  const skmsg = encNodes.filter((_, i) => encs[i]?.type === 'skmsg');
  if (skmsg.length > 1) {
    const second = skmsg[1] as Node;
    second.invalid(`${second.path}.type`, 'a group message has exactly one skmsg');
  }
}

function readParticipants(list: Node): ParticipantEnc[] {
  const seen = new Set<string>();
  const participants = list.children('to').map((to): ParticipantEnc => {
    const jid = to.attr('jid');
    if (seen.has(jid)) to.invalid(`${to.path}.jid`, `"${jid}" appears twice`);
    seen.add(jid);
    const encNode = to.child('enc');
    const enc = readEnc(encNode);
    if (enc.type === 'skmsg') encNode.invalid(`${encNode.path}.type`, 'a participant gets a pkmsg or msg');
    if (enc.device !== undefined) encNode.invalid(`${encNode.path}.device`, 'the <to> names the device');
    return { jid, enc };
  });
  if (participants.length === 0) list.invalid('participants.to', 'at least one is required');
  return participants;
}

function decodeMessage(n: Node): MessageStanza {
  const encNodes = n.children('enc');
  const encs = encNodes.map(readEnc);
  if (encs.length === 0) n.invalid('enc', 'at least one is required');
  const group = encs.some((e) => e.type === 'skmsg');
  if (group) checkGroupEncs(encNodes, encs);
  else {
    const devices = new Set<number | undefined>();
    encs.forEach((e, i) => {
      const node = encNodes[i] as Node;
      if (devices.has(e.device)) node.invalid(`${node.path}.device`, 'two <enc> for the same device');
      devices.add(e.device);
    });
  }
  const list = n.optChild('participants');
  if (list !== undefined && !group) n.invalid('participants', 'only a message with a skmsg has participants');
  return {
    kind: 'message',
    id: n.attr('id'),
    ...n.peer(),
    ...optional('participant', n.optAttr('participant')),
    ...optional('notify', n.optAttr('notify')),
    type: n.oneOf('type', ['text', 'media'] as const),
    t: n.time('t'),
    encs,
    ...optional('participants', list === undefined ? undefined : readParticipants(list)),
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
  const base = {
    kind: 'receipt' as const,
    id: n.attr('id'),
    ...n.peer(),
    ...optional('participant', n.optAttr('participant')),
    t: n.time('t'),
  };
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
  switch (type) {
    case 'encrypt':
      break;
    case 'w:gp2':
      return readGroupNotification(n, base);
    case 'picture':
      return readPictureNotification(n, base);
    case 'profile':
      return readProfileNotification(n, base);
    default:
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
