/**
 * Profiles on the wire (PROTOCOL.md section 5.8): the picture of a user or group
 * (`w:profile:picture`, WhatsApp's namespace), push names and profile look-ups (`w:profile`), the
 * about text (`status`, WhatsApp's), and the `picture` and `profile` notifications.
 */
import { xml, type Element } from '@xmpp/xml';

import { StanzaUnknownError } from './errors.js';
import { Node, errorInfo, optional } from './reader.js';
import type { IqBody, PictureNotificationStanza, ProfileEntry, ProfileNotificationStanza } from './types.js';
import { toBase64 } from './values.js';
import { PICTURE_TYPE, XMLNS } from './vocabulary.js';
import { errorElement, fail, jidList, nonEmpty, optNonEmpty, token, uint } from './writer.js';

type ProfileBody = Extract<
  IqBody,
  { op: `picture_${string}` | `profile_${string}` | 'push_name_set' | 'status_set' }
>;

// ---- writing

function profileEntry(entry: ProfileEntry, i: number): Element {
  const field = `users[${i}]`;
  const jid = nonEmpty(entry.jid, `${field}.jid`);
  if (entry.error !== undefined) return xml('user', { jid }, errorElement(entry.error, `${field}.error`));
  return xml(
    'user',
    { jid, name: optNonEmpty(entry.name, `${field}.name`) },
    entry.status === undefined ? undefined : xml('status', {}, entry.status),
    entry.pictureId === undefined
      ? undefined
      : xml('picture', { id: token(entry.pictureId, `${field}.pictureId`) }),
  );
}

/** The `target` attribute of a picture iq (the user or group whose picture it is), if any. */
export function pictureTarget(body: IqBody): string | undefined {
  switch (body.op) {
    case 'picture_get':
      return nonEmpty(body.target, 'target');
    case 'picture_set':
    case 'picture_remove':
      return optNonEmpty(body.target, 'target');
    default:
      return undefined;
  }
}

/** The child elements of a profile iq (request or answer). */
export function profileIqChildren(body: ProfileBody): Element[] {
  switch (body.op) {
    case 'picture_get':
      return [xml('picture', { type: PICTURE_TYPE })];
    case 'picture_set':
      if (body.image.byteLength === 0) fail('image', 'must not be empty');
      return [xml('picture', { type: PICTURE_TYPE }, toBase64(body.image))];
    case 'picture_remove':
      return [];
    case 'picture_result':
      return [
        xml('picture', {
          id: token(body.id, 'id'),
          type: PICTURE_TYPE,
          url: nonEmpty(body.url, 'url'),
          direct_path: nonEmpty(body.directPath, 'directPath'),
        }),
      ];
    case 'profile_get':
      return [xml('profile', {}, ...jidList('user', body.jids, 'jids'))];
    case 'profile_result':
      return [xml('profile', {}, ...body.users.map(profileEntry))];
    case 'push_name_set':
      return [xml('name', {}, nonEmpty(body.name, 'name'))];
    case 'status_set':
      return [xml('status', {}, body.status)];
  }
}

/** The one child of a picture notification. */
export function pictureEventElement(s: PictureNotificationStanza): Element {
  return s.body.event === 'picture_set' ? xml('set', { id: token(s.body.id, 'body.id') }) : xml('delete', {});
}

/** The root attributes a picture notification adds for groups. */
export function pictureNotificationAttrs(s: PictureNotificationStanza): Record<string, string | undefined> {
  return {
    participant: optNonEmpty(s.participant, 'participant'),
    v: s.version === undefined ? undefined : uint(s.version, Number.MAX_SAFE_INTEGER, 'version'),
  };
}

/** The one child of a profile notification. */
export function profileEventElement(s: ProfileNotificationStanza): Element {
  return s.body.event === 'push_name_changed'
    ? xml('name', {}, nonEmpty(s.body.name, 'body.name'))
    : xml('status', {}, s.body.status);
}

// ---- reading

function readName(n: Node): string {
  const name = n.child('name');
  const text = name.freeText();
  if (text === '') name.invalid(name.path, 'must not be empty');
  return text;
}

function readPictureRequest(
  iq: Node,
  type: 'get' | 'set',
  child: string | undefined,
): ProfileBody | undefined {
  const target = iq.optAttr('target');
  if (type === 'get') {
    if (child !== 'picture') return undefined;
    iq.child('picture').oneOf('type', [PICTURE_TYPE]);
    if (target === undefined) iq.invalid('target', 'is a required attribute and is missing');
    return { op: 'picture_get', target };
  }
  if (child === undefined) return { op: 'picture_remove', ...optional('target', target) };
  if (child !== 'picture') return undefined;
  const picture = iq.child('picture');
  picture.oneOf('type', [PICTURE_TYPE]);
  return { op: 'picture_set', ...optional('target', target), image: picture.bytes() };
}

/** A request of the picture, profile or status namespaces; undefined if it is none of them. */
export function readProfileRequest(iq: Node, type: 'get' | 'set', xmlns: string): ProfileBody | undefined {
  const child = iq.elements()[0]?.name;
  switch (xmlns) {
    case XMLNS.picture:
      return readPictureRequest(iq, type, child);
    case XMLNS.profile:
      if (type === 'get' && child === 'profile')
        return { op: 'profile_get', jids: iq.child('profile').jids('user') };
      if (type === 'set' && child === 'name') return { op: 'push_name_set', name: readName(iq) };
      return undefined;
    case XMLNS.status:
      if (type === 'set' && child === 'status')
        return { op: 'status_set', status: iq.child('status').freeText() };
      return undefined;
    default:
      return undefined;
  }
}

function readProfileEntry(user: Node): ProfileEntry {
  const jid = user.attr('jid');
  const error = user.optChild('error');
  if (error !== undefined) return { jid, error: errorInfo(error) };
  return {
    jid,
    ...optional('name', user.optAttr('name')),
    ...optional('status', user.optChild('status')?.freeText()),
    ...optional('pictureId', user.optChild('picture')?.token('id')),
  };
}

/** A profile answer, recognised by its first child; undefined if it is none of them. */
export function readProfileResult(iq: Node, child: string): ProfileBody | undefined {
  switch (child) {
    case 'picture': {
      const p = iq.child('picture');
      p.oneOf('type', [PICTURE_TYPE]);
      return {
        op: 'picture_result',
        id: p.token('id'),
        url: p.attr('url'),
        directPath: p.attr('direct_path'),
      };
    }
    case 'profile':
      return { op: 'profile_result', users: iq.child('profile').children('user').map(readProfileEntry) };
    default:
      return undefined;
  }
}

function unknownEvent(n: Node, type: string, child: string | undefined): never {
  throw new StanzaUnknownError(
    n.ctx,
    `unknown ${type} notification <${child ?? ''}>: answer with <ack class="notification" error="501">`,
  );
}

/** A `<notification type="picture">`. */
export function readPictureNotification(
  n: Node,
  base: { readonly id: string; readonly from: string; readonly t: number },
): PictureNotificationStanza {
  const head = {
    kind: 'notification' as const,
    ...base,
    ...optional('participant', n.optAttr('participant')),
    ...optional('version', n.optUint('v', Number.MAX_SAFE_INTEGER)),
    type: 'picture' as const,
  };
  const child = n.elements()[0]?.name;
  switch (child) {
    case 'set':
      return { ...head, body: { event: 'picture_set', id: n.child('set').token('id') } };
    case 'delete':
      return { ...head, body: { event: 'picture_removed' } };
    default:
      return unknownEvent(n, 'picture', child);
  }
}

/** A `<notification type="profile">`. */
export function readProfileNotification(
  n: Node,
  base: { readonly id: string; readonly from: string; readonly t: number },
): ProfileNotificationStanza {
  const head = { kind: 'notification' as const, ...base, type: 'profile' as const };
  const child = n.elements()[0]?.name;
  switch (child) {
    case 'name':
      return { ...head, body: { event: 'push_name_changed', name: readName(n) } };
    case 'status':
      return { ...head, body: { event: 'status_changed', status: n.child('status').freeText() } };
    default:
      return unknownEvent(n, 'profile', child);
  }
}
