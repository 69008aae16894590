/**
 * `POST /admin/native-users`: a native account (a simulated gatekeeper user) on the gateway, by
 * phone number, connected with a behaviour when one is asked for. `POST /admin/native-users/send`:
 * a connected native user sends any content kind (native-content.ts) to a user.
 */
import { z } from 'zod';
import { InteropError } from '../../src/errors.js';
import { nativeContentSchema } from '../native-content.js';
import { AdminError, expecting, parse, type Endpoint } from './endpoint.js';

const E164 = /^\+[1-9][0-9]{6,14}$/;

const nativeUserBody = z.strictObject({
  phone: z.string(expecting('an E.164 number such as "+4915112345678"')),
  /** Connect the user (a device of its own, scriptable) with this behaviour; absent: the account only. */
  behaviour: z.enum(['echo', 'answer', 'silent']).optional(),
});

const sendBody = z.strictObject({
  from: z.string(expecting('the sending native user\'s number, "+4915112345678"')),
  /** A user JID (`alice@matrixbridge.interop`) or a native user's number. */
  to: z.string(expecting('the recipient: a user JID or a number')).min(3).max(320),
  content: nativeContentSchema,
});

export const createNativeUser: Endpoint = async ({ target }, req) => {
  const body = parse(nativeUserBody, req.body);
  if (!E164.test(body.phone)) {
    throw new AdminError(
      400,
      'admin_phone_invalid',
      `phone: expected an E.164 number ("+", then 7 to 15 digits, not starting with 0), found ${JSON.stringify(body.phone)}`,
    );
  }
  const gateway = target.gateway;
  const jid = `${body.phone.slice(1)}@wa.interop`;
  if (gateway.accounts().some((a) => a.jid === jid)) {
    throw new AdminError(409, 'admin_user_exists', `the native user ${body.phone} (${jid}) already exists`);
  }
  const created = gateway.createNativeUser(body.phone);
  if (body.behaviour !== undefined && target.connectNative) {
    await target.connectNative(body.phone, body.behaviour);
  }
  return {
    status: 201,
    body: { jid: created, phone: body.phone, ...(body.behaviour ? { behaviour: body.behaviour } : {}) },
  };
};

export const sendAsNativeUser: Endpoint = async ({ target }, req) => {
  const body = parse(sendBody, req.body);
  const user = E164.test(body.from) ? target.native?.(body.from) : undefined;
  if (!user) {
    throw new AdminError(
      404,
      'admin_user_not_running',
      `no connected native user ${JSON.stringify(body.from)}: create it with POST /admin/native-users ` +
        'and a "behaviour", or list it under native_users in emulator.yaml',
    );
  }
  const to = E164.test(body.to) ? `${body.to.slice(1)}@wa.interop` : body.to;
  try {
    const id = await user.send(to, body.content);
    return { status: 200, body: { id, from: user.jid, to } };
  } catch (err) {
    if (!(err instanceof InteropError)) throw err;
    throw new AdminError(502, 'admin_send_failed', `the native user could not send: ${err.message}`);
  }
};
