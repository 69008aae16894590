/** The names the stanzas use on the wire, in one place for the encoder, the decoder and the docs. */
import type { AckClass, EncType, IqOp, IqType, MediaType } from './types.js';

export const XMLNS = Object.freeze({
  encrypt: 'encrypt',
  usync: 'usync',
  interop: 'interop',
  media: 'w:m',
  ping: 'w:p',
});

/** The only `v` of `<enc>` this codec speaks. */
export const ENC_VERSION = '2';

/** Each iq operation fixes the iq's type and, for requests, its xmlns (results and errors carry none). */
export const IQ_OPS: Readonly<Record<IqOp, { readonly type: IqType; readonly xmlns?: string }>> =
  Object.freeze({
    prekey_upload: { type: 'set', xmlns: XMLNS.encrypt },
    prekey_count: { type: 'get', xmlns: XMLNS.encrypt },
    prekey_fetch: { type: 'get', xmlns: XMLNS.encrypt },
    usync_query: { type: 'get', xmlns: XMLNS.usync },
    enlist: { type: 'set', xmlns: XMLNS.interop },
    unenlist: { type: 'set', xmlns: XMLNS.interop },
    media_conn: { type: 'set', xmlns: XMLNS.media },
    ping: { type: 'get', xmlns: XMLNS.ping },
    prekey_count_result: { type: 'result' },
    prekey_fetch_result: { type: 'result' },
    usync_result: { type: 'result' },
    media_conn_result: { type: 'result' },
    result: { type: 'result' },
    error: { type: 'error' },
  });

export const IQ_TYPES: readonly IqType[] = ['get', 'set', 'result', 'error'];
export const ENC_TYPES: readonly EncType[] = ['pkmsg', 'msg', 'skmsg'];
export const MEDIA_TYPES: readonly MediaType[] = ['image', 'video', 'audio', 'ptt', 'document', 'sticker'];
export const ACK_CLASSES: readonly AckClass[] = ['message', 'receipt', 'notification'];
/** Failure reasons are snake_case tokens; the set is the authentication layer's. */
export const REASON = /^[a-z][a-z0-9_]{0,63}$/;
/** A directory look-up asks for E.164 numbers written with "+". */
export const E164 = /^\+[1-9][0-9]{6,14}$/;
