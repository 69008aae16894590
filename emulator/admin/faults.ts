/**
 * The fault-injection endpoints, `POST /admin/faults/*`: each drives one control of
 * `emulator.faults` (emulator/faults.ts). The gateway is read on every request: a restart replaces it.
 */
import { readFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { z } from 'zod';
import { decodeCertChain, encodeCertChain, issueLeaf } from '../../src/protocol/cert-chain.js';
import { CertChain_NoiseCertificateSchema } from '../../src/protocol/gen/interop/v1/handshake_pb.js';
import { keyFiles, type EmulatorKeys } from '../keys.js';
import {
  account,
  ACCOUNT_PHRASE,
  AdminError,
  emptyBody,
  expecting,
  int,
  ok,
  parse,
  type Endpoint,
} from './endpoint.js';

const bodies = {
  drop: z.strictObject({ account: account(), count: int(0, 1_000_000) }),
  delay: z.strictObject({
    account: z.union([z.literal('*'), account()], expecting(`"*" or ${ACCOUNT_PHRASE}`)),
    ms: int(0, 600_000),
  }),
  replay: z.strictObject({ account: account() }),
  certificate: z.strictObject({
    kind: z.enum(['foreign', 'expired', 'valid'], expecting('one of "foreign", "expired", "valid"')),
  }),
  refuse: z.strictObject({ refuse: z.boolean(expecting('true or false')) }),
  disconnect: z.strictObject({ account: account() }),
};

/** `POST /admin/faults/drop` */
export const dropNext: Endpoint = ({ target }, req) => {
  const b = parse(bodies.drop, req.body);
  target.gateway.faults.dropNext(b.account, b.count);
  return ok(b);
};

/** `POST /admin/faults/delay` */
export const delay: Endpoint = ({ target }, req) => {
  const b = parse(bodies.delay, req.body);
  target.gateway.faults.delay(b.account, b.ms);
  return ok(b);
};

/** `POST /admin/faults/replay` */
export const replayLastDelivered: Endpoint = ({ target }, req) => {
  const b = parse(bodies.replay, req.body);
  if (!target.gateway.faults.replayLastDelivered(b.account)) {
    throw new AdminError(
      409,
      'admin_nothing_to_replay',
      `no connected device of ${b.account} has been delivered a message on its current connection: ` +
        'connect it and deliver one first',
    );
  }
  return ok({ account: b.account, replayed: true });
};

/** `POST /admin/faults/certificate` */
export const presentCertificate: Endpoint = ({ target, now }, req) => {
  const { kind } = parse(bodies.certificate, req.body);
  const faults = target.gateway.faults;
  if (kind === 'foreign') faults.presentForeignCertificate();
  else if (kind === 'valid') faults.presentCertificateChain(undefined);
  else faults.presentCertificateChain(expiredCertChain(target.keys, target.dataDir, now()));
  return ok({ kind });
};

/** `POST /admin/faults/refuse` */
export const refuseConnections: Endpoint = ({ target }, req) => {
  const b = parse(bodies.refuse, req.body);
  target.gateway.faults.refuseConnections(b.refuse);
  return ok(b);
};

/** `POST /admin/faults/disconnect` */
export const disconnect: Endpoint = ({ target }, req) => {
  const b = parse(bodies.disconnect, req.body);
  return ok({ account: b.account, closed: target.gateway.faults.disconnect(b.account) });
};

/** `POST /admin/faults/reset` */
export const resetFaults: Endpoint = ({ target }, req) => {
  parse(emptyBody, req.body);
  target.gateway.faults.reset();
  return ok();
};

/**
 * The running chain with its leaf replaced by one that expired a day ago: same key and serial,
 * signed by the real intermediate (its private key read from keys/intermediate.json), so a client
 * pinned to the real root gets past the signature checks and fails with `cert_expired`.
 */
export function expiredCertChain(keys: EmulatorKeys, dataDir: string, now: number): Uint8Array {
  const file = keyFiles(dataDir).intermediate;
  const unavailable = (why: string) =>
    new AdminError(
      409,
      'admin_intermediate_unavailable',
      `cannot sign an expired leaf with the real intermediate (${why}); use kind "foreign" instead, ` +
        'or reload the keys (SIGHUP, POST /admin/keys/rotate) and try again',
    );
  let fields: { publicKey?: unknown; privateKey?: unknown };
  try {
    fields = JSON.parse(readFileSync(file, 'utf8')) as typeof fields;
  } catch (err) {
    throw unavailable(`${file} is unreadable: ${(err as Error).message}`);
  }
  const publicKey =
    typeof fields.publicKey === 'string' ? Buffer.from(fields.publicKey, 'base64') : undefined;
  const privateKey =
    typeof fields.privateKey === 'string' ? Buffer.from(fields.privateKey, 'base64') : undefined;
  const chain = decodeCertChain(keys.certChain);
  if (!publicKey || !privateKey || privateKey.length !== 32) throw unavailable(`${file} holds no key pair`);
  if (!publicKey.equals(Buffer.from(chain.intermediate.details.key))) {
    throw unavailable(`${file} holds another intermediate than the running chain`);
  }
  const leaf = issueLeaf({
    intermediatePrivateKey: new Uint8Array(privateKey),
    serial: keys.leaf.serial,
    issuerSerial: chain.intermediate.details.serial,
    key: keys.staticKey.publicKey,
    notBefore: now - 2 * 86_400,
    notAfter: now - 86_400,
  });
  const intermediate = create(CertChain_NoiseCertificateSchema, {
    details: chain.intermediate.detailsBytes,
    signature: chain.intermediate.signature,
  });
  return encodeCertChain({ leaf, intermediate });
}
