/**
 * An adapter's outgoing event into the durable outbox (`BridgeCore.submit`): checked, sealed with
 * the at-rest key and written with its message-map row in one atomic unit; a receipt as one outbox
 * row per receipted message; typing and presence sent at once, never queued.
 */
import type { BridgeMetrics } from '../observability/metrics.js';
import { parseJid, toUserJid } from '../protocol/stanza/index.js';
import { outboxRowId, sealPayload, type PayloadVault } from '../store/at-rest.js';
import type { Network, OutboxEntry, Puppet, Store } from '../store/repositories.js';
import { receiptOutboxId, wireIdFor } from './account.js';
import type { LiveEvent } from './cluster.js';
import { BridgeError } from './errors.js';
import { isGroupJid } from './groups.js';
import type { OutgoingEvent } from './events.js';
import { encodePayload, RECEIPT_KIND, type ReceiptPayload } from './outbox.js';
import { accountJidOf } from './puppet.js';

/** The longest text accepted for sending, in UTF-16 code units (the gatekeeper's own limit is 65,536 characters). */
export const MAX_TEXT_LENGTH = 65_536;

export interface SubmitDeps {
  readonly store: Store;
  readonly vault: PayloadVault | undefined;
  readonly metrics: BridgeMetrics | undefined;
  readonly providerId: string;
  /**
   * New outbox rows of the puppet: its sender (here, or in the worker that owns it) sends them;
   * `written`: the rows as committed, when the store gave them back (OutboxSender.kick).
   */
  kickOutbox(puppet: Puppet, portalId?: number, written?: readonly OutboxEntry[]): void;
  /** Typing or presence, sent at once over the puppet's connection (wherever it runs). */
  live(puppet: Puppet, event: Exclude<LiveEvent, { kind: 'online' }>): void;
}

export async function submitEvent(d: SubmitDeps, network: Network, event: OutgoingEvent): Promise<void> {
  const { store } = d;
  const puppet = await store.puppets.byLocalId(event.localUser);
  if (!puppet || puppet.state !== 'enlisted' || puppet.network !== network) {
    throw new BridgeError(
      'bridge_not_enlisted',
      `${event.localUser} has not opted in to interoperability: enlist first`,
    );
  }
  let remote: string;
  try {
    remote = toUserJid(event.remote);
    if (parseJid(remote).user === undefined) throw new Error('no user part');
  } catch (err) {
    throw new BridgeError(
      'bridge_bad_remote',
      `"${event.remote}" is not a contact's JID (such as 4915112345678@wa.interop): ${(err as Error).message}`,
    );
  }
  const e = event.event;
  if (e.type === 'typing' || e.type === 'presence') {
    // Live only: worth nothing later, so never queued.
    const live: LiveEvent =
      e.type === 'typing'
        ? { kind: 'chatstate', to: remote, state: e.typing ? 'composing' : 'paused' }
        : { kind: 'presence', type: e.available ? 'available' : 'unavailable', to: remote };
    d.live(puppet, live);
    return;
  }
  if (e.type === 'receipt') {
    const portal = await store.portals.ensure(puppet.id, remote);
    const accountJid = accountJidOf(puppet.accountId, d.providerId);
    const { targets, readUpTo } = await receiptTargets(store, portal.id, e.receipt, e.targets, accountJid);
    if (targets.length === 0) return;
    const written: OutboxEntry[] = [];
    await store.atomically((w) => {
      for (const { messageId, sender } of targets) {
        const payload: ReceiptPayload = {
          receipt: e.receipt === 'read' ? 'read' : 'delivery',
          messageId,
          to: remote,
          // In a group, a receipt is for the message's sender (PROTOCOL.md 5.7).
          ...(isGroupJid(remote) && sender ? { participant: sender } : {}),
        };
        const entry = w.enqueueOutbox({
          id: receiptOutboxId(puppet.accountId, payload.receipt, remote, messageId),
          puppetId: puppet.id,
          portalId: portal.id,
          kind: RECEIPT_KIND,
          payload: encodePayload(payload),
        });
        if (entry) written.push(entry);
      }
      for (const localId of readUpTo) w.markRead(portal.id, localId);
    });
    d.kickOutbox(puppet, portal.id, written.length === targets.length ? written : undefined);
    return;
  }
  const textLength =
    e.type === 'message'
      ? e.body.kind === 'text'
        ? e.body.text.length
        : e.body.kind === 'media'
          ? (e.body.caption?.length ?? 0)
          : 0
      : e.type === 'edit'
        ? e.body.text.length
        : 0;
  if (textLength > MAX_TEXT_LENGTH) {
    throw new BridgeError(
      'bridge_text_too_long',
      `the message is ${textLength} characters long; the interop network takes at most ${MAX_TEXT_LENGTH}: send it in parts`,
    );
  }
  const id = wireIdFor(puppet.accountId, event.localId);
  const accountJid = accountJidOf(puppet.accountId, d.providerId);
  const portal = await store.portals.ensure(puppet.id, remote);
  let written: OutboxEntry | undefined;
  await store.atomically((w) => {
    written = w.enqueueOutbox({
      id,
      puppetId: puppet.id,
      portalId: portal.id,
      kind: e.type,
      payload: sealPayload(d.vault, outboxRowId(id), encodePayload({ ...event, remote })),
      localId: event.localId,
    });
    w.putMessage({ portalId: portal.id, remoteId: id, localId: event.localId, sender: accountJid });
  });
  d.metrics?.outgoing('queued');
  d.kickOutbox(puppet, portal.id, written && [written]);
}

/**
 * The most messages one read receipt covers: the oldest first, and the read mark moves only past
 * them, so the next receipt covers the rest.
 */
const READ_UP_TO_LIMIT = 1_000;

/**
 * The wire messages a local receipt is for. A read one covers the contact's messages up to each
 * target, not covered before (a reader who saw a message saw those before it): a Matrix read
 * receipt or an XEP-0333 displayed marker names only the newest. A target the map does not know
 * is the wire id itself for a delivery receipt, and nothing for a read one. `readUpTo`: the local
 * ids the portal's read mark moves to (each target, or the last message covered when there were
 * more than the limit).
 */
async function receiptTargets(
  store: Store,
  portalId: number,
  receipt: 'delivered' | 'read',
  targets: readonly string[],
  accountJid: string,
): Promise<{ targets: { messageId: string; sender: string | undefined }[]; readUpTo: string[] }> {
  if (receipt !== 'read') {
    const resolved = await Promise.all(
      targets.map(async (target) => {
        const m = await store.messages.byLocal(portalId, target);
        return { messageId: m?.remoteId ?? target, sender: m?.sender };
      }),
    );
    return { targets: resolved, readUpTo: [] };
  }
  const seen = new Map<string, string>();
  const readUpTo: string[] = [];
  for (const target of targets) {
    const unread = await store.messages.unreadUpTo(portalId, target, accountJid, READ_UP_TO_LIMIT);
    for (const m of unread) seen.set(m.remoteId, m.sender);
    readUpTo.push(unread.length === READ_UP_TO_LIMIT ? unread.at(-1)!.localId : target);
  }
  return { targets: [...seen].map(([messageId, sender]) => ({ messageId, sender })), readUpTo };
}
