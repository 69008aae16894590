/**
 * The Matrix adapter: gatekeeper contacts appear as ghost users (`@wa_<digits>:<server>`) in portal
 * rooms, one direct room per (local user, contact); a bridge bot answers commands in each user's
 * management room (a direct room with the bot).
 *
 * Incoming (core -> Matrix): `deliver` sends as the contact's ghost, with a transaction id derived
 * from the core's remote id, and remembers the event it made: a second delivery of the same remote
 * id returns the same event and sends nothing. It resolves only when the homeserver accepted it.
 *
 * Outgoing (Matrix -> core): appservice transactions are recorded in SQLite before they are
 * answered (appservice.ts), then handled here in order per room, each event on its own: one that
 * fails is retried a few times and then set aside with a notice, never holding up the others.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Adapter, AdapterCapabilities, BridgeCore } from '../../src/bridge/adapter.js';
import type {
  ConversationEvent,
  DeliveryUpdate,
  EphemeralEvent,
  IncomingEvent,
  Notice,
  OutgoingEvent,
} from '../../src/bridge/events.js';
import type { Config } from '../../src/config/schema.js';
import { InteropError } from '../../src/errors.js';
import type { Logger } from '../../src/observability/logger.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { describeFailure, RetryingMatrixClient, type RetryPolicy } from './client.js';
import { CommandHandler } from './commands.js';
import {
  inReplyTo,
  markupOf,
  mediaBodyOf,
  mediaContent,
  mediaKindOf,
  replaces,
  textContent,
  type Content,
} from './content.js';
import { MatrixAdapterError } from './errors.js';
import { MatrixStore, type InboundRow, type MatrixRoom } from './store.js';

export type MatrixConfig = Config['matrix'];
export type PermissionLevel = 'none' | 'user' | 'admin';

export interface MatrixAdapterOptions {
  readonly config: MatrixConfig;
  readonly store: SqliteStore;
  /** Where files of local users' media messages wait until the core has sent them. */
  readonly dataDir: string;
  /** Largest file either way (`media.max_bytes`). */
  readonly maxMediaBytes: number;
  readonly retry: RetryPolicy;
  readonly logger?: Logger | undefined;
  /** Failed attempts at one inbound event before it is set aside. Default 5. */
  readonly maxEventAttempts?: number;
  /** First wait before an inbound event is tried again; doubles up to 60 s. Default 1000 ms. */
  readonly eventRetryMs?: number;
}

const BRIDGE_PROTOCOL = { id: 'whatsapp', displayname: 'WhatsApp (interoperability)' };
const TYPING_TIMEOUT_MS = 30_000;
/** Failures that no later attempt can mend: the event is set aside with a notice at once. */
const FINAL_CODES = new Set([
  'matrix_bad_mxc',
  'matrix_contact_unsupported',
  'bridge_bad_remote',
  'bridge_bad_local_user',
  'bridge_not_a_message',
  'bridge_text_too_long',
]);

export class MatrixAdapter implements Adapter {
  readonly network = 'matrix' as const;
  readonly capabilities: AdapterCapabilities;
  readonly botUserId: string;
  readonly mstore: MatrixStore;
  readonly bot: RetryingMatrixClient;
  /** The bot, for media downloads: two attempts per event attempt, not the patient policy. */
  readonly #media: RetryingMatrixClient;
  readonly #o: MatrixAdapterOptions;
  readonly #log: Logger | undefined;
  readonly #ghosts = new Map<string, RetryingMatrixClient>();
  readonly #ghostSetUp = new Map<string, Promise<void>>();
  readonly #portalCreation = new Map<string, Promise<string>>();
  readonly #rooms = new Set<string>();
  /** Rooms whose next event failed: not tried again before this time. */
  readonly #roomRetryAt = new Map<string, number>();
  readonly #typing = new Map<string, boolean>();
  readonly #active = new Set<string>();
  readonly #commands: CommandHandler;
  #core: BridgeCore | undefined;
  /**
   * Names of the files in the media spool (listed from disk once, then kept up to date), so that
   * the delivery update of a text message costs no file system call.
   */
  #spooled: Set<string> | undefined;
  #pumping = false;
  #pumpAgain = false;
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  /** Until `start()`: transactions are recorded but not handled yet. */
  #stopped = true;
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(options: MatrixAdapterOptions) {
    this.#o = options;
    this.#log = options.logger;
    const m = options.config;
    this.botUserId = `@${m.bot_localpart}:${m.server_name}`;
    this.mstore = new MatrixStore(options.store.db);
    this.bot = new RetryingMatrixClient(m.homeserver_url, this.#asToken, options.retry, this.#log);
    this.#media = new RetryingMatrixClient(
      m.homeserver_url,
      this.#asToken,
      { ...options.retry, maxAttempts: Math.min(2, options.retry.maxAttempts) },
      this.#log,
    );
    this.capabilities = {
      media: true,
      replies: true,
      edits: true,
      deletes: true,
      reactions: true,
      readReceipts: true,
      typing: true,
      presence: false,
      maxMediaBytes: options.maxMediaBytes,
    };
    this.#commands = new CommandHandler(this);
  }

  get #asToken(): string {
    const t = this.#o.config.as_token;
    if (t === undefined) {
      throw new MatrixAdapterError(
        'matrix_no_as_token',
        'matrix.as_token (or as_token_file) is not set: run "interop-bridge generate-registration"',
      );
    }
    return t;
  }

  get config(): MatrixConfig {
    return this.#o.config;
  }

  get log(): Logger | undefined {
    return this.#log;
  }

  /** The core, once attached (`bridge.attach(adapter)`). */
  get core(): BridgeCore {
    if (!this.#core)
      throw new MatrixAdapterError('matrix_not_attached', 'the Matrix adapter is not attached to a bridge');
    return this.#core;
  }

  attach(core: BridgeCore): void {
    this.#core = core;
  }

  /** Handles whatever was recorded but not handled before (a restart), then follows new transactions. */
  start(): Promise<void> {
    this.#stopped = false;
    this.kick();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#retryTimers) clearTimeout(t);
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  // ---------------------------------------------------------------------------------------------
  // Permissions and ids

  /** The permission of a Matrix user: by user id, then server name, then "*"; none when unlisted. */
  permissionOf(userId: string): PermissionLevel {
    const p = this.#o.config.permissions;
    const server = userId.slice(userId.indexOf(':') + 1);
    return p[userId] ?? p[server] ?? p['*'] ?? 'none';
  }

  /** Whether a user id is one of the bridge's (the bot or a ghost). */
  isOurs(userId: string): boolean {
    return userId === this.botUserId || this.#ghostDigits(userId) !== undefined;
  }

  #ghostDigits(userId: string): string | undefined {
    const m = this.#o.config;
    const prefix = `@${m.ghost_localpart_prefix}`;
    const suffix = `:${m.server_name}`;
    if (!userId.startsWith(prefix) || !userId.endsWith(suffix)) return undefined;
    const digits = userId.slice(prefix.length, userId.length - suffix.length);
    // A phone number as E.164 allows it: no account for any string of digits queried.
    return /^[1-9]\d{6,14}$/.test(digits) ? digits : undefined;
  }

  /** The ghost of a contact (`4915112345678@wa.interop` -> `@wa_4915112345678:<server>`). */
  ghostIdOf(jid: string): string {
    const user = jid.split('@')[0] ?? '';
    if (!/^[0-9]+$/.test(user)) {
      throw new MatrixAdapterError(
        'matrix_contact_unsupported',
        `${jid} is not a phone-numbered contact: this bridge shows gatekeeper users only`,
      );
    }
    const m = this.#o.config;
    return `@${m.ghost_localpart_prefix}${user}:${m.server_name}`;
  }

  /** A contact's phone number, for people: `+4915112345678`. */
  phoneOf(jid: string): string {
    return `+${jid.split('@')[0] ?? jid}`;
  }

  /** The contact a ghost stands for, looked up through the gateway when not known yet. */
  async jidOfGhost(ghostId: string, localUser: string): Promise<string | undefined> {
    const known = this.mstore.ghost(ghostId);
    if (known) return known.jid;
    const digits = this.#ghostDigits(ghostId);
    if (digits === undefined) return undefined;
    const found = await this.core.lookup(localUser, `+${digits}`);
    if (!found.reachable || found.jid === undefined) return undefined;
    this.mstore.putGhost(ghostId, found.jid);
    return found.jid;
  }

  /** A client acting as the ghost (as_token with `user_id`). */
  ghostClient(ghostId: string): RetryingMatrixClient {
    let c = this.#ghosts.get(ghostId);
    if (!c) {
      c = new RetryingMatrixClient(this.#o.config.homeserver_url, this.#asToken, this.#o.retry, this.#log);
      c.impersonateUserId(ghostId);
      this.#ghosts.set(ghostId, c);
    }
    return c;
  }

  /** Registers the ghost of a contact (once) and gives it its display name. */
  async ensureGhost(jid: string): Promise<string> {
    const ghostId = this.ghostIdOf(jid);
    const known = this.mstore.ghost(ghostId);
    if (known?.registered) return ghostId;
    let pending = this.#ghostSetUp.get(ghostId);
    if (!pending) {
      pending = this.#registerGhost(ghostId, jid).finally(() => this.#ghostSetUp.delete(ghostId));
      this.#ghostSetUp.set(ghostId, pending);
    }
    await pending;
    return ghostId;
  }

  async #registerGhost(ghostId: string, jid: string): Promise<void> {
    this.mstore.putGhost(ghostId, jid);
    const displayname = this.#o.config.ghost_displayname.replace('{phone}', this.phoneOf(jid));
    await this.#registerMatrixUser(ghostId, displayname);
    this.mstore.markGhostRegistered(ghostId, displayname);
  }

  /** Registers a ghost's Matrix account (an existing one is fine) and sets its display name. */
  async #registerMatrixUser(ghostId: string, displayname: string): Promise<void> {
    const localpart = ghostId.slice(1, ghostId.indexOf(':'));
    try {
      await this.bot.doRequest('POST', '/_matrix/client/v3/register', null, {
        type: 'm.login.application_service',
        username: localpart,
        inhibit_login: true,
      });
    } catch (err) {
      if (describeFailure(err).errcode !== 'M_USER_IN_USE') throw err;
    }
    await this.ghostClient(ghostId).doRequest(
      'PUT',
      `/_matrix/client/v3/profile/${encodeURIComponent(ghostId)}/displayname`,
      null,
      { displayname },
    );
  }

  /**
   * Answers the homeserver's user query (before an invite to a ghost it does not know): the ghost
   * is created; which contact it stands for is found when it is invited.
   */
  async queryUser(userId: string): Promise<boolean> {
    const digits = this.#ghostDigits(userId);
    if (digits === undefined) return false;
    const known = this.mstore.ghost(userId);
    if (known) await this.ensureGhost(known.jid);
    else
      await this.#registerMatrixUser(
        userId,
        this.#o.config.ghost_displayname.replace('{phone}', `+${digits}`),
      );
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Rooms

  #bridgeState(jid: string, ghostId: string): { type: string; state_key: string; content: Content } {
    return {
      type: 'm.bridge',
      state_key: `net.interop.bridge://whatsapp/${jid}`,
      content: {
        bridgebot: this.botUserId,
        creator: this.botUserId,
        protocol: BRIDGE_PROTOCOL,
        channel: { id: jid, displayname: this.phoneOf(jid) },
        'net.interop.ghost': ghostId,
      },
    };
  }

  /** The portal room of (local user, contact), created (by the contact's ghost) when missing. */
  async ensurePortal(localUser: string, jid: string): Promise<string> {
    const existing = this.mstore.portalOf(localUser, jid);
    if (existing) return existing.roomId;
    const key = `${localUser}\n${jid}`;
    let creating = this.#portalCreation.get(key);
    if (!creating) {
      creating = this.#createPortal(localUser, jid).finally(() => this.#portalCreation.delete(key));
      this.#portalCreation.set(key, creating);
    }
    return creating;
  }

  async #createPortal(localUser: string, jid: string): Promise<string> {
    const ghostId = await this.ensureGhost(jid);
    const ghost = this.ghostClient(ghostId);
    // The ghost creates the room, so Matrix clients list it as a direct chat with the contact; the
    // bot is invited too, for notices (failed deliveries, identity changes, encryption).
    const roomId = await ghost.createRoom({
      preset: 'trusted_private_chat',
      is_direct: true,
      invite: [localUser, this.botUserId],
      initial_state: [this.#bridgeState(jid, ghostId)],
    });
    this.mstore.putRoom({ roomId, kind: 'portal', localUser, remoteJid: jid });
    this.#mirrorPortal(localUser, jid, roomId);
    await this.bot.joinRoom(roomId);
    this.#log?.info({ room: roomId, user: localUser, contact: jid }, 'portal created');
    return roomId;
  }

  /** Keeps the core's portal row pointing at the Matrix room (for status and the daemon). */
  #mirrorPortal(localUser: string, jid: string, roomId: string): void {
    const { store } = this.#o;
    const puppet = store.puppets.byLocalId(localUser);
    if (!puppet) return;
    try {
      store.atomically(() => {
        const portal = store.portals.ensure(puppet.id, jid);
        const other = store.portals.byLocalChat(puppet.id, roomId);
        if (other && other.id !== portal.id) return;
        store.portals.setLocalChat(portal.id, roomId);
      });
    } catch (err) {
      this.#log?.debug({ err: (err as Error).message }, 'portal mirror not updated');
    }
  }

  /** The user's management room (a direct room with the bot), created when missing. */
  async ensureManagementRoom(localUser: string): Promise<string> {
    const existing = this.mstore.managementRoomOf(localUser);
    if (existing) return existing.roomId;
    const roomId = await this.bot.createRoom({
      preset: 'trusted_private_chat',
      is_direct: true,
      invite: [localUser],
    });
    this.mstore.putRoom({ roomId, kind: 'management', localUser });
    return roomId;
  }

  /** A notice from the bot (optionally as a reply); HTML from the markup. */
  async botNotice(roomId: string, text: string, replyTo?: string): Promise<string> {
    const content = textContent({ kind: 'text', text }, 'm.notice');
    if (replyTo !== undefined) content['m.relates_to'] = { 'm.in_reply_to': { event_id: replyTo } };
    return this.bot.sendMessage(roomId, content);
  }

  /** Sends without throwing (for notices the core asks for and must not fail). */
  #background(what: string, work: () => Promise<unknown>): void {
    void this.#track(
      work().catch((err: unknown) =>
        this.#log?.warn({ err: (err as Error).message, what }, 'Matrix notice could not be sent'),
      ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Adapter: incoming from the core

  async deliver(event: IncomingEvent): Promise<string | undefined> {
    const { localUser, remote, remoteId } = event;
    const done = this.mstore.sent(localUser, remote, remoteId);
    if (done) return done.eventId;
    const e = event.event;
    if (e.type === 'receipt' || e.type === 'typing' || e.type === 'presence') return undefined;
    let ghostId: string;
    try {
      ghostId = this.ghostIdOf(remote);
    } catch (err) {
      this.#log?.warn({ contact: remote, err: (err as Error).message }, 'incoming event not shown');
      return undefined;
    }
    let roomId = await this.ensurePortal(localUser, remote);
    const seed = `${localUser}\n${remote}\n${remoteId}`;
    let sent: string | undefined;
    try {
      sent = await this.#send(ghostId, roomId, e, event.timestamp, seed);
    } catch (err) {
      // The ghost is no longer in the portal (it left or was kicked or banned unseen): forget the
      // room and send in a new portal, once, instead of failing every delivery for good.
      const f = describeFailure(err);
      if (f.status !== 403 || f.errcode !== 'M_FORBIDDEN' || this.mstore.room(roomId)?.kind !== 'portal') {
        throw err;
      }
      this.#log?.warn({ room: roomId, contact: remote }, 'the ghost cannot send in its portal: new portal');
      this.mstore.forgetRoom(roomId);
      await this.bot.leaveRoom(roomId).catch(() => undefined);
      roomId = await this.ensurePortal(localUser, remote);
      sent = await this.#send(ghostId, roomId, e, event.timestamp, `${seed}\nnew-portal`);
    }
    if (sent === undefined) return undefined;
    this.mstore.putSent(localUser, remote, remoteId, { roomId, eventId: sent });
    return sent;
  }

  /** Sends one incoming event as the ghost; the txnId is a function of the remote id. */
  async #send(
    ghostId: string,
    roomId: string,
    e: ConversationEvent,
    ts: number,
    idSeed: string,
  ): Promise<string | undefined> {
    const ghost = this.ghostClient(ghostId);
    const txnId = `in.${createHash('sha256').update(idSeed).digest('base64url').slice(0, 32)}`;
    const send = async (type: string, content: Content): Promise<string> => {
      const res = (await ghost.doRequest(
        'PUT',
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/${txnId}`,
        { ts },
        content,
      )) as { event_id: string };
      return res.event_id;
    };
    switch (e.type) {
      case 'message': {
        let content: Content;
        if (e.body.kind === 'text') {
          content = textContent(e.body);
        } else {
          const bytes = await readFile(e.body.path);
          const mxc = await ghost.uploadContent(bytes, e.body.mimetype, e.body.fileName ?? undefined);
          content = mediaContent(e.body, mxc);
        }
        if (e.replyTo?.localId !== undefined) {
          content['m.relates_to'] = { 'm.in_reply_to': { event_id: e.replyTo.localId } };
        }
        return send('m.room.message', content);
      }
      case 'edit': {
        const text = textContent(e.body);
        if (e.targetLocalId === undefined) return send('m.room.message', text);
        return send('m.room.message', {
          ...text,
          body: `* ${String(text['body'])}`,
          ...(typeof text['formatted_body'] === 'string'
            ? { formatted_body: `* ${text['formatted_body']}` }
            : {}),
          'm.new_content': text,
          'm.relates_to': { rel_type: 'm.replace', event_id: e.targetLocalId },
        });
      }
      case 'delete': {
        if (e.targetLocalId === undefined) return undefined;
        const res = (await ghost.doRequest(
          'PUT',
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(e.targetLocalId)}/${txnId}`,
          null,
          {},
        )) as { event_id: string };
        return res.event_id;
      }
      case 'reaction': {
        if (e.targetLocalId === undefined || e.emoji === '') return undefined;
        return send('m.reaction', {
          'm.relates_to': { rel_type: 'm.annotation', event_id: e.targetLocalId, key: e.emoji },
        });
      }
      default:
        return undefined;
    }
  }

  showEphemeral(event: EphemeralEvent): void {
    if (event.event.type !== 'typing') return;
    const portal = this.mstore.portalOf(event.localUser, event.remote);
    if (!portal) return;
    let ghostId: string;
    try {
      ghostId = this.ghostIdOf(event.remote);
    } catch {
      return;
    }
    const typing = event.event.typing;
    this.#background('typing', () =>
      this.ghostClient(ghostId).setTyping(portal.roomId, typing, TYPING_TIMEOUT_MS),
    );
  }

  updateDelivery(update: DeliveryUpdate): void {
    const portal = this.mstore.portalOf(update.localUser, update.remote);
    if (update.state === 'failed' || update.state === 'delivered' || update.state === 'read') {
      const file = this.#spoolPath(update.localId);
      if (this.#spoolNames().delete(path.basename(file)))
        void rm(file, { force: true }).catch(() => undefined);
    }
    if (!portal) return;
    if (update.state === 'failed') {
      const reason = update.reason ?? 'the reason is unknown';
      this.#background('failure notice', () =>
        this.botNotice(
          portal.roomId,
          `Not delivered to ${this.phoneOf(update.remote)}: ${reason}`,
          update.localId,
        ),
      );
    } else if (update.state === 'read') {
      let ghostId: string;
      try {
        ghostId = this.ghostIdOf(update.remote);
      } catch {
        return;
      }
      this.#background('read receipt', () =>
        this.ghostClient(ghostId).sendReadReceipt(portal.roomId, update.localId),
      );
    }
  }

  notify(localUser: string, notice: Notice): void {
    switch (notice.kind) {
      case 'identity_changed': {
        const portal = this.mstore.portalOf(localUser, notice.remote);
        const phone = this.phoneOf(notice.remote);
        const text =
          `The security code of ${phone} changed (a new phone or a reinstall, or someone else). ` +
          `Safety number: ${groupSafetyNumber(notice.safetyNumber)}.` +
          (notice.blocked
            ? ` Messages to ${phone} are held until you confirm: compare the number with them, then send "confirm ${phone}" to the bridge bot.`
            : '');
        this.#background('identity notice', async () =>
          this.botNotice(portal?.roomId ?? (await this.ensureManagementRoom(localUser)), text),
        );
        return;
      }
      case 'enlisted':
        this.#background('enlisted notice', async () =>
          this.botNotice(
            await this.ensureManagementRoom(localUser),
            'You are now connected to WhatsApp through interoperability. Send "start-chat +<number>" to talk to someone.',
          ),
        );
        return;
      case 'opted_out':
        this.#background('opt-out', () => this.#closePortals(localUser));
        return;
      case 'connection':
        if (notice.state === 'refused') {
          this.#background('connection notice', async () =>
            this.botNotice(
              await this.ensureManagementRoom(localUser),
              `The gateway refused your connection${notice.detail ? ` (${notice.detail})` : ''}. Send "status" to check, or ask the bridge's operator.`,
            ),
          );
        }
        return;
    }
  }

  /** After opt-out: the portals say so, the ghosts leave, and the rooms are forgotten. */
  async #closePortals(localUser: string): Promise<void> {
    for (const portal of this.mstore.portalsOf(localUser)) {
      try {
        await this.botNotice(
          portal.roomId,
          'You opted out of interoperability: this chat is no longer bridged. Send "login" to the bridge bot to come back.',
        );
        if (portal.remoteJid !== null)
          await this.ghostClient(this.ghostIdOf(portal.remoteJid)).leaveRoom(portal.roomId);
      } catch (err) {
        this.#log?.warn({ room: portal.roomId, err: (err as Error).message }, 'portal not closed cleanly');
      }
      this.mstore.forgetRoom(portal.roomId);
    }
    const management = this.mstore.managementRoomOf(localUser);
    if (management) {
      await this.botNotice(
        management.roomId,
        'You have opted out: your interop account and its keys are deleted, and nobody on WhatsApp can reach you through this bridge.',
      );
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Appservice: recording and handling inbound events

  /** Typing from a transaction: live only, handled at once. */
  handleTyping(events: readonly Record<string, unknown>[]): void {
    if (!this.#core || this.#stopped) return;
    for (const e of events) {
      const roomId = e['room_id'];
      const content = e['content'];
      if (typeof roomId !== 'string' || typeof content !== 'object' || content === null) continue;
      const room = this.mstore.room(roomId);
      if (room?.kind !== 'portal' || room.remoteJid === null) continue;
      const ids = (content as Content)['user_ids'];
      const typing = Array.isArray(ids) && ids.includes(room.localUser);
      if ((this.#typing.get(roomId) ?? false) === typing) continue;
      this.#typing.set(roomId, typing);
      const remote = room.remoteJid;
      this.core
        .submit({
          localId: `typing:${roomId}:${Date.now()}`,
          localUser: room.localUser,
          remote,
          event: { type: 'typing', typing },
        })
        .catch((err: unknown) => this.#log?.debug({ err: (err as Error).message }, 'typing not sent'));
    }
  }

  /**
   * Matrix presence is not followed (many homeservers turn it off): a local user counts as online
   * from their first activity in a bridged room in this run, which starts the puppet under the
   * `presence` lifecycle.
   */
  #seenActive(userId: string): void {
    if (this.#active.has(userId) || !this.#core) return;
    this.#active.add(userId);
    this.#core.setOnline(userId, true);
  }

  /** Handles pending inbound events: rooms in parallel, each room's events strictly in order. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    void this.#track(this.#pump()).finally(() => {
      this.#pumping = false;
      if (this.#pumpAgain) {
        this.#pumpAgain = false;
        this.kick();
      }
    });
  }

  async #pump(): Promise<void> {
    // Only the rooms free to run now are read (with their payloads): under load most pending
    // events belong to rooms already running, and reading them again on every pass was the
    // adapter's largest cost (bench/e2e.bench.ts).
    const now = Date.now();
    const byRoom = new Map<string, InboundRow[]>();
    for (const roomId of this.mstore.pendingInboundRooms()) {
      if (this.#rooms.has(roomId) || (this.#roomRetryAt.get(roomId) ?? 0) > now) continue;
      const list = this.mstore.pendingInboundOf(roomId);
      if (list.length > 0) byRoom.set(roomId, list);
    }
    for (const [roomId, list] of byRoom) {
      this.#rooms.add(roomId);
      void this.#track(this.#runRoom(list)).finally(() => {
        this.#rooms.delete(roomId);
        if (!this.#stopped && this.#hasWork()) this.kick();
      });
    }
  }

  /** Whether a pending event can be handled now (not in a room that waits to retry). */
  #hasWork(): boolean {
    const now = Date.now();
    return this.mstore
      .pendingInboundRooms()
      .some((roomId) => !this.#rooms.has(roomId) && (this.#roomRetryAt.get(roomId) ?? 0) <= now);
  }

  async #runRoom(rows: readonly InboundRow[]): Promise<void> {
    for (const row of rows) {
      if (this.#stopped) return;
      try {
        await this.#handleInbound(row);
        this.mstore.markInboundDone(row.seq);
        this.#roomRetryAt.delete(row.roomId);
      } catch (err) {
        const max = this.#o.maxEventAttempts ?? 5;
        // The homeserver refused for good (4xx other than a rate limit): trying again cannot help.
        const status = describeFailure(err).status;
        const final =
          (status !== undefined && status >= 400 && status < 500 && status !== 429) ||
          (err instanceof InteropError && FINAL_CODES.has(err.code));
        const giveUp = final || row.attempts + 1 >= max;
        const message = (err as Error).message;
        this.mstore.markInboundAttempt(row.seq, message, giveUp);
        this.#log?.warn(
          { room: row.roomId, key: row.key, attempt: row.attempts + 1, err: message },
          'inbound event failed',
        );
        if (!giveUp) {
          // This room waits; the others go on. Try again after a backoff.
          const wait = Math.min((this.#o.eventRetryMs ?? 1000) * 2 ** row.attempts, 60_000);
          const at = Date.now() + wait;
          this.#roomRetryAt.set(row.roomId, at);
          const timer = setTimeout(() => {
            this.#retryTimers.delete(timer);
            // The wait is over when this fires: a timer can fire a millisecond before Date.now()
            // reaches `at`, and the pump would then skip the room with nothing left to wake it.
            if (this.#roomRetryAt.get(row.roomId) === at) this.#roomRetryAt.delete(row.roomId);
            this.kick();
          }, wait);
          this.#retryTimers.add(timer);
          return;
        }
        this.#roomRetryAt.delete(row.roomId);
        await this.#gaveUp(row, message);
      }
    }
  }

  async #gaveUp(row: InboundRow, message: string): Promise<void> {
    const e = row.payload;
    if (row.kind !== 'event' || e['type'] !== 'm.room.message' || typeof e['event_id'] !== 'string') return;
    try {
      await this.botNotice(row.roomId, `This message could not be bridged: ${message}`, e['event_id']);
    } catch {
      // the homeserver is down too; the log has it
    }
  }

  async #handleInbound(row: InboundRow): Promise<void> {
    if (row.kind === 'receipt') {
      await this.#handleReceipt(row.payload);
      return;
    }
    const e = row.payload;
    const type = e['type'];
    const sender = e['sender'];
    const roomId = row.roomId;
    if (typeof sender !== 'string' || typeof type !== 'string') return;
    const content = (
      typeof e['content'] === 'object' && e['content'] !== null ? e['content'] : {}
    ) as Content;
    if (type === 'm.room.member') {
      await this.#handleMember(roomId, sender, e['state_key'], content);
      return;
    }
    if (this.isOurs(sender)) return;
    const room = this.mstore.room(roomId);
    if (!room) return;
    this.#seenActive(sender);
    if (type === 'm.room.encryption' || type === 'm.room.encrypted') {
      await this.tellEncrypted(room);
      return;
    }
    if (room.kind === 'management') {
      // Only m.text is a command: never m.notice (another bot's answer would start a reply loop).
      if (
        type === 'm.room.message' &&
        content['msgtype'] === 'm.text' &&
        typeof content['body'] === 'string'
      ) {
        await this.#commands.handle(room, sender, String(content['body']), String(e['event_id']));
      }
      return;
    }
    if (sender !== room.localUser || room.remoteJid === null) return;
    const eventId = String(e['event_id']);
    const outgoing = await this.#outgoing(room, eventId, type, e, content);
    if (outgoing === undefined) return;
    try {
      await this.core.submit({
        localId: eventId,
        localUser: room.localUser,
        remote: room.remoteJid,
        event: outgoing,
      });
    } catch (err) {
      if (err instanceof InteropError && err.code === 'bridge_not_enlisted') {
        await this.botNotice(
          roomId,
          'Not sent: you have not opted in to interoperability. Send "login" to the bridge bot first.',
          eventId,
        );
        return;
      }
      throw err;
    }
  }

  /** The canonical event for a local user's event in a portal, if it is one the bridge carries. */
  async #outgoing(
    room: MatrixRoom,
    eventId: string,
    type: string,
    e: Content,
    content: Content,
  ): Promise<OutgoingEvent['event'] | undefined> {
    if (type === 'm.room.redaction') {
      const target = typeof e['redacts'] === 'string' ? e['redacts'] : content['redacts'];
      return typeof target === 'string' ? { type: 'delete', target } : undefined;
    }
    if (type === 'm.reaction') {
      const rel = content['m.relates_to'] as Content | undefined;
      if (
        rel?.['rel_type'] !== 'm.annotation' ||
        typeof rel['event_id'] !== 'string' ||
        typeof rel['key'] !== 'string'
      ) {
        return undefined;
      }
      return { type: 'reaction', target: rel['event_id'], emoji: rel['key'] };
    }
    if (type !== 'm.room.message') return undefined;
    const edited = replaces(content);
    if (edited !== undefined) {
      const next = content['m.new_content'];
      if (typeof next !== 'object' || next === null) return undefined;
      return { type: 'edit', target: edited, body: { kind: 'text', text: markupOf(next as Content) } };
    }
    const replyTo = inReplyTo(content);
    const reply = replyTo === undefined ? {} : { replyTo: { id: replyTo } };
    const kind = mediaKindOf(content);
    if (kind !== undefined) {
      const url = content['url'];
      if (typeof url !== 'string') {
        await this.botNotice(room.roomId, 'Not sent: encrypted or missing files cannot be bridged.', eventId);
        return undefined;
      }
      const info = content['info'];
      const announced = typeof info === 'object' && info !== null ? (info as Content)['size'] : undefined;
      const file =
        typeof announced === 'number' && announced > this.#o.maxMediaBytes
          ? 'too_large'
          : await this.#download(url, eventId);
      if (file === 'too_large') {
        await this.botNotice(
          room.roomId,
          `Not sent: the file is larger than this bridge's limit of ${Math.round(this.#o.maxMediaBytes / 1024)} KB.`,
          eventId,
        );
        return undefined;
      }
      return { type: 'message', body: mediaBodyOf(content, kind, file), ...reply };
    }
    if (typeof content['body'] !== 'string') return undefined;
    return { type: 'message', body: { kind: 'text', text: markupOf(content) }, ...reply };
  }

  #spoolNames(): Set<string> {
    if (this.#spooled === undefined) {
      try {
        this.#spooled = new Set(readdirSync(path.join(this.#o.dataDir, 'matrix-media')));
      } catch {
        this.#spooled = new Set();
      }
    }
    return this.#spooled;
  }

  #spoolPath(eventId: string): string {
    return path.join(
      this.#o.dataDir,
      'matrix-media',
      createHash('sha256').update(eventId).digest('base64url').slice(0, 32),
    );
  }

  /** Downloads a local user's file through the authenticated media API into the spool. */
  async #download(
    mxc: string,
    eventId: string,
  ): Promise<{ path: string; size: number; contentType: string | undefined } | 'too_large'> {
    const m = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/.exec(mxc);
    if (m === null) throw new MatrixAdapterError('matrix_bad_mxc', `not an mxc URI: ${mxc}`);
    const res = (await this.#media.doRequest(
      'GET',
      `/_matrix/client/v1/media/download/${encodeURIComponent(m[1]!)}/${encodeURIComponent(m[2]!)}`,
      null,
      null,
      120_000,
      true,
      undefined,
      true,
    )) as { body: Buffer; headers: Record<string, string | undefined> };
    const bytes = Buffer.isBuffer(res.body) ? res.body : Buffer.from(res.body);
    if (bytes.length > this.#o.maxMediaBytes) return 'too_large';
    const file = this.#spoolPath(eventId);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    this.#spoolNames().add(path.basename(file));
    await writeFile(file, bytes, { mode: 0o600 });
    return { path: file, size: bytes.length, contentType: res.headers['content-type'] };
  }

  async #handleReceipt(p: Content): Promise<void> {
    const roomId = String(p['room_id']);
    const userId = String(p['user_id']);
    const eventId = String(p['event_id']);
    const room = this.mstore.room(roomId);
    if (room?.kind !== 'portal' || room.remoteJid === null || userId !== room.localUser) return;
    const targets = this.mstore.markReadUpTo(roomId, eventId);
    if (targets.length === 0) return;
    await this.core.submit({
      localId: `receipt:${eventId}`,
      localUser: room.localUser,
      remote: room.remoteJid,
      event: { type: 'receipt', receipt: 'read', targets },
    });
  }

  async #handleMember(roomId: string, sender: string, stateKey: unknown, content: Content): Promise<void> {
    if (typeof stateKey !== 'string') return;
    const membership = content['membership'];
    if (membership === 'invite' && stateKey === this.botUserId) {
      await this.#botInvited(roomId, sender, content);
    } else if (membership === 'invite' && this.#ghostDigits(stateKey) !== undefined && !this.isOurs(sender)) {
      await this.#ghostInvited(roomId, sender, stateKey);
    } else if ((membership === 'leave' || membership === 'ban') && !this.isOurs(stateKey)) {
      const room = this.mstore.room(roomId);
      if (room && room.localUser === stateKey) {
        // The user left: the bridge leaves too, and the next message makes a new room.
        this.mstore.forgetRoom(roomId);
        if (room.kind === 'portal' && room.remoteJid !== null) {
          await this.ghostClient(this.ghostIdOf(room.remoteJid))
            .leaveRoom(roomId)
            .catch(() => undefined);
        }
        await this.bot.leaveRoom(roomId).catch(() => undefined);
      }
    } else if (
      (membership === 'leave' || membership === 'ban') &&
      this.#ghostDigits(stateKey) !== undefined
    ) {
      const room = this.mstore.room(roomId);
      if (room?.kind === 'portal' && room.remoteJid !== null && this.ghostIdOf(room.remoteJid) === stateKey) {
        // Our ghost left or was removed: the next message makes a new portal.
        this.mstore.forgetRoom(roomId);
        await this.bot.leaveRoom(roomId).catch(() => undefined);
      }
    }
  }

  async #botInvited(roomId: string, sender: string, content: Content): Promise<void> {
    if (this.isOurs(sender)) {
      // A ghost brings the bot into its portal.
      await this.bot.joinRoom(roomId);
      return;
    }
    if (this.permissionOf(sender) === 'none') {
      // Rejected without joining: an invite must not make the homeserver join arbitrary rooms.
      await this.bot.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, null, {
        reason: `this bridge is not open to your account; ask the operator of ${this.#o.config.server_name}`,
      });
      return;
    }
    await this.bot.joinRoom(roomId);
    if (content['is_direct'] !== true) {
      await this.botNotice(roomId, 'I only take commands in a direct chat: start one with me.');
      return;
    }
    this.mstore.putRoom({ roomId, kind: 'management', localUser: sender });
    await this.botNotice(roomId, this.#commands.welcome());
    const room = this.mstore.room(roomId);
    if (room && (await this.#isEncrypted(this.bot, roomId))) await this.tellEncrypted(room);
  }

  async #ghostInvited(roomId: string, sender: string, ghostId: string): Promise<void> {
    const ghost = this.ghostClient(ghostId);
    const refuse = async (reason: string) => {
      await ghost.doRequest('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`, null, {
        reason,
      });
    };
    if (this.permissionOf(sender) === 'none') {
      await refuse('this bridge is not open to your account');
      return;
    }
    if (!this.core.status(sender).enlisted) {
      await refuse('you have not opted in to interoperability: send "login" to the bridge bot first');
      return;
    }
    const jid = await this.jidOfGhost(ghostId, sender);
    if (jid === undefined) {
      await refuse(`+${this.#ghostDigits(ghostId) ?? ''} cannot be reached through interoperability`);
      return;
    }
    await this.ensureGhost(jid);
    await ghost.joinRoom(roomId);
    this.mstore.putRoom({ roomId, kind: 'portal', localUser: sender, remoteJid: jid });
    this.#mirrorPortal(sender, jid, roomId);
    const room = this.mstore.room(roomId)!;
    try {
      await ghost.inviteUser(this.botUserId, roomId);
    } catch (err) {
      this.#log?.debug(
        { room: roomId, err: (err as Error).message },
        'the bot was not invited to the portal',
      );
    }
    try {
      const s = this.#bridgeState(jid, ghostId);
      await ghost.sendStateEvent(roomId, s.type, s.state_key, s.content);
    } catch (err) {
      this.#log?.debug({ room: roomId, err: (err as Error).message }, 'no m.bridge state in the portal');
    }
    if (await this.#isEncrypted(ghost, roomId)) await this.tellEncrypted(room);
    this.#log?.info({ room: roomId, user: sender, contact: jid }, 'portal created by an invite');
  }

  async #isEncrypted(client: RetryingMatrixClient, roomId: string): Promise<boolean> {
    try {
      await client.getRoomStateEvent(roomId, 'm.room.encryption', '');
      return true;
    } catch (err) {
      if (describeFailure(err).status === 404) return false;
      throw err;
    }
  }

  /** Says once per room, plainly, that the bridge cannot read Matrix-encrypted messages. */
  async tellEncrypted(room: MatrixRoom): Promise<void> {
    if (!this.mstore.markEncryptionTold(room.roomId)) return;
    const who = room.remoteJid === null ? 'the bridge' : this.phoneOf(room.remoteJid);
    const text =
      `This room is end-to-end encrypted, and this bridge cannot read Matrix-encrypted messages ` +
      `(Matrix encryption is not available in it). Nothing you send here reaches ${who}. ` +
      (room.kind === 'portal'
        ? `Send "start-chat ${who}" to the bridge bot for an unencrypted chat.`
        : 'Start a new direct chat with me without encryption to use the commands.');
    const sender =
      room.kind === 'portal' && room.remoteJid !== null && !(await this.#botIn(room.roomId))
        ? this.ghostClient(this.ghostIdOf(room.remoteJid))
        : this.bot;
    await sender.sendMessage(room.roomId, textContent({ kind: 'text', text }, 'm.notice'));
    if (room.kind === 'portal') this.mstore.forgetRoom(room.roomId);
  }

  async #botIn(roomId: string): Promise<boolean> {
    try {
      const rooms = await this.bot.getJoinedRooms();
      return rooms.includes(roomId);
    } catch {
      return false;
    }
  }
}

/** 60 digits in groups of five, as Signal and WhatsApp show them. */
export function groupSafetyNumber(n: string): string {
  return n.replace(/\s+/g, '').replace(/(\d{5})(?=\d)/g, '$1 ');
}
