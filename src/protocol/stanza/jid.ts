/**
 * JIDs of the gateway protocol: `user[:device]@server`.
 *
 * - Native (gatekeeper) users: user = the E.164 number without "+", server `wa.interop`:
 *   `4915112345678@wa.interop`, device 2 of it `4915112345678:2@wa.interop`.
 * - Third-party accounts: user = the provider-scoped account id, server `<provider-id>.interop`:
 *   `alice.example@matrixbridge.interop`.
 * - The gateway itself: the bare server `wa.interop` (the `to` of requests to the gateway).
 * - Groups: user = the group id (decimal digits, chosen by the gateway), server `g.wa.interop`:
 *   `120363025246125486@g.wa.interop`; never a device. The bare `g.wa.interop` is the group server.
 *
 * The stanza codec carries JIDs as opaque strings; the layers above parse them here.
 */
import { InteropError } from '../../errors.js';
import { GROUP_SERVER } from './vocabulary.js';

/** The gatekeeper's own users live on this server. */
export const NATIVE_SERVER = 'wa.interop';
/** Third-party providers' servers end with this suffix. */
export const PROVIDER_SERVER_SUFFIX = '.interop';
/** Device numbers are 0 (the primary device) to this. */
export const MAX_DEVICE = 65535;

export interface Jid {
  /** E.164 digits (native) or account id (third party); absent for the server's own JID. */
  readonly user?: string | undefined;
  /** Absent: the user as a whole (any or all of its devices). */
  readonly device?: number | undefined;
  readonly server: string;
}

/** A string that is not a JID of the gateway protocol. */
export class JidError extends InteropError {
  constructor(message: string) {
    super('jid_invalid', message);
  }
}

const E164_DIGITS = /^[1-9][0-9]{6,14}$/;
const ACCOUNT = /^[a-z0-9][a-z0-9._=-]{0,127}$/;
const PROVIDER_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DEVICE = /^(?:0|[1-9][0-9]{0,4})$/;
/** A group id: decimal digits (WhatsApp's have 18), no leading zero. */
const GROUP_ID = /^[1-9][0-9]{0,31}$/;

/** The provider id of a third-party server (`matrixbridge` for `matrixbridge.interop`), or undefined. */
export function providerOf(server: string): string | undefined {
  if (server === NATIVE_SERVER || !server.endsWith(PROVIDER_SERVER_SUFFIX)) return undefined;
  const id = server.slice(0, -PROVIDER_SERVER_SUFFIX.length);
  return PROVIDER_ID.test(id) ? id : undefined;
}

/** The server of a third-party provider's accounts. */
export function providerServer(providerId: string): string {
  if (!PROVIDER_ID.test(providerId) || `${providerId}${PROVIDER_SERVER_SUFFIX}` === NATIVE_SERVER) {
    throw new JidError(
      `"${providerId}" is not a usable provider id: use 1-63 lower-case letters, digits and inner hyphens, not "wa"`,
    );
  }
  return `${providerId}${PROVIDER_SERVER_SUFFIX}`;
}

function checkGroup(jid: Jid, shown: string): void {
  if (jid.user === undefined) return; // the group server itself
  if (!GROUP_ID.test(jid.user)) {
    throw new JidError(`"${shown}": a group id is 1 to 32 decimal digits, not starting with 0`);
  }
  if (jid.device !== undefined) throw new JidError(`"${shown}": a group has no devices`);
}

function checkParts(jid: Jid, shown: string): void {
  if (jid.server === GROUP_SERVER) {
    checkGroup(jid, shown);
    return;
  }
  const isNative = jid.server === NATIVE_SERVER;
  if (!isNative && providerOf(jid.server) === undefined) {
    throw new JidError(
      `"${shown}": the server must be ${NATIVE_SERVER}, ${GROUP_SERVER} or <provider-id>${PROVIDER_SERVER_SUFFIX}`,
    );
  }
  if (jid.user === undefined) {
    if (jid.device !== undefined) throw new JidError(`"${shown}": a device needs a user`);
    return;
  }
  if (isNative && !E164_DIGITS.test(jid.user)) {
    throw new JidError(
      `"${shown}": a native user is an E.164 number without "+" (7 to 15 digits, not starting with 0)`,
    );
  }
  if (!isNative && !ACCOUNT.test(jid.user)) {
    throw new JidError(
      `"${shown}": an account id is 1-128 of a-z 0-9 . _ = - and starts with a letter or digit`,
    );
  }
  if (
    jid.device !== undefined &&
    (!Number.isInteger(jid.device) || jid.device < 0 || jid.device > MAX_DEVICE)
  ) {
    throw new JidError(`"${shown}": the device must be an integer from 0 to ${MAX_DEVICE}`);
  }
}

/** Parses and validates a JID; throws JidError (`jid_invalid`) saying what is wrong. */
export function parseJid(s: string): Jid {
  const at = s.indexOf('@');
  if (at === -1) {
    const jid = { server: s };
    checkParts(jid, s);
    return jid;
  }
  if (at === 0 || s.indexOf('@', at + 1) !== -1) throw new JidError(`"${s}" is not user[:device]@server`);
  const local = s.slice(0, at);
  const server = s.slice(at + 1);
  const colon = local.indexOf(':');
  let jid: Jid;
  if (colon === -1) {
    jid = { user: local, server };
  } else {
    const device = local.slice(colon + 1);
    if (!DEVICE.test(device))
      throw new JidError(`"${s}": the device after ":" must be a decimal number from 0 to ${MAX_DEVICE}`);
    jid = { user: local.slice(0, colon), device: Number(device), server };
  }
  checkParts(jid, s);
  return jid;
}

/** Formats a JID, validating it first (so a JID that leaves the process always parses again). */
export function formatJid(jid: Jid): string {
  const local =
    jid.user === undefined ? '' : jid.device === undefined ? `${jid.user}@` : `${jid.user}:${jid.device}@`;
  const s = `${local}${jid.server}`;
  checkParts(jid, s);
  return s;
}

/** The JID of a native user from an E.164 number (`+4915112345678` or `4915112345678`). */
export function nativeJid(e164: string, device?: number): string {
  return formatJid({ user: e164.startsWith('+') ? e164.slice(1) : e164, device, server: NATIVE_SERVER });
}

/** The same JID without its device: the user as a whole. */
export function toUserJid(s: string): string {
  const { user, server } = parseJid(s);
  return formatJid({ user, server });
}

/** Whether `s` is a group's JID (`<id>@g.wa.interop`; not the bare group server). */
export function isGroupJid(s: string): boolean {
  try {
    const jid = parseJid(s);
    return jid.server === GROUP_SERVER && jid.user !== undefined;
  } catch {
    return false;
  }
}

/** The JID of the group with this id. */
export function groupJid(id: string): string {
  return formatJid({ user: id, server: GROUP_SERVER });
}
