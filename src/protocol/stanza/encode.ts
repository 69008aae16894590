/**
 * Stanza values -> Elements (built with xml(), never text) -> bytes. The encoder checks what the
 * decoder on the other side would refuse (key sizes, id ranges), so a bug shows up at the sender as
 * `stanza_unencodable` instead of as an error answer from the peer.
 */
import { xml, type Element } from '@xmpp/xml';

import { DEFAULT_STANZA_LIMITS, elementToBytes, type StanzaLimits } from './codec.js';
import { groupEventElement, groupIqChildren } from './group.js';
import {
  pictureEventElement,
  pictureNotificationAttrs,
  pictureTarget,
  profileEventElement,
  profileIqChildren,
} from './profile.js';
import type {
  Enc,
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
  toBase64,
  toBigEndian,
} from './values.js';
import { E164, ENC_VERSION, GROUP_ADDRESSED, IQ_OPS, REASON } from './vocabulary.js';
import {
  bytes,
  errorElement,
  fail,
  nonEmpty,
  optNonEmpty,
  optUint,
  peer,
  timestamp,
  uint,
} from './writer.js';

function registration(id: number, field: string): Element {
  uint(id, MAX_REGISTRATION_ID, field);
  return xml('registration', {}, toBase64(toBigEndian(id, REGISTRATION_ID_BYTES)));
}

function preKeyId(id: number, field: string): Element {
  uint(id, MAX_PREKEY_ID, field);
  return xml('id', {}, toBase64(toBigEndian(id, PREKEY_ID_BYTES)));
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
    case 'group_create':
    case 'group_info':
    case 'group_list':
    case 'group_participants':
    case 'group_leave':
    case 'group_subject':
    case 'group_description':
    case 'group_setting':
    case 'group_invite':
    case 'group_invite_reset':
    case 'group_invite_info':
    case 'group_invite_join':
    case 'group_info_result':
    case 'group_list_result':
    case 'group_participants_result':
    case 'group_invite_result':
      return groupIqChildren(body);
    case 'picture_get':
    case 'picture_set':
    case 'picture_remove':
    case 'picture_result':
    case 'profile_get':
    case 'profile_result':
    case 'push_name_set':
    case 'status_set':
      return profileIqChildren(body);
  }
}

function encodeIq(s: IqStanza): Element {
  const { type, xmlns } = IQ_OPS[s.body.op];
  if (GROUP_ADDRESSED.has(s.body.op) && s.to === undefined)
    fail('to', 'a request about a group is sent to the group');
  return xml(
    'iq',
    {
      id: nonEmpty(s.id, 'id'),
      type,
      xmlns,
      to: optNonEmpty(s.to, 'to'),
      from: optNonEmpty(s.from, 'from'),
      target: pictureTarget(s.body),
    },
    ...iqChildren(s.body),
  );
}

function encElement(e: Enc, field: string): Element {
  if (e.ciphertext.byteLength === 0) fail(`${field}.ciphertext`, 'must not be empty');
  return xml(
    'enc',
    {
      v: ENC_VERSION,
      type: e.type,
      device: optUint(e.device, 65535, `${field}.device`),
      mediatype: e.mediaType,
    },
    toBase64(e.ciphertext),
  );
}

/** A group message: one skmsg, at most one pairwise enc beside it (delivered), none naming a device. */
function checkGroupEncs(encs: readonly Enc[]): void {
  let pairwise = 0;
  encs.forEach((e, i) => {
    if (e.device !== undefined) fail(`encs[${i}].device`, 'the encs of a group message name no device');
    if (e.type !== 'skmsg' && ++pairwise > 1)
      fail(`encs[${i}]`, 'a group message has one skmsg and at most one other enc');
  });
  if (encs.length - pairwise !== 1) fail('encs', 'a group message has exactly one skmsg');
}

function participantsElement(s: MessageStanza): Element | undefined {
  const list = s.participants;
  if (list === undefined) return undefined;
  if (list.length === 0) fail('participants', 'leave it out rather than send it empty');
  if (!s.encs.some((e) => e.type === 'skmsg'))
    fail('participants', 'only a message with a skmsg has participants');
  const seen = new Set<string>();
  return xml(
    'participants',
    {},
    ...list.map((p, i) => {
      const field = `participants[${i}]`;
      if (seen.has(p.jid)) fail(`${field}.jid`, `"${p.jid}" appears twice`);
      seen.add(p.jid);
      if (p.enc.type === 'skmsg') fail(`${field}.enc.type`, 'a participant gets a pkmsg or msg');
      if (p.enc.device !== undefined) fail(`${field}.enc.device`, 'the <to> names the device');
      return xml('to', { jid: nonEmpty(p.jid, `${field}.jid`) }, encElement(p.enc, `${field}.enc`));
    }),
  );
}

function encodeMessage(s: MessageStanza): Element {
  if (s.encs.length === 0) fail('encs', 'a message carries at least one <enc>');
  if (s.encs.some((e) => e.type === 'skmsg')) checkGroupEncs(s.encs);
  else {
    const devices = new Set<number | undefined>();
    s.encs.forEach((e, i) => {
      if (devices.has(e.device)) fail(`encs[${i}].device`, 'two <enc> for the same device');
      devices.add(e.device);
    });
  }
  return xml(
    'message',
    {
      id: nonEmpty(s.id, 'id'),
      ...peer(s),
      participant: optNonEmpty(s.participant, 'participant'),
      notify: optNonEmpty(s.notify, 'notify'),
      type: s.type,
      t: timestamp(s.t, 't'),
    },
    ...s.encs.map((e, i) => encElement(e, `encs[${i}]`)),
    participantsElement(s),
  );
}

function encodeReceipt(s: ReceiptStanza): Element {
  if ((s.type === 'retry') !== (s.retry !== undefined))
    fail('retry', 'a receipt carries retry details exactly when its type is retry');
  const attrs = {
    id: nonEmpty(s.id, 'id'),
    ...peer(s),
    participant: optNonEmpty(s.participant, 'participant'),
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
  const attrs = {
    id: nonEmpty(s.id, 'id'),
    type: s.type,
    from: nonEmpty(s.from, 'from'),
    t: timestamp(s.t, 't'),
  };
  switch (s.type) {
    case 'encrypt':
      return xml(
        'notification',
        attrs,
        s.body.event === 'identity_changed'
          ? xml('identity', {})
          : xml('count', { value: uint(s.body.count, MAX_PREKEY_ID + 1, 'body.count') }),
      );
    case 'w:gp2':
      if (s.version < 1) fail('version', 'versions start at 1');
      return xml(
        'notification',
        {
          ...attrs,
          participant: optNonEmpty(s.participant, 'participant'),
          v: uint(s.version, Number.MAX_SAFE_INTEGER, 'version'),
        },
        groupEventElement(s.body),
      );
    case 'picture':
      return xml('notification', { ...attrs, ...pictureNotificationAttrs(s) }, pictureEventElement(s));
    case 'profile':
      return xml('notification', attrs, profileEventElement(s));
  }
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
