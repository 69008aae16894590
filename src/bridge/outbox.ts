/**
 * The outbox sender of one puppet: sends what the outbox holds as `queued`, in order per portal,
 * whenever the puppet is connected, and moves entries forward as the gateway and the recipient
 * answer. The outbox row is written by `submit` before any of this runs; this only reads it.
 *
 * Entries are pipelined: each is encrypted and written without waiting for the previous ack (the
 * connection is one ordered stream, and the gateway stores in arrival order). An entry stays
 * `queued` until its `<ack class="message">`; after a reconnect or a restart everything still
 * queued is encrypted again and resent under the same id, which the gateway deduplicates.
 */
import { showsDelivery } from './fallbacks.js';
import { encodeContent } from '../protocol/content.js';
import { formatJid, parseJid, type Enc, type ReceiptStanza } from '../protocol/stanza/index.js';
import { signalAddress } from '../signal/address.js';
import { openPayload, outboxRowId, PayloadUnreadableError } from '../store/at-rest.js';
import type { OutboxEntry, Portal } from '../store/repositories.js';
import { buildContent, type BuiltContent } from './content.js';
import type { PuppetContext } from './context.js';
import { UndeliverableError } from './errors.js';
import type { DeliveryState, OutgoingEvent } from './events.js';
import type { RemoteDevices } from './sessions.js';
import { LOST_KEY_REASON, tooOldReason } from './outbox-reasons.js';
import { isGroupJid, type PuppetGroups } from './groups.js';
import { SentMarks } from './outbox-marks.js';
import { receiptForOtherDevice, sendCopies } from './outbox-own-devices.js';
import { LazyMap } from '../util/lazy-map.js';
import { followingOn, OutboxKicks } from './outbox-kicks.js';
import { portalById } from './portals-by-id.js';

/** Encoding failures no retry can fix: the stanza or its frame exceeds the wire's limits. */
const TOO_LARGE = new Set(['stanza_too_large', 'stanza_text_too_long', 'transport_outgoing_frame_too_large']);

export { RECEIPT_KIND, encodePayload, decodePayload, type ReceiptPayload } from './outbox-payload.js';
import { decodePayload, RECEIPT_KIND, type ReceiptPayload } from './outbox-payload.js';

/** Built contents kept for retry receipts, so a resend does not rebuild (or re-upload media). */
const CONTENT_CACHE_SIZE = 256;
/** Entries read per pass of the outbox. */
const PASS_BATCH = 500;
/** Acknowledged entries remembered per puppet for the receipts that follow. */
const RECENT_SIZE = 256;
/** How soon a portal held back by a transient failure (a request timeout) is tried again. */
const RETRY_HELD_MS = 5_000;

/** An entry as kept in memory once written: everything but its (sealed) content. */
const NO_PAYLOAD = new Uint8Array(0);
const withoutPayload = (entry: OutboxEntry): OutboxEntry => ({ ...entry, payload: NO_PAYLOAD });

/** How far along an entry is: a receipt moves it only forward (a failed entry stays failed). */
const RANK: Record<OutboxEntry['state'], number> = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 9 };

export class OutboxSender {
  /**
   * Entries written on the current connection and not yet acknowledged, by wire id (without their
   * payload: what an ack or a receipt needs to report, so it reads nothing back).
   */
  private readonly inFlight = new LazyMap<string, OutboxEntry>();
  /**
   * Per portal, the highest `seq` written on the current connection: everything up to it is in
   * flight or settled (a portal's entries go out in order), so a pass does not read it again.
   */
  private readonly writtenUpTo = new LazyMap<number, number>();
  /** Entries acknowledged lately, as in `inFlight`, for the receipts that follow (bounded). */
  private readonly recent = new LazyMap<string, OutboxEntry>();
  /** Receipt entries in flight, by the receipted message id (the gateway acks a receipt by it). */
  private readonly receiptsInFlight = new LazyMap<string, Set<string>>();
  private readonly contents = new LazyMap<string, BuiltContent>();
  /** Portals by id; only their id and remote JID are read here, and those never change. */
  private readonly portals = new LazyMap<number, Portal>();
  private running = false;
  private again = false;
  private stopped = false;

  /** Group messages written and not acked yet: the devices they carry the sender key to. */
  private readonly keySentWith = new LazyMap<string, { group: string; devices: string[] }>();
  /**
   * Acknowledged entries whose `sent` state is not written yet (outbox-marks.ts). Made at the
   * first ack (and the kicks' table at the first kick): an idle puppet (of thousands) holds neither.
   */
  private marksMade: SentMarks | undefined;
  /** After a reconnect: the marks are written before the queue is read again. */
  private marksFirst = false;
  /** What the next pass sends: every portal, or the ones kicked (outbox-kicks.ts). */
  private readonly kicks = new OutboxKicks();

  constructor(
    private readonly ctx: PuppetContext,
    private readonly devices: RemoteDevices,
    private readonly groups: PuppetGroups,
  ) {}

  /** A new connection: nothing written on the old one counts as sent; send everything queued. */
  onConnected(): void {
    // What was written and not acknowledged was an attempt that failed: counted (a diagnostic),
    // here rather than before each send, which cost a write transaction per message.
    const unanswered = [...this.inFlight.values()].filter((e) => e.kind !== RECEIPT_KIND).map((e) => e.id);
    if (unanswered.length > 0) {
      void Promise.all(unanswered.map((id) => this.ctx.store.outbox.recordAttempt(id))).catch(
        (err: unknown) => this.ctx.log?.debug({ err: (err as Error).message }, 'attempts not counted'),
      );
    }
    this.inFlight.clear();
    this.writtenUpTo.clear();
    this.receiptsInFlight.clear();
    this.marksFirst = true;
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  private marks(): SentMarks {
    return (this.marksMade ??= new SentMarks(this.ctx.store.outbox, this.ctx.log));
  }

  /** Entries known to be sent whose state is not written yet: still `queued` in the store. */
  unwritten(): number {
    return this.marksMade?.size ?? 0;
  }

  /** Writes what is known and not written yet (the `sent` states): before the puppet is let go. */
  async settled(): Promise<void> {
    await this.marksMade?.flush();
  }

  /**
   * Runs a pass now, or right after the running one; `portalId`: only that portal has new entries;
   * `written`: they are these, as committed (else the pass reads them).
   */
  kick(portalId?: number, written?: readonly OutboxEntry[]): void {
    if (this.stopped) return;
    this.kicks.kick(portalId, written);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.passes();
  }

  private async passes(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (err) {
          this.ctx.log?.warn({ err: (err as Error).message }, 'outbox pass interrupted');
        }
      } while (this.again && !this.stopped);
    } finally {
      // In the same turn as the last check of `again`: a kick after it starts a new run, none is lost.
      this.running = false;
    }
  }

  private retryTimer: NodeJS.Timeout | undefined;

  private async pass(): Promise<void> {
    /** Portals that hit a transient problem in this pass: nothing later of theirs goes out before it. */
    const held = new Set<number>();
    // Disconnected: the reconnect reads everything (`onConnected`).
    if (!this.ctx.connection.isConnected || this.stopped) return;
    if (this.marksFirst) {
      // Else the entries acknowledged on the old connection would read `queued` and go out again.
      this.marksFirst = false;
      await this.marksMade?.flush();
    }
    const next = this.kicks.take();
    if (next === 'everything') await this.readAll(held);
    else {
      for (const [portalId, handed] of next) {
        const ready = handed && followingOn(handed, this.writtenUpTo.get(portalId) ?? 0);
        const going = ready
          ? this.sendAll(
              ready.filter((e) => !this.inFlight.has(e.id)),
              held,
            )
          : this.readPortal(portalId, held);
        if (!(await going)) break;
      }
    }
    if (held.size > 0 && this.retryTimer === undefined) {
      // Nothing else would wake us while connected: try the held portals again a bit later.
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, RETRY_HELD_MS);
      this.retryTimer.unref();
    }
  }

  /** Every queued entry of the puppet not written on this connection, in batches. */
  private async readAll(held: Set<number>): Promise<void> {
    const { store, puppet } = this.ctx;
    for (;;) {
      // What this connection already wrote is left out by the query itself: under load most
      // queued entries are in flight, and reading them again on every pass was most of its cost.
      const read = await store.outbox.queued(puppet.id, PASS_BATCH, this.writtenUpTo);
      const batch = read.filter((e) => !this.inFlight.has(e.id) && !held.has(e.portalId));
      if (!(await this.sendAll(batch, held))) return;
      // A short read was everything queued when it was made (what came since kicked a new pass).
      if (batch.length === 0 || read.length < PASS_BATCH) return;
    }
  }

  /** One portal's queued entries after what this connection wrote; false once disconnected. */
  private async readPortal(portalId: number, held: Set<number>): Promise<boolean> {
    const { store, puppet } = this.ctx;
    for (;;) {
      const after = this.writtenUpTo.get(portalId) ?? 0;
      const read = await store.outbox.queuedIn(puppet.id, portalId, after, PASS_BATCH);
      const batch = read.filter((e) => !this.inFlight.has(e.id));
      if (!(await this.sendAll(batch, held))) return false;
      if (batch.length === 0 || held.has(portalId) || read.length < PASS_BATCH) return true;
    }
  }

  /** Sends entries in order, skipping the portals held; false once disconnected or stopped. */
  private async sendAll(batch: readonly OutboxEntry[], held: Set<number>): Promise<boolean> {
    for (const entry of batch) {
      if (!this.ctx.connection.isConnected || this.stopped) return false;
      if (held.has(entry.portalId)) continue;
      const ok = await this.sendEntry(entry);
      if (ok) this.written(entry);
      else held.add(entry.portalId);
    }
    return this.ctx.connection.isConnected && !this.stopped;
  }

  /** An entry written (or failed for good): the passes of this connection do not read it again. */
  private written(entry: OutboxEntry): void {
    if ((this.writtenUpTo.get(entry.portalId) ?? 0) < entry.seq)
      this.writtenUpTo.set(entry.portalId, entry.seq);
  }

  private portalOf(id: number): Promise<Portal | undefined> {
    return portalById(this.portals, this.ctx.store, id);
  }

  /** Sends one entry; false when it must wait (transient), true when written or failed for good. */
  private async sendEntry(entry: OutboxEntry): Promise<boolean> {
    const portal = await this.portalOf(entry.portalId);
    if (!portal) return true;
    if (entry.createdAt < Date.now() - this.ctx.queueMaxAgeMs) {
      await this.failEntry(entry, tooOldReason(this.ctx.queueMaxAgeMs));
      return true;
    }
    try {
      if (entry.kind === RECEIPT_KIND) {
        this.sendReceipt(entry, decodePayload<ReceiptPayload>(entry.payload));
      } else {
        await this.sendMessage(entry, portal, this.eventOf(entry));
      }
      return true;
    } catch (err) {
      if (err instanceof PayloadUnreadableError) {
        this.ctx.log?.warn({ id: entry.id, err: err.message }, 'outbox entry unreadable: at-rest key lost');
        await this.failEntry(entry, LOST_KEY_REASON);
        return true;
      }
      if (err instanceof UndeliverableError) {
        await this.failEntry(entry, err.reason);
        return true;
      }
      const code = (err as { code?: string }).code;
      if (code !== undefined && TOO_LARGE.has(code)) {
        // Retrying cannot make it smaller: waiting would hold every later message of the portal.
        await this.failEntry(
          entry,
          'the message is too large for the interop gateway (once encrypted for every device of the contact): send it in parts',
        );
        return true;
      }
      if (code === 'signal_identity_changed') {
        await this.failEntry(
          entry,
          `${portal.remoteJid}'s security code changed: compare the safety number and confirm it, then send again`,
        );
        return true;
      }
      this.inFlight.delete(entry.id);
      this.ctx.log?.info({ id: entry.id, code, err: (err as Error).message }, 'outbox entry waits');
      return false;
    }
  }

  /** The event a queued entry holds, opened with the at-rest key. */
  private eventOf(entry: OutboxEntry): OutgoingEvent {
    return decodePayload<OutgoingEvent>(openPayload(this.ctx.vault, outboxRowId(entry.id), entry.payload));
  }

  /**
   * Fails every entry of this puppet queued longer than the age limit, each with its notice. Run
   * now and then by the core, so a message of a puppet that never reconnects does not wait for ever.
   */
  async expire(): Promise<number> {
    const { store, puppet, queueMaxAgeMs } = this.ctx;
    const old = await store.outbox.queuedBefore(puppet.id, Date.now() - queueMaxAgeMs, 500);
    for (const entry of old) {
      // Written on this connection (its ack decides), or acknowledged with its state not yet written.
      if (this.inFlight.has(entry.id) || this.marksMade?.has(entry.id) === true) continue;
      await this.failEntry(entry, tooOldReason(queueMaxAgeMs));
    }
    return old.length;
  }

  private sendReceipt(entry: OutboxEntry, r: ReceiptPayload): void {
    const stanza: ReceiptStanza = {
      kind: 'receipt',
      id: r.messageId,
      to: r.to,
      t: this.ctx.nowSeconds(),
      ...(r.receipt === 'read' ? { type: 'read' as const } : {}),
      ...(r.participant ? { participant: r.participant } : {}),
    };
    this.inFlight.set(entry.id, withoutPayload(entry));
    const waiting = this.receiptsInFlight.get(r.messageId) ?? new Set<string>();
    waiting.add(entry.id);
    this.receiptsInFlight.set(r.messageId, waiting);
    this.ctx.connection.send(stanza);
  }

  private async content(entry: OutboxEntry, portal: Portal, event: OutgoingEvent): Promise<BuiltContent> {
    const cached = this.contents.get(entry.id);
    if (cached) return cached;
    const built = await buildContent({
      store: this.ctx.store,
      portal,
      accountJid: this.ctx.accountJid,
      outboxId: entry.id,
      event,
      media: this.ctx.media,
    });
    this.contents.set(entry.id, built);
    if (this.contents.size > CONTENT_CACHE_SIZE) {
      const oldest = this.contents.keys().next();
      if (!oldest.done) this.contents.delete(oldest.value);
    }
    return built;
  }

  private async sendMessage(entry: OutboxEntry, portal: Portal, event: OutgoingEvent): Promise<void> {
    const built = await this.content(entry, portal, event);
    const remote = portal.remoteJid;
    if (isGroupJid(remote)) return this.sendGroupMessage(entry, remote, built);
    const devices = await this.devices.devicesOf(remote);
    const ready = await this.devices.ensureSessions(remote, devices);
    if (ready.length === 0) {
      throw new UndeliverableError(
        'bridge_contact_no_keys',
        `${remote} has published no encryption keys the bridge can use: the message was not sent`,
      );
    }
    const plaintext = encodeContent(built.content);
    const encs: Enc[] = [];
    let blocked: unknown;
    for (const device of ready) {
      try {
        const enc = await this.ctx.signal.encrypt(signalAddress(remote, device), plaintext);
        encs.push({
          type: enc.type,
          device,
          ciphertext: enc.body,
          ...(built.mediaType ? { mediaType: built.mediaType } : {}),
        });
      } catch (err) {
        if ((err as { code?: string }).code !== 'signal_identity_changed') throw err;
        blocked = err;
      }
    }
    if (encs.length === 0) throw blocked;
    // The ratchet steps of these encryptions may still be held with a decryption's inbox commit:
    // nothing made from uncommitted state leaves (a crash would make the bridge reuse its keys).
    await this.ctx.sessionGate.flushed();
    this.inFlight.set(entry.id, withoutPayload(entry));
    this.ctx.connection.send({
      kind: 'message',
      id: entry.id,
      to: remote,
      type: built.type,
      t: Math.floor(entry.createdAt / 1000),
      encs,
    });
    await sendCopies(this.ctx, this.devices, entry, remote, built);
  }

  /**
   * A group message: one SenderKeyMessage for every member, and the sender key pairwise for the
   * devices that lack it (groups.ts). The devices count as having the key once the gateway acks.
   */
  private async sendGroupMessage(entry: OutboxEntry, group: string, built: BuiltContent): Promise<void> {
    const { encs, participants, holders } = await this.groups.encrypt(
      group,
      encodeContent(built.content),
      built.mediaType,
    );
    await this.ctx.sessionGate.flushed();
    this.inFlight.set(entry.id, withoutPayload(entry));
    if (holders.length > 0) this.keySentWith.set(entry.id, { group, devices: holders });
    this.ctx.connection.send({
      kind: 'message',
      id: entry.id,
      to: group,
      type: built.type,
      t: Math.floor(entry.createdAt / 1000),
      encs,
      ...(participants.length > 0 ? { participants } : {}),
    });
  }

  /**
   * A retry receipt from one device of the recipient: start a new session (from the keys in the
   * receipt, or a freshly fetched bundle), encrypt the same content again and resend it to that
   * device under the same id (the gateway lets one resend through after a retry receipt).
   */
  async resendAfterRetry(
    entry: OutboxEntry,
    deviceJid: string,
    keys: { bundle?: Parameters<RemoteDevices['processBundle']>[2] },
  ): Promise<void> {
    const portal = await this.portalOf(entry.portalId);
    if (!portal) return;
    const jid = parseJid(deviceJid);
    const device = jid.device ?? 0;
    const group = isGroupJid(portal.remoteJid) ? portal.remoteJid : undefined;
    // In a group, the pairwise session is with the member who asked.
    const remote = group ? formatJid({ user: jid.user, server: jid.server }) : portal.remoteJid;
    // Only a member now gets the content again (someone removed since must not).
    if (group && !(await this.groups.info(group))?.participants.some((p) => p.jid === remote)) return;
    if (!this.contents.has(entry.id) && entry.payload.length === 0) {
      // Acknowledged long ago (or before a restart): its content is gone from the bridge, as it
      // should be; the recipient's device shows the message as not decryptable.
      this.ctx.log?.info(
        { id: entry.id, deviceJid },
        'retry receipt: the content is no longer kept, not resent',
      );
      return;
    }
    if (keys.bundle) await this.devices.processBundle(remote, device, keys.bundle);
    else if (!(await this.devices.rebuild(remote, device))) {
      this.ctx.log?.warn({ id: entry.id, deviceJid }, 'retry receipt: no keys for the device, not resent');
      return;
    }
    const cached = this.contents.get(entry.id);
    const built = cached ?? (await this.content(entry, portal, this.eventOf(entry)));
    // In a group: the message itself, pairwise, with the sender key for what follows.
    const content = group ? await this.groups.withSenderKey(group, built.content) : built.content;
    const enc = await this.ctx.signal.encrypt(signalAddress(remote, device), encodeContent(content));
    await this.ctx.sessionGate.flushed();
    this.ctx.connection.send({
      kind: 'message',
      id: entry.id,
      to: group ?? formatJid({ user: jid.user, server: jid.server }),
      ...(group ? { participant: deviceJid } : {}),
      type: built.type,
      t: Math.floor(entry.createdAt / 1000),
      encs: [
        {
          type: enc.type,
          device,
          ciphertext: enc.body,
          ...(built.mediaType ? { mediaType: built.mediaType } : {}),
        },
      ],
    });
  }

  /** `<ack class="message">`: stored by the gateway (or refused, with an error code). */
  async onMessageAck(id: string, error: number | undefined): Promise<void> {
    const known = this.inFlight.get(id);
    this.inFlight.delete(id);
    const keySent = this.keySentWith.get(id);
    this.keySentWith.delete(id);
    if (keySent && error === undefined) await this.groups.keyDelivered(keySent.group, keySent.devices);
    const entry = known ?? (await this.ctx.store.outbox.get(id));
    if (!entry || entry.puppetId !== this.ctx.puppet.id) return;
    if (error !== undefined) {
      const portal = await this.portalOf(entry.portalId);
      await this.failEntry(
        entry,
        error === 404
          ? `${portal?.remoteJid ?? 'the contact'} does not exist on the interop network: the message was not sent`
          : `the gateway refused the message (error ${error})`,
      );
      return;
    }
    if (known) {
      // Written on this connection and not yet receipted (a receipt takes it out of `inFlight`):
      // queued in the store, and this process its only writer. The state is written soon.
      this.marks().add(id);
    } else if (!(await this.ctx.store.outbox.advance(id, 'sent'))) return;
    this.remember(entry, 'sent');
    await this.report(entry, 'sent');
  }

  /** Keeps an acknowledged entry (no payload) with its new state for the receipts that follow. */
  private remember(entry: OutboxEntry, state: OutboxEntry['state']): void {
    this.recent.delete(entry.id);
    if (state === 'read') return; // nothing follows a read receipt
    this.recent.set(entry.id, { ...withoutPayload(entry), state });
    if (this.recent.size > RECENT_SIZE) {
      const oldest = this.recent.keys().next();
      if (!oldest.done) this.recent.delete(oldest.value);
    }
  }

  /** `<ack class="receipt">`: our receipt for `messageId` is stored. */
  async onReceiptAck(messageId: string): Promise<void> {
    const waiting = this.receiptsInFlight.get(messageId);
    if (!waiting) return;
    this.receiptsInFlight.delete(messageId);
    // Nothing follows a receipt's ack: its state is only written with others, in one commit.
    for (const id of waiting) {
      this.inFlight.delete(id);
      this.marks().add(id);
    }
  }

  /**
   * A delivery or read receipt from the recipient (`from`) for one of our messages, or for one the
   * user sent from another of their devices (in the message map as the account's own, not in the
   * outbox: shown, nothing to advance). Resolves once recorded, with (when the adapter says when)
   * the promise that the local network has it: the receipt is acknowledged to the gateway after that.
   * In a group, `by` is the member whose receipt it is: each member's is shown, not only the first.
   */
  async onReceipt(
    id: string,
    state: 'delivered' | 'read',
    from?: string,
    by?: string,
  ): Promise<{ shown?: Promise<void> }> {
    // This process is the only writer of its puppet's rows: what it remembers is what is stored.
    const entry = this.recent.get(id) ?? this.inFlight.get(id) ?? (await this.ctx.store.outbox.get(id));
    if (!entry && from !== undefined) return receiptForOtherDevice(this.ctx, id, state, from, by);
    if (!entry || entry.puppetId !== this.ctx.puppet.id || entry.kind === RECEIPT_KIND) return {};
    // A receipt proves the gateway stored it, even if its ack was lost with a connection.
    this.inFlight.delete(id);
    // What this process remembers is what is stored, or about to be: the state is written with the
    // receipts of the next few milliseconds (outbox-marks.ts), and the receipt acknowledged after.
    const advanced = RANK[state] > RANK[entry.state];
    const written = advanced ? this.marks().advance(id, state) : undefined;
    written?.catch(() => undefined); // the caller learns of a failure (no acknowledgement), later
    if (advanced) this.remember(entry, state);
    // The same state again is the gateway's redelivery of a receipt not acknowledged before a
    // crash: it may not have been shown, so it is shown again (a repeat is harmless).
    const { shown } =
      advanced || entry.state === state || by !== undefined ? await this.report(entry, state, { by }) : {};
    if (written === undefined) return shown ? { shown } : {};
    return { shown: shown ? Promise.all([written, shown]).then(() => undefined) : written };
  }

  private async failEntry(entry: OutboxEntry, reason: string): Promise<void> {
    this.inFlight.delete(entry.id);
    this.marksMade?.settle(entry.id);
    await this.ctx.store.outbox.fail(entry.id, reason);
    this.ctx.log?.info({ id: entry.id, reason }, 'outbox entry failed');
    await this.report(entry, 'failed', { reason });
  }

  /**
   * Shown from what outlives the payload: the entry's local id, the puppet and the portal. Resolves
   * with the adapter's promise that it is shown, when it gives one.
   */
  private async report(
    entry: OutboxEntry,
    state: DeliveryState,
    { reason, by }: { reason?: string | undefined; by?: string | undefined } = {},
  ): Promise<{ shown?: Promise<void> }> {
    if (entry.kind === RECEIPT_KIND) return {};
    if (state !== 'queued') this.ctx.metrics?.outgoing(state, entry.createdAt);
    const adapter = this.ctx.adapter();
    if (!adapter || !showsDelivery(adapter.capabilities, state) || entry.localId === null) return {};
    const remote = (await this.portalOf(entry.portalId))?.remoteJid;
    if (remote === undefined) return {};
    try {
      const shown = adapter.updateDelivery({
        localId: entry.localId,
        localUser: this.ctx.puppet.localId,
        remote,
        state,
        ...(reason !== undefined ? { reason } : {}),
        ...(by !== undefined ? { by } : {}),
      });
      if (!shown) return {};
      shown.catch(() => undefined); // the adapter logs why; unacknowledged, it comes again
      return { shown };
    } catch (err) {
      this.ctx.log?.warn({ err: (err as Error).message }, 'adapter.updateDelivery threw');
      return {};
    }
  }
}
