/** Operating the gateway: restarting its listener and rotating its Noise static key and leaf. */
import { z } from 'zod';
import { emptyBody, int, ok, parse, type Endpoint } from './endpoint.js';
import { keysView } from './inspection.js';

const rotateBody = z.strictObject({ validityDays: int(1, 3650).optional() });

/** `POST /admin/restart` */
export const restartGateway: Endpoint = async ({ target }, req) => {
  parse(emptyBody, req.body);
  const gateway = await target.restartGateway();
  return ok({ gateway: { host: gateway.host, port: gateway.port } });
};

/** `POST /admin/keys/rotate` */
export const rotateKeys: Endpoint = ({ target }, req) => {
  const b = parse(rotateBody, req.body);
  return ok({ keys: keysView(target.rotateKeys(b.validityDays)) });
};
