/**
 * Stanza values -> Elements (built with xml(), never text) -> bytes. The encoder checks what the
 * decoder on the other side would refuse (key sizes, id ranges), so a bug shows up at the sender as
 * `stanza_unencodable` instead of as an error answer from the peer.
 */
import { xml, type Element } from '@xmpp/xml';

import { DEFAULT_STANZA_LIMITS, elementToBytes, type StanzaLimits } from './codec.js';
import { StanzaUnencodableError } from './errors.js';
import type {
  ErrorInfo,
  IqBody,
  IqStanza,
  MessageStanza,
  NotificationStanza,
  PreKey,
  PreKeyFetchEntry,
  ReceiptStanza,
  SignedPreKey,
  Stanza,
} from './types.js';
import {
  KEY_BYTES,
  MAX_PREKEY_ID,
  MAX_REGISTRATION_ID,
  MAX_RETRY_COUNT,
  PREKEY_ID_BYTES,
  REGISTRATION_ID_BYTES,
  SIGNATURE_BYTES,
  isUint,
  toBase64,
  toBigEndian,
} from './values.js';
import { E164, ENC_VERSION, IQ_OPS, REASON } from './vocabulary.js';

function fail(field: string, message: string): never {
  throw new StanzaUnencodableError(field, `cannot encode ${field}: ${message}`);
}

function bytes(value: Uint8Array, size: number, field: string): string {
  if (value.byteLength !== size) fail(field, `must be ${size} bytes, got ${value.byteLength}`);
  return toBase64(value);
}

function uint(value: number, max: number, field: string): string {
  if (!isUint(value, max)) fail(field, `must be an integer from 0 to ${max}, got ${value}`);
  return String(value);
}

function optUint(value: number | undefined, max: number, field: string): string | undefined {
  return value === undefined ? undefined : uint(value, max, field);
}

function nonEmpty(value: string, field: string): string {
  if (value.length === 0) fail(field, 'must not be empty');
  return value;
}

function optNonEmpty(value: string | undefined, field: string): string | undefined {
  return value === undefined ? undefined : nonEmpty(value, field);
}

function timestamp(value: number, field: string): string {
  return uint(value, Number.MAX_SAFE_INTEGER, field);
}

function registration(id: number, field: string): Element {
  uint(id, MAX_REGISTRATION_ID, field);
  return xml('registration', {}, toBase64(toBigEndian(id, REGISTRATION_ID_BYTES)));
}

function preKeyId(id: number, field: string): Element {
  uint(id, MAX_PREKEY_ID, field);
  return xml('id', {}, toBase64(toBigEndian(id, PREKEY_ID_BYTES)));
}

/** Stanzas between users name the other side: `to` when sending, `from` when the gateway delivers. */
function peer(s: { readonly to?: string | undefined; readonly from?: string | undefined }): {
  to?: string;
  from?: string;
} {
  if (s.to === undefined && s.from === undefined)
    fail('to', 'name the peer in to (sending) or from (delivering)');
  return { to: optNonEmpty(s.to, 'to'), from: optNonEmpty(s.from, 'from') };
}

function keyElement(key: PreKey, field: string): Element {
  return xml(
    'key',
    {},
    preKeyId(key.id, `${field}.id`),
    xml('value', {}, bytes(key.publicKey, KEY_BYTES, `${field}.value`)),
  );
}

function skeyElement(key: SignedPreKey, field: string): Element {
  return xml(
    'skey',
    {},
    preKeyId(key.id, `${field}.id`),
    xml('value', {}, bytes(key.publicKey, KEY_BYTES, `${field}.value`)),
    xml('signature', {}, bytes(key.signature, SIGNATURE_BYTES, `${field}.signature`)),
  );
}

function identity(key: Uint8Array, field: string): Element {
  return xml('identity', {}, bytes(key, KEY_BYTES, field));
}

function errorElement(error: ErrorInfo, field: string): Element {
  return xml('error', { code: uint(error.code, 999, `${field}.code`), text: error.text });
}

function fetchEntry(entry: PreKeyFetchEntry, i: number): Element {
  const field = `users[${i}]`;
  const jid = nonEmpty(entry.jid, `${field}.jid`);
  if (entry.error !== undefined) return xml('user', { jid }, errorElement(entry.error, `${field}.error`));
  return xml(
    'user',
    { jid },
    registration(entry.registrationId, `${field}.registrationId`),
    identity(entry.identityKey, `${field}.identityKey`),
    skeyElement(entry.signedPreKey, `${field}.signedPreKey`),
    entry.preKey === undefined ? undefined : keyElement(entry.preKey, `${field}.preKey`),
  );
}

function iqChildren(body: IqBody): Element[] {
  switch (body.op) {
    case 'prekey_upload':
      return [
        registration(body.registrationId, 'registrationId'),
        identity(body.identityKey, 'identityKey'),
        xml('list', {}, ...body.preKeys.map((k, i) => keyElement(k, `preKeys[${i}]`))),
        skeyElement(body.signedPreKey, 'signedPreKey'),
      ];
    case 'prekey_count':
      return [xml('count', {})];
    case 'prekey_count_result':
      return [xml('count', { value: uint(body.count, MAX_PREKEY_ID + 1, 'count') })];
    case 'prekey_fetch':
      if (body.jids.length === 0) fail('jids', 'ask for at least one JID');
      return [
        xml('key', {}, ...body.jids.map((jid, i) => xml('user', { jid: nonEmpty(jid, `jids[${i}]`) }))),
      ];
    case 'prekey_fetch_result':
      return [xml('list', {}, ...body.users.map(fetchEntry))];
    case 'usync_query':
      if (body.contacts.length === 0) fail('contacts', 'ask for at least one number');
      return [
        xml(
          'usync',
          {},
          xml(
            'query',
            {},
            ...body.contacts.map((c, i) => {
              if (!E164.test(c)) fail(`contacts[${i}]`, `"${c}" is not an E.164 number with "+"`);
              return xml('contact', {}, c);
            }),
          ),
        ),
      ];
    case 'usync_result':
      return [
        xml(
          'usync',
          {},
          xml(
            'list',
            {},
            ...body.entries.map((e, i) => {
              const field = `entries[${i}]`;
              if (!E164.test(e.contact))
                fail(`${field}.contact`, `"${e.contact}" is not an E.164 number with "+"`);
              if (e.onNetwork && e.jid === undefined)
                fail(`${field}.jid`, 'a contact on the network needs its JID');
              if (!e.onNetwork && (e.jid !== undefined || e.devices.length > 0)) {
                fail(field, 'a contact not on the network has no JID and no devices');
              }
              return xml(
                'user',
                { jid: optNonEmpty(e.jid, `${field}.jid`) },
                xml('contact', { type: e.onNetwork ? 'in' : 'out' }, e.contact),
                e.onNetwork
                  ? xml(
                      'devices',
                      {},
                      ...e.devices.map((d, j) =>
                        xml('device', { id: uint(d, 65535, `${field}.devices[${j}]`) }),
                      ),
                    )
                  : undefined,
              );
            }),
          ),
        ),
      ];
    case 'enlist':
      return [
        xml(
          'enlist',
          { t: timestamp(body.t, 't') },
          identity(body.identityKey, 'identityKey'),
          xml('signature', {}, bytes(body.signature, SIGNATURE_BYTES, 'signature')),
        ),
      ];
    case 'unenlist':
      return [xml('unenlist', {})];
    case 'media_conn':
      return [xml('media_conn', {})];
    case 'media_conn_result':
      if (body.hosts.length === 0) fail('hosts', 'name at least one host');
      return [
        xml(
          'media_conn',
          { auth: nonEmpty(body.auth, 'auth'), ttl: uint(body.ttl, Number.MAX_SAFE_INTEGER, 'ttl') },
          ...body.hosts.map((h, i) => xml('host', { hostname: nonEmpty(h, `hosts[${i}]`) })),
        ),
      ];
    case 'ping':
      return [xml('ping', {})];
    case 'result':
      return [];
    case 'error':
      return [errorElement(body.error, 'error')];
  }
}

function encodeIq(s: IqStanza): Element {
  const { type, xmlns } = IQ_OPS[s.body.op];
  return xml(
    'iq',
    { id: nonEmpty(s.id, 'id'), type, xmlns, to: optNonEmpty(s.to, 'to'), from: optNonEmpty(s.from, 'from') },
    ...iqChildren(s.body),
  );
}

function encodeMessage(s: MessageStanza): Element {
  if (s.encs.length === 0) fail('encs', 'a message carries at least one <enc>');
  const devices = new Set<number | undefined>();
  const encs = s.encs.map((e, i) => {
    if (devices.has(e.device)) fail(`encs[${i}].device`, 'two <enc> for the same device');
    devices.add(e.device);
    if (e.ciphertext.byteLength === 0) fail(`encs[${i}].ciphertext`, 'must not be empty');
    return xml(
      'enc',
      {
        v: ENC_VERSION,
        type: e.type,
        device: optUint(e.device, 65535, `encs[${i}].device`),
        mediatype: e.mediaType,
      },
      toBase64(e.ciphertext),
    );
  });
  return xml(
    'message',
    {
      id: nonEmpty(s.id, 'id'),
      ...peer(s),
      type: s.type,
      t: timestamp(s.t, 't'),
    },
    ...encs,
  );
}

function encodeReceipt(s: ReceiptStanza): Element {
  if ((s.type === 'retry') !== (s.retry !== undefined))
    fail('retry', 'a receipt carries retry details exactly when its type is retry');
  const attrs = {
    id: nonEmpty(s.id, 'id'),
    ...peer(s),
    type: s.type,
    t: timestamp(s.t, 't'),
  };
  const r = s.retry;
  if (r === undefined) return xml('receipt', attrs);
  if (r.count < 1) fail('retry.count', `must be 1 to ${MAX_RETRY_COUNT}`);
  if (r.count >= 2 && r.keys === undefined)
    fail('retry.keys', 'from the second retry on, the receipt carries a key bundle');
  return xml(
    'receipt',
    attrs,
    xml('retry', {
      count: uint(r.count, MAX_RETRY_COUNT, 'retry.count'),
      id: nonEmpty(r.id, 'retry.id'),
      t: timestamp(r.t, 'retry.t'),
    }),
    registration(r.registrationId, 'retry.registrationId'),
    r.keys === undefined
      ? undefined
      : xml(
          'keys',
          {},
          identity(r.keys.identityKey, 'retry.keys.identityKey'),
          skeyElement(r.keys.signedPreKey, 'retry.keys.signedPreKey'),
          r.keys.preKey === undefined ? undefined : keyElement(r.keys.preKey, 'retry.keys.preKey'),
        ),
  );
}

function encodeNotification(s: NotificationStanza): Element {
  const child =
    s.body.event === 'identity_changed'
      ? xml('identity', {})
      : xml('count', { value: uint(s.body.count, MAX_PREKEY_ID + 1, 'body.count') });
  return xml(
    'notification',
    { id: nonEmpty(s.id, 'id'), type: s.type, from: nonEmpty(s.from, 'from'), t: timestamp(s.t, 't') },
    child,
  );
}

/** Builds the Element of a stanza; throws StanzaUnencodableError for values the protocol cannot carry. */
export function encodeStanza(s: Stanza): Element {
  switch (s.kind) {
    case 'success':
      return xml('success', {
        t: timestamp(s.t, 't'),
        account: nonEmpty(s.account, 'account'),
        device: uint(s.device, 65535, 'device'),
      });
    case 'failure':
      if (!REASON.test(s.reason)) fail('reason', `"${s.reason}" is not a snake_case token`);
      return xml('failure', { reason: s.reason, text: s.text });
    case 'iq':
      return encodeIq(s);
    case 'message':
      return encodeMessage(s);
    case 'ack':
      return xml('ack', {
        class: s.class,
        id: nonEmpty(s.id, 'id'),
        to: optNonEmpty(s.to, 'to'),
        from: optNonEmpty(s.from, 'from'),
        t: s.t === undefined ? undefined : timestamp(s.t, 't'),
        error: optUint(s.error, 999, 'error'),
      });
    case 'receipt':
      return encodeReceipt(s);
    case 'chatstate':
      return xml('chatstate', peer(s), xml(s.state, {}));
    case 'presence':
      return xml('presence', {
        type: s.type,
        to: optNonEmpty(s.to, 'to'),
        from: optNonEmpty(s.from, 'from'),
        last: s.last === undefined ? undefined : timestamp(s.last, 'last'),
      });
    case 'notification':
      return encodeNotification(s);
  }
}

/** The UTF-8 bytes of one frame carrying the stanza. */
export function toBytes(s: Stanza, limits: StanzaLimits = DEFAULT_STANZA_LIMITS): Uint8Array {
  return elementToBytes(encodeStanza(s), limits);
}
