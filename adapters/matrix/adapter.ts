/**
 * The Matrix adapter: gatekeeper contacts appear as ghost users (`@wa_<digits>:<server>`) in portal
 * rooms, one direct room per (local user, contact) and one room per (local user, group); a bridge
 * bot answers commands in each user's management room (a direct room with the bot). Contacts'
 * push names and pictures are their ghosts' display names and avatars.
 *
 * Incoming (core -> Matrix): sending.ts shows the core's events as the contact's ghost, once per
 * remote id, and resolves only when the homeserver accepted them.
 *
 * Outgoing (Matrix -> core): appservice transactions are recorded in the adapter's store before
 * they are answered (appservice.ts), then handled in order per room (inbound-queue.ts); this file
 * routes each event to what it does (handlers.ts, invites.ts, commands.ts).
 */
import type { AddressInfo } from 'node:net';
import type {
  AdapterCapabilities,
  AdapterContext,
  BridgeCore,
  GroupAdapter,
  ProfileAdapter,
  ProvisioningHooks,
} from '../../src/bridge/adapter.js';
import type {
  ContactProfile,
  DeliveryUpdate,
  EphemeralEvent,
  GroupUpdate,
  IncomingEvent,
  Notice,
} from '../../src/bridge/events.js';
import { componentLogger, type Logger } from '../../src/observability/logger.js';
import { AppserviceListener } from './appservice.js';
import { RetryingMatrixClient, routeSdkLogs, type RetryPolicy } from './client.js';
import { CommandHandler } from './commands.js';
import type { Content } from './content.js';
import { MatrixAdapterError } from './errors.js';
import { lateCore } from './late-core.js';
import { Ghosts } from './ghosts.js';
import { GroupAvatars } from './group-avatars.js';
import { GroupPortals } from './group-portals.js';
import { InboundHandlers, type RoomEvent } from './handlers.js';
import { HomeserverWatch } from './homeserver-watch.js';
import { checkPing, checkVersions, checkWhoami, nudgeRecovery } from './homeserver-checks.js';
import { isGroupRemote, MatrixIds, type MatrixConfig } from './ids.js';
import { InFlight } from './in-flight.js';
import { globalState } from './bridge-state.js';
import { DoublePuppets } from './double-puppet.js';
import { EncryptedRooms } from './encrypted-rooms.js';
import { VERIFICATION_EVENT_TYPES, isVerificationRequest } from './crypto/verification.js';
import { CatchUp } from './catch-up.js';
import { InboundQueue } from './inbound-queue.js';
import { Invites } from './invites.js';
import { ManagementRooms } from './management-room.js';
import { MediaSpool } from './media-spool.js';
import { Portals } from './portals.js';
import { matrixProvisioning } from './provisioning.js';
import { Sending } from './sending.js';
import type { InboundRow, MatrixStore } from './store.js';

/** Settings tests and tools may change; the daemon uses the defaults. */
export interface MatrixAdapterOptions {
  /** Skip the appservice ping at start (homeservers before Matrix 1.7 lack it). Default false. */
  readonly skipPing?: boolean;
  /** The retry policy of homeserver calls. Default `matrix.client_retry`. */
  readonly retry?: RetryPolicy;
  /** Failed attempts at one inbound event before it is set aside. Default 5. */
  readonly maxEventAttempts?: number;
  /** First wait before an inbound event is tried again; doubles up to 60 s. Default 1000 ms. */
  readonly eventRetryMs?: number;
  /** How long rooms are read back once a recovery's backlog is through (catch-up.ts). Default 3 s. */
  readonly catchUpWindowMs?: number;
}

/** Startup checks fail fast: a couple of attempts, not the patient policy of normal operation. */
const STARTUP_RETRY: RetryPolicy = { maxAttempts: 2, initialDelayMs: 200, maxDelayMs: 1000 };

/** What an inbound room event does, by type; any other type is ignored. */
type Route = (event: RoomEvent) => Promise<void>;

export class MatrixAdapter implements GroupAdapter, ProfileAdapter {
  readonly network = 'matrix' as const;
  readonly capabilities: AdapterCapabilities;
  readonly provisioning: ProvisioningHooks;
  readonly botUserId: string;
  /** The adapter's own storage, as the wiring gave it. */
  readonly store: MatrixStore;
  readonly #config: MatrixConfig;
  readonly #tokens: { readonly as: string; readonly hs: string };
  readonly #options: MatrixAdapterOptions;
  readonly #log: Logger;
  readonly #ids: MatrixIds;
  readonly #inFlight: InFlight;
  readonly #ghosts: Ghosts;
  readonly #groups: GroupPortals;
  readonly #avatars: GroupAvatars;
  readonly #handlers: InboundHandlers;
  readonly #invites: Invites;
  readonly #commands: CommandHandler;
  readonly #sending: Sending;
  readonly #queue: InboundQueue;
  readonly #catchUp: CatchUp;
  readonly #spool: MediaSpool;
  /** Spooled files older than this (the queue age limit, and a day) are what a crash left. */
  readonly #spoolMaxAgeMs: number;
  /** With `matrix.encryption.allow`: the bridge's devices and what it knows of encrypted rooms. */
  readonly #encryption: EncryptedRooms | undefined;
  readonly #vault: AdapterContext['vault'];
  #core: BridgeCore | undefined;
  readonly #provisioningHandler: AdapterContext['provisioning'];
  #listener: AppserviceListener | undefined;
  #watch: HomeserverWatch | undefined;
  #address: { address: string; port: number } | undefined;

  /**
   * Every event type the bridge acts on, once the sender is a user (not the bot or a ghost) and
   * the room is one the bridge manages. Membership and receipts come before this (`#handle`).
   */
  readonly #routes: ReadonlyMap<string, Route> = new Map<string, Route>([
    [
      'm.room.encryption',
      (e) => (this.#encryption ? this.#encryptionOn(e) : this.#invites.tellEncrypted(e.room)),
    ],
    [
      'm.room.encrypted',
      (e) => (this.#encryption ? this.#decrypted(e) : this.#invites.tellEncrypted(e.room)),
    ],
    [
      'm.room.message',
      (e) =>
        isVerificationRequest(e.content)
          ? this.#verificationEvent(e)
          : e.room.kind === 'management'
            ? this.#command(e)
            : this.#handlers.portalEvent(e),
    ],
    // In-room verification (crypto/verification.ts): never bridged to a contact.
    ...VERIFICATION_EVENT_TYPES.map((type): [string, Route] => [type, (e) => this.#verificationEvent(e)]),
    ['m.reaction', (e) => this.#handlers.portalEvent(e)],
    // In a group's room: the user renaming it changes the group's subject, its topic the description.
    ['m.room.name', (e) => this.#groups.userChanged(e.room, e.sender, e.type, e.content)],
    ['m.room.topic', (e) => this.#groups.userChanged(e.room, e.sender, e.type, e.content)],
    // Its power levels: a ghost raised to moderator is promoted, one lowered demoted.
    ['m.room.power_levels', (e) => this.#groups.userSetLevels(e.room, e.sender, e.content, e.raw)],
    ['m.room.redaction', (e) => this.#handlers.portalEvent(e)],
  ]);

  constructor(context: AdapterContext, store: MatrixStore, options: MatrixAdapterOptions = {}) {
    const m = context.config.matrix;
    if (m.as_token === undefined || m.hs_token === undefined) {
      throw new MatrixAdapterError(
        'matrix_no_tokens',
        'matrix.as_token and matrix.hs_token (or their _file forms) must be set: run "interop-bridge generate-registration" and install the registration on the homeserver',
      );
    }
    const asToken = m.as_token;
    this.#config = m;
    this.#tokens = { as: asToken, hs: m.hs_token };
    this.#options = options;
    this.#provisioningHandler = context.provisioning;
    this.store = store;
    const log = componentLogger(context.logger, 'matrix');
    this.#log = log;
    const retry: RetryPolicy = {
      ...(options.retry ?? {
        maxAttempts: m.client_retry.max_attempts,
        initialDelayMs: m.client_retry.initial_delay_ms,
        maxDelayMs: m.client_retry.max_delay_ms,
      }),
      // The homeserver may have gone away in the middle of a transaction (held-back.ts).
      onUnavailable: (what) => this.#listener?.homeserverWentAway(what),
    };
    const maxMediaBytes = context.config.media.max_bytes;
    this.capabilities = {
      media: true,
      locations: true,
      replies: true,
      edits: true,
      deletes: true,
      reactions: true,
      readReceipts: true,
      typing: true,
      presence: true,
      fromOtherDevices: true,
      maxMediaBytes,
    };
    const ids = new MatrixIds(m);
    this.#ids = ids;
    this.botUserId = ids.botUserId;
    const newClient = () => new RetryingMatrixClient(m.homeserver_url, asToken, retry, log);
    const bot = newClient();
    // Media downloads: two attempts per event attempt, not the patient policy.
    const media = new RetryingMatrixClient(
      m.homeserver_url,
      asToken,
      { ...retry, maxAttempts: Math.min(2, retry.maxAttempts) },
      log,
    );
    const core = lateCore(() => this.#attached());
    const inFlight = new InFlight(log);
    this.#inFlight = inFlight;
    this.#vault = context.vault;
    const encryption = m.encryption.allow
      ? new EncryptedRooms({
          ids,
          client: newClient(),
          log,
          keysArrived: () => this.#queue.keysArrived(),
          // Interactive verification of the bot and of ghosts: by the users the bridge serves (a
          // ghost's by the user with a portal with its contact), the emojis in their management room.
          verification: {
            allowed: (userId) => ids.permissionOf(userId) !== 'none',
            sharesPortal: async (userId, ghostId) => {
              const ghost = await store.ghost(ghostId);
              return ghost !== undefined && (await store.portalOf(userId, ghost.jid)) !== undefined;
            },
            tell: async (userId, text) => void (await rooms.notice(await rooms.ensure(userId), text)),
          },
        })
      : undefined;
    this.#encryption = encryption;
    const rooms = new ManagementRooms({ bot, store, botUserId: ids.botUserId, encryption });
    const ghosts = new Ghosts({ ids, store, core, bot, newClient, log });
    this.#ghosts = ghosts;
    const portals = new Portals({
      ids,
      store,
      ghosts,
      bot,
      rooms,
      log,
      encryptByDefault: m.encryption.default ? encryption : undefined,
    });
    const groups = new GroupPortals({
      ids,
      store,
      core,
      ghosts,
      bot,
      rooms,
      log,
      encryptByDefault: m.encryption.default ? encryption : undefined,
    });
    this.#groups = groups;
    this.#avatars = new GroupAvatars({ groups, bot, log });
    const spool = new MediaSpool({
      dataDir: context.dataDir,
      maxBytes: maxMediaBytes,
      client: media,
      sealer: context.sealer,
    });
    this.#spool = spool;
    this.#spoolMaxAgeMs = (context.config.bridge.queue_max_age_hours + 24) * 3_600_000;
    const doublePuppets = new DoublePuppets({
      token: m.double_puppet_as_token,
      newClient: (token) => new RetryingMatrixClient(m.homeserver_url, token, retry, log),
      store,
      log,
    });
    this.#commands = new CommandHandler({
      core,
      ids,
      store,
      portals,
      groups,
      rooms,
      doublePuppets,
      encryption: {
        allow: m.encryption.allow,
        default: m.encryption.default,
        ...(encryption ? { describe: (userId: string) => encryption.describeBot(userId) } : {}),
      },
    });
    this.provisioning = matrixProvisioning({ ids, store, portals, rooms });
    this.#invites = new Invites({ ids, store, core, bot, ghosts, groups, rooms, log, encryption });
    this.#handlers = new InboundHandlers({ core, store, rooms, ids, spool, inFlight, maxMediaBytes, log });
    this.#sending = new Sending({
      ids,
      store,
      ghosts,
      portals,
      groups,
      rooms,
      bot,
      doublePuppets,
      spool,
      inFlight,
      log,
      encryption,
    });
    this.#catchUp = new CatchUp({
      store,
      // One attempt each, and no "homeserver away" signal: read-backs happen when it is unsteady.
      reader: new RetryingMatrixClient(
        m.homeserver_url,
        asToken,
        { maxAttempts: 1, initialDelayMs: 0, maxDelayMs: 0 },
        log,
      ),
      // A group's room is read as the bot (no one ghost is the room's).
      readerOf: (room) =>
        room.remoteJid === null
          ? undefined
          : isGroupRemote(room.remoteJid)
            ? ids.botUserId
            : ids.ghostIdOf(room.remoteJid),
      // What the catch-up records is not handed over: the queue asks the store where it is.
      kick: () => this.#queue.unheard(),
      track: (work) => inFlight.track(work),
      log,
      windowMs: options.catchUpWindowMs,
    });
    this.#queue = new InboundQueue({
      store,
      handle: (row) => this.#handle(row),
      expand: (rows) => this.#catchUp.expand(rows),
      rooms,
      inFlight,
      log,
      maxEventAttempts: options.maxEventAttempts,
      eventRetryMs: options.eventRetryMs,
      keyWaitMs: m.encryption.key_wait_seconds * 1000,
    });
  }

  /** Whether the homeserver answered the bridge's last ask (every 500 ms, homeserver-watch.ts). */
  get homeserverUp(): boolean {
    return this.#watch?.up ?? false;
  }

  /** Where the appservice listener is bound, once started. */
  get address(): { address: string; port: number } | undefined {
    return this.#address;
  }

  attach(core: BridgeCore): void {
    this.#core = core;
  }

  /**
   * Checks the homeserver (`/versions`, `whoami` as the bot), listens for it, has it ping the
   * listener, then handles what was recorded before a restart and follows new transactions.
   */
  async start(): Promise<void> {
    this.#attached();
    const m = this.#config;
    const log = this.#log;
    routeSdkLogs(log);
    const checker = new RetryingMatrixClient(m.homeserver_url, this.#tokens.as, STARTUP_RETRY, log);
    // /versions needs no token: asked without one, so a wrong token is reported by whoami instead.
    await checkVersions(
      new RetryingMatrixClient(m.homeserver_url, '', STARTUP_RETRY, log),
      m.homeserver_url,
      log,
    );
    await checkWhoami(checker, this.botUserId, m.homeserver_url);
    // The crypto devices open while the listener starts: creating the bot's device and uploading
    // its keys makes the homeserver push a transaction at once, which must find the bridge
    // listening (else Synapse logs an appservice failure and backs off). A transaction waits for
    // the devices before anything of it is handled.
    const opening = this.#openEncryption();
    opening.catch(() => undefined); // awaited below, after the listener started
    const encryption = this.#encryption;
    const listener = new AppserviceListener(
      this.#tokens.hs,
      {
        recordTransaction: async (txnId, events, live) => {
          const kept = events.filter((e) => this.#ids.actsOn(e));
          // Only echoes of the bridge's own sends: nothing to record, and no typing to tell new from old.
          const recorded =
            kept.length === 0 && !live
              ? { newTransaction: true, newEvents: 0 }
              : await this.store.recordTransaction(txnId, kept, (rows) => this.#queue.recorded(rows));
          this.#catchUp.sawTransaction(events);
          return recorded;
        },
        afterTransaction: (typing, presence, newEvents) => {
          if (this.#queue.running) {
            this.#handlers.typing(typing);
            this.#handlers.presence(presence ?? []);
          }
          // Nothing new (the echoes of the bridge's own sends, a resend): nothing to read.
          if (newEvents !== 0) this.#queue.kick();
        },
        ...(encryption
          ? {
              deviceChanges: async (body: Record<string, unknown>) => {
                await opening;
                await encryption.receive(body);
              },
            }
          : {}),
        queryUser: (userId) => this.#ghosts.queryUser(userId),
        bridgeState: async (userId) =>
          globalState(userId, userId === undefined ? undefined : await this.#core!.status(userId)),
        // Once the homeserver has marked the bridge down for the refusal, a ping starts its
        // recovery at once (its own timer would wait 2 s).
        nudge: () => {
          this.#catchUp.openWindow();
          setTimeout(() => {
            nudgeRecovery(checker).catch((err: unknown) =>
              log?.debug({ err: (err as Error).message }, 'appservice recovery ping failed'),
            );
          }, 200).unref();
        },
        ...(this.#provisioningHandler ? { provisioning: this.#provisioningHandler } : {}),
      },
      log,
    );
    // The homeserver may recover from the bridge's absence as soon as it can reach it (catch-up.ts).
    this.#catchUp.openWindow();
    const address: AddressInfo = await listener.listen(m.listen_host, m.listen_port).catch(async (err) => {
      await opening.catch(() => undefined);
      await this.#encryption?.close();
      throw err;
    });
    try {
      await opening;
      if (this.#options.skipPing !== true) {
        await checkPing(checker, m.listen_host, address.port, (id) => listener.heardPing(id), log);
      }
    } catch (err) {
      await listener.close();
      await this.#encryption?.close();
      throw err;
    }
    this.#listener = listener;
    this.#address = { address: address.address, port: address.port };
    this.#watch = new HomeserverWatch({
      homeserverUrl: m.homeserver_url,
      wentAway: (what) => listener.homeserverWentAway(what),
      answered: () => listener.homeserverAnswered(),
      log,
    });
    this.#watch.start();
    await this.#spool.sweep(this.#spoolMaxAgeMs);
    this.#queue.start();
    log.info(
      { homeserver: m.homeserver_url, bot: this.botUserId, listen: `${address.address}:${address.port}` },
      'Matrix adapter started',
    );
  }

  /** Closes the listener and lets the work in flight finish; the core is stopped by its owner. */
  async stop(): Promise<void> {
    this.#watch?.stop();
    this.#catchUp.stop();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.close();
    this.#queue.stop();
    await this.#inFlight.settled();
    await this.#encryption?.close();
  }

  /** Opens the crypto store on the adapter's database, sealed with the at-rest key. */
  async #openEncryption(): Promise<void> {
    if (!this.#encryption) return;
    const journal = this.store.cryptoJournal?.();
    if (journal === undefined || this.#vault === undefined) {
      throw new MatrixAdapterError(
        'matrix_encryption_unavailable',
        "matrix.encryption.allow needs the at-rest key and a store on the bridge's database: start the bridge with its at-rest key, or set matrix.encryption.allow to false",
      );
    }
    await this.#encryption.open({ journal, vault: this.#vault });
  }

  /** A room became encrypted: the contact's ghost gets a device (the bot has one). */
  async #encryptionOn(e: RoomEvent): Promise<void> {
    this.#encryption!.markEncrypted(e.room.roomId);
    if (e.room.kind === 'portal' && e.room.remoteJid !== null && !isGroupRemote(e.room.remoteJid)) {
      await this.#encryption!.prepare(this.#ids.ghostIdOf(e.room.remoteJid));
    }
  }

  /** A local user's encrypted event: decrypted, then handled as the event it holds. */
  async #decrypted(e: RoomEvent): Promise<void> {
    const clear = await this.#encryption!.decrypt(e.room, e.raw);
    if (clear.type === 'm.room.encrypted' || clear.type === 'm.room.encryption') return;
    // Relations travel in the clear (the homeserver aggregates them): a client may leave them out
    // of the encrypted payload.
    const relation = e.content['m.relates_to'];
    const content =
      clear.content['m.relates_to'] === undefined && relation !== undefined
        ? { ...clear.content, 'm.relates_to': relation }
        : clear.content;
    await this.#routes.get(clear.type)?.({
      ...e,
      type: clear.type,
      content,
      raw: { ...e.raw, type: clear.type, content },
    });
  }

  deliver(event: IncomingEvent): Promise<string | undefined> {
    return this.#sending.deliver(event);
  }

  /** A group's change, shown in its room (group-portals.ts). */
  updateGroup(update: GroupUpdate): Promise<void> {
    return this.#inFlight.track(this.#groups.update(update));
  }

  /** A contact's name and picture, shown on its ghost (ghosts.ts). */
  updateProfile(localUser: string, profile: ContactProfile): Promise<void> {
    // A group's profile is its picture: the room's avatar.
    if (isGroupRemote(profile.remote)) return this.#inFlight.track(this.#avatars.show(localUser, profile));
    return this.#inFlight.track(this.#ghosts.showProfile(profile));
  }

  showEphemeral(event: EphemeralEvent): void {
    this.#sending.showEphemeral(event);
  }

  updateDelivery(update: DeliveryUpdate): void {
    this.#sending.updateDelivery(update);
  }

  notify(localUser: string, notice: Notice): void {
    this.#sending.notify(localUser, notice);
  }

  #attached(): BridgeCore {
    if (!this.#core) {
      throw new MatrixAdapterError('matrix_not_attached', 'the Matrix adapter is not attached to a bridge');
    }
    return this.#core;
  }

  /**
   * One recorded inbound event (or read receipt), handed to what it does. True when handling it
   * again would change nothing (InboundQueue: its done mark may wait): what it did went to the
   * core under the event's id (a portal's message, reaction or redaction; a read receipt), or
   * nothing was done.
   */
  async #handle(row: InboundRow): Promise<boolean> {
    if (row.kind === 'receipt') {
      await this.#handlers.receipt(row.payload);
      return true;
    }
    const e = row.payload;
    const type = e['type'];
    const sender = e['sender'];
    if (typeof sender !== 'string' || typeof type !== 'string') return true;
    const content = (
      typeof e['content'] === 'object' && e['content'] !== null ? e['content'] : {}
    ) as Content;
    if (type === 'm.room.member') {
      this.#encryption?.membersChanged(row.roomId);
      await this.#invites.member(row.roomId, sender, e['state_key'], content);
      return false;
    }
    if (this.#ids.isOurs(sender)) return true;
    const room = await this.store.room(row.roomId);
    if (!room) return true;
    this.#handlers.seenActive(sender);
    await this.#routes.get(type)?.({ room, type, sender, eventId: String(e['event_id']), content, raw: e });
    return room.kind === 'portal' && REPLAYABLE.has(type) && !isVerificationRequest(content);
  }

  /** An in-room verification event: to the bridge's devices with encryption allowed, dropped without. */
  async #verificationEvent(e: RoomEvent): Promise<void> {
    await this.#encryption?.verificationEvent(e.room.roomId, e.raw);
  }

  /** A message in a management room: only m.text is a command (an m.notice answer would start a loop). */
  async #command(e: RoomEvent): Promise<void> {
    if (e.content['msgtype'] === 'm.text' && typeof e.content['body'] === 'string') {
      await this.#commands.handle(e.room, e.sender, String(e.content['body']), e.eventId);
    }
  }
}

/** A portal's events that go to the core under their own event id (submit keeps one of each). */
const REPLAYABLE = new Set(['m.room.message', 'm.reaction', 'm.room.redaction']);
