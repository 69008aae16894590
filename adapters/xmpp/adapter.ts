/**
 * The XMPP adapter: a gateway component in the manner of Slidge, Spectrum 2 and Biboumi. Local
 * users are XMPP bare JIDs; gatekeeper contacts appear as `+4915112345678@<component domain>`; the
 * component's own JID takes registration (XEP-0077, XEP-0050 ad-hoc commands, chat commands) and
 * phone-number look-ups (XEP-0100).
 *
 * Toward the core it implements `Adapter`; toward the server it speaks through the ComponentLink,
 * whose confirmation (a ping round trip behind the stanza) is what `deliver` waits for. This file
 * is the routing table and the lifecycle; the handlers are in the feature files, each written
 * against a context of its own that `attach` builds:
 *
 *   message                  -> inbound.ts (to a contact) or commands.ts (to the component)
 *   presence                 -> presence.ts
 *   iq (type, xmlns, child)  -> iq/disco.ts, iq/register.ts, iq/vcard.ts, iq/avatar.ts, iq/adhoc.ts
 *   core -> XMPP             -> delivery.ts
 */
import { EventEmitter } from 'node:events';
import type { IqHandler } from '@xmpp/component';
import type { Element } from '@xmpp/xml';
import type {
  AdapterCapabilities,
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
  OutgoingEvent,
} from '../../src/bridge/events.js';
import type { Logger } from '../../src/observability/logger.js';
import type { HttpListener } from '../../src/util/http-listener.js';
import type { FileSealer } from '../../src/util/sealed-file.js';
import type { PayloadVault } from '../../src/util/payload-vault.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { Bookmarks } from './bookmarks.js';
import { answerChatCommand, type CommandContext } from './commands.js';
import type { ComponentLink } from './component.js';
import { Contacts } from './contacts.js';
import type { Access, CapsVersions, Outbound, UserChain } from './context.js';
import { Delivery } from './delivery.js';
import { domainNotAllowed } from './errors.js';
import { Inbound } from './inbound.js';
import { crashNotice, StanzaJournal, type JournalOpening } from './journal.js';
import { AdhocCommands } from './iq/adhoc.js';
import { Avatars, NS_PUBSUB } from './iq/avatar.js';
import { capsVersions, Disco } from './iq/disco.js';
import { Registration } from './iq/register.js';
import { Vcards } from './iq/vcard.js';
import { bareJid, domainOf, resourceOf } from './jids.js';
import { ContactProfiles } from './profiles.js';
import { groupOfRoom, Rooms } from './rooms.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import { NS_MUC_ADMIN, RoomAdmin } from './iq/room-admin.js';
import { Downloads } from './downloads.js';
import type { FilePublisher, OwnFilePublisher } from './media.js';
import { Presence } from './presence.js';
import { xmppProvisioning } from './provisioning.js';
import { UserResources } from './resources.js';
import { NS, stanzaError } from './stanzas.js';
import type { XmppStore } from './store.js';

export interface XmppAdapterOptions {
  link: ComponentLink;
  store: XmppStore;
  /** The component's domain (`xmpp.component_domain`). */
  domain: string;
  /** The gateway's name in service discovery (`xmpp.name`). */
  name: string;
  /** `media.max_bytes`. */
  maxMediaBytes: number;
  /** `media.allowed_fetch_hosts`: where files users share may be fetched from. */
  allowedFetchHosts: readonly string[];
  /** Gives incoming files a URL (XEP-0363 slots or the bridge's own file host); none: a notice. */
  publisher: FilePublisher | undefined;
  /** The bridge's own file host, when it is the publisher: served on `http` while started. */
  ownFiles?: { readonly publisher: OwnFilePublisher; readonly http: HttpListener } | undefined;
  /** Where files users share are downloaded to before the core sends them. */
  downloadDir: string;
  /** Seals downloaded files while they wait (the at-rest key). */
  sealer?: FileSealer | undefined;
  /** Seals the journal's stanzas that wait for the core (the at-rest key); absent only in tests. */
  vault?: PayloadVault | undefined;
  /** Downloads older than this are what a crash left (the queue age limit, and a day). */
  downloadRetentionMs?: number | undefined;
  /** Domains whose users may use the gateway (`xmpp.allowed_domains`); empty: any. */
  allowedDomains?: readonly string[] | undefined;
  /** Bare JIDs allowed the `admin` commands (`xmpp.admins`). */
  admins?: readonly string[] | undefined;
  logger?: Logger | undefined;
}

export interface XmppAdapterEvents {
  /** An outgoing event was accepted by the core (durably in its outbox). */
  submitted: [event: OutgoingEvent];
  /** Something the user sent was refused, with the error stanza it got. */
  refused: [error: Element];
}

/** What a crash left in the download folder is removed after this, by default (the queue age limit's default, and a day). */
const DOWNLOAD_RETENTION_MS = 8 * 24 * 3600 * 1000;
const SWEEP_EVERY_MS = 3_600_000;
/** A clean stop waits this long for the users' chains (what they sent) to reach the core. */
const STOP_WAIT_MS = 10_000;

/** What `attach` builds: the handlers, wired to the core. */
interface Features {
  readonly inbound: Inbound;
  readonly presence: Presence;
  readonly delivery: Delivery;
  readonly disco: Disco;
  readonly registration: Registration;
  readonly vcards: Vcards;
  readonly avatars: Avatars;
  readonly adhoc: AdhocCommands;
  readonly provisioning: ProvisioningHooks;
  readonly rooms: Rooms;
  readonly bookmarks: Bookmarks;
  readonly roomAdmin: RoomAdmin;
  readonly profiles: ContactProfiles;
}

export class XmppAdapter extends EventEmitter<XmppAdapterEvents> implements GroupAdapter, ProfileAdapter {
  readonly network = 'xmpp' as const;
  readonly capabilities: AdapterCapabilities;
  /** The component stream to the XMPP server. */
  readonly link: ComponentLink;
  private readonly o: XmppAdapterOptions;
  private readonly log: Logger | undefined;
  private readonly caps: CapsVersions;
  private readonly resources = new UserResources();
  /** One chain of work per local user, so their stanzas reach the core in order. */
  private readonly chains = new KeyedQueue();
  /** The core's calls that must not wait, per user, shown in the order the core made them. */
  private readonly shown = new KeyedQueue();
  private features: Features | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  /** What users send, journaled as it is parsed (crash safety, journal.ts). */
  private readonly journal: StanzaJournal;
  private opened = false;
  /** After an unclean stop, until its notices are confirmed: a stop then leaves the run open. */
  private noticesPending = false;
  private readonly downloads: Downloads;

  constructor(options: XmppAdapterOptions) {
    super();
    this.o = options;
    this.link = options.link;
    this.log = options.logger;
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
      maxMediaBytes: options.maxMediaBytes,
    };
    this.caps = capsVersions(options.name);
    this.journal = new StanzaJournal(options.store, options.logger, Date.now, options.vault);
    this.downloads = new Downloads({
      dir: options.downloadDir,
      maxBytes: options.maxMediaBytes,
      allowedHosts: options.allowedFetchHosts,
      sealer: options.sealer,
    });
  }

  /** Called by `bridge.attach(adapter)`: builds the handlers on `core` and routes the link's traffic to them. */
  attach(core: BridgeCore): void {
    const { link } = this.o;
    const f = this.build(core);
    this.features = f;

    // Messages and presences, by stanza name.
    const routes = new Map<string, (el: Element) => void>([
      ['message', (el) => f.inbound.handle(el)],
      // To a room's occupant JID: joining or leaving the room; else the roster's presence.
      [
        'presence',
        (el) => (f.rooms.isRoom(bareJid(el.attrs.to ?? '')) ? f.rooms.presence(el) : f.presence.handle(el)),
      ],
    ]);
    link.on('stanza', (el) => {
      try {
        routes.get(el.name)?.(el);
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'stanza not handled');
      }
    });
    // What the server lets the component do (XEP-0356): whether it may write bookmarks.
    link.on('privilege', (el) => f.bookmarks.announcement(el));
    link.on('online', () => {
      f.bookmarks.online();
      f.presence
        .announce()
        .catch((err: unknown) =>
          this.log?.warn({ err: (err as Error).message }, 'presence announcement failed'),
        );
    });

    // IQs, by (type, namespace, child element); anything else gets <service-unavailable/>.
    const iqs: [type: 'get' | 'set', xmlns: string, child: string, handler: IqHandler][] = [
      ['get', NS.discoInfo, 'query', (iq) => f.disco.info(iq)],
      ['get', NS.discoItems, 'query', (iq) => f.disco.items(iq)],
      ['get', NS.register, 'query', (iq) => f.registration.form(iq)],
      ['set', NS.register, 'query', (iq) => f.registration.submit(iq)],
      ['get', NS.gateway, 'query', () => f.registration.prompt()],
      ['set', NS.gateway, 'query', (iq) => f.registration.translate(iq)],
      ['set', NS.commands, 'command', (iq) => f.adhoc.execute(iq)],
      ['get', NS.vcard, 'vCard', (iq) => f.vcards.get(iq)],
      ['get', NS_PUBSUB, 'pubsub', (iq) => f.avatars.get(iq)],
      ['get', NS.version, 'query', () => f.disco.version()],
      ['get', NS_MUC_ADMIN, 'query', (iq) => f.roomAdmin.get(iq)],
      ['set', NS_MUC_ADMIN, 'query', (iq) => f.roomAdmin.set(iq)],
    ];
    for (const [type, xmlns, child, handler] of iqs) link.handleIq(type, xmlns, child, handler);
    // XEP-0410: a client that is not (any more) in a room is told so, and joins again.
    link.pingGuard = (stanza) => {
      const to = stanza.attrs.to ?? '';
      if (!f.rooms.isRoom(bareJid(to)) || resourceOf(to) === undefined) return undefined;
      return f.rooms.isJoined(stanza.attrs.from ?? '', to)
        ? undefined
        : stanzaError('cancel', 'not-acceptable', 'You are not in this room: join it again.');
    };
  }

  /**
   * Prepares the download folder (removing old files), prunes old delivery records, replays what
   * users sent that was journaled but not yet handed to the core, serves the own file host, and
   * opens the component stream; after an unclean stop, tells the users who were sending just
   * before it what was taken (journal.ts). Rejects (with `ComponentSecretRefusedError`,
   * `XmppServerUnreachableError` or `ComponentStreamError`) if the first connection to the server
   * fails; later drops reconnect.
   */
  async start(): Promise<void> {
    const { ownFiles } = this.o;
    await this.downloads.prepare(this.o.downloadRetentionMs ?? DOWNLOAD_RETENTION_MS);
    const opening = await this.journal.open();
    this.opened = true;
    this.noticesPending = opening.unclean !== undefined && opening.senders.length > 0;
    // Ahead of anything new on each user's chain.
    for (const row of opening.pending) this.wired.inbound.replay(row);
    ownFiles?.publisher.mount(ownFiles.http);
    await this.link.start();
    if (opening.unclean) this.afterCrash(opening);
    this.sweeper = setInterval(
      () =>
        void this.downloads.sweep(this.o.downloadRetentionMs ?? DOWNLOAD_RETENTION_MS).catch(() => undefined),
      SWEEP_EVERY_MS,
    );
    this.sweeper.unref();
  }

  /**
   * Closes the component stream, lets what users sent reach the core (up to STOP_WAIT_MS) and closes
   * the run (a clean stop: the next start tells nobody). Unconfirmed deliveries are retried by the
   * core after a restart; journaled stanzas that did not reach the core are replayed.
   */
  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.o.ownFiles?.publisher.close();
    await this.link.stop();
    if (!this.opened) return;
    this.opened = false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.chains.idle(),
      new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS))),
    ]);
    clearTimeout(timer);
    // Crash notices not yet given: the run stays open, so the next start gives them.
    await this.journal.close({ clean: !this.noticesPending });
  }

  /**
   * The bridge did not stop cleanly: what the server wrote into the socket just before may be lost
   * without a trace (XEP-0114 has no acknowledgement). Each user who was sending then is told, by
   * each contact concerned, up to which message theirs were taken.
   */
  private afterCrash(opening: JournalOpening): void {
    const { unclean, senders, run } = opening;
    this.log?.warn(
      {
        startedAt: unclean && new Date(unclean.startedAt).toISOString(),
        users: new Set(senders.map((s) => s.localUser)).size,
        conversations: senders.length,
        replayed: opening.pending.length,
      },
      'the bridge did not stop cleanly: telling the XMPP users who were sending what was taken',
    );
    void Promise.all(senders.map((s) => this.link.send(crashNotice(this.o.domain, s, run.run))))
      .then(async () => {
        await this.journal.noticesGiven(run.run);
        this.noticesPending = false;
      })
      .catch((err: unknown) =>
        this.log?.warn(
          { err: (err as Error).message },
          'crash notices not confirmed: given again at the next start',
        ),
      );
  }

  deliver(event: IncomingEvent): Promise<string | undefined> {
    return this.wired.delivery.deliver(event);
  }

  /** A contact's profile: its nick, vCard and avatar (profiles.ts), in order with the user's other events. */
  updateProfile(localUser: string, profile: ContactProfile): Promise<void> {
    return this.shown.run(localUser, () => this.wired.profiles.update(localUser, profile));
  }

  /** A group's change, shown in its room (rooms.ts) in order with the user's other events. */
  updateGroup(update: GroupUpdate): Promise<void> {
    return this.shown.run(update.localUser, () => this.wired.rooms.update(update));
  }

  showEphemeral(event: EphemeralEvent): void {
    this.inOrder(
      event.localUser,
      () => this.wired.delivery.showEphemeral(event),
      'typing or presence not shown',
    );
  }

  /** Shown in order; resolves once the server has a tick (the link's confirmation), rejects if not. */
  updateDelivery(update: DeliveryUpdate): Promise<void> {
    this.downloads.updateDelivery(update);
    let confirmed: Promise<void> | undefined;
    const queued = this.shown.run(update.localUser, async () => {
      ({ confirmed } = await this.wired.delivery.updateDelivery(update));
    });
    const shown = queued.then(() => confirmed);
    shown.catch((err: unknown) =>
      this.log?.debug({ err: (err as Error).message }, 'delivery state not shown'),
    );
    return shown;
  }

  notify(localUser: string, notice: Notice): void {
    this.inOrder(localUser, () => this.wired.delivery.notify(localUser, notice), 'notice not shown');
  }

  /** Waits until every in-progress stanza handling has finished (for an orderly stop). */
  async idle(): Promise<void> {
    await this.chains.idle();
    await this.shown.idle();
  }

  /** The handlers, each given the context it needs. */
  private build(core: BridgeCore): Features {
    const { link, store, domain, name, publisher } = this.o;
    const { caps, resources, log } = this;
    const out: Outbound = {
      send: (stanza, options) => link.send(stanza, options),
      fire: (stanza) => this.fire(stanza),
    };
    const access: Access = {
      mayUse: (user) => this.mayUse(user),
      notAllowed: (user) => domainNotAllowed(domainOf(user), this.o.allowedDomains ?? []),
      isRegistered: (user) => core.isEnlisted(user),
      isAdmin: (user) => this.isAdmin(user),
    };
    const chain: UserChain = {
      run: (user, work) => this.chains.run(user, work),
      queue: (user, work) => {
        this.chains.run(user, work).catch((err: unknown) => {
          this.log?.warn({ err: (err as Error).message }, 'XMPP stanza handling failed');
        });
      },
    };
    const contacts = new Contacts({ domain, store, core, log });
    const presence = new Presence({
      domain,
      store,
      core,
      out,
      access,
      chain,
      resources,
      contacts,
      caps,
      log,
    });
    const roster = presence;
    const bookmarks = new Bookmarks({ domain, request: (iq) => link.request(iq), log });
    const nameOf = async (user: string, remote: string) => {
      const phone = phoneOfRemote(remote);
      return phone === undefined ? undefined : ((await store.contact(user, phone))?.name ?? undefined);
    };
    const rooms = new Rooms({ domain, core, out, access, chain, log, bookmarks, nameOf });
    const delivery = new Delivery({
      domain,
      store,
      out,
      contacts,
      roster,
      resources,
      publisher,
      caps,
      rooms,
    });
    const commands: CommandContext = { domain, core, store, contacts, roster, access };
    const say = (to: string, text: string) => delivery.say(to, text);
    const inbound = new Inbound({
      domain,
      store,
      core,
      out,
      access,
      chain,
      resources,
      contacts,
      roster,
      journal: this.journal,
      command: (from, body) => answerChatCommand({ ...commands, say }, from, body),
      files: this.downloads,
      rooms,
      submitted: (event) => this.emit('submitted', event),
      refused: (error) => this.emit('refused', error),
      log,
    });
    return {
      inbound,
      presence,
      delivery,
      disco: new Disco({ domain, name, access, rooms }),
      registration: new Registration({ domain, core, access, chain }),
      vcards: new Vcards({ domain, name, store }),
      avatars: new Avatars({ domain, store, access }),
      adhoc: new AdhocCommands({ access, chain, commands }),
      provisioning: xmppProvisioning({ access, chain, commands, store }),
      rooms,
      bookmarks,
      roomAdmin: new RoomAdmin({
        domain,
        core,
        groupOf: (room) => groupOfRoom(room, domain),
        memberByNick: (user, snapshot, nick) => rooms.memberByNick(user, snapshot, nick),
      }),
      profiles: new ContactProfiles({ domain, store, out, contacts, caps, rooms }),
    };
  }

  /** The provisioning API's questions (src/provisioning), once attached. */
  get provisioning(): ProvisioningHooks | undefined {
    return this.features?.provisioning;
  }

  private get wired(): Features {
    if (!this.features) throw new Error('XmppAdapter used before attach()');
    return this.features;
  }

  /** Runs a core callback after the user's earlier ones; it must not throw, so a failure is logged. */
  private inOrder(user: string, work: () => Promise<void>, failure: string): void {
    this.shown.run(user, work).catch((err: unknown) => {
      this.log?.warn({ err: (err as Error).message }, failure);
    });
  }

  private isAdmin(user: string): boolean {
    const jid = user.toLowerCase();
    return this.mayUse(user) && (this.o.admins ?? []).some((a) => a.toLowerCase() === jid);
  }

  private mayUse(user: string): boolean {
    const allowed = this.o.allowedDomains ?? [];
    return allowed.length === 0 || allowed.includes('*') || allowed.includes(domainOf(user).toLowerCase());
  }

  /** Sends without waiting for the confirmation (must not throw: used from the core's callbacks). */
  private fire(stanza: Element): void {
    this.link.send(stanza).catch((err: unknown) => {
      this.log?.debug({ err: (err as Error).message }, 'stanza not confirmed');
    });
  }
}
