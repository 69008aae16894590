/**
 * The bridge's Matrix devices: the bot's and one per ghost that speaks in an encrypted room, each an
 * OlmMachine (matrix-sdk-crypto-wasm) on the durable crypto store (idb-persistence.ts) and a device
 * on the homeserver created without a login (MSC4190: `PUT /devices/{id}?user_id=`), cross-signed by
 * its user once (the user's keys made by the machine and kept in its store). Every call a
 * machine asks for (keys upload, query and claim, to-device, signatures) is made as that user and
 * device (`?user_id=&device_id=`), and what the homeserver pushes in transactions for a device
 * (to-device events, MSC2409; one-time key counts, fallback key types and device lists, MSC3202)
 * goes to its machine.
 *
 * Which user has which device lives in a small directory database of the same store (sealed like
 * the rest): store names are opaque (`device-<n>`), never user ids.
 *
 * Durability (idb-persistence.ts): the store is flushed before anything that depends on a machine's
 * state leaves the bridge: each request sent, each request marked sent, each encrypted event, and
 * the transaction that carried to-device events (`receive` resolves only after the flush).
 */
import { randomBytes } from 'node:crypto';
import * as W from '@matrix-org/matrix-sdk-crypto-wasm';
import type { Logger } from '../../../src/observability/logger.js';
import type { PayloadVault } from '../../../src/util/payload-vault.js';
import { KeyedQueue } from '../../../src/util/keyed-queue.js';
import type { RetryingMatrixClient } from '../client.js';
import type { CryptoJournal } from './crypto-journal.js';
import type { IDBDatabase as FakeIDBDatabase, IDBFactory as FakeIDBFactory } from 'fake-indexeddb';
import { PersistentIndexedDb } from './idb-persistence.js';

const DIRECTORY = 'devices';
const DEVICE_DISPLAY_NAME = 'interop-bridge';

/** What a transaction carries for the bridge's devices (the MSC2409 and MSC3202 fields). */
export interface DeviceChanges {
  readonly toDevice: readonly Record<string, unknown>[];
  readonly oneTimeKeyCounts: Record<string, Record<string, Record<string, number>>>;
  readonly unusedFallbackKeyTypes: Record<string, Record<string, string[]>>;
  readonly changed: readonly string[];
  readonly left: readonly string[];
}

/** Reads the MSC2409/MSC3202 fields of a transaction body; absent fields are empty. */
export function deviceChanges(body: Record<string, unknown>): DeviceChanges {
  const obj = (v: unknown): Record<string, never> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, never>) : {};
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const toDevice = list(body['de.sorunome.msc2409.to_device'] ?? body['to_device']).filter(
    (e): e is Record<string, unknown> => typeof e === 'object' && e !== null,
  );
  const lists = obj(body['org.matrix.msc3202.device_lists']) as Record<string, unknown>;
  const strings = (v: unknown) => list(v).filter((s): s is string => typeof s === 'string');
  return {
    toDevice,
    oneTimeKeyCounts: obj(body['org.matrix.msc3202.device_one_time_keys_count']),
    unusedFallbackKeyTypes: obj(body['org.matrix.msc3202.device_unused_fallback_key_types']),
    changed: strings(lists['changed']),
    left: strings(lists['left']),
  };
}

export const hasDeviceChanges = (c: DeviceChanges): boolean =>
  c.toDevice.length > 0 ||
  Object.keys(c.oneTimeKeyCounts).length > 0 ||
  Object.keys(c.unusedFallbackKeyTypes).length > 0 ||
  c.changed.length > 0 ||
  c.left.length > 0;

interface DirectoryEntry {
  readonly user: string;
  readonly store: string;
  readonly device: string;
  /** The user's cross-signing keys are published and sign this device (`Device.crossSign`). */
  readonly crossSigned?: boolean;
}

/** A request of the machine's, as `outgoingRequests` and `bootstrapCrossSigning` give them. */
type OutgoingRequest = { id?: string; type: W.RequestType; body: string };

/** A verification message (`m.key.verification.*`) a device received: who from, which flow. */
export interface VerificationEvent {
  readonly sender: string;
  readonly type: string;
  readonly flowId: string;
}

/** What a verification step may hand the machine's answers to (verification.ts). */
export interface MachineAccess {
  readonly machine: W.OlmMachine;
  /** Sends a verification message the machine handed back (to-device or in the room), marked sent. */
  send(request: W.ToDeviceRequest | W.RoomMessageRequest): Promise<void>;
  /** Sends what the machine queued (its own answers, key queries). */
  sendQueued(): Promise<void>;
}

/** The wasm takes its arguments by value: each call gets fresh ones. */
const userIds = (users: readonly string[]): W.UserId[] => users.map((u) => new W.UserId(u));
const decryptionSettings = () => new W.DecryptionSettings(W.TrustRequirement.Untrusted);

/** One user's device: its machine, and the calls it makes as that user and device. */
export class Device {
  readonly #machine: W.OlmMachine;
  readonly #idb: PersistentIndexedDb;
  readonly #client: Pick<RetryingMatrixClient, 'doRequest'>;
  readonly #log: Logger;
  /** One machine call sequence at a time (requests must not be sent twice). */
  #chain: Promise<unknown> = Promise.resolve();
  #onVerification: ((events: VerificationEvent[]) => void) | undefined;

  constructor(
    readonly userId: string,
    readonly deviceId: string,
    machine: W.OlmMachine,
    idb: PersistentIndexedDb,
    client: Pick<RetryingMatrixClient, 'doRequest'>,
    log: Logger,
  ) {
    this.#machine = machine;
    this.#idb = idb;
    this.#client = client;
    this.#log = log;
  }

  /** Runs `work` after the device's earlier work. */
  #run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(work, work);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  #call(method: string, path: string, body: unknown): Promise<unknown> {
    return this.#client.doRequest(method, path, { user_id: this.userId, device_id: this.deviceId }, body);
  }

  /** Sends what the machine asks for (key uploads, queries, claims, to-device), each marked sent. */
  sendOutgoing(): Promise<void> {
    return this.#run(() => this.#sendOutgoing());
  }

  async #sendOutgoing(): Promise<void> {
    // A few rounds: an answer can make the machine ask for more (a query after an upload).
    for (let round = 0; round < 4; round++) {
      const requests = await this.#machine.outgoingRequests();
      let sent = 0;
      for (const r of requests as OutgoingRequest[]) if (await this.#send(r)) sent++;
      if (sent === 0) return;
    }
  }

  /** Sends one request of the machine's and marks it sent; false for one the bridge does not send. */
  async #send(r: OutgoingRequest): Promise<boolean> {
    const path = requestPath(r);
    if (path === undefined || r.id === undefined) return false;
    // What the request carries (new one-time keys, Olm sessions) is durable before it leaves.
    await this.#idb.flush();
    const answer = await this.#call(path.method, path.path, JSON.parse(r.body));
    await this.#machine.markRequestAsSent(r.id, r.type, JSON.stringify(answer ?? {}));
    await this.#idb.flush();
    return true;
  }

  /**
   * Runs `work` on the machine in the device's order (interactive verification, verification.ts),
   * after what the machine had queued is sent; what `work` makes it queue is sent after.
   */
  withMachine<T>(work: (access: MachineAccess) => Promise<T>): Promise<T> {
    return this.#run(async () => {
      await this.#sendOutgoing();
      const result = await work({
        machine: this.#machine,
        send: async (r) => void (await this.#send(r)),
        sendQueued: () => this.#sendOutgoing(),
      });
      await this.#sendOutgoing();
      return result;
    });
  }

  /** An in-room verification event (`m.key.verification.*`, or the request message) for this device. */
  async receiveVerificationEvent(roomId: string, event: Record<string, unknown>): Promise<void> {
    await this.#run(async () => {
      await this.#machine.receiveVerificationEvent(JSON.stringify(event), new W.RoomId(roomId));
      await this.#idb.flush();
    });
    const verification = verificationEventOf(event);
    if (verification !== undefined) this.#onVerification?.([verification]);
  }

  /** Calls `listener` with the verification messages the device received, once they are processed. */
  onVerification(listener: (events: VerificationEvent[]) => void): void {
    this.#onVerification = listener;
  }

  /** This device's part of a transaction; resolves once its effects are durable. */
  async receive(changes: DeviceChanges): Promise<void> {
    const processed = await this.#run(async () => {
      const toDevice = changes.toDevice
        .filter((e) => e['to_user_id'] === this.userId && e['to_device_id'] === this.deviceId)
        .map(({ to_user_id: _u, to_device_id: _d, ...rest }) => rest);
      const counts = changes.oneTimeKeyCounts[this.userId]?.[this.deviceId];
      const fallback = changes.unusedFallbackKeyTypes[this.userId]?.[this.deviceId];
      const lists = new W.DeviceLists(userIds(changes.changed), userIds(changes.left));
      // MSC3202 sends counts only when they changed: missing means unchanged.
      const processed =
        counts !== undefined
          ? await this.#machine.receiveSyncChanges(
              JSON.stringify(toDevice),
              lists,
              new Map(Object.entries(counts)),
              new Set(fallback ?? []),
              decryptionSettings(),
            )
          : await this.#machine.receiveSyncChangesMsc4186(
              JSON.stringify(toDevice),
              lists,
              new Map(),
              fallback === undefined ? undefined : new Set(fallback),
              decryptionSettings(),
            );
      await this.#idb.flush();
      return processed;
    });
    const verifications = verificationEvents(processed);
    if (verifications.length > 0) this.#onVerification?.(verifications);
  }

  /** The clear event (`type`, `content`) of an `m.room.encrypted` event; rejects without its key. */
  decrypt(event: Record<string, unknown>): Promise<{ type: string; content: Record<string, unknown> }> {
    return this.#run(async () => {
      const roomId = String(event['room_id']);
      const decrypted = await this.#machine.decryptRoomEvent(
        JSON.stringify(event),
        new W.RoomId(roomId),
        decryptionSettings(),
      );
      const clear = JSON.parse(decrypted.event) as { type?: unknown; content?: unknown };
      if (typeof clear.type !== 'string' || typeof clear.content !== 'object' || clear.content === null) {
        throw new Error('the decrypted event has no type or content');
      }
      return { type: clear.type, content: clear.content as Record<string, unknown> };
    });
  }

  /**
   * The `m.room.encrypted` content of an event for the room's `members` (joined and invited): their
   * devices are queried, Olm sessions claimed and the room key shared with every one of them first.
   */
  encrypt(
    roomId: string,
    members: readonly string[],
    type: string,
    content: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    return this.#run(async () => {
      const m = this.#machine;
      await m.updateTrackedUsers(userIds(members));
      await this.#sendOutgoing();
      const claim = await m.getMissingSessions(userIds(members));
      if (claim) {
        await this.#idb.flush();
        const answer = await this.#call('POST', '/_matrix/client/v3/keys/claim', JSON.parse(claim.body));
        await m.markRequestAsSent(claim.id, claim.type, JSON.stringify(answer ?? {}));
      }
      const shares = await m.shareRoomKey(new W.RoomId(roomId), userIds(members), new W.EncryptionSettings());
      for (const share of shares) {
        await this.#idb.flush();
        const answer = await this.#call(
          'PUT',
          `/_matrix/client/v3/sendToDevice/${encodeURIComponent(share.event_type)}/${encodeURIComponent(share.txn_id)}`,
          JSON.parse(share.body),
        );
        await m.markRequestAsSent(share.id, share.type, JSON.stringify(answer ?? {}));
      }
      const encrypted = await m.encryptRoomEvent(new W.RoomId(roomId), type, JSON.stringify(content));
      // The ratchet's advance is durable before the event can be seen.
      await this.#idb.flush();
      return JSON.parse(encrypted) as Record<string, unknown>;
    });
  }

  /**
   * Cross-signs this device by its user: the user's cross-signing keys (made once, kept in the
   * store) are published and the device signed with the self-signing key, so a client that trusts
   * the user trusts each of its devices. An application service publishes them without
   * user-interactive auth (spec 1.17; Synapse's `SigningKeyUploadServlet`), and the same keys
   * again are a no-op, so a crash halfway is mended by doing it again.
   */
  crossSign(): Promise<void> {
    return this.#run(async () => {
      const m = this.#machine;
      // An identity already in the store is published again as it is (reset: false).
      const requests = await m.bootstrapCrossSigning(false);
      // The private keys are durable before their public halves leave.
      await this.#idb.flush();
      const keys = requests.uploadKeysRequest as OutgoingRequest | undefined;
      if (keys?.id !== undefined) {
        const answer = await this.#call('POST', '/_matrix/client/v3/keys/upload', JSON.parse(keys.body));
        await m.markRequestAsSent(keys.id, keys.type, JSON.stringify(answer ?? {}));
      }
      await this.#call(
        'POST',
        '/_matrix/client/v3/keys/device_signing/upload',
        JSON.parse(requests.uploadSigningKeysRequest.body),
      );
      const signatures = requests.uploadSignaturesRequest;
      const answer = (await this.#call(
        'POST',
        '/_matrix/client/v3/keys/signatures/upload',
        JSON.parse(signatures.body),
      )) as { failures?: Record<string, unknown> } | undefined;
      if (signatures.id !== undefined)
        await m.markRequestAsSent(signatures.id, signatures.type, JSON.stringify(answer ?? {}));
      await this.#idb.flush();
      if (answer?.failures !== undefined && Object.keys(answer.failures).length > 0)
        throw new Error(`the homeserver refused signatures: ${JSON.stringify(answer.failures)}`);
    });
  }

  /** Calls `onKeys` with the rooms whose keys arrived (events held for them may be read now). */
  onRoomKeys(onKeys: (roomIds: string[]) => void): void {
    this.#machine.registerRoomKeyUpdatedCallback((infos) => {
      try {
        onKeys(infos.map((i) => i.roomId.toString()));
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'room key callback failed');
      }
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    return this.#run(() => {
      this.#machine.close();
      return Promise.resolve();
    });
  }
}

/** The verification messages among processed to-device events (in the clear or decrypted). */
function verificationEvents(processed: readonly { rawEvent: string }[]): VerificationEvent[] {
  return processed.flatMap((p) => {
    try {
      return verificationEventOf(JSON.parse(p.rawEvent) as Record<string, unknown>) ?? [];
    } catch {
      return [];
    }
  });
}

/**
 * A verification message's sender and flow: to-device ones name it (`transaction_id`), in-room
 * ones are the request message (its event id) or refer to it (`m.relates_to`).
 */
function verificationEventOf(e: Record<string, unknown>): VerificationEvent | undefined {
  const content = (e['content'] ?? {}) as {
    msgtype?: unknown;
    transaction_id?: unknown;
    'm.relates_to'?: { event_id?: unknown };
  };
  const type = e['type'] === 'm.room.message' ? content.msgtype : e['type'];
  const flowId =
    content.transaction_id ??
    content['m.relates_to']?.event_id ??
    (e['type'] === 'm.room.message' ? e['event_id'] : undefined);
  if (typeof type !== 'string' || !type.startsWith('m.key.verification.')) return undefined;
  if (typeof e['sender'] !== 'string' || typeof flowId !== 'string') return undefined;
  return { sender: e['sender'], type, flowId };
}

function requestPath(r: {
  type: W.RequestType;
  event_type?: string;
  txn_id?: string;
  room_id?: string;
}): { method: string; path: string } | undefined {
  const enc = (s: string | undefined) => encodeURIComponent(s ?? '');
  switch (r.type) {
    case W.RequestType.KeysUpload:
      return { method: 'POST', path: '/_matrix/client/v3/keys/upload' };
    case W.RequestType.KeysQuery:
      return { method: 'POST', path: '/_matrix/client/v3/keys/query' };
    case W.RequestType.KeysClaim:
      return { method: 'POST', path: '/_matrix/client/v3/keys/claim' };
    case W.RequestType.SignatureUpload:
      return { method: 'POST', path: '/_matrix/client/v3/keys/signatures/upload' };
    case W.RequestType.ToDevice:
      return { method: 'PUT', path: `/_matrix/client/v3/sendToDevice/${enc(r.event_type)}/${enc(r.txn_id)}` };
    case W.RequestType.RoomMessage:
      // In-room verification messages, sent as they are (as the SDKs send them).
      return {
        method: 'PUT',
        path: `/_matrix/client/v3/rooms/${enc(r.room_id)}/send/${enc(r.event_type)}/${enc(r.txn_id)}`,
      };
    default:
      // Key backups: the bridge's devices make none.
      return undefined;
  }
}

export interface CryptoDevicesOptions {
  readonly journal: CryptoJournal;
  readonly vault: PayloadVault;
  /** A client with the as_token (the calls add `user_id` and `device_id`). */
  readonly client: Pick<RetryingMatrixClient, 'doRequest'>;
  readonly log: Logger;
  /** Told the rooms whose keys arrived on any device. */
  readonly onRoomKeys?: (roomIds: string[]) => void;
  /** Told the verification messages a device received (verification.ts). */
  readonly onVerification?: (device: Device, events: VerificationEvent[]) => void;
}

/** The bridge's devices, opened from the durable store, created on first need. */
export class CryptoDevices {
  readonly #idb: PersistentIndexedDb;
  readonly #o: CryptoDevicesOptions;
  readonly #devices = new Map<string, Promise<Device>>();
  readonly #creation = new KeyedQueue();
  #directory: Map<string, DirectoryEntry> = new Map();

  private constructor(idb: PersistentIndexedDb, options: CryptoDevicesOptions) {
    this.#idb = idb;
    this.#o = options;
  }

  /** Loads the store (sealed rows of the bridge's database) and makes it the process's IndexedDB. */
  static async open(options: CryptoDevicesOptions): Promise<CryptoDevices> {
    await W.initAsync();
    const idb = await PersistentIndexedDb.open(options.journal, options.vault, {
      onWriteRefused: (err) => options.log.error({ err: err.message }, 'Matrix crypto store write refused'),
    });
    idb.install();
    const devices = new CryptoDevices(idb, options);
    try {
      devices.#directory = new Map((await devices.#readDirectory()).map((e) => [e.user, e]));
    } catch (err) {
      idb.uninstall();
      throw err;
    }
    return devices;
  }

  /** Users that have a device (opened or not). */
  get users(): string[] {
    return [...this.#directory.keys()];
  }

  /** The user's device, if it has one (opened on first use). */
  existing(userId: string): Promise<Device> | undefined {
    const entry = this.#directory.get(userId);
    return entry === undefined ? undefined : this.#open(entry);
  }

  /** The user's device, created (on the homeserver and in the store) when it has none. */
  async of(userId: string): Promise<Device> {
    const known = this.existing(userId);
    if (known) return known;
    const entry = await this.#creation.run(userId, async () => {
      const made = this.#directory.get(userId);
      if (made) return made;
      const fresh: DirectoryEntry = {
        user: userId,
        store: `device-${this.#directory.size + 1}-${randomBytes(3).toString('hex')}`,
        device: `INTEROP${randomBytes(5).toString('hex').toUpperCase()}`,
      };
      // Recorded first: a crash after the homeserver made the device finds it again (PUT is idempotent).
      await this.#writeDirectory(fresh);
      this.#directory.set(userId, fresh);
      return fresh;
    });
    return this.#open(entry);
  }

  /** A transaction's MSC2409/MSC3202 fields, given to the devices they are for; resolves once durable. */
  async receive(changes: DeviceChanges): Promise<Device[]> {
    const users = new Set<string>();
    for (const e of changes.toDevice) if (typeof e['to_user_id'] === 'string') users.add(e['to_user_id']);
    for (const u of Object.keys(changes.oneTimeKeyCounts)) users.add(u);
    for (const u of Object.keys(changes.unusedFallbackKeyTypes)) users.add(u);
    // Device list changes concern every device (each tracks the users it shares rooms with).
    if (changes.changed.length > 0 || changes.left.length > 0)
      for (const u of this.#directory.keys()) users.add(u);
    const devices = await Promise.all(
      [...users].map((u) => this.existing(u)).filter((d): d is Promise<Device> => d !== undefined),
    );
    await Promise.all(devices.map((d) => d.receive(changes)));
    await this.#idb.flush();
    return devices;
  }

  /** Closes every machine and gives the process's IndexedDB back. */
  async close(): Promise<void> {
    const devices = await Promise.allSettled([...this.#devices.values()]);
    for (const d of devices) if (d.status === 'fulfilled') await d.value.close();
    this.#devices.clear();
    await this.#idb.flush().catch(() => undefined);
    this.#idb.uninstall();
  }

  #open(entry: DirectoryEntry): Promise<Device> {
    let device = this.#devices.get(entry.user);
    if (!device) {
      device = this.#openDevice(entry);
      this.#devices.set(entry.user, device);
      device.catch(() => this.#devices.delete(entry.user));
    }
    return device;
  }

  async #openDevice(entry: DirectoryEntry): Promise<Device> {
    const { client, log } = this.#o;
    // MSC4190: the device exists on the homeserver without a login (201 made, 200 already there).
    await client.doRequest(
      'PUT',
      `/_matrix/client/v3/devices/${encodeURIComponent(entry.device)}`,
      { user_id: entry.user },
      { display_name: DEVICE_DISPLAY_NAME },
    );
    // No passphrase: every row is sealed with the at-rest key already.
    const handle = await W.StoreHandle.open(entry.store, null);
    const machine = await W.OlmMachine.initFromStore(
      new W.UserId(entry.user),
      new W.DeviceId(entry.device),
      handle,
    );
    handle.free();
    await this.#idb.flush();
    const device = new Device(entry.user, entry.device, machine, this.#idb, client, log);
    if (this.#o.onRoomKeys) device.onRoomKeys(this.#o.onRoomKeys);
    const onVerification = this.#o.onVerification;
    if (onVerification) device.onVerification((events) => onVerification(device, events));
    // Its identity and one-time keys reach the homeserver before anyone can encrypt for it.
    await device.sendOutgoing();
    if (entry.crossSigned !== true) await this.#crossSign(device, entry);
    log.info({ user: entry.user, device: entry.device }, 'Matrix crypto device ready');
    return device;
  }

  /**
   * Cross-signs a device that is not yet, once: a homeserver that refuses (one asking for
   * user-interactive auth) leaves it working, unverifiable, and it is tried again at the next start.
   */
  async #crossSign(device: Device, entry: DirectoryEntry): Promise<void> {
    try {
      await device.crossSign();
    } catch (err) {
      this.#o.log.warn(
        { user: entry.user, device: entry.device, err: (err as Error).message },
        'Matrix crypto device not cross-signed: clients show it unverified',
      );
      return;
    }
    const signed: DirectoryEntry = { ...entry, crossSigned: true };
    await this.#writeDirectory(signed);
    this.#directory.set(entry.user, signed);
  }

  async #readDirectory(): Promise<DirectoryEntry[]> {
    const db = await this.#directoryDb();
    try {
      return await new Promise<DirectoryEntry[]>((resolve, reject) => {
        const request = db.transaction(DIRECTORY, 'readonly').objectStore(DIRECTORY).getAll();
        request.onsuccess = () => resolve(request.result as DirectoryEntry[]);
        request.onerror = () => reject(request.error ?? new Error('the device directory is unreadable'));
      });
    } finally {
      db.close();
    }
  }

  async #writeDirectory(entry: DirectoryEntry): Promise<void> {
    const db = await this.#directoryDb();
    try {
      await new Promise<void>((resolve, reject) => {
        const tx = db.transaction(DIRECTORY, 'readwrite');
        tx.objectStore(DIRECTORY).put(entry);
        tx.oncomplete = () => resolve();
        tx.onabort = () => reject(tx.error ?? new Error('the device directory refused the write'));
      });
    } finally {
      db.close();
    }
    await this.#idb.flush();
  }

  #directoryDb(): Promise<InstanceType<typeof FakeIDBDatabase>> {
    return new Promise((resolve, reject) => {
      const request = (this.#idb.factory as unknown as InstanceType<typeof FakeIDBFactory>).open(
        DIRECTORY,
        1,
      );
      request.onupgradeneeded = () => request.result.createObjectStore(DIRECTORY, { keyPath: 'user' });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error ?? new Error('the device directory does not open'));
    });
  }
}
