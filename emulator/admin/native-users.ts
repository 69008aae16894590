/** `POST /admin/native-users`: a native account (a simulated gatekeeper user) on the gateway, by phone number. */
import { z } from 'zod';
import { AdminError, expecting, parse, type Endpoint } from './endpoint.js';

const E164 = /^\+[1-9][0-9]{6,14}$/;

const nativeUserBody = z.strictObject({
  phone: z.string(expecting('an E.164 number such as "+4915112345678"')),
});

export const createNativeUser: Endpoint = ({ target }, req) => {
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
  return { status: 201, body: { jid: gateway.createNativeUser(body.phone), phone: body.phone } };
};
