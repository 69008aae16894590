/**
 * XEP-0402 bookmarks for the rooms of the user's groups, so that Conversations, Gajim and Dino list
 * a group (and join it) without the user accepting an invitation first. A component cannot write
 * a user's PEP by itself: XEP-0356 (Privileged Entity, `urn:xmpp:privilege:2`, version 0.4 and
 * later) lets the server grant it the `iq` permission for `http://jabber.org/protocol/pubsub`, and
 * then the component sends, wrapped in `<privileged_iq>`, the iq the user's own client would send,
 * as Slidge does:
 *
 *   <iq type="set" from="wa.example.org" to="user@example.org">
 *     <privileged_iq xmlns="urn:xmpp:privilege:2">
 *       <iq xmlns="jabber:client" type="set" from="user@example.org" to="user@example.org">
 *         <pubsub xmlns="http://jabber.org/protocol/pubsub">
 *           <publish node="urn:xmpp:bookmarks:1"><item id="ROOM"><conference …/></item></publish>
 *           <publish-options>…</publish-options>
 *
 * and a `<retract notify="true">` of the item when the user leaves or is removed from the group.
 *
 * The server announces what it grants right after the component connects, in a `<message>` from
 * each of its hosts (`from="example.org"`, XEP-0356 §4); this file keeps, per host, whether that
 * includes `set` on pubsub, and publishes only for users of hosts that do. A server that announces
 * nothing (no mod_privilege for the component; ejabberd before the XEP's version 0.4 has no `iq`
 * permission at all) gets no bookmarks: the invitation remains, and clients bookmark a room
 * themselves when the user accepts it. Either way it is said once, at info.
 *
 * Bookmarks are a convenience: each user's are written in order, without holding up the
 * invitation or anything else shown to the user; a failure is logged, not retried.
 */
import { randomUUID } from 'node:crypto';
import { xml, type Element } from '@xmpp/xml';
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { ComponentStoppedError, IqErrorResponse } from './errors.js';
import { bareJid, domainOf } from './jids.js';
import { NS, xmlSafe } from './stanzas.js';

export const NS_PRIVILEGE = 'urn:xmpp:privilege:2';
/** XEP-0356 before version 0.4 (ejabberd 23.01's mod_privilege): no `iq` permission. */
const NS_PRIVILEGE_1 = 'urn:xmpp:privilege:1';
export const NS_BOOKMARKS = 'urn:xmpp:bookmarks:1';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_FORWARD = 'urn:xmpp:forward:0';
/** A bookmark written just after the link came up waits this long for the server's announcement. */
const ANNOUNCEMENT_WAIT_MS = 2_000;

export interface BookmarksContext {
  /** The component's domain: the privileged iq's sender. */
  readonly domain: string;
  /** Sends an iq get/set to the server and resolves with its result (the link's `request`). */
  request(iq: Element): Promise<Element>;
  readonly log: Logger | undefined;
}

/** A room as the user's bookmark names it. */
export interface RoomBookmark {
  /** The room's JID (the item id). */
  readonly room: string;
  /** The group's subject. */
  readonly name: string;
  /** The nick the user's clients join with. */
  readonly nick: string;
}

export class Bookmarks {
  /** Per server host: whether its last announcement granted iq `set` on pubsub. */
  private readonly granted = new Map<string, boolean>();
  /** Per server host: what was last logged about it, so that each state is said once. */
  private readonly told = new Map<string, boolean>();
  /** One chain per user: a retraction never overtakes the publication before it. */
  private readonly chains = new KeyedQueue();
  private onlineAt = 0;
  private waiters: (() => void)[] = [];

  constructor(private readonly ctx: BookmarksContext) {}

  /**
   * A server's XEP-0356 announcement (the link's `privilege` event: a message from one of its hosts
   * with `<privilege>`): takes the permissions it grants that host's users.
   */
  announcement(el: Element): void {
    const from = String(el.attrs.from ?? '');
    const privilege = el.getChild('privilege', NS_PRIVILEGE) ?? el.getChild('privilege', NS_PRIVILEGE_1);
    if (!privilege || from === '' || from.includes('@') || from.includes('/')) return;
    // Errors, and what a server forwards under a roster permission (which we do not ask for).
    if (el.attrs.type === 'error' || privilege.getChild('forwarded', NS_FORWARD)) return;
    const current = privilege.attrs.xmlns === NS_PRIVILEGE;
    const pubsubSet = privilege
      .getChildren('perm')
      .filter((perm) => perm.attrs.access === 'iq')
      .flatMap((perm) => perm.getChildren('namespace'))
      .some((ns) => ns.attrs.ns === NS_PUBSUB && (ns.attrs.type === 'set' || ns.attrs.type === 'both'));
    const granted = current && pubsubSet;
    this.granted.set(from, granted);
    this.tell(
      from,
      granted,
      current
        ? 'grants no iq permission on http://jabber.org/protocol/pubsub'
        : 'speaks XEP-0356 before version 0.4 (urn:xmpp:privilege:1), which has no iq permission',
    );
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The link is up: the server's announcement follows at once. */
  online(): void {
    this.onlineAt = Date.now();
  }

  /** Adds (or updates) the user's bookmark of a room, after the user's earlier bookmark changes. */
  add(user: string, bookmark: RoomBookmark): void {
    this.inOrder(user, 'XEP-0402 bookmark not added', 'warn', () => this.publish(bareJid(user), bookmark));
  }

  /** Removes the user's bookmark of a room, after the user's earlier bookmark changes. */
  remove(user: string, room: string): void {
    // At info: the bookmark may never have been there (a group joined before the privilege was).
    this.inOrder(user, 'XEP-0402 bookmark not removed', 'info', () => this.retract(bareJid(user), room));
  }

  private async publish(user: string, b: RoomBookmark): Promise<void> {
    if (!(await this.permitted(user))) return;
    const conference = xml(
      'conference',
      { xmlns: NS_BOOKMARKS, name: xmlSafe(b.name), autojoin: 'true' },
      xml('nick', {}, xmlSafe(b.nick)),
    );
    // XEP-0402 §3.3: the node's configuration, created with these options if it does not exist.
    const options = xml(
      'x',
      { xmlns: NS.dataForms, type: 'submit' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, `${NS_PUBSUB}#publish-options`)),
      ...[
        ['pubsub#persist_items', 'true'],
        ['pubsub#max_items', 'max'],
        ['pubsub#send_last_published_item', 'never'],
        ['pubsub#access_model', 'whitelist'],
      ].map(([v, value]) => xml('field', { var: v }, xml('value', {}, value))),
    );
    await this.privileged(
      user,
      xml(
        'pubsub',
        { xmlns: NS_PUBSUB },
        xml('publish', { node: NS_BOOKMARKS }, xml('item', { id: b.room }, conference)),
        xml('publish-options', {}, options),
      ),
    );
    this.ctx.log?.debug({ user, room: b.room }, 'XEP-0402 bookmark added');
  }

  private async retract(user: string, room: string): Promise<void> {
    if (!(await this.permitted(user))) return;
    await this.privileged(
      user,
      xml(
        'pubsub',
        { xmlns: NS_PUBSUB },
        xml('retract', { node: NS_BOOKMARKS, notify: 'true' }, xml('item', { id: room })),
      ),
    );
    this.ctx.log?.debug({ user, room }, 'XEP-0402 bookmark removed');
  }

  /** The iq the user's client would send, sent by the component on the user's behalf. */
  private async privileged(user: string, payload: Element): Promise<void> {
    const inner = xml(
      'iq',
      { xmlns: 'jabber:client', type: 'set', from: user, to: user, id: `bm-${randomUUID()}` },
      payload,
    );
    try {
      const answer = await this.ctx.request(
        xml(
          'iq',
          { type: 'set', from: this.ctx.domain, to: user },
          xml('privileged_iq', { xmlns: NS_PRIVILEGE }, inner),
        ),
      );
      const wrapped = answer
        .getChild('privilege', NS_PRIVILEGE)
        ?.getChild('forwarded', NS_FORWARD)
        ?.getChild('iq');
      if (wrapped?.attrs.type === 'error') throw IqErrorResponse.of(wrapped);
    } catch (err) {
      // The privilege withdrawn since the announcement (the next connection's announcement says so too).
      if (err instanceof IqErrorResponse && err.condition === 'forbidden') {
        const host = domainOf(user);
        this.granted.set(host, false);
        this.tell(host, false, `refused a privileged iq (${err.message})`);
      }
      throw err;
    }
  }

  /** Whether the user's server granted the permission; just after connecting, waits for its word. */
  private async permitted(user: string): Promise<boolean> {
    const host = domainOf(user);
    for (;;) {
      if (this.granted.has(host)) return this.granted.get(host) === true;
      const left = this.onlineAt + ANNOUNCEMENT_WAIT_MS - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, left).unref();
      });
    }
    this.tell(host, false, 'announced no XEP-0356 privileges to the component (no mod_privilege for it)');
    return false;
  }

  /** Says, once per host and state, whether its users get bookmarks. */
  private tell(host: string, granted: boolean, why: string): void {
    if (this.told.get(host) === granted) return;
    this.told.set(host, granted);
    if (granted) {
      this.ctx.log?.info(
        { host },
        'XMPP server grants the pubsub privilege (XEP-0356): group rooms are bookmarked (XEP-0402)',
      );
    } else {
      this.ctx.log?.info(
        { host },
        `XEP-0402 bookmarks are off for ${host}: its server ${why}; users get invitations to group rooms only`,
      );
    }
  }

  private inOrder(user: string, failure: string, level: 'warn' | 'info', work: () => Promise<void>): void {
    this.chains.run(bareJid(user), work).catch((err: unknown) => {
      const stopped = err instanceof ComponentStoppedError;
      this.ctx.log?.[stopped ? 'debug' : level]({ err: (err as Error).message, user }, failure);
    });
  }
}
