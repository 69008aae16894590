/**
 * The gateway's profiles (docs/PROTOCOL.md 5.8): every account's push name, about text and
 * picture, and each group's picture. Answers the `w:profile`, `status` and `w:profile:picture`
 * requests with the checks and codes of 5.8, and announces each change (5.8.3) in the same
 * transaction that makes it, through the per-device queues like every notification.
 *
 * Who hears of a user's change: every account that exchanged a 1:1 message with it (either way,
 * recorded by the relay in `conversations`) or shares a group with it, and the user's own other
 * devices. A group picture change goes to every device of every participant and counts in the
 * group's version. Setting what is already set changes nothing and announces nothing.
 *
 * Used by the session for a device's requests, and by the admin API and the configuration for an
 * account (the same rules, every device of the account then hears of it).
 */
import { randomBytes } from 'node:crypto';
import {
  isGroupJid,
  parseJid,
  toBytes,
  type IqBody,
  type NotificationStanza,
  type ProfileEntry,
} from '../src/protocol/stanza/index.js';
import type { Core } from './core.js';
import { isAdmin, pumpAccounts, requireParticipant } from './group-relay.js';
import { RelayRefusal } from './relay.js';

export const PUSH_NAME_MAX = 25;
export const ABOUT_MAX = 139;
export const PICTURE_MAX_BYTES = 262_144;
/** Users one `<profile>` look-up may ask about. */
export const PROFILE_GET_MAX = 256;

export type ProfileRequest = Extract<
  IqBody,
  { op: 'picture_get' | 'picture_set' | 'picture_remove' | 'profile_get' | 'push_name_set' | 'status_set' }
>;

/** Who asks: an account, and the device it asks from (absent: the admin API or the configuration). */
export interface ProfileActor {
  readonly account: string;
  readonly device?: number | undefined;
}

const codePoints = (s: string): number => [...s].length;

/** Why `name` cannot be a push name (406), or undefined. */
export function pushNameProblem(name: string): string | undefined {
  const n = codePoints(name);
  if (n < 1 || n > PUSH_NAME_MAX || /[\r\n\u2028\u2029]/.test(name)) {
    return `a push name is 1 to ${PUSH_NAME_MAX} characters without line breaks (got ${n})`;
  }
  return undefined;
}

/** Why `about` cannot be an about text (406), or undefined. */
export function aboutProblem(about: string): string | undefined {
  const n = codePoints(about);
  return n > ABOUT_MAX ? `an about text is at most ${ABOUT_MAX} characters (got ${n})` : undefined;
}

/** Why `image` cannot be a picture: 413 too large, 406 not a JPEG; or undefined. */
export function pictureProblem(image: Uint8Array): { code: 406 | 413; text: string } | undefined {
  if (image.byteLength > PICTURE_MAX_BYTES) {
    return {
      code: 413,
      text: `a picture is at most ${PICTURE_MAX_BYTES} bytes (got ${image.byteLength}): scale it down (640 × 640 is advised)`,
    };
  }
  if (image[0] !== 0xff || image[1] !== 0xd8 || image[2] !== 0xff) {
    return { code: 406, text: 'a picture is a JPEG (starting FF D8 FF): convert it first' };
  }
  return undefined;
}

/** Answers one profile request of `actor`; throws RelayRefusal with the code. */
export function handleProfileRequest(core: Core, actor: ProfileActor, body: ProfileRequest): IqBody {
  switch (body.op) {
    case 'profile_get':
      return lookUpProfiles(core, body.jids);
    case 'push_name_set': {
      const problem = pushNameProblem(body.name);
      if (problem) throw new RelayRefusal(406, problem);
      if (core.store.profiles.pushName(actor.account) === body.name) return { op: 'result' };
      commit(core, () => {
        core.store.profiles.set(actor.account, 'push_name', body.name);
        return announceUserChange(core, actor, 'profile', { event: 'push_name_changed', name: body.name });
      });
      return { op: 'result' };
    }
    case 'status_set': {
      const problem = aboutProblem(body.status);
      if (problem) throw new RelayRefusal(406, problem);
      if ((core.store.profiles.profile(actor.account).about ?? '') === body.status) return { op: 'result' };
      commit(core, () => {
        core.store.profiles.set(actor.account, 'about', body.status === '' ? null : body.status);
        return announceUserChange(core, actor, 'profile', { event: 'status_changed', status: body.status });
      });
      return { op: 'result' };
    }
    case 'picture_get':
      return getPicture(core, actor.account, body.target);
    case 'picture_set':
      return setPicture(core, actor, body.target, body.image);
    case 'picture_remove':
      setPicture(core, actor, body.target, null);
      return { op: 'result' };
  }
}

function lookUpProfiles(core: Core, jids: readonly string[]): IqBody {
  if (jids.length > PROFILE_GET_MAX) {
    throw new RelayRefusal(413, `at most ${PROFILE_GET_MAX} users in one <profile> look-up`);
  }
  const users = jids.map((jid): ProfileEntry => {
    if (!isUserJid(jid) || !core.store.account(jid))
      return { jid, error: { code: 404, text: 'no such user' } };
    const p = core.store.profiles.profile(jid);
    return {
      jid,
      ...(p.name === undefined ? {} : { name: p.name }),
      ...(p.about === undefined ? {} : { status: p.about }),
      ...(p.pictureId === undefined ? {} : { pictureId: p.pictureId }),
    };
  });
  return { op: 'profile_result', users };
}

function isUserJid(jid: string): boolean {
  try {
    const p = parseJid(jid);
    return p.user !== undefined && p.device === undefined && !isGroupJid(jid);
  } catch {
    return false;
  }
}

function pictureResult(core: Core, id: string): IqBody {
  const url = core.media?.pictureUrl?.(id);
  if (url === undefined) throw new RelayRefusal(501, 'this gateway has no media service to serve pictures');
  return { op: 'picture_result', id, url, directPath: `/pp/${id}` };
}

function getPicture(core: Core, account: string, target: string): IqBody {
  if (isGroupJid(target)) requireParticipant(core, target, account);
  else if (!isUserJid(target)) throw new RelayRefusal(400, `target: "${target}" is not a user or group JID`);
  else if (!core.store.account(target)) throw new RelayRefusal(404, `no such user: ${target}`);
  const picture = core.store.profiles.pictureOf(target);
  if (!picture) throw new RelayRefusal(404, `${target} has no picture`);
  return pictureResult(core, picture.id);
}

/** Sets (`image`) or removes (null) the picture of the actor or of the group `target`. */
function setPicture(
  core: Core,
  actor: ProfileActor,
  target: string | undefined,
  image: Uint8Array | null,
): IqBody {
  const owner = target ?? actor.account;
  const group = isGroupJid(owner) ? requireParticipant(core, owner, actor.account) : undefined;
  if (!group && owner !== actor.account) {
    throw new RelayRefusal(403, `an account sets its own picture or a group's, not ${owner}'s`);
  }
  if (group?.locked && !isAdmin(group, actor.account)) {
    throw new RelayRefusal(401, `only admins change the picture of the locked group ${group.jid}`);
  }
  const profiles = core.store.profiles;
  const current = profiles.pictureOf(owner);
  if (image === null) {
    if (!current) return { op: 'result' }; // nothing to remove, nothing to announce
  } else {
    const problem = pictureProblem(image);
    if (problem) throw new RelayRefusal(problem.code, problem.text);
    // The same picture again keeps its id: clients cache by id.
    if (current?.image.equals(image)) return pictureResult(core, current.id);
  }
  const id = image === null ? undefined : randomBytes(12).toString('base64url');
  const answer: IqBody = id === undefined ? { op: 'result' } : pictureResult(core, id);
  const event =
    id === undefined ? { event: 'picture_removed' as const } : { event: 'picture_set' as const, id };
  commit(core, () => {
    if (id === undefined || image === null) profiles.removePicture(owner);
    else profiles.setPicture(owner, id, image, core.now());
    if (!group) return announceUserChange(core, actor, 'picture', event);
    const version = core.store.groups.change(group.jid, { pictureId: id ?? null });
    const participants = group.participants.map((p) => p.jid);
    return enqueueNotification(
      core,
      (nid, t) => ({
        kind: 'notification',
        id: nid,
        type: 'picture',
        from: group.jid,
        participant: actor.account,
        t,
        version,
        body: event,
      }),
      participants.map((p) => [p, core.store.devices(p)]),
    );
  });
  return answer;
}

/** A change and its notifications in one transaction; the notified devices are pumped after it. */
function commit(core: Core, fn: () => string[]): void {
  const accounts = core.store.db.transaction(fn)();
  pumpAccounts(core, accounts);
}

/**
 * The accounts that hear of `jid`'s profile changes: those it exchanged a 1:1 message with and
 * those it shares a group with.
 */
export function profileAudience(core: Core, jid: string): string[] {
  const audience = new Set(core.store.profiles.conversationPeers(jid));
  for (const g of core.store.groups.of(jid)) for (const p of g.participants) audience.add(p.jid);
  audience.delete(jid);
  return [...audience].sort();
}

type UserEvent<T extends 'profile' | 'picture'> = Extract<NotificationStanza, { type: T }>['body'];

/** Queues a user's profile or picture notification for its audience and its own other devices. */
function announceUserChange<T extends 'profile' | 'picture'>(
  core: Core,
  actor: ProfileActor,
  type: T,
  body: UserEvent<T>,
): string[] {
  const targets: [string, number[]][] = profileAudience(core, actor.account).map((a) => [
    a,
    core.store.devices(a),
  ]);
  targets.push([actor.account, core.store.devices(actor.account).filter((d) => d !== actor.device)]);
  return enqueueNotification(
    core,
    (id, t) => ({ kind: 'notification', id, type, from: actor.account, t, body }) as NotificationStanza,
    targets,
  );
}

/** Stores one notification for each listed device; returns the accounts to pump. */
function enqueueNotification(
  core: Core,
  build: (id: string, t: number) => NotificationStanza,
  targets: readonly (readonly [string, readonly number[]])[],
): string[] {
  const now = core.now();
  const stanza = build(`p-${randomBytes(6).toString('hex')}`, now);
  const payload = Buffer.from(toBytes(stanza));
  for (const [account, devices] of targets) {
    for (const device of devices) {
      core.store.enqueue(
        {
          recipient_jid: account,
          recipient_device: device,
          kind: 'notification',
          stanza_id: stanza.id,
          from_jid: stanza.from,
          msg_type: null,
          t: now,
          enc_type: null,
          enc_device: null,
          media_type: null,
          payload,
        },
        now,
        core.settings.offlineRetentionSeconds,
      );
    }
  }
  return targets.map(([account]) => account);
}
