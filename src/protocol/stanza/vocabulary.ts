/** The names the stanzas use on the wire, in one place for the encoder, the decoder and the docs. */
import type { AckClass, EncType, GroupSetting, IqOp, IqType, MediaType, ParticipantAction } from './types.js';

export const XMLNS = Object.freeze({
  encrypt: 'encrypt',
  usync: 'usync',
  interop: 'interop',
  media: 'w:m',
  ping: 'w:p',
  groups: 'w:g2',
  picture: 'w:profile:picture',
  profile: 'w:profile',
  status: 'status',
});

/** The server of group JIDs (`<id>@g.wa.interop`), and the `to` of group requests that name no group. */
export const GROUP_SERVER = 'g.wa.interop';

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
    group_create: { type: 'set', xmlns: XMLNS.groups },
    group_info: { type: 'get', xmlns: XMLNS.groups },
    group_list: { type: 'get', xmlns: XMLNS.groups },
    group_participants: { type: 'set', xmlns: XMLNS.groups },
    group_leave: { type: 'set', xmlns: XMLNS.groups },
    group_subject: { type: 'set', xmlns: XMLNS.groups },
    group_description: { type: 'set', xmlns: XMLNS.groups },
    group_setting: { type: 'set', xmlns: XMLNS.groups },
    group_invite: { type: 'get', xmlns: XMLNS.groups },
    group_invite_reset: { type: 'set', xmlns: XMLNS.groups },
    group_invite_info: { type: 'get', xmlns: XMLNS.groups },
    group_invite_join: { type: 'set', xmlns: XMLNS.groups },
    picture_get: { type: 'get', xmlns: XMLNS.picture },
    picture_set: { type: 'set', xmlns: XMLNS.picture },
    picture_remove: { type: 'set', xmlns: XMLNS.picture },
    profile_get: { type: 'get', xmlns: XMLNS.profile },
    push_name_set: { type: 'set', xmlns: XMLNS.profile },
    status_set: { type: 'set', xmlns: XMLNS.status },
    prekey_count_result: { type: 'result' },
    prekey_fetch_result: { type: 'result' },
    usync_result: { type: 'result' },
    media_conn_result: { type: 'result' },
    group_info_result: { type: 'result' },
    group_list_result: { type: 'result' },
    group_participants_result: { type: 'result' },
    group_invite_result: { type: 'result' },
    picture_result: { type: 'result' },
    profile_result: { type: 'result' },
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
export const PARTICIPANT_ACTIONS: readonly ParticipantAction[] = ['add', 'remove', 'promote', 'demote'];
export const GROUP_SETTINGS: readonly GroupSetting[] = [
  'announcement',
  'not_announcement',
  'locked',
  'unlocked',
];
/** Group ops addressed to one group: the iq's `to` is the group's JID. */
export const GROUP_ADDRESSED: ReadonlySet<IqOp> = new Set<IqOp>([
  'group_info',
  'group_participants',
  'group_subject',
  'group_description',
  'group_setting',
  'group_invite',
  'group_invite_reset',
]);
/** Invite codes, create keys, description and picture ids: opaque tokens of a safe alphabet. */
export const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
/** The only picture type: the full image (WhatsApp also has a `preview`). */
export const PICTURE_TYPE = 'image';
