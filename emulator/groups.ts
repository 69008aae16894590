/**
 * The gateway's group service (docs/PROTOCOL.md 5.7.1 to 5.7.4): every `w:g2` request, with the
 * checks and error codes of 5.7.3, each change applied and announced (group-relay.ts `announce`)
 * in one transaction, at the next version. Used by the session for a device's requests and by the
 * admin API for an account (the same rules: the admin acts as that account).
 */
import { randomBytes, randomInt } from 'node:crypto';
import {
  GROUP_SERVER,
  groupJid,
  NATIVE_SERVER,
  parseJid,
  type GroupEvent,
  type GroupInfo,
  type IqBody,
  type ParticipantAction,
  type ParticipantResult,
} from '../src/protocol/stanza/index.js';
import type { Core } from './core.js';
import type { GroupChange, StoredGroup } from './group-store.js';
import { announce, isAdmin, isParticipant, pumpAccounts, requireParticipant } from './group-relay.js';
import { RelayRefusal } from './relay.js';

/** Participants a group holds at most, the creator and admins included. */
export const MAX_GROUP_PARTICIPANTS = 1024;
export const MAX_SUBJECT = 100;
export const MAX_DESCRIPTION = 2048;
const INVITE_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A `w:g2` request body. */
export type GroupRequest = Exclude<Extract<IqBody, { op: `group_${string}` }>, { op: `${string}_result` }>;

/** The wire view of a stored group (without the invite code, which only admins get by asking). */
export function groupInfo(g: StoredGroup): GroupInfo {
  const { inviteCode: _code, ...info } = g;
  return info;
}

const codePoints = (s: string): number => [...s].length;

function checkSubject(subject: string): void {
  const n = codePoints(subject);
  if (n < 1 || n > MAX_SUBJECT || /[\r\n]/.test(subject)) {
    throw new RelayRefusal(406, `a subject is 1 to ${MAX_SUBJECT} characters without line breaks (got ${n})`);
  }
}

function requireAdmin(group: StoredGroup, account: string, what: string): void {
  if (!isAdmin(group, account)) throw new RelayRefusal(401, `only admins ${what} in ${group.jid}`);
}

/** Why `jid` cannot be added to a group (404 no such user, 403 not reachable), or undefined. */
function unreachable(core: Core, jid: string): number | undefined {
  let parsed;
  try {
    parsed = parseJid(jid);
  } catch {
    return 404;
  }
  if (parsed.user === undefined || parsed.device !== undefined || parsed.server === GROUP_SERVER) return 404;
  if (core.store.account(jid)) return undefined;
  return parsed.server === NATIVE_SERVER ? 404 : 403;
}

function newGroupJid(core: Core): string {
  for (;;) {
    const jid = groupJid(`1203630${String(randomInt(1e10, 1e11))}`);
    if (!core.store.groups.get(jid)) return jid;
  }
}

function newInviteCode(): string {
  let code = '';
  while (code.length < 22) {
    for (const b of randomBytes(32)) {
      if (b < 248 && code.length < 22) code += INVITE_ALPHABET[b % 62];
    }
  }
  return code;
}

/** A change and its notification, in one transaction; the notified devices are pumped after it. */
function commit(core: Core, fn: () => string[]): void {
  const accounts = core.store.groups.transaction(fn);
  pumpAccounts(core, accounts);
}

/**
 * Changes the group (`apply` changes participants, and returns the fields to set), bumps its
 * version, announces `event`.
 */
function change(
  core: Core,
  jid: string,
  author: string | undefined,
  event: GroupEvent,
  apply: () => GroupChange | void,
  alsoTo: readonly string[] = [],
): string[] {
  core.store.groups.change(jid, apply() ?? {});
  return announce(core, core.store.groups.get(jid) as StoredGroup, author, event, alsoTo);
}

/**
 * After participants left or were removed: the group ceases to exist without participants; without
 * an admin, the one in the group longest becomes admin (a promote announced by the gateway).
 */
function keepAnAdmin(core: Core, jid: string): string[] {
  const group = core.store.groups.get(jid);
  if (!group) return [];
  if (group.participants.length === 0) {
    core.store.groups.delete(jid);
    return [];
  }
  if (group.participants.some((p) => p.admin)) return [];
  const eldest = group.participants[0] as { jid: string };
  return change(core, jid, undefined, participantsEvent('promote', [eldest.jid]), () =>
    core.store.groups.setAdmin(jid, eldest.jid, true),
  );
}

const participantsEvent = (
  action: ParticipantAction,
  participants: string[],
  reason?: 'invite',
): GroupEvent => ({
  event: 'participants_changed',
  action,
  participants,
  ...(reason ? { reason } : {}),
});

/** Removes `who` (a leave when `author` is `who`), announcing it to them too. */
function removeParticipants(core: Core, jid: string, author: string, who: string[]): string[] {
  const notified = change(
    core,
    jid,
    author,
    participantsEvent('remove', who),
    () => {
      for (const p of who) core.store.groups.removeParticipant(jid, p);
    },
    who,
  );
  return [...notified, ...keepAnAdmin(core, jid)];
}

/** Answers one `w:g2` request of `account` (`to`: the iq's `to`); throws RelayRefusal with the code. */
export function handleGroupRequest(
  core: Core,
  account: string,
  to: string | undefined,
  body: GroupRequest,
): IqBody {
  const groups = core.store.groups;
  switch (body.op) {
    case 'group_create':
      return createGroup(core, account, body);
    case 'group_info':
      return { op: 'group_info_result', group: groupInfo(requireParticipant(core, to, account)) };
    case 'group_list':
      return { op: 'group_list_result', groups: groups.of(account).map(groupInfo) };
    case 'group_participants':
      return changeParticipants(core, account, to, body.action, body.participants);
    case 'group_leave': {
      const group = requireParticipant(core, body.group, account);
      commit(core, () => removeParticipants(core, group.jid, account, [account]));
      return { op: 'result' };
    }
    case 'group_subject': {
      const group = requireParticipant(core, to, account);
      if (group.locked) requireAdmin(group, account, 'change the subject');
      checkSubject(body.subject);
      commit(core, () =>
        change(core, group.jid, account, { event: 'subject_changed', subject: body.subject }, () => ({
          subject: body.subject,
        })),
      );
      return { op: 'result' };
    }
    case 'group_description': {
      const group = requireParticipant(core, to, account);
      if (group.locked) requireAdmin(group, account, 'change the description');
      if (body.prev !== group.description?.id) {
        throw new RelayRefusal(
          409,
          `the description is now ${group.description ? `"${group.description.id}"` : 'absent'}, not ${body.prev === undefined ? 'absent' : `"${body.prev}"`}: read the group and decide again`,
        );
      }
      const text = body.description;
      if (text !== undefined && (codePoints(text) < 1 || codePoints(text) > MAX_DESCRIPTION)) {
        throw new RelayRefusal(406, `a description is 1 to ${MAX_DESCRIPTION} characters`);
      }
      const event: GroupEvent = {
        event: 'description_changed',
        id: body.id,
        ...(text === undefined ? {} : { description: text }),
      };
      commit(core, () =>
        change(core, group.jid, account, event, () => ({
          description: text === undefined ? null : { id: body.id, text },
        })),
      );
      return { op: 'result' };
    }
    case 'group_setting': {
      const group = requireParticipant(core, to, account);
      requireAdmin(group, account, 'change the settings');
      const on = body.setting === 'announcement' || body.setting === 'locked';
      const key =
        body.setting === 'announcement' || body.setting === 'not_announcement' ? 'announce' : 'locked';
      if (group[key] === on) return { op: 'result' }; // already so: nothing to announce
      commit(core, () =>
        change(core, group.jid, account, { event: 'setting_changed', setting: body.setting }, () => ({
          [key]: on,
        })),
      );
      return { op: 'result' };
    }
    case 'group_invite': {
      const group = requireParticipant(core, to, account);
      requireAdmin(group, account, 'see the invite code');
      const code = group.inviteCode ?? newInviteCode();
      if (group.inviteCode === undefined) groups.setInviteCode(group.jid, code);
      return { op: 'group_invite_result', code };
    }
    case 'group_invite_reset': {
      const group = requireParticipant(core, to, account);
      requireAdmin(group, account, 'reset the invite code');
      const code = newInviteCode();
      groups.transaction(() => {
        if (group.inviteCode !== undefined) groups.revokeInviteCode(group.jid, group.inviteCode);
        groups.setInviteCode(group.jid, code);
      });
      return { op: 'group_invite_result', code };
    }
    case 'group_invite_info':
      return { op: 'group_info_result', group: groupInfo(byInvite(core, body.code)) };
    case 'group_invite_join': {
      const group = byInvite(core, body.code);
      if (isParticipant(group, account)) throw new RelayRefusal(409, `${account} is already in ${group.jid}`);
      if (group.participants.length >= MAX_GROUP_PARTICIPANTS) {
        throw new RelayRefusal(413, `${group.jid} is full (${MAX_GROUP_PARTICIPANTS} participants)`);
      }
      commit(core, () =>
        change(core, group.jid, account, participantsEvent('add', [account], 'invite'), () =>
          groups.addParticipant(group.jid, account),
        ),
      );
      return { op: 'group_info_result', group: groupInfo(groups.get(group.jid) as StoredGroup) };
    }
  }
}

function byInvite(core: Core, code: string): StoredGroup {
  const found = core.store.groups.byInviteCode(code);
  if (found.group === undefined) {
    if (found.revoked) throw new RelayRefusal(410, 'this invite code was revoked: ask for a new one');
    throw new RelayRefusal(404, 'no group has this invite code');
  }
  return core.store.groups.get(found.group) as StoredGroup;
}

function createGroup(core: Core, creator: string, body: Extract<IqBody, { op: 'group_create' }>): IqBody {
  const groups = core.store.groups;
  const earlier = groups.byCreateKey(creator, body.key);
  const existing = earlier === undefined ? undefined : groups.get(earlier);
  if (existing) return { op: 'group_info_result', group: groupInfo(existing) };
  checkSubject(body.subject);
  if (body.participants.length > MAX_GROUP_PARTICIPANTS) {
    throw new RelayRefusal(413, `at most ${MAX_GROUP_PARTICIPANTS} participants in one request`);
  }
  const failed: ParticipantResult[] = [];
  const members = [{ jid: creator, admin: true }];
  for (const jid of body.participants) {
    if (jid === creator) continue;
    const error = unreachable(core, jid) ?? (members.length >= MAX_GROUP_PARTICIPANTS ? 413 : undefined);
    if (error !== undefined) failed.push({ jid, error });
    else members.push({ jid, admin: false });
  }
  const jid = newGroupJid(core);
  commit(core, () => {
    groups.create({
      jid,
      subject: body.subject,
      creator,
      creation: core.now(),
      announce: body.announce,
      locked: body.locked,
      participants: members,
    });
    groups.rememberCreateKey(creator, body.key, jid);
    const group = groups.get(jid) as StoredGroup;
    return announce(core, group, creator, { event: 'group_created', group: groupInfo(group) });
  });
  return {
    op: 'group_info_result',
    group: groupInfo(groups.get(jid) as StoredGroup),
    ...(failed.length > 0 ? { failed } : {}),
  };
}

function changeParticipants(
  core: Core,
  account: string,
  to: string | undefined,
  action: ParticipantAction,
  jids: readonly string[],
): IqBody {
  const groups = core.store.groups;
  const group = requireParticipant(core, to, account);
  requireAdmin(group, account, `${action} participants`);
  if (jids.length > MAX_GROUP_PARTICIPANTS) {
    throw new RelayRefusal(413, `at most ${MAX_GROUP_PARTICIPANTS} participants in one request`);
  }
  const results: ParticipantResult[] = [];
  const done: string[] = [];
  let count = group.participants.length;
  const admins = group.participants.filter((p) => p.admin).length;
  for (const jid of jids) {
    const inGroup = isParticipant(group, jid);
    let error: number | undefined;
    if (action === 'add') {
      error = unreachable(core, jid) ?? (inGroup ? 409 : count >= MAX_GROUP_PARTICIPANTS ? 413 : undefined);
      if (error === undefined) count += 1;
    } else if (!inGroup) {
      error = 404;
    } else if (action === 'demote' && jid === account && admins <= 1) {
      error = 409;
    }
    results.push(error === undefined ? { jid } : { jid, error });
    // Promoting an admin or demoting a non-admin is done, with nothing to announce.
    const noChange =
      (action === 'promote' && isAdmin(group, jid)) || (action === 'demote' && !isAdmin(group, jid));
    if (error === undefined && !noChange) done.push(jid);
  }
  if (done.length > 0) {
    commit(core, () => {
      if (action === 'remove') return removeParticipants(core, group.jid, account, done);
      return change(core, group.jid, account, participantsEvent(action, done), () => {
        for (const jid of done) {
          if (action === 'add') groups.addParticipant(group.jid, jid);
          else groups.setAdmin(group.jid, jid, action === 'promote');
        }
      });
    });
  }
  return { op: 'group_participants_result', action, participants: results };
}
