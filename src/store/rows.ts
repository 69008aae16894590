/**
 * Table rows back as the store contract's records, the same for both backends (SQLite and
 * PostgreSQL answer rows with the same column names; BLOBs and BYTEAs both arrive as Buffers).
 */
import type {
  OwedReceipt,
  InboxEntry,
  MessageMapping,
  OutboxEntry,
  Portal,
  Puppet,
  PuppetState,
  StoredGroup,
} from './repositories.js';

export type Row = Record<string, unknown>;

export const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Buffer);

export const toPuppet = (r: Row): Puppet => ({
  id: r.id as number,
  localId: r.local_id as string,
  network: r.network as Puppet['network'],
  accountId: r.account_id as string,
  deviceId: r.device_id as number,
  registrationId: r.registration_id as number,
  identityPublic: bytes(r.identity_public),
  identityPrivate: bytes(r.identity_private),
  noisePublic: bytes(r.noise_public),
  noisePrivate: bytes(r.noise_private),
  gatewayStatic: r.gateway_static === null ? null : bytes(r.gateway_static),
  state: r.state as PuppetState,
  createdAt: r.created_at as number,
});

export const toPortal = (r: Row): Portal => ({
  id: r.id as number,
  puppetId: r.puppet_id as number,
  remoteJid: r.remote_jid as string,
  localChat: (r.local_chat as string | null) ?? null,
  name: (r.name as string | null) ?? null,
  createdAt: r.created_at as number,
});

export const toOutbox = (r: Row): OutboxEntry => ({
  id: r.id as string,
  puppetId: r.puppet_id as number,
  portalId: r.portal_id as number,
  seq: r.seq as number,
  kind: r.kind as string,
  payload: bytes(r.payload),
  localId: (r.local_id as string | null) ?? null,
  state: r.state as OutboxEntry['state'],
  attempts: r.attempts as number,
  error: (r.error as string | null) ?? null,
  createdAt: r.created_at as number,
  updatedAt: r.updated_at as number,
});

export const toInbox = (r: Row): InboxEntry => ({
  seq: Number(r.seq),
  puppetId: r.puppet_id as number,
  sender: r.sender as string,
  messageId: r.message_id as string,
  portalId: (r.portal_id as number | null) ?? null,
  payload: bytes(r.payload),
  state: r.state as InboxEntry['state'],
  receivedAt: r.received_at as number,
});

export const toOwedReceipt = (r: Row): OwedReceipt => ({
  seq: Number(r.seq),
  messageId: r.message_id as string,
  receipt: r.receipt as string,
});

export const toMapping = (r: Row): MessageMapping => ({
  portalId: r.portal_id as number,
  remoteId: r.remote_id as string,
  localId: r.local_id as string,
  sender: r.sender as string,
});

export const toGroup = (r: Row): StoredGroup => ({
  puppetId: r.puppet_id as number,
  groupJid: r.group_jid as string,
  version: r.version as number,
  info: r.info as string,
  // 0 or 1 in both dialects (PostgreSQL's column is an integer too, so `db copy` maps it as it is).
  active: r.active === 1,
  updatedAt: r.updated_at as number,
});

/** Portals of `after` beyond this many are filtered by the caller instead (one statement each size). */
const MAX_SKIPPED_PORTALS = 16;

/**
 * The condition that leaves out, per portal of `after`, the entries up to its seq (see
 * `OutboxRepository.queued`). `param(i)` names the i-th parameter of the condition (0-based) in
 * the dialect. Only the first MAX_SKIPPED_PORTALS portals are named (one prepared statement per
 * count): what is not left out here is read again and filtered by the caller.
 */
export function queuedSkip(
  after: ReadonlyMap<number, number> | undefined,
  param: (i: number) => string,
): { sql: string; params: number[] } {
  if (after === undefined || after.size === 0) return { sql: '', params: [] };
  const pairs = [...after].slice(0, MAX_SKIPPED_PORTALS);
  const params: number[] = [];
  const terms = pairs.map(([portalId, seq]) => {
    const i = params.length;
    params.push(portalId, seq);
    return ` AND NOT (portal_id = ${param(i)} AND seq <= ${param(i + 1)})`;
  });
  return { sql: terms.join(''), params };
}
