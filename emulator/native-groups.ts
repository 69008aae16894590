/**
 * A native user in groups (docs/PROTOCOL.md 5.7), as the gatekeeper's apps behave: `w:g2`
 * requests, the group state kept from `w:gp2` notifications by version, and group messages
 * encrypted once with the user's Signal sender key (src/signal/sender-keys.ts). The sender key
 * reaches each participant device that lacks it in a pairwise Signal message beside the skmsg; the
 * user remembers which devices have it, and makes a new one after anyone leaves or is removed. A
 * user that is removed keeps the sender keys it had (tests prove they read nothing sent later).
 */
import { createHash, randomBytes } from 'node:crypto';
import { clone, create } from '@bufbuild/protobuf';
import { InteropError } from '../src/errors.js';
import { decodeContent, describeContent, encodeContent } from '../src/protocol/content.js';
import {
  MessageSchema,
  SenderKeyDistributionMessageSchema,
  type Message,
} from '../src/protocol/gen/interop/v1/message_pb.js';
import { MAX_RETRIES, retryReceipt, type RetryKeySource } from '../src/protocol/retry-receipt.js';
import {
  formatJid,
  GROUP_SERVER,
  parseJid,
  type Enc,
  type GroupEvent,
  type GroupInfo,
  type GroupNotificationStanza,
  type GroupSetting,
  type IqBody,
  type MessageStanza,
  type ParticipantAction,
  type ParticipantEnc,
  type ParticipantResult,
  type ReceiptStanza,
  type Stanza,
} from '../src/protocol/stanza/index.js';
import { signalAddress } from '../src/signal/address.js';
import type { SignalMessageType } from '../src/signal/index.js';
import { MemorySenderKeyBackend, type SenderKeyAddress } from '../src/signal/sender-key-store.js';
import {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  processDistribution,
  rotate,
} from '../src/signal/sender-keys.js';
import type { ReceivedMessage } from './native-types.js';
import { deliver, waitFor, type Waiter } from './native-waiters.js';

/** What the groups need of the native user they belong to. */
export interface GroupMember {
  readonly jid: string;
  readonly device: number;
  /** Sends a request; resolves with the answer's body, rejects with NativeGroupError on an error. */
  request(body: IqBody, to?: string): Promise<IqBody>;
  /** Sends a message; resolves once the gateway acked it, rejects on `<ack error>`. */
  sendMessage(stanza: MessageStanza): Promise<void>;
  send(stanza: Stanza): void;
  /** A pairwise ciphertext for one device (fetching its keys first when there is no session). */
  encryptFor(user: string, device: number, plaintext: Uint8Array): Promise<Enc>;
  decryptFrom(user: string, device: number, type: SignalMessageType, body: Uint8Array): Promise<Uint8Array>;
  /** The devices of a user that a sender can encrypt to. */
  devicesOf(user: string): Promise<number[]>;
  /** This device's keys for a retry receipt (a prekey upload's content). */
  retryKeys(preKeys: number): RetryKeySource;
  /** Whether to send delivery receipts for what it received. */
  readonly autoDeliveryReceipts: boolean;
  /** A received group message, for the user's lists and behaviours. */
  received(m: ReceivedMessage): void;
}

/** A group request the gateway refused: `status` is its error code (401, 403, 404, 409, 410, ...). */
export class NativeGroupError extends InteropError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('native_group_refused', message);
  }
}

/** A group notification as the user received it. */
export interface GroupEventRecord {
  readonly group: string;
  readonly version: number;
  /** Who made the change (a user JID); absent when the gateway did. */
  readonly author?: string | undefined;
  readonly event: GroupEvent;
}

/**
 * The sender-key distribution id of a group: a name-based UUID (version 8) of its JID, the same
 * derivation as the bridge's (src/bridge/groups.ts), so it needs no storage.
 */
export function distributionIdOf(group: string): string {
  const h = createHash('sha256').update(`interop-bridge sender key\n${group}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The sender-key address of a device: the same naming as its pairwise Signal address. */
export function senderKeyAddress(user: string, device: number): SenderKeyAddress {
  return { name: signalAddress(user, 0).slice(0, -2), deviceId: device };
}

const now = () => Math.floor(Date.now() / 1000);
const newId = () => randomBytes(10).toString('hex').toUpperCase();

function device(jid: string): { user: string; device: number } {
  const p = parseJid(jid);
  return { user: formatJid({ user: p.user, server: p.server }), device: p.device ?? 0 };
}

export class NativeGroups {
  /** The groups the user is in, as it knows them (by JID). */
  readonly groups = new Map<string, GroupInfo>();
  /** Every group notification received, in order. */
  readonly events: GroupEventRecord[] = [];
  /** The user's sender keys: its own chains and those others gave it. Kept when it is removed. */
  readonly senderKeys = new MemorySenderKeyBackend();
  /** Per group: the device JIDs that have this device's current sender key. */
  readonly keyHolders = new Map<string, Set<string>>();
  readonly #eventWaiters: Waiter<GroupEventRecord>[] = [];
  readonly #sent = new Map<string, { group: string; content: Message; type: 'text' | 'media'; t: number }>();
  readonly #retries = new Map<string, number>();
  /** Group stanzas are handled one after the other, so a sender key is stored before its skmsg. */
  #chain: Promise<void> = Promise.resolve();

  constructor(private readonly member: GroupMember) {}

  // --- requests --------------------------------------------------------------------------------

  async #ask(body: IqBody, to: string = GROUP_SERVER): Promise<IqBody> {
    return this.member.request(body, to);
  }

  #keep(group: GroupInfo): GroupInfo {
    const known = this.groups.get(group.jid);
    if (!known || known.version <= group.version) this.groups.set(group.jid, group);
    return group;
  }

  /** Creates a group with this user as its admin; resolves with it and whom it could not add. */
  async create(
    subject: string,
    participants: readonly string[],
    options: { announce?: boolean; locked?: boolean; key?: string } = {},
  ): Promise<{ group: GroupInfo; failed: readonly ParticipantResult[] }> {
    const answer = await this.#ask({
      op: 'group_create',
      subject,
      key: options.key ?? newId(),
      participants,
      announce: options.announce ?? false,
      locked: options.locked ?? false,
    });
    if (answer.op !== 'group_info_result') throw unexpected(answer);
    return { group: this.#keep(answer.group), failed: answer.failed ?? [] };
  }

  /** Reads the group (and takes its version). */
  async info(group: string): Promise<GroupInfo> {
    const answer = await this.#ask({ op: 'group_info' }, group);
    if (answer.op !== 'group_info_result') throw unexpected(answer);
    return this.#keep(answer.group);
  }

  async list(): Promise<readonly GroupInfo[]> {
    const answer = await this.#ask({ op: 'group_list' });
    if (answer.op !== 'group_list_result') throw unexpected(answer);
    return answer.groups.map((g) => this.#keep(g));
  }

  async participants(
    group: string,
    action: ParticipantAction,
    jids: readonly string[],
  ): Promise<readonly ParticipantResult[]> {
    const answer = await this.#ask({ op: 'group_participants', action, participants: jids }, group);
    if (answer.op !== 'group_participants_result') throw unexpected(answer);
    return answer.participants;
  }

  async leave(group: string): Promise<void> {
    await this.#ask({ op: 'group_leave', group });
  }

  async setSubject(group: string, subject: string): Promise<void> {
    await this.#ask({ op: 'group_subject', subject }, group);
  }

  /** A new description (`null` deletes it), replacing the one this user knows of (409 if stale). */
  async setDescription(group: string, text: string | null, prev?: string): Promise<string> {
    const id = newId();
    const previous = prev ?? this.groups.get(group)?.description?.id;
    await this.#ask(
      {
        op: 'group_description',
        id,
        ...(previous === undefined ? {} : { prev: previous }),
        ...(text === null ? {} : { description: text }),
      },
      group,
    );
    return id;
  }

  async setSetting(group: string, setting: GroupSetting): Promise<void> {
    await this.#ask({ op: 'group_setting', setting }, group);
  }

  /** The group's invite code (`reset`: revoke it and make a new one). Admins only. */
  async inviteCode(group: string, reset = false): Promise<string> {
    const answer = await this.#ask({ op: reset ? 'group_invite_reset' : 'group_invite' }, group);
    if (answer.op !== 'group_invite_result') throw unexpected(answer);
    return answer.code;
  }

  /** The group an invite code leads to, without joining. */
  async inviteInfo(code: string): Promise<GroupInfo> {
    const answer = await this.#ask({ op: 'group_invite_info', code });
    if (answer.op !== 'group_info_result') throw unexpected(answer);
    return answer.group;
  }

  async join(code: string): Promise<GroupInfo> {
    const answer = await this.#ask({ op: 'group_invite_join', code });
    if (answer.op !== 'group_info_result') throw unexpected(answer);
    return this.#keep(answer.group);
  }

  /** The next group notification matching `match` (already received ones count). */
  waitForEvent(
    match: (e: GroupEventRecord) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<GroupEventRecord> {
    return waitFor(this.events, this.#eventWaiters, match, timeoutMs, 'group notification');
  }

  // --- sending ---------------------------------------------------------------------------------

  /**
   * Sends `content` into the group: one skmsg for everyone, and the sender key, pairwise, to each
   * participant device that lacks it. Resolves with the message id once the gateway acked it.
   */
  async send(group: string, content: Message, type: 'text' | 'media', id = newId()): Promise<string> {
    const state = this.groups.get(group) ?? (await this.info(group));
    const me = senderKeyAddress(this.member.jid, this.member.device);
    const distributionId = distributionIdOf(group);
    const distribution = await createDistribution(this.senderKeys, me, distributionId);
    const holders = this.keyHolders.get(group) ?? new Set<string>();
    const keyMessage = encodeContent(
      create(MessageSchema, {
        senderKeyDistributionMessage: create(SenderKeyDistributionMessageSchema, {
          groupId: group,
          axolotlSenderKeyDistributionMessage: distribution,
        }),
      }),
    );
    const participants: ParticipantEnc[] = [];
    for (const p of state.participants) {
      for (const d of await this.#devices(p.jid)) {
        if (p.jid === this.member.jid && d === this.member.device) continue;
        const jid = formatJid({ ...parseJid(p.jid), device: d });
        if (holders.has(jid)) continue;
        try {
          participants.push({ jid, enc: await this.member.encryptFor(p.jid, d, keyMessage) });
        } catch {
          // No keys for that device: it asks with a retry receipt when it meets the skmsg.
        }
      }
    }
    const skmsg = await groupEncrypt(this.senderKeys, me, distributionId, encodeContent(content));
    const t = now();
    this.#sent.set(id, { group, content, type, t });
    await this.member.sendMessage({
      kind: 'message',
      id,
      to: group,
      type,
      t,
      encs: [{ type: 'skmsg', ciphertext: skmsg }],
      ...(participants.length > 0 ? { participants } : {}),
    });
    for (const p of participants) holders.add(p.jid);
    this.keyHolders.set(group, holders);
    return id;
  }

  async #devices(user: string): Promise<number[]> {
    try {
      return await this.member.devicesOf(user);
    } catch {
      return [0];
    }
  }

  /** Answers a retry receipt: the whole message and the sender key, pairwise, to that one device. */
  async #resend(r: ReceiptStanza): Promise<void> {
    const original = this.#sent.get(r.id);
    if (!original || r.participant === undefined) return;
    const target = device(r.participant);
    // Only to a device of someone who is a participant now (5.7.6).
    if (!this.groups.get(original.group)?.participants.some((p) => p.jid === target.user)) return;
    const distribution = await createDistribution(
      this.senderKeys,
      senderKeyAddress(this.member.jid, this.member.device),
      distributionIdOf(original.group),
    );
    const both = clone(MessageSchema, original.content);
    both.senderKeyDistributionMessage = create(SenderKeyDistributionMessageSchema, {
      groupId: original.group,
      axolotlSenderKeyDistributionMessage: distribution,
    });
    const enc = await this.member.encryptFor(target.user, target.device, encodeContent(both));
    await this.member.sendMessage({
      kind: 'message',
      id: r.id,
      to: original.group,
      participant: r.participant,
      type: original.type,
      t: original.t,
      encs: [enc],
    });
  }

  // --- receiving -------------------------------------------------------------------------------

  /** Handles a group stanza in arrival order; false when it is not about a group. */
  handles(stanza: Stanza): boolean {
    const fromGroup = (from: string | undefined) => from !== undefined && from.endsWith(`@${GROUP_SERVER}`);
    const mine =
      (stanza.kind === 'notification' && stanza.type === 'w:gp2') ||
      (stanza.kind === 'message' && fromGroup(stanza.from));
    if (!mine) {
      if (stanza.kind === 'receipt' && stanza.type === 'retry' && fromGroup(stanza.from)) {
        void this.#resend(stanza).catch(() => undefined);
      }
      return false;
    }
    this.#chain = this.#chain
      .then(() =>
        stanza.kind === 'message'
          ? this.#onMessage(stanza)
          : this.#onNotification(stanza as GroupNotificationStanza),
      )
      .catch(() => undefined);
    return true;
  }

  async #onNotification(n: GroupNotificationStanza): Promise<void> {
    this.member.send({ kind: 'ack', class: 'notification', id: n.id });
    const group = n.from;
    const known = this.groups.get(group);
    const e = n.body;
    const removedMe =
      e.event === 'participants_changed' && e.action === 'remove' && e.participants.includes(this.member.jid);
    if (e.event === 'group_created') {
      this.#keep(e.group);
    } else if (removedMe) {
      this.groups.delete(group);
      this.keyHolders.delete(group);
    } else if (known && n.version === known.version + 1) {
      this.groups.set(group, applyEvent(known, e, n.version));
    } else if (!known || n.version > known.version + 1) {
      await this.info(group).catch(() => undefined);
    }
    if (e.event === 'participants_changed' && e.action === 'remove' && !removedMe) {
      // Whoever left must not read what this device sends next: a new sender key, for everyone.
      await rotate(
        this.senderKeys,
        senderKeyAddress(this.member.jid, this.member.device),
        distributionIdOf(group),
      );
      this.keyHolders.delete(group);
    }
    const record = { group, version: n.version, author: n.participant, event: e };
    deliver(this.events, this.#eventWaiters, record);
  }

  async #onMessage(m: MessageStanza): Promise<void> {
    const group = m.from as string;
    const sender = device(m.participant ?? '');
    const address = senderKeyAddress(sender.user, sender.device);
    try {
      let raw: Message | undefined;
      for (const enc of m.encs) {
        if (enc.type === 'skmsg') {
          raw = decodeContent(
            await groupDecrypt(this.senderKeys, address, distributionIdOf(group), enc.ciphertext),
          );
          continue;
        }
        const inner = decodeContent(
          await this.member.decryptFrom(sender.user, sender.device, enc.type, enc.ciphertext),
        );
        const skdm = inner.senderKeyDistributionMessage;
        if (skdm?.axolotlSenderKeyDistributionMessage && skdm.groupId === group) {
          await processDistribution(
            this.senderKeys,
            address,
            distributionIdOf(group),
            skdm.axolotlSenderKeyDistributionMessage,
          );
        }
        // A resend after a retry carries the content beside the key; a distribution alone has none.
        if (describeContent(inner).kind !== 'unknown') raw = inner;
      }
      this.#ack(m);
      if (!raw) return;
      if (this.member.autoDeliveryReceipts) {
        this.member.send({ kind: 'receipt', id: m.id, to: group, participant: sender.user, t: now() });
      }
      this.member.received({
        from: sender.user,
        fromDevice: sender.device,
        id: m.id,
        t: m.t,
        content: describeContent(raw),
        raw,
        group,
        participant: m.participant,
        ...(m.notify === undefined ? {} : { notify: m.notify }),
      });
    } catch (err) {
      if ((err as InteropError).code === 'signal_duplicate_message') return this.#ack(m);
      const count = (this.#retries.get(m.id) ?? 0) + 1;
      this.#retries.set(m.id, count);
      if (count <= MAX_RETRIES && m.participant !== undefined) {
        this.member.send({
          ...retryReceipt(m, count, (n) => this.member.retryKeys(n), now()),
          participant: m.participant,
        });
      }
      this.#ack(m);
    }
  }

  #ack(m: MessageStanza): void {
    this.member.send({ kind: 'ack', class: 'message', id: m.id, ...(m.from ? { to: m.from } : {}) });
  }
}

function unexpected(answer: IqBody): InteropError {
  return new InteropError('native_group_answer', `the gateway answered ${answer.op}`);
}

/** The state after one notification. */
function applyEvent(g: GroupInfo, e: GroupEvent, version: number): GroupInfo {
  switch (e.event) {
    case 'group_created':
      return e.group;
    case 'subject_changed':
      return { ...g, version, subject: e.subject };
    case 'description_changed':
      return {
        ...g,
        version,
        description: e.description === undefined ? undefined : { id: e.id, text: e.description },
      };
    case 'setting_changed':
      return {
        ...g,
        version,
        ...(e.setting === 'announcement' || e.setting === 'not_announcement'
          ? { announce: e.setting === 'announcement' }
          : { locked: e.setting === 'locked' }),
      };
    case 'participants_changed': {
      const who = new Set(e.participants);
      let participants = g.participants;
      if (e.action === 'add')
        participants = [...participants, ...e.participants.map((jid) => ({ jid, admin: false }))];
      if (e.action === 'remove') participants = participants.filter((p) => !who.has(p.jid));
      if (e.action === 'promote' || e.action === 'demote') {
        participants = participants.map((p) =>
          who.has(p.jid) ? { ...p, admin: e.action === 'promote' } : p,
        );
      }
      return { ...g, version, participants };
    }
  }
}
