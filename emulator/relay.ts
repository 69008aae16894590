/**
 * The relay: routes messages, receipts, chatstates and presence between accounts.
 *
 * A message is stored (one queue row per recipient device, the ciphertext unchanged) and its
 * (sender, id) recorded in one transaction *before* the sender gets `<ack class="message">`; a
 * resend with the same id is acked again and stored nothing. Each recipient device receives its
 * queue in order; a message leaves the queue only when that device acks it, so whatever was not
 * acked is delivered again on its next connection. Receipts are queued the same way (the gateway
 * acks them with `<ack class="receipt">`) and leave the queue once the recipient device acks them
 * (`<ack class="receipt" id>`, the receipted message's id), as a gatekeeper's server keeps them. A retry
 * receipt also clears the (sender, id) record, so the sender's re-encrypted resend is delivered.
 * Chatstates and presence are live only: lost when nobody is connected.
 */
import { InteropError } from '../src/errors.js';
import { randomBytes } from 'node:crypto';
import {
  formatJid,
  NATIVE_SERVER,
  parseJid,
  toBytes,
  type ChatstateStanza,
  type Enc,
  type EncryptEvent,
  type Jid,
  type MessageStanza,
  type PresenceStanza,
  type ReceiptStanza,
  type Stanza,
} from '../src/protocol/stanza/index.js';
import type { Connection, Core } from './core.js';
import type { NewQueueItem, QueueItem } from './store.js';

/** Why a stanza from a client was not accepted: the code goes into `<ack error>`. */
export class RelayRefusal extends InteropError {
  constructor(
    readonly errorCode: number,
    message: string,
  ) {
    super('relay_refused', message);
  }
}

function parsePeer(to: string | undefined, what: string): Jid & { user: string } {
  if (to === undefined) throw new RelayRefusal(400, `a ${what} from a client needs "to"`);
  let jid: Jid;
  try {
    jid = parseJid(to);
  } catch (err) {
    throw new RelayRefusal(400, (err as Error).message);
  }
  if (jid.user === undefined) throw new RelayRefusal(400, `a ${what} goes to a user, not to ${to}`);
  return { ...jid, user: jid.user };
}

function bareJid(jid: Jid & { user: string }): string {
  return formatJid({ user: jid.user, server: jid.server });
}

function requireAccount(core: Core, jid: string): void {
  if (!core.store.account(jid)) throw new RelayRefusal(404, `no such user: ${jid}`);
}

/** Pumps every live connection of these devices of `accountJid` (all when `devices` is absent). */
function pumpDevices(core: Core, accountJid: string, devices?: ReadonlySet<number>): void {
  for (const c of core.connections.of(accountJid)) if (!devices || devices.has(c.device)) c.pump();
}

/** Stores a message for its recipient devices (once per sender and id); true when newly stored. */
export function acceptMessage(core: Core, sender: Connection, m: MessageStanza): boolean {
  const to = parsePeer(m.to, 'message');
  const recipient = bareJid(to);
  requireAccount(core, recipient);
  const devices = new Set<number>();
  const pushName = core.store.profiles.pushName(sender.accountJid) ?? null;
  const items: NewQueueItem[] = m.encs.map((enc, i) => {
    const device = to.device ?? enc.device;
    if (device === undefined) {
      throw new RelayRefusal(400, `enc[${i}] names no device and "to" is not a device JID`);
    }
    if (to.device !== undefined && enc.device !== undefined && enc.device !== to.device) {
      throw new RelayRefusal(
        400,
        `enc[${i}] is for device ${enc.device}, but "to" names device ${to.device}`,
      );
    }
    devices.add(device);
    return {
      recipient_jid: recipient,
      recipient_device: device,
      kind: 'message',
      stanza_id: m.id,
      from_jid: sender.deviceJid,
      msg_type: m.type,
      t: m.t,
      enc_type: enc.type,
      enc_device: enc.device ?? null,
      media_type: enc.mediaType ?? null,
      payload: Buffer.from(enc.ciphertext),
      notify: pushName,
    };
  });
  const now = core.now();
  const stored = core.store.acceptMessage(
    sender.accountJid,
    m.id,
    items,
    now,
    core.settings.offlineRetentionSeconds,
  );
  if (stored) {
    // Both now hear of each other's identity changes.
    core.store.addContact(recipient, sender.accountJid);
    core.store.addContact(sender.accountJid, recipient);
    // ...and of each other's profile changes (profiles.ts).
    core.store.profiles.recordConversation(sender.accountJid, recipient);
    for (const d of devices) core.store.registerDevice(recipient, d);
    pumpDevices(core, recipient, devices);
  }
  return stored;
}

/** Queues a receipt for the message's sender (the device named, or all its devices). */
export function relayReceipt(core: Core, sender: Connection, r: ReceiptStanza): void {
  const to = parsePeer(r.to, 'receipt');
  const recipient = bareJid(to);
  requireAccount(core, recipient);
  const delivered: ReceiptStanza = { ...r, to: undefined, from: sender.deviceJid };
  const payload = Buffer.from(toBytes(delivered));
  // A retry receipt asks the sender to re-encrypt and resend under the same id: let that resend
  // through the (sender, id) dedupe once.
  if (r.type === 'retry') core.store.forgetSeen(recipient, r.id);
  const devices = to.device === undefined ? core.store.devices(recipient) : [to.device];
  const now = core.now();
  for (const device of devices) {
    core.store.enqueue(
      {
        recipient_jid: recipient,
        recipient_device: device,
        kind: 'receipt',
        stanza_id: r.id,
        from_jid: sender.deviceJid,
        msg_type: null,
        t: r.t,
        enc_type: null,
        enc_device: null,
        media_type: null,
        payload,
      },
      now,
      core.settings.offlineRetentionSeconds,
    );
  }
  pumpDevices(core, recipient, new Set(devices));
}

/** Live only: to the connected devices of the addressed user. Unknown or offline recipients: dropped. */
export function relayChatstate(core: Core, sender: Connection, c: ChatstateStanza): void {
  const to = parsePeer(c.to, 'chatstate');
  const out = toBytes({ kind: 'chatstate', from: sender.accountJid, state: c.state });
  for (const conn of core.connections.of(bareJid(to))) {
    if (to.device === undefined || conn.device === to.device) conn.sendBytes(out);
  }
}

/** Live only: to the addressed user, or without `to` to every connected contact of the sender. */
export function relayPresence(core: Core, sender: Connection, p: PresenceStanza): void {
  const out = toBytes({
    kind: 'presence',
    type: p.type,
    from: sender.accountJid,
    ...(p.last === undefined ? {} : { last: p.last }),
  });
  const targets =
    p.to === undefined ? core.store.watchers(sender.accountJid) : [bareJid(parsePeer(p.to, 'presence'))];
  for (const jid of targets) for (const conn of core.connections.of(jid)) conn.sendBytes(out);
}

/** Queues an encrypt notification for the devices of `accountJid` (all when `devices` is absent). */
export function notify(
  core: Core,
  accountJid: string,
  from: string,
  body: EncryptEvent,
  devices?: readonly number[],
): void {
  const now = core.now();
  const targets = devices ?? core.store.devices(accountJid);
  for (const device of targets) {
    const id = `n-${randomBytes(6).toString('hex')}`;
    const payload = Buffer.from(toBytes({ kind: 'notification', id, type: 'encrypt', from, t: now, body }));
    core.store.enqueue(
      {
        recipient_jid: accountJid,
        recipient_device: device,
        kind: 'notification',
        stanza_id: id,
        from_jid: from,
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
  pumpDevices(core, accountJid, new Set(targets));
}

/** The stanza bytes a queued item is delivered as. */
export function deliveryBytes(item: QueueItem): Uint8Array {
  if (item.kind !== 'message') return item.payload;
  if (item.participant !== null) return toBytes(groupDeliveryStanza(item));
  const stanza: Stanza = {
    kind: 'message',
    id: item.stanza_id,
    from: item.from_jid,
    ...(item.notify === null ? {} : { notify: item.notify }),
    type: item.msg_type ?? 'text',
    t: item.t,
    encs: [
      {
        type: item.enc_type ?? 'msg',
        ...(item.enc_device === null ? {} : { device: item.enc_device }),
        ...(item.media_type === null ? {} : { mediaType: item.media_type }),
        ciphertext: item.payload,
      },
    ],
  };
  return toBytes(stanza);
}

/** The delivered form of a queued group message: its pairwise enc (if any) first, then the skmsg. */
function groupDeliveryStanza(item: QueueItem): Stanza {
  const encs: Enc[] = [];
  if (item.pairwise !== null && item.pairwise_type !== null) {
    encs.push({ type: item.pairwise_type, ciphertext: item.pairwise });
  }
  encs.push({
    type: item.enc_type ?? 'skmsg',
    ...(item.media_type === null ? {} : { mediaType: item.media_type }),
    ciphertext: item.payload,
  });
  return {
    kind: 'message',
    id: item.stanza_id,
    from: item.from_jid,
    ...(item.participant === null ? {} : { participant: item.participant }),
    ...(item.notify === null ? {} : { notify: item.notify }),
    type: item.msg_type ?? 'text',
    t: item.t,
    encs,
  };
}

/** The gateway's own JID, the `from` of its acks and count notifications. */
export const GATEWAY_JID = NATIVE_SERVER;
