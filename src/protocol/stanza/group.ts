/**
 * Groups on the wire (PROTOCOL.md section 5.7): the `w:g2` requests and answers, the `<group>`
 * element that describes a group, and the `w:gp2` notifications that announce its changes. The
 * names are WhatsApp's (`create`, `add`, `remove`, `promote`, `demote`, `subject`, `invite`).
 */
import { xml, type Element } from '@xmpp/xml';

import { StanzaUnknownError } from './errors.js';
import { Node, optional } from './reader.js';
import type {
  GroupEvent,
  GroupInfo,
  GroupNotificationStanza,
  IqBody,
  ParticipantAction,
  ParticipantResult,
} from './types.js';
import { GROUP_SETTINGS, PARTICIPANT_ACTIONS } from './vocabulary.js';
import { fail, jidList, nonEmpty, optToken, timestamp, token, uint } from './writer.js';

type GroupBody = Extract<IqBody, { op: `group_${string}` }>;
type GroupRequest = Exclude<GroupBody, { op: `${string}_result` }>;

const MAX_VERSION = Number.MAX_SAFE_INTEGER;

// ---- writing

function participantElements(
  participants: readonly {
    readonly jid: string;
    readonly admin?: boolean;
    readonly error?: number | undefined;
  }[],
  field: string,
): Element[] {
  const seen = new Set<string>();
  return participants.map((p, i) => {
    const f = `${field}[${i}]`;
    if (seen.has(p.jid)) fail(`${f}.jid`, `"${p.jid}" appears twice`);
    seen.add(p.jid);
    return xml('participant', {
      jid: nonEmpty(p.jid, `${f}.jid`),
      type: p.admin === true ? 'admin' : undefined,
      error: p.error === undefined ? undefined : uint(p.error, 999, `${f}.error`),
    });
  });
}

/** `<group>`: a group's state; in the answer to a create, also the participants not added. */
export function groupElement(
  g: GroupInfo,
  field: string,
  failed: readonly ParticipantResult[] = [],
): Element {
  if (g.participants.length === 0) fail(`${field}.participants`, 'a group has at least one participant');
  if (g.version < 1) fail(`${field}.version`, 'versions start at 1');
  const notAdded = failed.map((f, i) => {
    if (f.error === undefined) fail(`failed[${i}].error`, 'a participant not added has an error code');
    return { jid: f.jid, error: f.error };
  });
  return xml(
    'group',
    {
      jid: nonEmpty(g.jid, `${field}.jid`),
      subject: nonEmpty(g.subject, `${field}.subject`),
      creator: nonEmpty(g.creator, `${field}.creator`),
      creation: timestamp(g.creation, `${field}.creation`),
      v: uint(g.version, MAX_VERSION, `${field}.version`),
    },
    g.description === undefined
      ? undefined
      : descriptionElement(g.description.id, undefined, g.description.text, `${field}.description`),
    g.announce ? xml('announcement', {}) : undefined,
    g.locked ? xml('locked', {}) : undefined,
    g.pictureId === undefined ? undefined : xml('picture', { id: token(g.pictureId, `${field}.pictureId`) }),
    ...participantElements([...g.participants, ...notAdded], `${field}.participants`),
  );
}

/** `<description id prev?>` with `<body>`, or with `delete="true"` when there is no text. */
function descriptionElement(
  id: string,
  prev: string | undefined,
  text: string | undefined,
  field: string,
): Element {
  if (text === '') fail(`${field}.text`, 'must not be empty (leave it out to delete the description)');
  return xml(
    'description',
    {
      id: token(id, `${field}.id`),
      prev: optToken(prev, `${field}.prev`),
      delete: text === undefined ? 'true' : undefined,
    },
    text === undefined ? undefined : xml('body', {}, text),
  );
}

/** The child elements of a w:g2 iq (request or answer). */
export function groupIqChildren(body: GroupBody): Element[] {
  switch (body.op) {
    case 'group_create': {
      const seen = new Set<string>();
      const participants = body.participants.map((jid, i) => {
        if (seen.has(jid)) fail(`participants[${i}]`, `"${jid}" appears twice`);
        seen.add(jid);
        return xml('participant', { jid: nonEmpty(jid, `participants[${i}]`) });
      });
      return [
        xml(
          'create',
          { subject: nonEmpty(body.subject, 'subject'), key: token(body.key, 'key') },
          ...participants,
          body.announce ? xml('announcement', {}) : undefined,
          body.locked ? xml('locked', {}) : undefined,
        ),
      ];
    }
    case 'group_info':
      return [xml('query', {})];
    case 'group_list':
      return [xml('participating', {})];
    case 'group_participants':
      return [xml(body.action, {}, ...jidList('participant', body.participants, 'participants'))];
    case 'group_leave':
      return [xml('leave', {}, xml('group', { jid: nonEmpty(body.group, 'group') }))];
    case 'group_subject':
      return [xml('subject', {}, nonEmpty(body.subject, 'subject'))];
    case 'group_description':
      return [descriptionElement(body.id, body.prev, body.description, 'description')];
    case 'group_setting':
      return [xml(body.setting, {})];
    case 'group_invite':
    case 'group_invite_reset':
      return [xml('invite', {})];
    case 'group_invite_info':
    case 'group_invite_join':
    case 'group_invite_result':
      return [xml('invite', { code: token(body.code, 'code') })];
    case 'group_info_result':
      return [groupElement(body.group, 'group', body.failed)];
    case 'group_list_result':
      return [xml('groups', {}, ...body.groups.map((g, i) => groupElement(g, `groups[${i}]`)))];
    case 'group_participants_result':
      if (body.participants.length === 0) fail('participants', 'answer for at least one JID');
      return [xml(body.action, {}, ...participantElements(body.participants, 'participants'))];
  }
}

/** The one child of a w:gp2 notification. */
export function groupEventElement(body: GroupEvent): Element {
  switch (body.event) {
    case 'group_created':
      return xml('create', {}, groupElement(body.group, 'body.group'));
    case 'participants_changed':
      if (body.reason !== undefined && body.action !== 'add') fail('body.reason', 'only an add has a reason');
      return xml(
        body.action,
        { reason: body.reason },
        ...jidList('participant', body.participants, 'body.participants'),
      );
    case 'subject_changed':
      return xml('subject', {}, nonEmpty(body.subject, 'body.subject'));
    case 'description_changed':
      return descriptionElement(body.id, undefined, body.description, 'body');
    case 'setting_changed':
      return xml(body.setting, {});
  }
}

// ---- reading

/** Reads `<group>`: the group, and (in a create's answer) the participants that were not added. */
export function readGroup(n: Node): { group: GroupInfo; failed: ParticipantResult[] } {
  const members: { jid: string; admin: boolean }[] = [];
  const failed: ParticipantResult[] = [];
  const seen = new Set<string>();
  for (const p of n.children('participant')) {
    const jid = p.attr('jid');
    if (seen.has(jid)) p.invalid(`${p.path}.jid`, `"${jid}" appears twice`);
    seen.add(jid);
    const error = p.optUint('error', 999);
    const admin = p.optOneOf('type', ['admin'] as const) === 'admin';
    if (error === undefined) members.push({ jid, admin });
    else if (admin) p.invalid(`${p.path}.type`, 'a participant with an error has no type');
    else failed.push({ jid, error });
  }
  if (members.length === 0) n.invalid(n.field('participant'), 'a group has at least one participant');
  const version = n.uint('v', MAX_VERSION);
  if (version < 1) n.invalid(n.field('v'), 'versions start at 1');
  const description = n.optChild('description');
  const desc = description === undefined ? undefined : readDescription(description);
  if (desc !== undefined && desc.text === undefined)
    description?.invalid(description.path, 'a group info lists a description with its <body>');
  const group: GroupInfo = {
    jid: n.attr('jid'),
    subject: n.attr('subject'),
    creator: n.attr('creator'),
    creation: n.time('creation'),
    version,
    ...(desc?.text === undefined ? {} : { description: { id: desc.id, text: desc.text } }),
    announce: n.flag('announcement'),
    locked: n.flag('locked'),
    ...optional('pictureId', n.optChild('picture')?.token('id')),
    participants: members,
  };
  return { group, failed };
}

/** `<description id prev?>`: text from `<body>`, or undefined with `delete="true"`. */
function readDescription(d: Node): { id: string; prev?: string; text?: string } {
  const id = d.token('id');
  const prev = d.optToken('prev');
  const deleted = d.optOneOf('delete', ['true'] as const) !== undefined;
  const body = d.optChild('body');
  if (deleted === (body !== undefined))
    d.invalid(d.path, 'has either a <body> or delete="true", and not both');
  const text = body?.freeText();
  if (text === '') body?.invalid(body.path, 'must not be empty (use delete="true")');
  return { id, ...optional('prev', prev), ...optional('text', text) };
}

function readSubject(n: Node): string {
  const s = n.child('subject');
  const subject = s.freeText();
  if (subject === '') s.invalid(s.path, 'must not be empty');
  return subject;
}

function isParticipantAction(name: string | undefined): name is ParticipantAction {
  return PARTICIPANT_ACTIONS.some((a) => a === name);
}

/** A w:g2 request, recognised by its type, its first child and (for `invite`) whether it has a code. */
export function readGroupRequest(iq: Node, type: 'get' | 'set'): GroupRequest | undefined {
  const first = iq.elements()[0];
  const child = first?.name;
  if (type === 'get') {
    switch (child) {
      case 'query':
        return { op: 'group_info' };
      case 'participating':
        return { op: 'group_list' };
      case 'invite': {
        const code = iq.child('invite').optToken('code');
        return code === undefined ? { op: 'group_invite' } : { op: 'group_invite_info', code };
      }
      default:
        return undefined;
    }
  }
  if (isParticipantAction(child))
    return { op: 'group_participants', action: child, participants: iq.child(child).jids('participant') };
  const setting = GROUP_SETTINGS.find((s) => s === child);
  if (setting !== undefined) return { op: 'group_setting', setting };
  switch (child) {
    case 'create': {
      const c = iq.child('create');
      const participants = c.children('participant').length === 0 ? [] : c.jids('participant');
      return {
        op: 'group_create',
        subject: c.attr('subject'),
        key: c.token('key'),
        participants,
        announce: c.flag('announcement'),
        locked: c.flag('locked'),
      };
    }
    case 'leave':
      return { op: 'group_leave', group: iq.child('leave').child('group').attr('jid') };
    case 'subject':
      return { op: 'group_subject', subject: readSubject(iq) };
    case 'description': {
      const d = readDescription(iq.child('description'));
      return {
        op: 'group_description',
        id: d.id,
        ...optional('prev', d.prev),
        ...optional('description', d.text),
      };
    }
    case 'invite': {
      const code = iq.child('invite').optToken('code');
      return code === undefined ? { op: 'group_invite_reset' } : { op: 'group_invite_join', code };
    }
    default:
      return undefined;
  }
}

/** A w:g2 answer, recognised by its first child; undefined if it is none of them. */
export function readGroupResult(iq: Node, child: string): GroupBody | undefined {
  if (isParticipantAction(child)) {
    const action = iq.child(child);
    const participants = action.children('participant').map((p) => ({
      jid: p.attr('jid'),
      ...optional('error', p.optUint('error', 999)),
    }));
    if (participants.length === 0) action.invalid(action.field('participant'), 'at least one is required');
    return { op: 'group_participants_result', action: child, participants };
  }
  switch (child) {
    case 'group': {
      const { group, failed } = readGroup(iq.child('group'));
      return { op: 'group_info_result', group, ...(failed.length === 0 ? {} : { failed }) };
    }
    case 'groups':
      return {
        op: 'group_list_result',
        groups: iq
          .child('groups')
          .children('group')
          .map((g) => {
            const { group, failed } = readGroup(g);
            if (failed.length > 0) g.invalid(g.field('participant.error'), 'only a create answer has errors');
            return group;
          }),
      };
    case 'invite':
      return { op: 'group_invite_result', code: iq.child('invite').token('code') };
    default:
      return undefined;
  }
}

/** A `<notification type="w:gp2">`. */
export function readGroupNotification(
  n: Node,
  base: { readonly id: string; readonly from: string; readonly t: number },
): GroupNotificationStanza {
  const version = n.uint('v', MAX_VERSION);
  if (version < 1) n.invalid('v', 'versions start at 1');
  const head = {
    kind: 'notification' as const,
    ...base,
    ...optional('participant', n.optAttr('participant')),
  };
  return { ...head, version, type: 'w:gp2', body: readGroupEvent(n) };
}

function readGroupEvent(n: Node): GroupEvent {
  const child = n.elements()[0]?.name;
  if (isParticipantAction(child)) {
    const c = n.child(child);
    const reason = c.optOneOf('reason', ['invite'] as const);
    if (reason !== undefined && child !== 'add') c.invalid(c.field('reason'), 'only an add has a reason');
    return {
      event: 'participants_changed',
      action: child,
      participants: c.jids('participant'),
      ...optional('reason', reason),
    };
  }
  const setting = GROUP_SETTINGS.find((s) => s === child);
  if (setting !== undefined) return { event: 'setting_changed', setting };
  switch (child) {
    case 'create': {
      const { group, failed } = readGroup(n.child('create').child('group'));
      if (failed.length > 0) n.invalid('create.group.participant.error', 'only a create answer has errors');
      return { event: 'group_created', group };
    }
    case 'subject':
      return { event: 'subject_changed', subject: readSubject(n) };
    case 'description': {
      const d = readDescription(n.child('description'));
      return { event: 'description_changed', id: d.id, ...optional('description', d.text) };
    }
    default:
      throw new StanzaUnknownError(
        n.ctx,
        `unknown w:gp2 notification <${child ?? ''}>: answer with <ack class="notification" error="501">`,
      );
  }
}
