/**
 * Groups on the relay (docs/PROTOCOL.md 5.7.4, 5.7.5, 5.7.7, 5.7.8): announcing changes, fanning a
 * group message out, relaying receipts about group messages.
 *
 * Everything enters the one queue per recipient device (emulator/store.ts), so the order a device
 * sees is the order the gateway stored things in: a change is stored, for every device of every
 * participant, before any message accepted after it. A group message is stored once per recipient
 * device: the sender's one skmsg, plus the pairwise ciphertext the sender wrote for that device (the
 * sender key), delivered first. The gateway never sees a sender key or a plaintext.
 */
import { randomBytes } from 'node:crypto';
import {
  formatJid,
  parseJid,
  toBytes,
  type Enc,
  type GroupEvent,
  type MessageStanza,
  type ReceiptStanza,
} from '../src/protocol/stanza/index.js';
import type { Connection, Core } from './core.js';
import type { StoredGroup } from './group-store.js';
import type { NewQueueItem, QueueItem } from './store.js';
import { RelayRefusal } from './relay.js';

/** The group, or 404. */
export function requireGroup(core: Core, jid: string | undefined): StoredGroup {
  const group = jid === undefined ? undefined : core.store.groups.get(jid);
  if (!group) throw new RelayRefusal(404, `no such group: ${jid ?? '(none named)'}`);
  return group;
}

/** The group with `account` as a participant, or 404 / 403. */
export function requireParticipant(core: Core, jid: string | undefined, account: string): StoredGroup {
  const group = requireGroup(core, jid);
  if (!isParticipant(group, account)) {
    throw new RelayRefusal(403, `${account} is not a participant of ${group.jid}`);
  }
  return group;
}

export const isParticipant = (group: StoredGroup, account: string): boolean =>
  group.participants.some((p) => p.jid === account);

export const isAdmin = (group: StoredGroup, account: string): boolean =>
  group.participants.some((p) => p.jid === account && p.admin);

/** Pumps the live connections of every device of these accounts. */
export function pumpAccounts(core: Core, accounts: Iterable<string>): void {
  for (const jid of new Set(accounts)) for (const c of core.connections.of(jid)) c.pump();
}

/**
 * Stores the notification of a change, at the group's current version, for every device of every
 * participant and of `alsoTo` (those the change removed). Returns the accounts to pump once the
 * surrounding transaction committed.
 */
export function announce(
  core: Core,
  group: StoredGroup,
  author: string | undefined,
  body: GroupEvent,
  alsoTo: readonly string[] = [],
): string[] {
  const now = core.now();
  const id = `g-${randomBytes(6).toString('hex')}`;
  const payload = Buffer.from(
    toBytes({
      kind: 'notification',
      id,
      type: 'w:gp2',
      from: group.jid,
      t: now,
      version: group.version,
      ...(author === undefined ? {} : { participant: author }),
      body,
    }),
  );
  const accounts = [...new Set([...group.participants.map((p) => p.jid), ...alsoTo])];
  for (const account of accounts) {
    for (const device of core.store.devices(account)) {
      core.store.enqueue(
        {
          ...queueItem(account, device, 'notification', id, group.jid, now),
          payload,
        },
        now,
        core.settings.offlineRetentionSeconds,
      );
    }
  }
  return accounts;
}

function queueItem(
  recipient: string,
  device: number,
  kind: QueueItem['kind'],
  id: string,
  from: string,
  t: number,
): Omit<NewQueueItem, 'payload'> {
  return {
    recipient_jid: recipient,
    recipient_device: device,
    kind,
    stanza_id: id,
    from_jid: from,
    msg_type: null,
    t,
    enc_type: null,
    enc_device: null,
    media_type: null,
  };
}

function deviceOf(jid: string, what: string): { user: string; device: number } {
  try {
    const parsed = parseJid(jid);
    if (parsed.user !== undefined && parsed.device !== undefined) {
      return { user: formatJid({ user: parsed.user, server: parsed.server }), device: parsed.device };
    }
  } catch {
    // refused below
  }
  throw new RelayRefusal(400, `${what} must be a device JID (user:device@server), got "${jid}"`);
}

/**
 * Stores a group message for every device of every participant but the sending device (5.7.5), or
 * a resend after a retry receipt for the one device it names. Once per (sender, id); true when
 * newly stored.
 */
export function acceptGroupMessage(core: Core, sender: Connection, m: MessageStanza): boolean {
  const group = requireParticipant(core, m.to, sender.accountJid);
  if (group.announce && !isAdmin(group, sender.accountJid)) {
    throw new RelayRefusal(401, `${group.jid} is in announce mode: only admins send`);
  }
  const base = {
    msg_type: m.type,
    t: m.t,
    enc_device: null,
    participant: sender.deviceJid,
    notify: core.store.profiles.pushName(sender.accountJid) ?? null,
  };
  const items: NewQueueItem[] = [];
  let seenId = m.id;
  if (m.participant !== undefined) {
    // A resend for one device: one pairwise enc with the whole message and the sender key.
    const target = deviceOf(m.participant, 'participant');
    if (!isParticipant(group, target.user)) {
      throw new RelayRefusal(400, `${m.participant} is not a device of a participant of ${group.jid}`);
    }
    const enc = m.encs[0];
    if (m.encs.length !== 1 || !enc || enc.type === 'skmsg') {
      throw new RelayRefusal(400, 'a resend to one participant has exactly one pkmsg or msg');
    }
    items.push({
      ...queueItem(target.user, target.device, 'message', m.id, group.jid, m.t),
      ...base,
      ...encColumns(enc),
    });
    seenId = `${m.id}#${m.participant}`;
  } else {
    const skmsg = m.encs.find((e) => e.type === 'skmsg');
    if (!skmsg) throw new RelayRefusal(400, 'a group message carries one skmsg');
    const pairwise = new Map<string, Enc>();
    const named = new Map<string, Set<number>>();
    for (const [i, p] of (m.participants ?? []).entries()) {
      const target = deviceOf(p.jid, `participants[${i}].jid`);
      if (!isParticipant(group, target.user)) {
        throw new RelayRefusal(400, `participants[${i}]: ${p.jid} is not a device of a participant`);
      }
      pairwise.set(`${target.user}#${target.device}`, p.enc);
      named.set(target.user, (named.get(target.user) ?? new Set()).add(target.device));
    }
    for (const { jid } of group.participants) {
      const devices = new Set([...core.store.devices(jid), ...(named.get(jid) ?? [])]);
      for (const device of [...devices].sort((a, b) => a - b)) {
        if (jid === sender.accountJid && device === sender.device) continue;
        const own = pairwise.get(`${jid}#${device}`);
        items.push({
          ...queueItem(jid, device, 'message', m.id, group.jid, m.t),
          ...base,
          ...encColumns(skmsg),
          ...(own ? { pairwise_type: own.type, pairwise: Buffer.from(own.ciphertext) } : {}),
        });
      }
    }
  }
  const stored = core.store.acceptMessage(
    sender.accountJid,
    seenId,
    items,
    core.now(),
    core.settings.offlineRetentionSeconds,
  );
  if (stored) {
    for (const item of items) core.store.registerDevice(item.recipient_jid, item.recipient_device);
    pumpAccounts(
      core,
      items.map((i) => i.recipient_jid),
    );
  }
  return stored;
}

function encColumns(enc: Enc): Pick<NewQueueItem, 'enc_type' | 'media_type' | 'payload'> {
  return { enc_type: enc.type, media_type: enc.mediaType ?? null, payload: Buffer.from(enc.ciphertext) };
}

/**
 * Relays a receipt about a group message to the message's sender (5.7.7): `from` the group,
 * `participant` the device that sent the receipt.
 */
export function relayGroupReceipt(core: Core, sender: Connection, r: ReceiptStanza): void {
  if (r.participant === undefined) {
    throw new RelayRefusal(400, 'a receipt about a group message names its sender in "participant"');
  }
  const group = requireParticipant(core, r.to, sender.accountJid);
  let target: { user: string; device?: number | undefined };
  try {
    const parsed = parseJid(r.participant);
    if (parsed.user === undefined) throw new Error('not a user');
    target = { user: formatJid({ user: parsed.user, server: parsed.server }), device: parsed.device };
  } catch {
    throw new RelayRefusal(400, `participant: "${r.participant}" is not a user or device JID`);
  }
  if (!core.store.account(target.user)) throw new RelayRefusal(404, `no such user: ${target.user}`);
  const delivered: ReceiptStanza = { ...r, to: undefined, from: group.jid, participant: sender.deviceJid };
  const payload = Buffer.from(toBytes(delivered));
  // The sender's one resend for this device passes the (sender, id) dedupe again.
  if (r.type === 'retry') core.store.forgetSeen(target.user, `${r.id}#${sender.deviceJid}`);
  const devices = target.device === undefined ? core.store.devices(target.user) : [target.device];
  const now = core.now();
  for (const device of devices) {
    core.store.enqueue(
      {
        ...queueItem(target.user, device, 'receipt', r.id, group.jid, r.t),
        participant: sender.deviceJid,
        payload,
      },
      now,
      core.settings.offlineRetentionSeconds,
    );
  }
  pumpAccounts(core, [target.user]);
}
