/**
 * One puppet's groups (docs/PROTOCOL.md 5.7): the state the gateway announces, kept in the store
 * and handed to the adapter in order with the group's messages; and the Signal side of a group
 * message, encrypted once with the puppet's sender key, which goes pairwise to each member device
 * that lacks it (rotated when someone leaves or is removed, so they cannot read what follows).
 */
import { createHash, randomBytes } from 'node:crypto';
import { clone, create } from '@bufbuild/protobuf';
import { encodeContent, decodeContent } from '../protocol/content.js';
import {
  MessageSchema,
  SenderKeyDistributionMessageSchema,
  type Message,
} from '../protocol/gen/interop/v1/message_pb.js';
import {
  formatJid,
  parseJid,
  type Enc,
  type GroupInfo,
  type GroupNotificationStanza,
  type PictureNotificationStanza,
  type IqBody,
  type IqStanza,
  type MediaType,
  type MessageStanza,
  type ParticipantEnc,
} from '../protocol/stanza/index.js';
import { signalAddress } from '../signal/address.js';
import { SignalError } from '../signal/errors.js';
import {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  processDistribution,
  rotate,
} from '../signal/sender-keys.js';
import type { SenderKeyAddress, SenderKeyBackend } from '../signal/sender-key-store.js';
import { inboxRowId, sealPayload } from '../store/at-rest.js';
import type { GroupRepository } from '../store/repositories.js';
import type { PuppetContext } from './context.js';
import { BridgeError, UndeliverableError } from './errors.js';
import type { GroupRequest } from './adapter.js';
import type { GroupChange, GroupSnapshot } from './events.js';
import type { RemoteDevices } from './sessions.js';
import { LazyMap } from '../util/lazy-map.js';

/** Groups live on this server: `<id>@g.wa.interop`. */
export const GROUP_SERVER = 'g.wa.interop';

export const isGroupJid = (jid: string): boolean => jid.endsWith(`@${GROUP_SERVER}`);

/**
 * The sender-key distribution of the puppet's own chain in a group: a UUID made from the group's
 * JID (a name-based UUID, version 8), so it is the same after a restart without being stored.
 */
export function distributionIdOf(groupJid: string): string {
  const h = createHash('sha256').update(`interop-bridge sender key\n${groupJid}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The sender-key address of a device (the same naming as the pairwise sessions). */
export function senderOf(userJid: string, device: number): SenderKeyAddress {
  return { name: signalAddress(userJid, 0).slice(0, -2), deviceId: device };
}

/**
 * What a group update waits as in the inbox (sealed like a message): the change and who made it.
 * The snapshot is read from the store when it is delivered (the newest state: the adapter syncs to it).
 */
export interface GroupUpdatePayload {
  readonly groupUpdate: {
    readonly change: GroupChange;
    readonly by?: string | undefined;
    readonly version: number;
  };
}

export const isGroupUpdatePayload = (p: object): p is GroupUpdatePayload => 'groupUpdate' in p;

/** The core's view of a group's state for the adapter. */
export function snapshotOf(info: GroupInfo, accountJid: string): GroupSnapshot {
  return {
    group: info.jid,
    subject: info.subject,
    ...(info.description ? { description: info.description.text } : {}),
    announce: info.announce,
    locked: info.locked,
    version: info.version,
    members: info.participants.map((p) => {
      const user = parseJid(p.jid).user ?? '';
      return {
        remote: p.jid,
        ...(/^[1-9][0-9]{5,14}$/.test(user) && p.jid.endsWith('@wa.interop') ? { phone: `+${user}` } : {}),
        admin: p.admin,
        ...(p.jid === accountJid ? { self: true } : {}),
      };
    }),
  };
}

/** A group's state after one announced change (the caller checked it follows the stored version). */
export function applyGroupEvent(info: GroupInfo, n: GroupNotificationStanza): GroupInfo {
  const e = n.body;
  const base = { ...info, version: n.version };
  switch (e.event) {
    case 'group_created':
      return e.group;
    case 'subject_changed':
      return { ...base, subject: e.subject };
    case 'description_changed':
      return {
        ...base,
        description: e.description === undefined ? undefined : { id: e.id, text: e.description },
      };
    case 'setting_changed':
      return {
        ...base,
        ...(e.setting === 'announcement' || e.setting === 'not_announcement'
          ? { announce: e.setting === 'announcement' }
          : { locked: e.setting === 'locked' }),
      };
    case 'participants_changed': {
      const named = new Set(e.participants);
      switch (e.action) {
        case 'add': {
          const known = new Set(info.participants.map((p) => p.jid));
          const added = e.participants.filter((j) => !known.has(j)).map((jid) => ({ jid, admin: false }));
          return { ...base, participants: [...info.participants, ...added] };
        }
        case 'remove':
          return { ...base, participants: info.participants.filter((p) => !named.has(p.jid)) };
        case 'promote':
        case 'demote':
          return {
            ...base,
            participants: info.participants.map((p) =>
              named.has(p.jid) ? { ...p, admin: e.action === 'promote' } : p,
            ),
          };
      }
    }
  }
}

/** The change as the adapter is told it. */
function changeOf(n: GroupNotificationStanza, accountJid: string): GroupChange {
  const e = n.body;
  switch (e.event) {
    case 'group_created':
      return { kind: 'created' };
    case 'subject_changed':
      return { kind: 'subject' };
    case 'description_changed':
      return { kind: 'description' };
    case 'setting_changed':
      return { kind: 'settings' };
    case 'participants_changed': {
      if (e.action === 'remove' && e.participants.includes(accountJid)) return { kind: 'gone' };
      const kind = ({ add: 'added', remove: 'removed', promote: 'promoted', demote: 'demoted' } as const)[
        e.action
      ];
      return { kind, members: e.participants, ...(e.reason === 'invite' ? { byInvite: true } : {}) };
    }
  }
}

export class PuppetGroups {
  /**
   * The puppet's groups as stored, parsed, and the devices holding its sender key, read once each:
   * this process is the only writer of its puppet's rows, so a message reads neither again.
   */
  private readonly known = new LazyMap<string, GroupInfo | undefined>();
  private readonly holders = new LazyMap<string, Set<string>>();

  constructor(
    private readonly ctx: PuppetContext,
    private readonly devices: RemoteDevices,
    private readonly senderKeys: SenderKeyBackend,
    private readonly updateRecorded: () => void,
  ) {}

  private get groups(): GroupRepository {
    return this.ctx.store.groups;
  }

  /** The group as stored, parsed; undefined when unknown. */
  async info(groupJid: string): Promise<GroupInfo | undefined> {
    if (this.known.has(groupJid)) return this.known.get(groupJid);
    const stored = await this.groups.get(this.ctx.puppet.id, groupJid);
    const info = stored ? (JSON.parse(stored.info) as GroupInfo) : undefined;
    this.known.set(groupJid, info);
    return info;
  }

  private async keyHolders(groupJid: string): Promise<Set<string>> {
    let holders = this.holders.get(groupJid);
    if (!holders) {
      holders = new Set(await this.groups.keyHolders(this.ctx.puppet.id, groupJid));
      this.holders.set(groupJid, holders);
    }
    return holders;
  }

  /**
   * A group picture notification: a change of the group, counted in its version (PROTOCOL.md 5.8.3),
   * applied to the stored state so the next `w:gp2` is not taken for a gap. Shown by profiles.ts.
   */
  async onPicture(n: PictureNotificationStanza): Promise<void> {
    const { puppet } = this.ctx;
    const stored = await this.groups.get(puppet.id, n.from);
    if (!stored || n.version !== stored.version + 1) return;
    const before = JSON.parse(stored.info) as GroupInfo;
    const { pictureId: _old, ...rest } = before;
    const info: GroupInfo = {
      ...rest,
      version: n.version,
      ...(n.body.event === 'picture_set' ? { pictureId: n.body.id } : {}),
    };
    this.known.delete(n.from);
    await this.groups.put({
      puppetId: puppet.id,
      groupJid: n.from,
      version: n.version,
      info: JSON.stringify(info),
      active: stored.active,
    });
    this.known.set(n.from, info);
  }

  /**
   * A `w:gp2` notification: applied to the stored state (or, after a gap in versions, the state read
   * again from the gateway), and recorded in the inbox so the adapter gets it in order with the
   * group's messages. A member gone means a new sender key for what the puppet sends next.
   * Resolves once recorded: the caller acks the notification then.
   */
  async onNotification(n: GroupNotificationStanza): Promise<void> {
    const { store, puppet, accountJid } = this.ctx;
    const groupJid = n.from;
    const stored = await this.groups.get(puppet.id, groupJid);
    if (stored && n.version <= stored.version) return; // already applied (a redelivery)
    let info: GroupInfo;
    if (n.body.event === 'group_created') info = n.body.group;
    else if (stored && n.version === stored.version + 1)
      info = applyGroupEvent(JSON.parse(stored.info) as GroupInfo, n);
    else info = await this.query(groupJid, n);
    const change = changeOf(n, accountJid);
    const active = change.kind !== 'gone' && info.participants.some((p) => p.jid === accountJid);
    if (n.body.event === 'participants_changed' && n.body.action === 'remove') {
      // Whoever left must not read what this puppet sends next: a new chain, for everyone anew.
      await rotate(this.senderKeys, senderOf(accountJid, puppet.deviceId), distributionIdOf(groupJid));
      await this.groups.clearKeyHolders(puppet.id, groupJid);
      this.holders.delete(groupJid);
    }
    this.known.delete(groupJid);
    await this.groups.put({
      puppetId: puppet.id,
      groupJid,
      version: info.version,
      info: JSON.stringify(info),
      active,
    });
    this.known.set(groupJid, info);
    const portal = await store.portals.ensure(puppet.id, groupJid);
    const messageId = `gp2-${n.version}`;
    const payload: GroupUpdatePayload = {
      groupUpdate: { change, version: n.version, ...(n.participant ? { by: n.participant } : {}) },
    };
    await store.atomically((w) =>
      w.recordInbox({
        puppetId: puppet.id,
        sender: groupJid,
        messageId,
        portalId: portal.id,
        payload: sealPayload(
          this.ctx.vault,
          inboxRowId(puppet.id, groupJid, messageId),
          new TextEncoder().encode(JSON.stringify(payload)),
        ),
      }),
    );
    this.updateRecorded();
  }

  /**
   * Creates a group with the puppet as its admin and `members` (remote JIDs) in it; the gateway's
   * `created` notification follows (and reaches the adapter through the inbox, as every change).
   */
  async create(subject: string, members: readonly string[]): Promise<GroupSnapshot> {
    const answer = await this.ask(
      {
        op: 'group_create',
        subject,
        key: randomBytes(12).toString('hex'),
        participants: [...new Set(members)].filter((m) => m !== this.ctx.accountJid),
        announce: false,
        locked: false,
      },
      GROUP_SERVER,
    );
    if (answer.body.op !== 'group_info_result') throw refused('create the group', answer.body);
    const failed = answer.body.failed ?? [];
    if (failed.length > 0) {
      this.ctx.log?.info(
        { group: answer.body.group.jid, failed: failed.length },
        'members not added to a new group',
      );
    }
    return snapshotOf(answer.body.group, this.ctx.accountJid);
  }

  /** Asks the gateway for a change of a group the puppet is in (the notification follows). */
  async change(group: string, request: GroupRequest): Promise<void> {
    const body: IqBody =
      request.action === 'leave'
        ? { op: 'group_leave', group }
        : request.action === 'subject'
          ? { op: 'group_subject', subject: request.subject }
          : request.action === 'description'
            ? {
                op: 'group_description',
                id: randomBytes(8).toString('hex'),
                ...withPrev((await this.info(group))?.description?.id),
                ...(request.description === '' ? {} : { description: request.description }),
              }
            : { op: 'group_participants', action: request.action, participants: [...request.members] };
    const answer = await this.ask(body, request.action === 'leave' ? GROUP_SERVER : group);
    if (answer.body.op === 'error') throw refused(`${request.action} in the group`, answer.body);
    if (answer.body.op === 'group_participants_result') {
      const failed = answer.body.participants.filter((p) => p.error !== undefined);
      if (failed.length > 0) {
        throw new BridgeError(
          'bridge_group_refused',
          `the gateway did not ${request.action} ${failed.map((f) => `${f.jid} (error ${f.error})`).join(', ')}`,
        );
      }
    }
  }

  /** A w:g2 request; the gateway's refusal (an iq error) becomes the user's words. */
  private async ask(body: IqBody, to: string): Promise<IqStanza> {
    try {
      return await this.ctx.connection.request(body, to);
    } catch (err) {
      if ((err as { code?: string }).code !== 'gateway_request_failed') throw err;
      throw new BridgeError('bridge_group_refused', `the gateway refused it: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** A group request another process sent to the puppet's owner (Bridge `onOwner`), if it is one. */
  onRequest(
    op: string,
    args: readonly unknown[],
    connected: () => Promise<void>,
  ): Promise<unknown> | undefined {
    if (op === 'createGroup')
      return connected().then(() => this.create(String(args[0]), args[1] as string[]));
    if (op === 'changeGroup') {
      return connected().then(() => this.change(String(args[0]), args[1] as GroupRequest));
    }
    return undefined;
  }

  /** The group's state read from the gateway (after a gap in the versions the puppet saw). */
  private async query(groupJid: string, n: GroupNotificationStanza): Promise<GroupInfo> {
    const answer = await this.ctx.connection.request({ op: 'group_info' }, groupJid);
    if (answer.body.op !== 'group_info_result') {
      throw new Error(`the gateway did not describe ${groupJid} after notification v${n.version}`);
    }
    return answer.body.group;
  }

  /**
   * A group message's ciphertexts: one SenderKeyMessage for everyone, and the puppet's sender key,
   * pairwise, for each member device that does not have it yet.
   */
  async encrypt(
    groupJid: string,
    content: Uint8Array,
    mediaType: MediaType | undefined,
  ): Promise<{ encs: Enc[]; participants: ParticipantEnc[]; holders: string[] }> {
    const { puppet, accountJid } = this.ctx;
    const info = await this.info(groupJid);
    if (!info || !info.participants.some((p) => p.jid === accountJid)) {
      throw new UndeliverableError(
        'bridge_not_a_member',
        'you are not a member of this group (any more): the message was not sent',
      );
    }
    const me = senderOf(accountJid, puppet.deviceId);
    const distributionId = distributionIdOf(groupJid);
    const distribution = await createDistribution(this.senderKeys, me, distributionId);
    const holders = await this.keyHolders(groupJid);
    const participants: ParticipantEnc[] = [];
    const sent: string[] = [];
    const skdm = encodeContent(
      create(MessageSchema, {
        senderKeyDistributionMessage: create(SenderKeyDistributionMessageSchema, {
          groupId: groupJid,
          axolotlSenderKeyDistributionMessage: distribution,
        }),
      }),
    );
    for (const member of info.participants) {
      const devices = await this.devices.devicesOf(member.jid).catch(() => [] as number[]);
      const wanted = devices.filter(
        (d) =>
          !(member.jid === accountJid && d === puppet.deviceId) && !holders.has(deviceJid(member.jid, d)),
      );
      if (wanted.length === 0) continue;
      const ready = await this.devices.ensureSessions(member.jid, wanted);
      for (const device of ready) {
        const enc = await this.ctx.signal.encrypt(signalAddress(member.jid, device), skdm);
        const jid = deviceJid(member.jid, device);
        participants.push({ jid, enc: { type: enc.type, ciphertext: enc.body } });
        sent.push(jid);
      }
    }
    const skmsg = await groupEncrypt(this.senderKeys, me, distributionId, content);
    const encs: Enc[] = [{ type: 'skmsg', ciphertext: skmsg, ...(mediaType ? { mediaType } : {}) }];
    return { encs, participants, holders: sent };
  }

  /**
   * A content with the puppet's sender key for the group added: what a resend after a retry
   * receipt carries, pairwise, to the one device that could not read the group message.
   */
  async withSenderKey(groupJid: string, content: Message): Promise<Message> {
    const me = senderOf(this.ctx.accountJid, this.ctx.puppet.deviceId);
    const distribution = await createDistribution(this.senderKeys, me, distributionIdOf(groupJid));
    const copy = clone(MessageSchema, content);
    copy.senderKeyDistributionMessage = create(SenderKeyDistributionMessageSchema, {
      groupId: groupJid,
      axolotlSenderKeyDistributionMessage: distribution,
    });
    return copy;
  }

  /** Records the devices that were sent the sender key with a message the gateway accepted. */
  async keyDelivered(groupJid: string, devices: readonly string[]): Promise<void> {
    if (devices.length === 0) return;
    await this.groups.addKeyHolders(this.ctx.puppet.id, groupJid, devices);
    for (const d of devices) this.holders.get(groupJid)?.add(d);
  }

  /**
   * A delivered group message: the sender key it may carry for this device (pairwise) is stored,
   * then the SenderKeyMessage is read with it. Resolves with the plaintext (padded content).
   */
  async decrypt(m: MessageStanza, senderJid: string, senderDevice: number): Promise<Uint8Array> {
    const sender = senderOf(senderJid, senderDevice);
    const pairwise = m.encs.find(
      (e) => e.type !== 'skmsg' && (e.device === undefined || e.device === this.ctx.puppet.deviceId),
    );
    const skmsg = m.encs.find((e) => e.type === 'skmsg');
    if (pairwise && pairwise.type !== 'skmsg') {
      const plain = await this.ctx.signal.decrypt(
        signalAddress(senderJid, senderDevice),
        pairwise.type,
        pairwise.ciphertext,
      );
      const skdm = decodeContent(plain).senderKeyDistributionMessage;
      if (skdm?.axolotlSenderKeyDistributionMessage && skdm.groupId === m.from) {
        await processDistribution(
          this.senderKeys,
          sender,
          distributionIdOf(skdm.groupId),
          skdm.axolotlSenderKeyDistributionMessage,
        );
      }
      // A resend after a retry receipt: the message itself came pairwise (with the key).
      if (!skmsg) return plain;
    }
    if (!skmsg)
      throw new SignalError('signal_decrypt_failed', 'a group message without a sender-key ciphertext');
    return groupDecrypt(this.senderKeys, sender, distributionIdOf(m.from ?? ''), skmsg.ciphertext);
  }
}

const withPrev = (prev: string | undefined) => (prev === undefined ? {} : { prev });

/** A refusal of a group request, in words for the user. */
function refused(what: string, body: IqBody): BridgeError {
  const error = body.op === 'error' ? body.error : undefined;
  const why = error
    ? `${error.text ?? 'refused'} (error ${error.code})`
    : `an unexpected answer (${body.op})`;
  return new BridgeError('bridge_group_refused', `the gateway would not ${what}: ${why}`);
}

const deviceJid = (userJid: string, device: number): string => {
  const j = parseJid(userJid);
  return formatJid({ user: j.user, server: j.server, device });
};
