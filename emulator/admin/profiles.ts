/**
 * Profiles through the admin API (docs/PROTOCOL.md 5.8): `POST /admin/native-users/profile` sets a
 * native user's push name, about text or picture as the user would (the gateway's own checks,
 * codes and notifications, emulator/profiles.ts); `GET /admin/profiles?account=` shows what the
 * gateway holds about an account (never the picture's bytes: they are at the media service).
 */
import { z } from 'zod';
import { isGroupJid, parseJid } from '../../src/protocol/stanza/index.js';
import { aboutProblem, pictureProblem, pushNameProblem, type ProfileRequest } from '../profiles.js';
import { RelayRefusal } from '../relay.js';
import { AdminError, expecting, ok, parse, type AdminTarget, type Endpoint } from './endpoint.js';

const E164 = /^\+[1-9][0-9]{6,14}$/;
const PERSON = 'a number such as "+4915112345678" or a user JID such as "alice@acme.interop"';

const profileBody = z
  .strictObject({
    phone: z.string(expecting('the native user\'s number, "+4915112345678"')),
    name: z.string(expecting('a push name: 1 to 25 characters without line breaks')).optional(),
    about: z.string(expecting("an about text of at most 139 characters ('' removes it)")).optional(),
    picture_base64: z
      .string(expecting('a JPEG of at most 262,144 bytes, in base64'))
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, expecting('a JPEG of at most 262,144 bytes, in base64'))
      .optional(),
    remove_picture: z.literal(true, expecting('true (or leave it out)')).optional(),
  })
  .refine((b) => !(b.picture_base64 !== undefined && b.remove_picture), {
    message: 'picture_base64 or remove_picture, not both',
    path: ['remove_picture'],
  });

const viewQuery = z.strictObject({ account: z.string(expecting(PERSON)) });

/** A number or a bare user JID, as a user JID; undefined for anything else. */
function userJid(s: string): string | undefined {
  if (E164.test(s)) return `${s.slice(1)}@wa.interop`;
  try {
    const jid = parseJid(s);
    return jid.user !== undefined && jid.device === undefined && !isGroupJid(s) ? s : undefined;
  } catch {
    return undefined;
  }
}

function profileView(target: AdminTarget, jid: string) {
  const p = target.gateway.profile(jid);
  return {
    jid,
    ...(p.name === undefined ? {} : { name: p.name }),
    ...(p.about === undefined ? {} : { about: p.about }),
    ...(p.pictureId === undefined ? {} : { pictureId: p.pictureId }),
  };
}

const refused = (status: number, message: string) => new AdminError(status, 'admin_profile_refused', message);

/** `POST /admin/native-users/profile` */
export const setNativeProfile: Endpoint = ({ target }, req) => {
  const b = parse(profileBody, req.body);
  if (!E164.test(b.phone)) {
    throw new AdminError(
      400,
      'admin_phone_invalid',
      `phone: expected an E.164 number ("+", then 7 to 15 digits, not starting with 0), found ${JSON.stringify(b.phone)}`,
    );
  }
  const jid = `${b.phone.slice(1)}@wa.interop`;
  if (!target.gateway.accounts().some((a) => a.jid === jid)) {
    throw new AdminError(
      404,
      'admin_user_not_found',
      `there is no native user ${b.phone}: create it with POST /admin/native-users first`,
    );
  }
  // Everything is checked before anything changes.
  const image = b.picture_base64 === undefined ? undefined : Buffer.from(b.picture_base64, 'base64');
  const problem =
    (b.name === undefined ? undefined : pushNameProblem(b.name)) ??
    (b.about === undefined ? undefined : aboutProblem(b.about));
  if (problem) throw refused(406, problem);
  const pictureRefusal = image && pictureProblem(image);
  if (pictureRefusal) throw refused(pictureRefusal.code, pictureRefusal.text);
  const requests: ProfileRequest[] = [
    ...(b.name === undefined ? [] : [{ op: 'push_name_set' as const, name: b.name }]),
    ...(b.about === undefined ? [] : [{ op: 'status_set' as const, status: b.about }]),
    ...(image === undefined ? [] : [{ op: 'picture_set' as const, image }]),
    ...(b.remove_picture ? [{ op: 'picture_remove' as const }] : []),
  ];
  try {
    for (const r of requests) target.gateway.profileRequest(jid, r);
  } catch (err) {
    if (!(err instanceof RelayRefusal)) throw err;
    throw refused(err.errorCode, err.message);
  }
  return ok(profileView(target, jid));
};

/** `GET /admin/profiles?account=<number or JID>` */
export const viewProfile: Endpoint = ({ target }, req) => {
  const q = parse(viewQuery, req.query, 'query');
  const jid = userJid(q.account);
  if (jid === undefined) {
    throw new AdminError(
      400,
      'admin_invalid_request',
      `account: expected ${PERSON}, found ${JSON.stringify(q.account)}`,
    );
  }
  if (!target.gateway.accounts().some((a) => a.jid === jid)) {
    throw new AdminError(404, 'admin_user_not_found', `there is no account ${jid} on this gateway`);
  }
  return ok(profileView(target, jid));
};
