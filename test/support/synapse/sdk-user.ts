/**
 * A Matrix user as Element is one: matrix-js-sdk (the engine of Element Web) syncing against the
 * homeserver, every action a call of the SDK. The methods mirror the stand-in's LocalUser, so a
 * scenario reads the same against either server, plus what a client reads from its sync (typing,
 * receipts, membership, profiles).
 */
import {
  ClientEvent as SdkClientEvent,
  Direction,
  EventType,
  MatrixEvent,
  MatrixEventEvent,
  Preset,
  ReceiptType,
  RoomEvent,
  SetPresence,
  SyncState,
  createClient,
  type MatrixClient,
  type Room,
} from 'matrix-js-sdk';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import loglevel from 'loglevel';
import { logger as sdkLogger } from 'matrix-js-sdk/lib/logger.js';
import type { ClientEvent } from '../homeserver/room.js';
import { decryptAttachment, encryptAttachment, type EncryptedFile } from '../../../demo/encrypted-file.js';
import { MatrixCallError, mediaMessage, textMessage, type MediaToSend } from '../homeserver/local-user.js';

/** The SDK logs every sync step (SDK_LOG=debug to see them); the tests read what the user sees instead. */
function quietSdk(): void {
  const level = (process.env['SDK_LOG'] ?? 'silent') as loglevel.LogLevelDesc;
  loglevel.setLevel(level);
  for (const l of Object.values(loglevel.getLoggers())) l.setLevel(level);
  // The SDK's child loggers (one per room with encryption) are made later, each at debug level,
  // with their parent's method factory: the parent's says nothing unless SDK_LOG asks.
  if (process.env['SDK_LOG'] === undefined) {
    const root = sdkLogger as unknown as loglevel.Logger;
    root.methodFactory = () => () => undefined;
    root.rebuild();
  }
}

/** The SDK turns its crypto's tracing on at debug level (SDK_LOG=debug keeps it). */
async function quietRustCrypto(): Promise<void> {
  if (process.env['SDK_LOG'] === 'debug') return;
  const wasm = fileURLToPath(
    new URL(
      '../../../node_modules/matrix-js-sdk/node_modules/@matrix-org/matrix-sdk-crypto-wasm/node.mjs',
      import.meta.url,
    ),
  );
  if (!existsSync(wasm)) return;
  const W = (await import(pathToFileURL(wasm).href)) as {
    Tracing: new (level: unknown) => { turnOn(): void };
    LoggerLevel: { Error: unknown };
  };
  new W.Tracing(W.LoggerLevel.Error).turnOn();
}

const POLL_MS = 400;

export interface SdkUserOptions {
  readonly baseUrl: string;
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
  readonly displayname?: string;
  /**
   * End-to-end encryption as Element has it (Rust crypto, in memory): events in encrypted rooms are
   * sent encrypted and read decrypted. Off by default.
   */
  readonly crypto?: boolean;
}

/** The raw event as the client-server API delivered it, with its room (decrypted, if it was encrypted). */
function raw(ev: MatrixEvent, roomId: string): ClientEvent {
  const event = { ...(ev.event as unknown as ClientEvent), room_id: roomId };
  if (!ev.isEncrypted() || ev.isDecryptionFailure() || ev.getClearContent() === null) return event;
  return { ...event, type: ev.getType(), content: ev.getOriginalContent() as ClientEvent['content'] };
}

export class SdkUser {
  readonly userId: string;
  readonly accessToken: string;
  readonly client: MatrixClient;
  readonly crypto: boolean;
  private readonly baseUrl: string;
  private readonly waiters = new Set<() => void>();

  private constructor(options: SdkUserOptions) {
    this.userId = options.userId;
    this.accessToken = options.accessToken;
    this.baseUrl = options.baseUrl;
    this.crypto = options.crypto === true;
    this.client = createClient({
      baseUrl: options.baseUrl,
      userId: options.userId,
      accessToken: options.accessToken,
      deviceId: options.deviceId,
      timelineSupport: true,
    });
    const wake = (): void => {
      for (const w of [...this.waiters]) w();
    };
    this.client.on(RoomEvent.Timeline, wake);
    this.client.on(RoomEvent.MyMembership, wake);
    this.client.on(SdkClientEvent.Sync, wake);
    this.client.on(RoomEvent.Receipt, wake);
    this.client.on(MatrixEventEvent.Decrypted, wake);
  }

  /** Starts syncing (as a client does after login) and resolves once the first sync is in. */
  static async start(options: SdkUserOptions): Promise<SdkUser> {
    quietSdk();
    const user = new SdkUser(options);
    quietSdk();
    if (options.displayname !== undefined) await user.client.setDisplayName(options.displayname);
    // In memory: the SDK's IndexedDB store needs a browser (or crashes Node without one).
    if (user.crypto) {
      // The SDK turns its crypto's tracing on at debug level (console.debug and console.info) as
      // it starts it: silent until quietRustCrypto has it say errors only (as the demo's check does).
      const { debug, info } = console;
      console.debug = console.info = () => undefined;
      try {
        await user.client.initRustCrypto({ useIndexedDB: false });
        await quietRustCrypto();
      } finally {
        console.debug = debug;
        console.info = info;
      }
      quietSdk();
    }
    const ready = new Promise<void>((resolve, reject) => {
      const onSync = (state: SyncState): void => {
        if (state === SyncState.Prepared || state === SyncState.Syncing) {
          user.client.off(SdkClientEvent.Sync, onSync);
          resolve();
        } else if (state === SyncState.Error) {
          reject(new Error(`${options.userId} could not sync`));
        }
      };
      user.client.on(SdkClientEvent.Sync, onSync);
    });
    await user.client.startClient({ initialSyncLimit: 30, lazyLoadMembers: false });
    await ready;
    return user;
  }

  stop(): void {
    this.client.stopClient();
    for (const w of [...this.waiters]) w();
  }

  /** One client-server call through the SDK's HTTP layer; throws MatrixCallError on a non-2xx answer. */
  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    return this.sdk(`${method} ${path}`, () => this.fetchJson<T>(method, path, body));
  }

  private async fetchJson<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.accessToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const parsed = text === '' ? {} : (JSON.parse(text) as unknown);
    if (!res.ok) {
      throw Object.assign(new Error(`${method} ${path}: ${res.status}`), {
        httpStatus: res.status,
        errcode: (parsed as { errcode?: string }).errcode,
        data: parsed,
      });
    }
    return parsed as T;
  }

  /** A call of the SDK; a 429 is waited out and retried, as Element does, and so is a homeserver away. */
  private async sdk<T>(what: string, act: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await act();
      } catch (err) {
        const e = err as {
          httpStatus?: number;
          errcode?: string;
          data?: { retry_after_ms?: number };
          message?: string;
        };
        if (e.httpStatus === 429 && attempt < 20) {
          await new Promise((r) => setTimeout(r, Math.min(e.data?.retry_after_ms ?? 1000, 10_000)));
          continue;
        }
        // The homeserver restarting (the proxy answers 502 while Synapse is away): try again shortly.
        if ((e.httpStatus === 502 || e.httpStatus === 503) && attempt < 60) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        throw this.failure(what, err);
      }
    }
  }

  private failure(what: string, err: unknown): unknown {
    {
      const e = err as { httpStatus?: number; errcode?: string; data?: unknown; message?: string };
      if (e.httpStatus !== undefined) {
        return new MatrixCallError(e.httpStatus, e.errcode, e.data ?? e.message, `${this.userId}: ${what}`);
      }
      return err;
    }
  }

  /** A direct chat, as Element starts one (here without encryption): trusted private chat, is_direct. */
  async createDirectRoom(invitee: string, extra: Record<string, unknown> = {}): Promise<string> {
    const { room_id } = await this.sdk('createRoom', () =>
      this.client.createRoom({
        preset: Preset.TrustedPrivateChat,
        is_direct: true,
        invite: [invitee],
        ...extra,
      }),
    );
    // Element records the chat in m.direct so it lists it under People.
    const direct = (this.client.getAccountData(EventType.Direct)?.getContent() ?? {}) as Record<
      string,
      string[]
    >;
    await this.client.setAccountData(EventType.Direct, {
      ...direct,
      [invitee]: [...(direct[invitee] ?? []), room_id],
    });
    return room_id;
  }

  async createRoom(body: Record<string, unknown>): Promise<string> {
    return (await this.sdk('createRoom', () => this.client.createRoom(body))).room_id;
  }

  async join(roomId: string): Promise<void> {
    await this.sdk('join', () => this.client.joinRoom(roomId));
  }

  async leave(roomId: string): Promise<void> {
    await this.sdk('leave', () => this.client.leave(roomId));
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.sdk('invite', () => this.client.invite(roomId, userId));
  }

  /** Rooms this user is invited to and has not answered. */
  invites(): string[] {
    return this.client
      .getRooms()
      .filter((r) => r.getMyMembership() === 'invite')
      .map((r) => r.roomId);
  }

  /**
   * Sends an event with one transaction id for every attempt, as Element does: a send retried
   * across a Synapse restart is stored once. (The SDK's sendEvent, called again, would make a new
   * local echo and transaction id each time, and races its own retries against the remote echo.)
   */
  async sendEvent(roomId: string, type: string, content: Record<string, unknown>): Promise<string> {
    if (this.crypto && this.client.isRoomEncrypted(roomId)) {
      // Encrypted by the SDK, as Element sends in an encrypted room, once its crypto has the room's
      // settings (read from the room state just synced).
      const crypto = this.client.getCrypto()!;
      let ready = false;
      await this.waitUntil(() => {
        void crypto.isEncryptionEnabledInRoom(roomId).then((on) => (ready = on));
        return ready;
      }, `encryption to be set up in ${roomId}`);
      return (
        await this.sdk(`send ${type}`, () => this.client.sendEvent(roomId, type as never, content as never))
      ).event_id;
    }
    const txn = `m${Date.now()}.${Math.random().toString(36).slice(2)}`;
    return (
      await this.call<{ event_id: string }>(
        'PUT',
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txn)}`,
        content,
      )
    ).event_id;
  }

  /**
   * Sends an event as it is, past the SDK's own checks (which refuse to send into an encrypted
   * room without crypto): what a client with encryption would put on the wire.
   */
  async sendRaw(roomId: string, type: string, content: Record<string, unknown>): Promise<string> {
    const txn = `raw-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    return (
      await this.call<{ event_id: string }>(
        'PUT',
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txn)}`,
        content,
      )
    ).event_id;
  }

  sendText(roomId: string, body: string, html?: string, msgtype = 'm.text'): Promise<string> {
    return this.sendEvent(roomId, 'm.room.message', textMessage(body, html, msgtype));
  }

  async setState(
    roomId: string,
    type: string,
    stateKey: string,
    content: Record<string, unknown>,
  ): Promise<string> {
    return (
      await this.sdk(`state ${type}`, () =>
        this.client.sendStateEvent(roomId, type as never, content as never, stateKey),
      )
    ).event_id;
  }

  enableEncryption(roomId: string): Promise<string> {
    return this.setState(roomId, 'm.room.encryption', '', { algorithm: 'm.megolm.v1.aes-sha2' });
  }

  async upload(bytes: Buffer, contentType: string, filename?: string): Promise<string> {
    const r = await this.sdk('upload', () =>
      this.client.uploadContent(bytes, {
        type: contentType,
        ...(filename === undefined ? { includeFilename: false } : { name: filename }),
      }),
    );
    return r.content_uri;
  }

  async sendMedia(
    roomId: string,
    msgtype: 'm.image' | 'm.video' | 'm.audio' | 'm.file',
    media: MediaToSend,
  ): Promise<string> {
    if (this.crypto && this.client.isRoomEncrypted(roomId)) {
      // As Element does in an encrypted room: the file is encrypted, its key goes in the event.
      const { ciphertext, file: fileAt } = encryptAttachment(media.bytes);
      const url = await this.upload(ciphertext, 'application/octet-stream');
      const { url: _url, ...content } = mediaMessage(msgtype, media, url);
      const file = fileAt(url);
      return this.sendEvent(roomId, 'm.room.message', { ...content, file });
    }
    const url = await this.upload(media.bytes, media.mimetype, media.filename);
    const content = mediaMessage(msgtype, media, url);
    return this.sendEvent(roomId, 'm.room.message', content);
  }

  /** The file of an encrypted attachment (`content.file`), downloaded, checked and decrypted as Element does. */
  async downloadEncrypted(file: Record<string, unknown>): Promise<Buffer> {
    const { bytes } = await this.download(String(file['url']));
    return decryptAttachment(bytes, file as unknown as EncryptedFile);
  }

  /** Downloads as Element does since authenticated media: the client-server endpoint with the token. */
  async download(
    mxc: string,
  ): Promise<{ bytes: Buffer; contentType: string | null; disposition: string | null }> {
    const url = this.client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    if (url === null) throw new Error(`not an mxc URI: ${mxc}`);
    const res = await fetch(url, { headers: { authorization: `Bearer ${this.accessToken}` } });
    const bytes = Buffer.from(await res.arrayBuffer());
    if (!res.ok) throw new MatrixCallError(res.status, undefined, bytes.toString(), `download ${mxc}`);
    return {
      bytes,
      contentType: res.headers.get('content-type'),
      disposition: res.headers.get('content-disposition'),
    };
  }

  /** A read receipt on the event, as Element sends when the user has seen it. */
  async sendReceipt(
    roomId: string,
    eventId: string,
    type: 'm.read' | 'm.read.private' = 'm.read',
  ): Promise<void> {
    const event = await this.eventFor(roomId, eventId);
    await this.sdk('receipt', () =>
      this.client.sendReceipt(event, type === 'm.read' ? ReceiptType.Read : ReceiptType.ReadPrivate),
    );
  }

  async setTyping(roomId: string, typing: boolean, timeoutMs = 30_000): Promise<void> {
    await this.sdk('typing', () => this.client.sendTyping(roomId, typing, timeoutMs));
  }

  async redact(roomId: string, eventId: string, reason?: string): Promise<string> {
    return (
      await this.sdk('redact', () =>
        this.client.redactEvent(roomId, eventId, undefined, reason === undefined ? undefined : { reason }),
      )
    ).event_id;
  }

  /** The room's timeline as /messages gives it (backwards, returned oldest first). */
  async messages(roomId: string, limit = 100): Promise<ClientEvent[]> {
    const r = await this.sdk('messages', () =>
      this.client.createMessagesRequest(roomId, null, limit, Direction.Backward),
    );
    return (r.chunk as unknown as ClientEvent[]).map((e) => ({ ...e, room_id: roomId })).reverse();
  }

  /** The room's last events from /messages, each decrypted by this user's client (crypto on). */
  async decryptedMessages(roomId: string, limit = 100): Promise<ClientEvent[]> {
    const events = await this.messages(roomId, limit);
    return Promise.all(
      events.map(async (e) => {
        const ev = new MatrixEvent(e as never);
        await this.client.decryptEventIfNeeded(ev);
        return raw(ev, roomId);
      }),
    );
  }

  async readMessages(roomId: string): Promise<ClientEvent[]> {
    return (await this.messages(roomId)).filter((e) => e.type === 'm.room.message');
  }

  /** The user's membership in the room as the room state says (`join`, `invite`, `leave`...). */
  async membership(roomId: string, userId: string): Promise<string | undefined> {
    try {
      const m = await this.call<{ membership?: string }>(
        'GET',
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`,
      );
      return m.membership;
    } catch (err) {
      if (err instanceof MatrixCallError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** The room's current state events. */
  async state(roomId: string): Promise<ClientEvent[]> {
    return this.call<ClientEvent[]>('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state`);
  }

  /** A user's global profile. */
  async profile(userId: string): Promise<Record<string, unknown>> {
    return this.call('GET', `/_matrix/client/v3/profile/${enc(userId)}`);
  }

  /** Sets the user's presence, as a client does when the user goes away or comes back. */
  async setPresence(presence: 'online' | 'unavailable' | 'offline'): Promise<void> {
    // A syncing client counts as online unless it says otherwise in its syncs too.
    this.client.setSyncPresence(
      presence === 'online'
        ? SetPresence.Online
        : presence === 'offline'
          ? SetPresence.Offline
          : SetPresence.Unavailable,
    );
    await this.sdk('presence', () => this.client.setPresence({ presence }));
  }

  /** A user's presence as the client's sync last said (`online`, `offline`...), if it said. */
  presenceOf(userId: string): string | undefined {
    return this.client.getUser(userId)?.presence;
  }

  /** Who the client's sync says is typing in the room now. */
  typing(roomId: string): string[] {
    const room = this.client.getRoom(roomId);
    return room === null
      ? []
      : room
          .getMembers()
          .filter((m) => m.typing)
          .map((m) => m.userId);
  }

  /** The event the user's read receipt points at, from the client's sync. */
  readUpTo(roomId: string, userId: string): string | null {
    return this.client.getRoom(roomId)?.getEventReadUpTo(userId, true) ?? null;
  }

  /**
   * Resolves with the first event of the room (already there or to come) that satisfies the
   * predicate: from the client's live timeline, and /messages while waiting (a room joined late
   * starts with a gap the client does not fill by itself).
   */
  waitFor(roomId: string, predicate: (e: ClientEvent) => boolean): Promise<ClientEvent> {
    return this.until(async (polled) => {
      const room = this.client.getRoom(roomId);
      const live = room === null ? [] : this.timelineOf(room);
      const hit = live.find(predicate);
      if (hit !== undefined) return hit;
      if (polled) return (await this.messages(roomId).catch(() => [])).find(predicate);
      return undefined;
    }, `an event in ${roomId}`);
  }

  /** Events of the room this user's client could not decrypt (with crypto on). */
  undecryptable(roomId: string): MatrixEvent[] {
    const room = this.client.getRoom(roomId);
    return room === null
      ? []
      : room
          .getLiveTimeline()
          .getEvents()
          .filter((e) => e.isDecryptionFailure());
  }

  /**
   * Every event of every room of this user's client that it could not decrypt, once the
   * decryptions under way have finished (with crypto on).
   */
  async undecryptableAnywhere(): Promise<MatrixEvent[]> {
    const events = () => this.client.getRooms().flatMap((r) => r.getLiveTimeline().getEvents());
    await this.waitUntil(() => events().every((e) => !e.isBeingDecrypted()), 'decryptions to finish');
    return events().filter((e) => e.isDecryptionFailure());
  }

  /** Resolves with the first room this user is invited to whose invite satisfies the predicate. */
  waitForInvite(predicate: (e: ClientEvent) => boolean = () => true): Promise<string> {
    return this.until(async () => {
      for (const room of this.client.getRooms()) {
        if (room.getMyMembership() !== 'invite') continue;
        const ev = room.currentState.getStateEvents(EventType.RoomMember, this.userId);
        if (ev !== null && predicate(raw(ev, room.roomId))) return room.roomId;
      }
      return undefined;
    }, `an invitation for ${this.userId}`);
  }

  /** Resolves once `check` holds in the client's view (rechecked on every sync and every 400 ms). */
  async waitUntil(check: () => boolean, what: string): Promise<void> {
    await this.until(async () => (check() ? true : undefined), what);
  }

  private timelineOf(room: Room): ClientEvent[] {
    return room
      .getLiveTimeline()
      .getEvents()
      .map((e) => raw(e, room.roomId));
  }

  private async eventFor(roomId: string, eventId: string): Promise<MatrixEvent> {
    const found = this.client.getRoom(roomId)?.findEventById(eventId);
    if (found !== undefined) return found;
    const ev = await this.call<Record<string, unknown>>(
      'GET',
      `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`,
    );
    return new MatrixEvent({ ...ev, room_id: roomId });
  }

  /** Polls `find` on every sync wake-up and every POLL_MS (the slow path, `polled`, each second). */
  private until<T>(find: (polled: boolean) => Promise<T | undefined>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let busy = false;
      let again = false;
      let last = 0;
      let done = false;
      const finish = (err: Error | undefined, value?: T): void => {
        if (done) return;
        done = true;
        clearInterval(timer);
        this.waiters.delete(check);
        if (err !== undefined) reject(err);
        else resolve(value as T);
      };
      const check = (): void => {
        if (done) return;
        if (busy) {
          again = true;
          return;
        }
        busy = true;
        const polled = Date.now() - last >= 1000;
        if (polled) last = Date.now();
        find(polled).then(
          (v) => {
            busy = false;
            if (v !== undefined) finish(undefined, v);
            else if (again) {
              again = false;
              check();
            }
          },
          (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
        );
      };
      const timer = setInterval(check, POLL_MS);
      timer.unref();
      this.waiters.add(check);
      void what;
      check();
    });
  }
}

const enc = encodeURIComponent;
