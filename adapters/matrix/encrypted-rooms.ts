/**
 * End-to-end encrypted rooms (`matrix.encryption.allow`): which rooms are encrypted, what a local
 * user's `m.room.encrypted` event says (decrypted by the device the user's client shared the room
 * key with: the ghost's in a portal, the bot's in a management room and as a second chance), and
 * what the bridge sends there (encrypted by the device of the user it is from, after the room key
 * is shared with every device of every joined or invited member). The devices are crypto/devices.ts.
 *
 * An event whose key has not arrived yet is not lost: `decrypt` rejects with
 * `matrix_room_key_missing`, and the inbound queue holds it (durably, as recorded) and tries it again
 * when keys arrive, telling the user in the room once it gives up (inbound-queue.ts).
 */
import { InteropError } from '../../src/errors.js';
import type { Logger } from '../../src/observability/logger.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import type { Content } from './content.js';
import {
  CryptoDevices,
  deviceChanges,
  hasDeviceChanges,
  type CryptoDevicesOptions,
  type Device,
  type VerificationEvent,
} from './crypto/devices.js';
import {
  Verifications,
  describeDevice,
  knowAsking,
  type BotCryptoInfo,
  type VerificationContext,
} from './crypto/verification.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { MatrixRoom } from './store.js';

/** An encrypted event the bridge cannot read yet: held, and tried again when keys arrive. */
export class RoomKeyMissing extends InteropError {
  constructor(readonly detail: string) {
    super(
      'matrix_room_key_missing',
      'the bridge never received the key to decrypt this encrypted message; send it again',
    );
  }
}

/** What the crypto library says of a failed decryption (its errors carry a `description`). */
const describe = (err: unknown): string => {
  const e = err as { description?: unknown; message?: unknown; code?: unknown };
  const text =
    typeof e.description === 'string'
      ? e.description
      : typeof e.message === 'string'
        ? e.message
        : String(err);
  return typeof e.code === 'string' || typeof e.code === 'number' ? `${String(e.code)}: ${text}` : text;
};

export const MEGOLM = 'm.megolm.v1.aes-sha2';

/** In-room verification flows remembered at most (each a few minutes long at most). */
const MAX_IN_ROOM_FLOWS = 256;

/** The `m.room.encryption` initial state of a new encrypted room. */
export const encryptionState = () => ({
  type: 'm.room.encryption',
  state_key: '',
  content: { algorithm: MEGOLM },
});

export interface EncryptedRoomsContext {
  readonly ids: Pick<MatrixIds, 'botUserId' | 'ghostIdOf' | 'ghostDigits'>;
  /** The as_token client: reads room state and members as any of the bridge's users. */
  readonly client: Pick<RetryingMatrixClient, 'doRequest'>;
  readonly log: Logger;
  /** Told when room keys arrived (the rooms whose held events may be read now). */
  readonly keysArrived: (roomIds: string[]) => void;
  /** Who may verify the bot and ghosts, and where the emojis are shown (crypto/verification.ts). */
  readonly verification?: Omit<VerificationContext, 'log'>;
}

export class EncryptedRooms {
  /** Rooms known to be encrypted (encryption cannot be turned off in a room). */
  readonly #encrypted = new Set<string>();
  readonly #members = new Map<string, Promise<string[]>>();
  #devices: CryptoDevices | undefined;
  /** Each device's verifications (the bot's, a ghost's), from its first verification message. */
  readonly #verifications = new Map<string, Verifications>();
  /** The device an in-room request asked (by room and request event), for the rest of its flow. */
  readonly #inRoomFlows = new Map<string, string>();

  constructor(private readonly c: EncryptedRoomsContext) {}

  /** Opens the crypto store and the bot's device (for encrypted management rooms). */
  async open(store: Pick<CryptoDevicesOptions, 'journal' | 'vault'>): Promise<void> {
    this.#devices = await CryptoDevices.open({
      ...store,
      client: this.c.client,
      log: this.c.log,
      onRoomKeys: (rooms) => this.c.keysArrived(rooms),
      onVerification: (device, events) => this.#verification(device, events),
    });
    try {
      await this.#devices.of(this.c.ids.botUserId);
      // Every known device follows the transactions from now on (device lists, keys, counts).
      await Promise.all(this.#devices.users.map((u) => this.#devices!.existing(u)));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    // A verification step under way finishes first (its notice may need the bot's device).
    await Promise.all([...this.#verifications.values()].map((v) => v.settled()));
    this.#verifications.clear();
    this.#inRoomFlows.clear();
    const devices = this.#devices;
    this.#devices = undefined;
    await devices?.close();
  }

  /** Verification messages a device received: its flows go on (the bot's and ghosts' alike). */
  #verification(device: Device, events: VerificationEvent[]): void {
    const v = this.c.verification;
    if (!v) return;
    let verifications = this.#verifications.get(device.userId);
    if (verifications === undefined) {
      const digits = this.c.ids.ghostDigits(device.userId);
      const verified = digits === undefined ? ({ bot: true } as const) : { phone: `+${digits}` };
      verifications = new Verifications(device, verified, { ...v, log: this.c.log });
      this.#verifications.set(device.userId, verifications);
    }
    verifications.arrived(events);
  }

  /**
   * A local user's in-room verification event (the request message, `m.key.verification.*`): a
   * request goes to the device of whom it asks (the bot, a ghost), the rest of its flow (which
   * refers to the request) to the same device; one whose request the bridge did not see, to the bot's.
   */
  async verificationEvent(roomId: string, event: Record<string, unknown>): Promise<void> {
    const devices = this.#devices;
    if (!devices) return;
    const content = (event['content'] ?? {}) as Content & { 'm.relates_to'?: { event_id?: unknown } };
    const to = content['to'];
    let user = this.c.ids.botUserId;
    if (event['type'] === 'm.room.message') {
      if (typeof to === 'string') user = to;
      const asked = devices.existing(user);
      if (asked && typeof event['sender'] === 'string') await knowAsking(await asked, [event['sender']]);
      this.#inRoomFlows.set(`${roomId} ${String(event['event_id'])}`, user);
      // Beyond the bound, the oldest are let go (flows abandoned without a done or a cancel).
      for (const key of this.#inRoomFlows.keys()) {
        if (this.#inRoomFlows.size <= MAX_IN_ROOM_FLOWS) break;
        this.#inRoomFlows.delete(key);
      }
    } else {
      const flow = `${roomId} ${String(content['m.relates_to']?.event_id)}`;
      user = this.#inRoomFlows.get(flow) ?? user;
      if (event['type'] === 'm.key.verification.done' || event['type'] === 'm.key.verification.cancel')
        this.#inRoomFlows.delete(flow);
    }
    await (await devices.existing(user))?.receiveVerificationEvent(roomId, event);
  }

  /** The bot's device, its keys and what it knows of the user's verification (`encryption` command). */
  async describeBot(userId: string): Promise<BotCryptoInfo> {
    return describeDevice(await this.#open.of(this.c.ids.botUserId), userId);
  }

  get #open(): CryptoDevices {
    if (!this.#devices) throw new InteropError('matrix_crypto_closed', 'the Matrix crypto store is not open');
    return this.#devices;
  }

  /**
   * A transaction's to-device events, one-time key counts and device lists, given to the devices;
   * resolves once their effects are durable (the transaction may then be answered).
   */
  async receive(body: Record<string, unknown>): Promise<void> {
    const changes = deviceChanges(body);
    if (!hasDeviceChanges(changes) || !this.#devices) return;
    // A device asked to verify knows the asking user's devices first (crypto/verification.ts).
    for (const e of changes.toDevice) {
      const asked =
        e['type'] === 'm.key.verification.request' && this.#devices.existing(String(e['to_user_id']));
      if (asked) await knowAsking(await asked, [String(e['sender'])]);
    }
    const devices = await this.#devices.receive(changes);
    // Answers to new keys, counts below target, devices to query: sent after, not awaited.
    for (const d of devices) {
      d.sendOutgoing().catch((err: unknown) =>
        this.c.log.warn({ user: d.userId, err: (err as Error).message }, 'crypto requests not sent yet'),
      );
    }
  }

  /** Makes sure the user (a ghost, the bot) has a device whose keys the homeserver knows. */
  async prepare(userId: string): Promise<void> {
    await this.#open.of(userId);
  }

  /**
   * Whether the room is encrypted (its `m.room.encryption` state). Once it is, that is remembered;
   * until then the homeserver is asked each time: a user may have just turned encryption on, and
   * the transaction saying so may not have reached the bridge yet.
   */
  async isEncrypted(roomId: string, asUser: string): Promise<boolean> {
    if (this.#encrypted.has(roomId)) return true;
    try {
      await this.c.client.doRequest(
        'GET',
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`,
        { user_id: asUser },
      );
    } catch (err) {
      if (describeFailure(err).status !== 404) throw err;
      return false;
    }
    this.#encrypted.add(roomId);
    return true;
  }

  /** The room became encrypted (an `m.room.encryption` event, or created so). */
  markEncrypted(roomId: string): void {
    this.#encrypted.add(roomId);
  }

  /** Someone joined, left or was invited: the room key goes to the new set of devices. */
  membersChanged(roomId: string): void {
    this.#members.delete(roomId);
  }

  /**
   * What `sender` (the bot or a ghost) sends in the room: the event as it is in an unencrypted room,
   * `m.room.encrypted` by the sender's device in an encrypted one.
   */
  async seal(
    sender: string,
    roomId: string,
    type: string,
    content: Content,
  ): Promise<{ type: string; content: Content }> {
    if (!(await this.isEncrypted(roomId, sender))) return { type, content };
    const device = await this.#open.of(sender);
    const members = await this.#membersOf(roomId, sender);
    try {
      return { type: 'm.room.encrypted', content: await device.encrypt(roomId, members, type, content) };
    } catch (err) {
      // A member list that changed under us: read it again once.
      this.membersChanged(roomId);
      this.c.log.debug(
        { room: roomId, err: (err as Error).message },
        'encryption failed: members read again',
      );
      const again = await this.#membersOf(roomId, sender);
      return { type: 'm.room.encrypted', content: await device.encrypt(roomId, again, type, content) };
    }
  }

  /**
   * The clear event (type and content) of a local user's `m.room.encrypted` event in `room`; rejects
   * with `RoomKeyMissing` when no device of the bridge has its key yet.
   */
  async decrypt(
    room: MatrixRoom,
    event: Record<string, unknown>,
  ): Promise<{ type: string; content: Content }> {
    const candidates: Promise<Device>[] = [];
    // A 1:1 portal's ghost; in a group portal the bot (a member of every group room) reads it.
    if (room.kind === 'portal' && room.remoteJid !== null && !isGroupRemote(room.remoteJid)) {
      const ghost = this.#open.existing(this.c.ids.ghostIdOf(room.remoteJid));
      if (ghost) candidates.push(ghost);
    }
    const bot = this.#open.existing(this.c.ids.botUserId);
    if (bot) candidates.push(bot);
    let last = 'no device of the bridge is in the room';
    for (const candidate of candidates) {
      try {
        return await (await candidate).decrypt(event);
      } catch (err) {
        last = describe(err);
      }
    }
    this.c.log.debug(
      { room: room.roomId, event: event['event_id'], err: last },
      'encrypted event not readable yet',
    );
    throw new RoomKeyMissing(last);
  }

  /** The joined and invited members (their devices get the room key), cached until one changes. */
  #membersOf(roomId: string, asUser: string): Promise<string[]> {
    let members = this.#members.get(roomId);
    if (!members) {
      members = (async () => {
        const res = (await this.c.client.doRequest(
          'GET',
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/members`,
          { user_id: asUser },
        )) as { chunk?: { state_key?: unknown; content?: { membership?: unknown } }[] };
        return (res.chunk ?? [])
          .filter((m) => m.content?.membership === 'join' || m.content?.membership === 'invite')
          .map((m) => String(m.state_key));
      })();
      this.#members.set(roomId, members);
      members.catch(() => this.#members.delete(roomId));
    }
    return members;
  }
}
