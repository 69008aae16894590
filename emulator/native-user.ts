/**
 * Native users: simulated gatekeeper users with their own Signal identities, connected to the
 * emulator through the same protocol code as any client (Noise + JWT via GatewayConnection, Signal
 * sessions via SignalSessionManager, media via src/media/crypto). Scriptable from tests and the
 * demo: send text or media, wait for messages and receipts, type, and simple behaviours (echo,
 * answer after a delay). The gateway only ever sees their ciphertext.
 */
import { MAX_RETRIES, retryReceipt } from '../src/protocol/retry-receipt.js';
import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { InteropError } from '../src/errors.js';
import { GatewayConnection } from '../src/gateway/connection.js';
import {
  decodeContent,
  describeContent,
  editContent,
  encodeContent,
  reactionContent,
  revokeContent,
  textContent,
} from '../src/protocol/content.js';
import {
  MessageSchema,
  DeviceSentMessageSchema,
  type Message,
} from '../src/protocol/gen/interop/v1/message_pb.js';
import { generateKeyPair, type KeyPair } from '../src/protocol/noise/index.js';
import {
  formatJid,
  isGroupJid,
  parseJid,
  type Enc,
  type MessageStanza,
  type ReceiptStanza,
  type Stanza,
} from '../src/protocol/stanza/index.js';
import { signalAddress } from '../src/signal/address.js';
import { createSignalIdentity, MemorySignalBackend, SignalSessionManager } from '../src/signal/index.js';
import { deliver, waitFor, type Waiter } from './native-waiters.js';
import { downloadMedia, uploadMedia, type NativeMedia } from './native-media.js';
import { buildNativeContent, type NativeContent } from './native-content.js';
import { NativeGroupError, NativeGroups } from './native-groups.js';
import { NativeProfile } from './native-profile.js';

export type {
  CompanionAccount,
  NativeMediaKind,
  NativeUserOptions,
  ReceivedMessage,
  ReceivedReceipt,
} from './native-types.js';
import type { NativeUserOptions, ReceivedMessage, ReceivedReceipt } from './native-types.js';

export class NativeUser {
  readonly jid: string;
  readonly device: number;
  readonly signal: SignalSessionManager;
  readonly received: ReceivedMessage[] = [];
  readonly receipts: ReceivedReceipt[] = [];
  private readonly connection: GatewayConnection;
  private readonly knownDevices = new Map<string, Set<number>>();
  private readonly messageWaiters: Waiter<ReceivedMessage>[] = [];
  private readonly receiptWaiters: Waiter<ReceivedReceipt>[] = [];
  /** Group requests, state and sender keys (native-groups.ts). */
  readonly groups: NativeGroups;
  /** Its push name, about text and picture, others' profiles, profile notifications (native-profile.ts). */
  readonly profile: NativeProfile;
  private readonly acks = new Map<string, (error?: number) => void>();
  private readonly retries = new Map<string, number>();
  private readonly sent = new Map<
    string,
    { to: string; type: 'text' | 'media'; plaintext: Uint8Array; t: number }
  >();
  /** Chat states received: who, and whether they are composing. */
  readonly chatstates: { from: string; composing: boolean }[] = [];
  /** Presence received from other users, in arrival order (bare JIDs). */
  readonly presences: { from: string; available: boolean }[] = [];
  /** Whether a retry receipt makes this user re-encrypt and resend (real clients do). Default true. */
  resendOnRetry = true;
  private behaviour: ((m: ReceivedMessage) => Promise<void>) | undefined;
  private readonly noiseKey: KeyPair = generateKeyPair();

  private constructor(private readonly options: NativeUserOptions) {
    this.device = options.device ?? 0;
    const account = options.account;
    this.jid = account?.jid ?? options.emulator.createNativeUser(options.phone);
    const identity = createSignalIdentity();
    const backend = new MemorySignalBackend({
      registrationId: identity.registrationId,
      publicKey: identity.identityPublic,
      privateKey: identity.identityPrivate,
    });
    this.signal = new SignalSessionManager(backend, { localUser: this.jid });
    this.signal.setUp({ preKeys: 0 });
    const phone = options.phone;
    this.connection = new GatewayConnection({
      host: options.emulator.host,
      port: options.emulator.port,
      rootPublicKey: options.rootPublicKey,
      providerId: account?.providerId ?? 'wa',
      accountId: parseJid(this.jid).user as string,
      device: this.device,
      noiseKey: this.noiseKey,
      mintToken: () =>
        account
          ? account.mintToken(this.noiseKey.publicKey)
          : options.emulator.nativeToken(phone, this.noiseKey.publicKey),
      reconnect: { initialDelayMs: 50, maxDelayMs: 1000 },
      ...(options.logger ? { logger: options.logger } : {}),
    });
    this.connection.on('stanza', (s) => void this.onStanza(s));
    this.profile = new NativeProfile({
      request: async (body, to) => (await this.connection.request(body, to)).body,
      send: (stanza) => {
        if (this.connection.isConnected) this.connection.send(stanza);
      },
      mediaConn: () => this.mediaConn(),
    });
    this.groups = new NativeGroups({
      jid: this.jid,
      device: this.device,
      request: async (body, to) => {
        const answer = await this.connection.request(body, to).catch((err: unknown) => {
          // GatewayConnection reports an iq error as "refused the request: <code> <text>".
          const message = (err as Error).message;
          throw new NativeGroupError(
            Number(/refused the request: (\d{3})/.exec(message)?.[1] ?? 500),
            message,
          );
        });
        return answer.body;
      },
      sendMessage: async (stanza) => {
        const acked = new Promise<number | undefined>((resolve) => this.acks.set(stanza.id, resolve));
        this.connection.send(stanza);
        const error = await acked;
        if (error !== undefined)
          throw new NativeGroupError(error, `the gateway refused ${stanza.id}: ${error}`);
      },
      send: (stanza) => {
        if (this.connection.isConnected) this.connection.send(stanza);
      },
      encryptFor: (user, device, plaintext) => this.encryptFor(user, device, plaintext),
      decryptFrom: (user, device, type, body) => this.signal.decrypt(signalAddress(user, device), type, body),
      devicesOf: (user) => this.devicesOf(user),
      retryKeys: (n) => this.signal.prekeyUpload(n),
      autoDeliveryReceipts: options.autoDeliveryReceipts !== false,
      received: (m) => {
        deliver(this.received, this.messageWaiters, m);
        if (this.behaviour) void this.behaviour(m).catch(() => undefined);
      },
    });
  }

  /** Creates the user at the emulator, connects, and publishes its keys. */
  static async connect(options: NativeUserOptions): Promise<NativeUser> {
    const user = new NativeUser(options);
    const connected = new Promise<void>((resolve) => user.connection.once('connected', () => resolve()));
    user.connection.start();
    await connected;
    await user.publishKeys(options.preKeys ?? 20);
    return user;
  }

  get isConnected(): boolean {
    return this.connection.isConnected;
  }

  /** Disconnects (messages for it queue at the gateway); `reconnect` comes back. */
  async disconnect(): Promise<void> {
    await this.connection.stop();
  }

  async reconnect(): Promise<void> {
    const connected = new Promise<void>((resolve) => this.connection.once('connected', () => resolve()));
    this.connection.start();
    await connected;
  }

  async close(): Promise<void> {
    await this.connection.stop();
  }

  /**
   * Echoes every message after `delayMs`: a text as "echo: <text>", a file, a location or a
   * contact card as the same again (a file uploaded anew, its caption echoed), a reaction with the
   * same reaction to the same message. Edits, deletions and what it cannot read are not echoed.
   */
  echo(delayMs = 0): void {
    this.behaviour = async (m) => {
      const c = m.content;
      const devices = { devices: [m.fromDevice] };
      await sleep(delayMs);
      switch (c.kind) {
        case 'text':
          await this.sendText(m.from, `echo: ${c.text}`, devices);
          return;
        case 'image':
        case 'video':
        case 'audio':
        case 'voice':
        case 'document': {
          const bytes = await this.downloadMedia(m);
          const caption = 'caption' in c && c.caption ? { caption: `echo: ${c.caption}` } : {};
          const fileName = c.kind === 'document' && c.media.fileName ? { fileName: c.media.fileName } : {};
          await this.sendMedia(
            m.from,
            {
              kind: c.kind,
              bytes,
              mimetype: c.media.mimetype || 'application/octet-stream',
              ...caption,
              ...fileName,
            },
            devices,
          );
          return;
        }
        case 'location':
        case 'contact':
          await this.sendContent(m.from, m.raw, 'text', devices.devices);
          return;
        case 'reaction':
          await this.send(m.from, { kind: 'reaction', target: c.target.id, emoji: c.emoji }, devices);
          return;
        default:
          return;
      }
    };
  }

  /**
   * Sends any content kind a gatekeeper app sends (native-content.ts: text with mentions and
   * replies, files, locations, contact cards, edits, deletions, reactions, polls). Resolves with the
   * message id.
   */
  async send(to: string, spec: NativeContent, options: { devices?: number[] } = {}): Promise<string> {
    const { content, type } = await buildNativeContent(spec, {
      to,
      isOwn: (id) => this.sent.get(id)?.to === to,
      senderOf: (id) => this.received.find((m) => m.group === to && m.id === id)?.from,
      upload: async (media) => uploadMedia(media, await this.mediaConn()),
    });
    // Into a group: encrypted once with the sender key (native-groups.ts).
    if (isGroupJid(to)) return this.groups.send(to, content, type);
    return this.sendContent(to, content, type, options.devices);
  }

  /** Answers each message with `answer(message)` after `delayMs`, marking it read first. */
  respond(answer: (m: ReceivedMessage) => string | undefined, delayMs = 0): void {
    this.behaviour = async (m) => {
      await this.sendReceipt(m.from, [m.id], 'read', m.fromDevice);
      await this.typing(m.from, true);
      await sleep(delayMs);
      const text = answer(m);
      if (text !== undefined) await this.sendText(m.from, text, { devices: [m.fromDevice] });
    };
  }

  async sendText(
    to: string,
    text: string,
    options: { devices?: number[]; replyTo?: string } = {},
  ): Promise<string> {
    const content = textContent(text, options.replyTo ? { replyTo: { id: options.replyTo } } : {});
    return this.sendContent(to, content, 'text', options.devices);
  }

  /**
   * Edits (new text) or deletes (`null`) one of this user's own earlier messages to `to`, or reacts
   * (`{ emoji }`, empty to take it back) to a message of the conversation, as its apps do.
   */
  /**
   * As a companion (`account`): sends a text to `to` from this device, and its copy to the
   * account's `ownDevices` (a `DeviceSentMessage` naming the destination and the id it got), as
   * a multi-device client does. Returns the id the destination got.
   */
  async sendFromThisDevice(
    to: string,
    text: string | Message,
    ownDevices: number[],
    devices?: number[],
  ): Promise<string> {
    const content = typeof text === 'string' ? textContent(text) : text;
    const id = randomBytes(10).toString('hex').toUpperCase();
    await this.sendContent(
      this.jid,
      create(MessageSchema, {
        deviceSentMessage: create(DeviceSentMessageSchema, {
          destinationJid: to,
          message: content,
          messageId: id,
        }),
      }),
      'text',
      ownDevices,
      `${id}.SYNC`,
    );
    return this.sendContent(to, content, 'text', devices, id);
  }

  async sendChange(
    to: string,
    target: { id: string; fromMe: boolean },
    change: string | null | { emoji: string },
    options: { devices?: number[] } = {},
  ): Promise<string> {
    const key = { remoteJid: to, fromMe: target.fromMe, id: target.id };
    const content =
      change === null
        ? revokeContent(key)
        : typeof change === 'string'
          ? editContent(key, textContent(change), BigInt(Date.now()))
          : reactionContent(key, change.emoji, BigInt(Date.now()));
    return this.sendContent(to, content, 'text', options.devices);
  }

  /** Encrypts the file with a fresh media key, uploads it to the gateway, and sends the media message. */
  async sendMedia(to: string, media: NativeMedia, options: { devices?: number[] } = {}): Promise<string> {
    const content = await uploadMedia(media, await this.mediaConn());
    return this.sendContent(to, content, 'media', options.devices);
  }

  /** Downloads, verifies and decrypts a received media message; resolves with the plaintext. */
  async downloadMedia(message: ReceivedMessage): Promise<Buffer> {
    return downloadMedia(message, await this.mediaConn(), this.options.maxMediaBytes ?? 100 * 1024 * 1024);
  }

  async sendReceipt(
    to: string,
    ids: string[],
    type: 'delivery' | 'read' = 'delivery',
    device?: number,
  ): Promise<void> {
    for (const id of ids) {
      // In a group, a receipt names the message's sender as `participant` (PROTOCOL.md 5.7.7).
      const sender = isGroupJid(to) ? this.received.find((m) => m.group === to && m.id === id) : undefined;
      this.connection.send({
        kind: 'receipt',
        id,
        to: device && !sender ? formatJid({ ...parseJid(to), device }) : to,
        ...(sender
          ? { participant: type === 'read' ? sender.from : (sender.participant ?? sender.from) }
          : {}),
        t: nowSeconds(),
        ...(type === 'read' ? { type: 'read' as const } : {}),
      });
    }
  }

  /** Announces this user's presence: to one user, or without `to` to every contact watching. */
  presence(available: boolean, to?: string): void {
    this.connection.send({
      kind: 'presence',
      type: available ? 'available' : 'unavailable',
      ...(to === undefined ? {} : { to }),
    });
  }

  async typing(to: string, composing: boolean): Promise<void> {
    this.connection.send({ kind: 'chatstate', to, state: composing ? 'composing' : 'paused' });
  }

  /** The next received message matching `match` (already received ones count), within `timeoutMs`. */
  waitForMessage(
    match: (m: ReceivedMessage) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<ReceivedMessage> {
    return waitFor(this.received, this.messageWaiters, match, timeoutMs, 'message');
  }

  /** The first receipt of `type` for message `id` (from `from` when given: a group has several). */
  waitForReceipt(
    id: string,
    type: ReceivedReceipt['type'] = 'delivery',
    timeoutMs = 10_000,
    from?: string,
  ): Promise<ReceivedReceipt> {
    return waitFor(
      this.receipts,
      this.receiptWaiters,
      (r) => r.id === id && r.type === type && (from === undefined || r.from === from),
      timeoutMs,
      `${type} receipt for ${id}${from === undefined ? '' : ` from ${from}`}`,
    );
  }

  private async publishKeys(count: number): Promise<void> {
    const upload = this.signal.prekeyUpload(count);
    await this.connection.request({ op: 'prekey_upload', ...upload });
    this.signal.markPrekeysUploaded(upload.preKeys.map((k) => k.id));
  }

  private async mediaConn(): Promise<{ auth: string; host: string }> {
    const answer = await this.connection.request({ op: 'media_conn' });
    if (answer.body.op !== 'media_conn_result' || !answer.body.hosts[0]) {
      throw new InteropError('native_media_conn', 'the gateway gave no media host');
    }
    return { auth: answer.body.auth, host: answer.body.hosts[0] };
  }

  private async devicesOf(to: string): Promise<number[]> {
    const known = this.knownDevices.get(to);
    if (known && known.size > 0) return [...known];
    const { user, server } = parseJid(to);
    if (server === 'wa.interop' && user) {
      const answer = await this.connection.request({ op: 'usync_query', contacts: [`+${user}`] });
      if (answer.body.op === 'usync_result' && answer.body.entries[0]?.onNetwork)
        return [...answer.body.entries[0].devices];
    }
    throw new InteropError(
      'native_unknown_devices',
      `no known devices for ${to}: pass devices, or wait for a message from it`,
    );
  }

  private async sendContent(
    to: string,
    content: Message,
    type: 'text' | 'media',
    devices?: number[],
    stanzaId?: string,
  ): Promise<string> {
    const targets = devices ?? (await this.devicesOf(to));
    const plaintext = encodeContent(content);
    const encs: Enc[] = [];
    for (const device of targets) encs.push({ ...(await this.encryptFor(to, device, plaintext)), device });
    const id = stanzaId ?? randomBytes(10).toString('hex').toUpperCase();
    const acked = new Promise<void>((resolve) => this.acks.set(id, () => resolve()));
    const stanza: MessageStanza = { kind: 'message', id, to, type, t: nowSeconds(), encs };
    this.sent.set(id, { to, type, plaintext, t: stanza.t });
    this.connection.send(stanza);
    await acked;
    return id;
  }

  /** A pairwise ciphertext for one device of `to`, fetching its keys first when there is no session. */
  private async encryptFor(to: string, device: number, plaintext: Uint8Array): Promise<Enc> {
    const address = signalAddress(to, device);
    if (!this.signal.hasSession(address)) {
      const deviceJid = formatJid({ ...parseJid(to), device });
      const answer = await this.connection.request({ op: 'prekey_fetch', jids: [deviceJid] });
      const entry = answer.body.op === 'prekey_fetch_result' ? answer.body.users[0] : undefined;
      if (!entry || entry.error) {
        throw new InteropError(
          'native_no_keys',
          `no keys for ${deviceJid}: ${entry?.error?.text ?? 'no answer'}`,
        );
      }
      await this.signal.processBundle(address, entry);
    }
    const enc = await this.signal.encrypt(address, plaintext);
    return { type: enc.type, ciphertext: enc.body };
  }

  /**
   * Answers a retry receipt as a real client does: rebuild the session from the keys in the receipt
   * when it carries them, re-encrypt the same content for that device, and resend under the same id.
   */
  private async resendAfterRetry(r: ReceiptStanza): Promise<void> {
    const original = this.sent.get(r.id);
    if (!original || !r.retry || !r.from) return;
    const from = parseJid(r.from);
    const device = from.device ?? 0;
    const address = signalAddress(original.to, device);
    const keys = r.retry.keys;
    if (keys) {
      await this.signal.deleteSession(address);
      await this.signal.processBundle(address, {
        registrationId: r.retry.registrationId,
        identityKey: keys.identityKey,
        signedPreKey: keys.signedPreKey,
        ...(keys.preKey ? { preKey: keys.preKey } : {}),
      });
    }
    const enc = await this.signal.encrypt(address, original.plaintext);
    this.connection.send({
      kind: 'message',
      id: r.id,
      to: original.to,
      type: original.type,
      t: original.t,
      encs: [{ type: enc.type, device, ciphertext: enc.body }],
    });
  }

  private async onStanza(stanza: Stanza): Promise<void> {
    try {
      if (this.groups.handles(stanza) || this.profile.handles(stanza)) return;
      if (stanza.kind === 'ack' && stanza.class === 'message') {
        this.acks.get(stanza.id)?.(stanza.error);
        this.acks.delete(stanza.id);
      } else if (stanza.kind === 'message') {
        await this.onMessage(stanza);
      } else if (stanza.kind === 'chatstate') {
        const from = parseJid(stanza.from ?? '');
        this.chatstates.push({
          from: formatJid({ user: from.user, server: from.server }),
          composing: stanza.state === 'composing',
        });
      } else if (stanza.kind === 'presence') {
        const from = parseJid(stanza.from ?? '');
        this.presences.push({
          from: formatJid({ user: from.user, server: from.server }),
          available: stanza.type === 'available',
        });
      } else if (stanza.kind === 'receipt') {
        this.onReceipt(stanza);
        this.connection.send({ kind: 'ack', class: 'receipt', id: stanza.id });
      } else if (stanza.kind === 'notification') {
        this.connection.send({ kind: 'ack', class: 'notification', id: stanza.id });
        if (stanza.body.event === 'prekey_low') await this.publishKeys(20);
      }
    } catch (err) {
      this.options.logger?.warn({ err: (err as Error).message }, 'native user could not handle a stanza');
    }
  }

  private async onMessage(m: MessageStanza): Promise<void> {
    const from = parseJid(m.from ?? '');
    const fromUser = formatJid({ user: from.user, server: from.server });
    const fromDevice = from.device ?? 0;
    const enc = m.encs.find((e) => e.device === undefined || e.device === this.device);
    let ackLater = true;
    try {
      if (!enc || enc.type === 'skmsg')
        throw new InteropError('native_no_enc', 'no ciphertext for this device');
      const plaintext = await this.signal.decrypt(
        signalAddress(fromUser, fromDevice),
        enc.type,
        enc.ciphertext,
      );
      const raw = decodeContent(plaintext);
      const received: ReceivedMessage = {
        from: fromUser,
        fromDevice,
        id: m.id,
        t: m.t,
        content: describeContent(raw),
        raw,
        ...(m.notify === undefined ? {} : { notify: m.notify }),
      };
      this.remember(fromUser, fromDevice);
      this.ack(m);
      ackLater = false;
      if (this.options.autoDeliveryReceipts !== false)
        await this.sendReceipt(fromUser, [m.id], 'delivery', fromDevice);
      deliver(this.received, this.messageWaiters, received);
      if (this.behaviour) void this.behaviour(received).catch(() => undefined);
    } catch (err) {
      const code = (err as InteropError).code;
      if (code === 'signal_duplicate_message') return this.ack(m);
      // Undecryptable: ask the sender to try again (at most 5 times), as the protocol says.
      const count = (this.retries.get(m.id) ?? 0) + 1;
      this.retries.set(m.id, count);
      if (count <= MAX_RETRIES) {
        this.connection.send(retryReceipt(m, count, (n) => this.signal.prekeyUpload(n), nowSeconds()));
      }
    } finally {
      if (ackLater) this.ack(m);
    }
  }

  private onReceipt(r: ReceiptStanza): void {
    if (r.type === 'retry' && this.resendOnRetry) void this.resendAfterRetry(r).catch(() => undefined);
    const group = r.from !== undefined && isGroupJid(r.from) ? r.from : undefined;
    const from = parseJid((group ? r.participant : r.from) ?? '');
    const type = r.type === 'read' ? 'read' : r.type === 'retry' ? 'retry' : 'delivery';
    deliver(this.receipts, this.receiptWaiters, {
      from: formatJid({ user: from.user, server: from.server }),
      id: r.id,
      type,
      ...(group ? { group, participant: r.participant } : {}),
    });
  }

  private ack(m: MessageStanza): void {
    if (this.connection.isConnected)
      this.connection.send({ kind: 'ack', class: 'message', id: m.id, ...(m.from ? { to: m.from } : {}) });
  }

  private remember(user: string, device: number): void {
    const set = this.knownDevices.get(user) ?? new Set<number>();
    set.add(device);
    this.knownDevices.set(user, set);
  }
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
