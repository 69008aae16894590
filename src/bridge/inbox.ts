/**
 * The incoming side of one puppet: decrypts each `<message>`, persists it in the inbox, and only
 * then acknowledges it to the gateway; hands pending inbox entries to the adapter in order per
 * conversation; marks them delivered, owing the delivery receipt (durably, on the inbox row:
 * inbox-receipts.ts), once the adapter has them. Undecryptable messages get a retry receipt.
 */
import { MAX_RETRIES, retryReceipt } from '../protocol/retry-receipt.js';
import { decodeContent, describeContent } from '../protocol/content.js';
import type { Message } from '../protocol/gen/interop/v1/message_pb.js';
import { formatJid, parseJid, type MessageStanza } from '../protocol/stanza/index.js';
import { signalAddress } from '../signal/address.js';
import { inboxRowId, openPayload, PayloadUnreadableError, sealPayload } from '../store/at-rest.js';
import type { InboxEntry, OwedReceipt, Portal } from '../store/repositories.js';
import { encodeTarget } from './inbox-receipts.js';
import type { ConversationEvent } from './events.js';
import { incomingEvent } from './content.js';
import { fitToCapabilities } from './fallbacks.js';
import type { PuppetContext } from './context.js';
import { decodePayload, encodePayload } from './outbox.js';
import type { RemoteDevices } from './sessions.js';
import {
  isGroupJid,
  isGroupUpdatePayload,
  snapshotOf,
  type GroupUpdatePayload,
  type PuppetGroups,
} from './groups.js';
import { isGroupAdapter } from './adapter.js';
import type { GroupInfo } from '../protocol/stanza/index.js';
import { LazyMap, LazySet } from '../util/lazy-map.js';
import { portalById } from './portals-by-id.js';

/**
 * What the inbox row holds (sealed with the at-rest key while pending, cleared once delivered): the
 * decrypted (still padded) content and what the stanza said.
 */
interface InboxPayload {
  /** The sender's device JID (where the delivery receipt goes). */
  readonly from: string;
  /** A group message's group (the delivery receipt goes there, naming `from` as participant). */
  readonly group?: string | undefined;
  /** Sender's time, seconds. */
  readonly t: number;
  /** The Signal plaintext, base64. */
  readonly plaintext: string;
}

/** An entry to deliver, with its content when it was handed over in memory (not read back). */
interface Handed {
  readonly entry: InboxEntry;
  readonly payload?: InboxPayload | undefined;
  /** The content as decoded when it was decrypted (not decoded again). */
  readonly content?: Message | undefined;
}

/** A pass reads at most this many pending entries from the store. */
const PASS_LIMIT = 1000;

/** A receiver gives up asking for a message after this many retry receipts (the protocol's limit). */
/** The adapter refused a delivery: try that conversation again after this long (doubling, capped). */
const REDELIVER_MIN_MS = 1_000;
const REDELIVER_MAX_MS = 60_000;

/** Shown in place of a message whose waiting content cannot be opened (the at-rest key was lost). */
export const LOST_INCOMING_TEXT =
  '(sent a message that could not be shown: the bridge lost the key it was kept under while it waited for you)';

export class IncomingHandler {
  private readonly retries = new LazyMap<string, number>();
  /**
   * Hands recorded entries to the adapter. With several workers the adapters run in another
   * process (the front, src/cluster/relay.ts): then `handoff` tells it instead, and it delivers.
   */
  readonly delivery: InboxDelivery;

  constructor(
    private readonly ctx: PuppetContext,
    private readonly devices: RemoteDevices,
    kickReceipts: (owed: OwedReceipt) => void,
    private readonly handoff?: { inboxRecorded(): void } | undefined,
    private readonly groups?: PuppetGroups | undefined,
  ) {
    this.delivery = new InboxDelivery({ ...ctx, kickReceipts });
  }

  stop(): void {
    this.delivery.stop();
  }

  /** Delivers pending inbox entries (here, or by telling the front). */
  pump(): void {
    if (this.handoff) this.handoff.inboxRecorded();
    else this.delivery.pump();
  }

  /** Handles one delivered message. Called in arrival order, one at a time. */
  async onMessage(m: MessageStanza): Promise<void> {
    const { puppet } = this.ctx;
    if (m.from === undefined) return;
    if (isGroupJid(m.from)) return this.onGroupMessage(m, m.from);
    const fromJid = parseJid(m.from);
    const sender = formatJid({ user: fromJid.user, server: fromJid.server });
    const device = fromJid.device ?? 0;
    const enc = m.encs.find((e) => e.device === undefined || e.device === puppet.deviceId);
    let plaintext: Uint8Array;
    let content: Message;
    // What decryption changes in the Signal state is committed with the inbox row, not before: a
    // crash in between would spend the message key of a message that is in no inbox.
    const gate = this.ctx.sessionGate;
    gate.hold();
    try {
      if (!enc || enc.type === 'skmsg') throw new Error('no ciphertext for this device');
      plaintext = await this.ctx.signal.decrypt(signalAddress(sender, device), enc.type, enc.ciphertext);
      content = decodeContent(plaintext); // refuses bad padding or protobuf before anything is stored
    } catch (err) {
      await gate.commit();
      if (await this.redelivered(m, sender)) return;
      this.ctx.log?.info(
        { id: m.id, from: m.from, code: (err as { code?: string }).code },
        'undecryptable message: asking for a retry',
      );
      // Includes signal_duplicate_message for an id not in the inbox: a crash between decryption
      // and the inbox write consumed the message key, so only a re-encryption can bring it back.
      this.ctx.metrics?.incoming('undecryptable');
      await this.sendRetry(m);
      this.ack(m);
      return;
    }
    this.devices.saw(sender, device);
    const payload: InboxPayload = {
      from: m.from,
      t: m.t,
      plaintext: Buffer.from(plaintext).toString('base64'),
    };
    // From another device of this same account: a message the user sent from there, copied to
    // this device (multi-device sync). It belongs to the conversation with its destination.
    let conversation = sender;
    if (sender === this.ctx.accountJid) {
      const destination = content.deviceSentMessage?.destinationJid;
      if (destination === undefined || content.deviceSentMessage?.message === undefined) {
        await gate.commit();
        this.ctx.log?.info(
          { id: m.id },
          'a message from another device of this account without a destination: not shown',
        );
        this.ack(m);
        return;
      }
      const d = parseJid(destination);
      conversation = formatJid({ user: d.user, server: d.server });
    }
    await this.record(m, sender, conversation, payload, `${m.from}/${m.id}`, content);
  }

  /**
   * Records a decrypted message in its conversation's inbox, in the same commit as the Signal state
   * its decryption changed (the hold is open), then acknowledges it and delivers.
   */
  private async record(
    m: MessageStanza,
    sender: string,
    conversation: string,
    payload: InboxPayload,
    retryKey: string,
    content: Message,
  ): Promise<void> {
    const { store, puppet } = this.ctx;
    // Awaited with the hold open: the commit that follows only writes.
    const portal = await store.portals.ensure(puppet.id, conversation);
    const entry = {
      puppetId: puppet.id,
      sender,
      messageId: m.id,
      portalId: portal.id,
      payload: sealPayload(this.ctx.vault, inboxRowId(puppet.id, sender, m.id), encodePayload(payload)),
    };
    const receivedAt = Date.now();
    let seq: number | undefined;
    await this.ctx.sessionGate.commit((w) => {
      seq = w.recordInbox(entry);
    });
    this.retries.delete(retryKey);
    this.ctx.metrics?.incoming('received');
    this.ack(m);
    // Delivered here, and the row's seq known (SQLite): handed over with its content, not read back.
    if (seq !== undefined && !this.handoff) {
      this.delivery.handOver({ ...entry, seq, state: 'pending', receivedAt }, payload, content);
    } else this.pump();
  }

  /**
   * A group message: from `participant` (a device), with the sender key for this device when it
   * lacked it, and one SenderKeyMessage. Recorded in the group's conversation like any message.
   */
  private async onGroupMessage(m: MessageStanza, group: string): Promise<void> {
    const author = m.participant === undefined ? undefined : parseJid(m.participant);
    if (!this.groups || author?.user === undefined) {
      this.ctx.log?.info({ id: m.id, group }, 'a group message without its sender: dropped');
      return this.ack(m);
    }
    const sender = formatJid({ user: author.user, server: author.server });
    const device = author.device ?? 0;
    const gate = this.ctx.sessionGate;
    gate.hold();
    let plaintext: Uint8Array;
    let content: Message;
    try {
      plaintext = await this.groups.decrypt(m, sender, device);
      content = decodeContent(plaintext);
    } catch (err) {
      await gate.commit();
      if (await this.redelivered(m, sender)) return;
      this.ctx.log?.info(
        { id: m.id, group, from: m.participant, code: (err as { code?: string }).code },
        'undecryptable group message: asking for a retry',
      );
      this.ctx.metrics?.incoming('undecryptable');
      // To the group, naming the sender's device (PROTOCOL.md 5.7.7): the sender resends pairwise.
      await this.sendRetry(m, m.participant);
      this.ack(m);
      return;
    }
    this.devices.saw(sender, device);
    const payload: InboxPayload = {
      from: m.participant!,
      group,
      t: m.t,
      plaintext: Buffer.from(plaintext).toString('base64'),
    };
    await this.record(m, sender, group, payload, `${m.participant}/${m.id}`, content);
  }

  /**
   * A message that did not decrypt may be one already in the inbox: the gateway delivers it again
   * when the ack was lost, and its message key was spent in the commit that recorded it (so it
   * cannot decrypt twice, and is not looked up before decrypting: a read saved on every message).
   * Then it is acknowledged again and nothing is shown twice.
   */
  private async redelivered(m: MessageStanza, sender: string): Promise<boolean> {
    if (!(await this.ctx.store.inbox.has(this.ctx.puppet.id, sender, m.id))) return false;
    this.ack(m);
    return true;
  }

  private ack(m: MessageStanza): void {
    if (!this.ctx.connection.isConnected) return; // unacked: the gateway delivers it again
    this.ctx.connection.send({ kind: 'ack', class: 'message', id: m.id, ...(m.from ? { to: m.from } : {}) });
  }

  private async sendRetry(m: MessageStanza, participant?: string): Promise<void> {
    const key = `${participant ?? m.from}/${m.id}`;
    const count = (this.retries.get(key) ?? 0) + 1;
    this.retries.set(key, count);
    if (count > MAX_RETRIES || !this.ctx.connection.isConnected) return;
    await this.ctx.signal.prepare();
    const receipt = {
      ...retryReceipt(m, count, (n) => this.ctx.signal.prekeyUpload(n), this.ctx.nowSeconds()),
      ...(participant ? { participant } : {}),
    };
    // The prekey it may carry must be durable before a contact can use it.
    await this.ctx.signal.flush();
    if (this.ctx.connection.isConnected) this.ctx.connection.send(receipt);
  }
}

/** What delivering a puppet's inbox needs: no connection and no Signal state, only the store. */
export type DeliveryContext = Pick<
  PuppetContext,
  'puppet' | 'accountJid' | 'store' | 'adapter' | 'media' | 'log' | 'metrics' | 'vault'
> & {
  /** A delivery receipt is owed: the puppet's runtime (here or in the owning worker) sends it. */
  kickReceipts(owed: OwedReceipt): void;
};

/**
 * Hands a puppet's pending inbox entries to the adapter in order per conversation, marks them
 * delivered, owing the delivery receipt (durably, on the inbox row), once the adapter has them.
 */
export class InboxDelivery {
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private redeliverDelay = REDELIVER_MIN_MS;
  private redeliverTimer: NodeJS.Timeout | undefined;
  /** Entries recorded before this handler existed may have been handed to the adapter by a previous run. */
  private readonly since = Date.now();
  /** Entries handed to the adapter in this run whose delivery was not recorded yet. */
  private readonly attempted = new LazySet<string>();
  /** Portals by id, each read once (`portalById`). */
  private readonly portals = new LazyMap<number, Portal>();
  /**
   * The next pass reads the store: at first, after a refusal, after a full read, and whenever
   * something was recorded without being handed over (`pump()`). Else it takes `handed`.
   */
  private fromStore = true;
  /** Entries handed over since the last read of the store, in the order recorded, with content. */
  private handed: Handed[] | undefined;
  /**
   * The entries (sender, message id) the last read of the store returned: one committed before that
   * read and handed over after it is not taken a second time.
   */
  private lastRead: Set<string> | undefined;

  constructor(private readonly ctx: DeliveryContext) {}

  /**
   * An entry just recorded, with its content: taken by the next pass from memory. Left to the store
   * when the next pass reads it anyway.
   */
  handOver(entry: InboxEntry, payload: InboxPayload, content?: Message): void {
    if (!this.fromStore && !this.lastRead?.has(`${entry.sender}\n${entry.messageId}`)) {
      (this.handed ??= []).push({ entry, payload, content });
    }
    this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.redeliverTimer);
  }

  /**
   * The adapter can show what it refused before (a user joined a group's room): tries again now,
   * without waiting for the back-off.
   */
  retryNow(): void {
    clearTimeout(this.redeliverTimer);
    this.redeliverDelay = REDELIVER_MIN_MS;
    this.pump();
  }

  /** Delivers pending inbox entries, read from the store (now, or right after the running pass). */
  pump(): void {
    this.fromStore = true;
    this.run();
  }

  private run(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.pumpAgain = false;
          await this.pass();
        } while (this.pumpAgain && !this.stopped);
      } catch (err) {
        this.ctx.log?.warn({ err: (err as Error).message }, 'inbox pass interrupted');
      } finally {
        this.pumping = false;
      }
    })();
  }

  /** One pass: every conversation delivers its pending entries in order; conversations in parallel. */
  private async pass(): Promise<void> {
    const adapter = this.ctx.adapter();
    if (!adapter) return;
    let pending: Handed[];
    if (this.fromStore) {
      // Cleared in the step that reads (SQLite reads at once): what is recorded after it is handed.
      this.fromStore = false;
      this.handed = undefined;
      const read = await this.ctx.store.inbox.pending(this.ctx.puppet.id, PASS_LIMIT);
      this.lastRead = read.length === 0 ? undefined : new Set(read.map((e) => `${e.sender}\n${e.messageId}`));
      if (read.length === PASS_LIMIT) this.fromStore = this.pumpAgain = true;
      pending = read.map((entry) => ({ entry }));
    } else {
      pending = this.handed ?? [];
      this.handed = undefined;
    }
    if (pending.length === 0) return;
    const byPortal = new Map<number, Handed[]>();
    for (const e of pending) {
      const list = byPortal.get(e.entry.portalId ?? 0) ?? [];
      list.push(e);
      byPortal.set(e.entry.portalId ?? 0, list);
    }
    const results = await Promise.all(
      [...byPortal.values()].map(async (entries) => {
        for (const { entry, payload, content } of entries) {
          if (this.stopped) return true;
          if (!(await this.deliver(entry, payload, content))) return false;
        }
        return true;
      }),
    );
    if (results.every(Boolean)) {
      this.redeliverDelay = REDELIVER_MIN_MS;
      return;
    }
    // The adapter refused something: that conversation waits, then starts again where it stopped
    // (read from the store, with whatever came after it).
    this.fromStore = true;
    clearTimeout(this.redeliverTimer);
    this.redeliverTimer = setTimeout(() => this.pump(), this.redeliverDelay);
    this.redeliverTimer.unref();
    this.redeliverDelay = Math.min(REDELIVER_MAX_MS, this.redeliverDelay * 2);
  }

  /**
   * Hands one entry to the adapter (its content as handed over, else opened from the row); false
   * when the adapter refused it (it stays pending).
   */
  private async deliver(entry: InboxEntry, handed?: InboxPayload, content?: Message): Promise<boolean> {
    const { store, puppet } = this.ctx;
    const adapter = this.ctx.adapter();
    const portal =
      entry.portalId === null ? undefined : await portalById(this.portals, store, entry.portalId);
    if (!adapter || !portal) return false;
    let payload: InboxPayload | undefined = handed;
    if (payload === undefined) {
      try {
        const opened = decodePayload<InboxPayload | GroupUpdatePayload>(
          openPayload(this.ctx.vault, inboxRowId(puppet.id, entry.sender, entry.messageId), entry.payload),
        );
        if (isGroupUpdatePayload(opened))
          return await this.deliverGroupUpdate(entry, portal.remoteJid, opened);
        payload = opened;
      } catch (err) {
        if (!(err instanceof PayloadUnreadableError)) throw err;
        this.ctx.log?.warn(
          { id: entry.messageId, err: err.message },
          'incoming message unreadable: at-rest key lost; the user gets a notice in its place',
        );
      }
    }
    let localId: string | undefined;
    let event: ConversationEvent | undefined;
    const message =
      content ?? (payload ? decodeContent(Buffer.from(payload.plaintext, 'base64')) : undefined);
    // The user's own message from another of their devices: shown as theirs, under the id the
    // destination got (so the contact's receipts and replies find it).
    const sent = entry.sender === this.ctx.accountJid ? message?.deviceSentMessage : undefined;
    const fromSelf = sent?.message !== undefined;
    const remoteId = fromSelf && sent?.messageId ? sent.messageId : entry.messageId;
    try {
      event =
        message === undefined
          ? { type: 'message', body: { kind: 'text', text: LOST_INCOMING_TEXT } }
          : fromSelf && !adapter.capabilities.fromOtherDevices
            ? undefined
            : await incomingEvent({
                store,
                portal,
                accountJid: this.ctx.accountJid,
                localUser: puppet.localId,
                remoteId,
                described: describeContent(fromSelf ? sent!.message! : message),
                media: this.ctx.media,
                capabilities: adapter.capabilities,
              });
      const inGroup = isGroupJid(portal.remoteJid);
      if (inGroup && event !== undefined && !isGroupAdapter(adapter)) {
        this.ctx.log?.info({ id: entry.messageId }, 'a group message this network cannot show: skipped');
        event = undefined;
      }
      if (event !== undefined) {
        const key = `${entry.sender}\n${entry.messageId}`;
        const mayBeRepeat = this.attempted.has(key) || entry.receivedAt < this.since;
        this.attempted.add(key);
        localId = await adapter.deliver({
          remoteId,
          localUser: puppet.localId,
          remote: portal.remoteJid,
          ...(inGroup ? { author: entry.sender } : {}),
          timestamp: payload ? payload.t * 1000 : entry.receivedAt,
          event: fitToCapabilities(event, adapter.capabilities),
          ...(mayBeRepeat ? { mayBeRepeat } : {}),
          ...(fromSelf ? { fromSelf } : {}),
        });
      } else {
        this.ctx.log?.info({ id: entry.messageId }, 'incoming content the bridge cannot show: skipped');
      }
    } catch (err) {
      this.ctx.log?.warn(
        { id: entry.messageId, err: (err as Error).message },
        'the adapter did not take an incoming message: will retry',
      );
      return false;
    } finally {
      // A received file does not wait on disk: taken, or fetched again at the next attempt.
      if (event?.type === 'message' && 'path' in event.body) await this.ctx.media?.release?.(event.body);
    }
    // Without the payload the sender's device is unknown: no delivery receipt (the message was
    // not shown, only a notice about it).
    // Nor for the user's own message from another device: it was not sent to this one.
    // The receipt is owed by the inbox row (inbox-receipts.ts), written in the same commit.
    const receipt: string | undefined =
      payload && !fromSelf && event !== undefined
        ? encodeTarget(
            payload.group ? { to: payload.group, participant: payload.from } : { to: payload.from },
          )
        : undefined;
    await store.atomically((w) => {
      if (localId !== undefined) {
        w.putMessage({ portalId: portal.id, remoteId, localId, sender: entry.sender });
      }
      w.markInboxDelivered(puppet.id, entry.sender, entry.messageId, receipt);
    });
    this.attempted.delete(`${entry.sender}\n${entry.messageId}`);
    this.ctx.metrics?.incoming('delivered', entry.receivedAt);
    if (receipt !== undefined) {
      this.ctx.kickReceipts({ seq: entry.seq, messageId: entry.messageId, receipt });
    }
    return true;
  }

  /**
   * A group's change, in order with its messages: the adapter syncs the group's chat to the state
   * the store has now. A network without groups is not told (the entry is done).
   */
  private async deliverGroupUpdate(
    entry: InboxEntry,
    group: string,
    update: GroupUpdatePayload,
  ): Promise<boolean> {
    const { store, puppet } = this.ctx;
    const adapter = this.ctx.adapter();
    const stored = await store.groups.get(puppet.id, group);
    if (adapter && isGroupAdapter(adapter) && stored) {
      try {
        await adapter.updateGroup({
          localUser: puppet.localId,
          snapshot: snapshotOf(JSON.parse(stored.info) as GroupInfo, this.ctx.accountJid),
          change: update.groupUpdate.change,
          ...(update.groupUpdate.by ? { by: update.groupUpdate.by } : {}),
          updateId: `${group}#${update.groupUpdate.version}`,
        });
      } catch (err) {
        this.ctx.log?.warn(
          { group, err: (err as Error).message },
          'the adapter did not take a group update: will retry',
        );
        return false;
      }
    }
    await store.atomically((w) => w.markInboxDelivered(puppet.id, entry.sender, entry.messageId));
    return true;
  }
}
