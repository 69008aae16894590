/**
 * Groups through the admin API: create one, change its participants, leave it, change its subject,
 * as a given account would (the gateway's own rules, error codes and `w:gp2` notifications,
 * emulator/groups.ts), and list every group's metadata. Never a message: group messages are
 * ciphertext only the members read; a connected native user sends one with
 * `POST /admin/native-users/send` and the group's JID as `to`.
 */
import { z } from 'zod';
import { isGroupJid, parseJid } from '../../src/protocol/stanza/index.js';
import type { StoredGroup } from '../group-store.js';
import type { GroupRequest } from '../groups.js';
import { RelayRefusal } from '../relay.js';
import { AdminError, expecting, ok, parse, type AdminTarget, type Endpoint } from './endpoint.js';

const E164 = /^\+[1-9][0-9]{6,14}$/;
const PERSON = 'a number such as "+4915112345678" or a user JID such as "alice@acme.interop"';
const GROUP = 'a group JID such as "120363025246125486@g.wa.interop"';

/** A number (a native user) or a bare user JID, as a user JID. */
const person = () =>
  z.string(expecting(PERSON)).transform((s, ctx) => {
    if (E164.test(s)) return `${s.slice(1)}@wa.interop`;
    try {
      const jid = parseJid(s);
      if (jid.user !== undefined && jid.device === undefined && !isGroupJid(s)) return s;
    } catch {
      // refused below
    }
    ctx.addIssue({ code: 'custom', message: PERSON });
    return z.NEVER;
  });
const group = () => z.string(expecting(GROUP)).refine(isGroupJid, expecting(GROUP));

const createBody = z.strictObject({
  creator: person(),
  subject: z.string(expecting('the subject: 1 to 100 characters')),
  participants: z.array(person(), expecting('a list of participants')).max(1024).default([]),
  announce: z.boolean().optional(),
  locked: z.boolean().optional(),
  /** The create's idempotency key: a repeated request with the same key answers with the same group. */
  key: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a token of 1 to 64 A-Z a-z 0-9 _ -')
    .optional(),
});

const participantsBody = z.strictObject({
  by: person(),
  group: group(),
  action: z.enum(['add', 'remove', 'promote', 'demote']),
  participants: z.array(person(), expecting('a list of participants')).min(1).max(1024),
});

const leaveBody = z.strictObject({ account: person(), group: group() });
const subjectBody = z.strictObject({
  by: person(),
  group: group(),
  subject: z.string(expecting('the subject')),
});
const listQuery = z.strictObject({ account: person().optional() });

/** Runs a request as `account`; a refusal is the group error's code as the HTTP status. */
function act(target: AdminTarget, account: string, to: string | undefined, body: GroupRequest) {
  try {
    return target.gateway.groupRequest(account, to, body);
  } catch (err) {
    if (!(err instanceof RelayRefusal)) throw err;
    throw new AdminError(err.errorCode, 'admin_group_refused', err.message);
  }
}

/** A group's metadata as the admin API shows it (no invite code, nothing of its messages). */
export function groupView(g: StoredGroup) {
  return {
    jid: g.jid,
    subject: g.subject,
    creator: g.creator,
    creation: new Date(g.creation * 1000).toISOString(),
    version: g.version,
    ...(g.description ? { description: { id: g.description.id, text: g.description.text } } : {}),
    announce: g.announce,
    locked: g.locked,
    ...(g.pictureId ? { pictureId: g.pictureId } : {}),
    participants: g.participants.map((p) => ({ jid: p.jid, admin: p.admin })),
    hasInviteCode: g.inviteCode !== undefined,
  };
}

/** `POST /admin/groups` */
export const createGroup: Endpoint = ({ target }, req) => {
  const b = parse(createBody, req.body);
  const answer = act(target, b.creator, undefined, {
    op: 'group_create',
    subject: b.subject,
    key: b.key ?? `admin-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
    participants: b.participants,
    announce: b.announce ?? false,
    locked: b.locked ?? false,
  });
  if (answer.op !== 'group_info_result') throw new AdminError(500, 'admin_internal', 'no group was made');
  const made = target.gateway.groups().find((g) => g.jid === answer.group.jid);
  return {
    status: 201,
    body: {
      jid: answer.group.jid,
      ...(made ? { group: groupView(made) } : {}),
      failed: (answer.failed ?? []).map((f) => ({ jid: f.jid, error: f.error })),
    },
  };
};

/** `POST /admin/groups/participants` */
export const changeParticipants: Endpoint = ({ target }, req) => {
  const b = parse(participantsBody, req.body);
  const answer = act(target, b.by, b.group, {
    op: 'group_participants',
    action: b.action,
    participants: b.participants,
  });
  if (answer.op !== 'group_participants_result') throw new AdminError(500, 'admin_internal', 'no answer');
  return ok({ group: b.group, action: b.action, results: answer.participants });
};

/** `POST /admin/groups/leave` */
export const leaveGroup: Endpoint = ({ target }, req) => {
  const b = parse(leaveBody, req.body);
  act(target, b.account, undefined, { op: 'group_leave', group: b.group });
  return ok({ group: b.group, left: b.account });
};

/** `POST /admin/groups/subject` */
export const setSubject: Endpoint = ({ target }, req) => {
  const b = parse(subjectBody, req.body);
  act(target, b.by, b.group, { op: 'group_subject', subject: b.subject });
  return ok({ group: b.group, subject: b.subject });
};

/** `GET /admin/groups[?account=<number or JID>]` */
export const listGroups: Endpoint = ({ target }, req) => {
  const q = parse(listQuery, req.query, 'query');
  const all = target.gateway.groups();
  const shown =
    q.account === undefined ? all : all.filter((g) => g.participants.some((p) => p.jid === q.account));
  return ok({ groups: shown.map(groupView) });
};
