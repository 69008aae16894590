/**
 * The read-only endpoints: gateway stats, accounts and queue metadata. A queue item is described by
 * its metadata and size, never its ciphertext; keys by their public halves and fingerprints.
 */
import { z } from 'zod';
import { rootKeyFingerprint, type CertificateInfo, type EmulatorKeys } from '../keys.js';
import { account, ok, parse, type Endpoint } from './endpoint.js';

/** `GET /admin/queues` lists at most this many items (and says how many there are). */
export const ADMIN_MAX_QUEUE_ITEMS = 1000;

const queueQuery = z.strictObject({ account: account().optional() });

/** `GET /admin/stats` */
export const stats: Endpoint = ({ target, now, startedAt }) => {
  const gateway = target.gateway;
  return ok({
    ...gateway.stats(),
    connectedDevices: gateway.connectedDevices(),
    uptimeSeconds: now() - startedAt,
    gateway: { gatewayId: gateway.gatewayId, host: gateway.host, port: gateway.port },
    keys: keysView(target.keys),
  });
};

/** `GET /admin/accounts` */
export const accounts: Endpoint = ({ target }) => {
  const gateway = target.gateway;
  const connected = gateway.connectedDevices();
  return ok({
    accounts: gateway.accounts().map((a) => ({
      jid: a.jid,
      kind: a.kind,
      phone: a.phone,
      enlisted: a.kind === 'native' || a.enlisted_identity_key !== null,
      createdAt: iso(a.created_at),
      connectedDevices: connected.filter((d) => bareOf(d) === a.jid),
    })),
  });
};

/** `GET /admin/queues[?account=<jid>]` */
export const queues: Endpoint = ({ target, now: clock }, req) => {
  const query = parse(queueQuery, req.query, 'query');
  const now = clock();
  const all = target.gateway.queued(query.account);
  return ok({
    total: all.length,
    truncated: all.length > ADMIN_MAX_QUEUE_ITEMS,
    items: all.slice(0, ADMIN_MAX_QUEUE_ITEMS).map((q) => ({
      seq: q.seq,
      kind: q.kind,
      id: q.stanza_id,
      sender: q.from_jid,
      recipient: q.recipient_jid,
      recipientDevice: q.recipient_device,
      type: q.msg_type,
      encType: q.enc_type,
      mediaType: q.media_type,
      size: q.payload.length,
      ageSeconds: Math.max(0, now - q.stored_at),
      expiresInSeconds: q.expires_at - now,
    })),
  });
};

/** Public keys and their fingerprints (first 8 bytes of SHA-256): never a private key. */
export function keysView(keys: EmulatorKeys) {
  return {
    rootKey: Buffer.from(keys.rootPublicKey).toString('base64'),
    rootKeyFingerprint: rootKeyFingerprint(keys.rootPublicKey),
    staticKey: Buffer.from(keys.staticKey.publicKey).toString('base64'),
    staticKeyFingerprint: rootKeyFingerprint(keys.staticKey.publicKey),
    intermediate: certificateView(keys.intermediate),
    leaf: certificateView(keys.leaf),
  };
}

function certificateView(c: CertificateInfo) {
  return { serial: c.serial, notBefore: iso(c.notBefore), notAfter: iso(c.notAfter) };
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function bareOf(deviceJid: string): string {
  return deviceJid.replace(/:\d+@/, '@');
}
