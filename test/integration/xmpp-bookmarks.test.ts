/**
 * XEP-0402 bookmarks of group rooms, written by the component into the user's PEP through XEP-0356
 * (adapters/xmpp/bookmarks.ts). On Prosody with mod_privilege (prosody-modules) granting the
 * component `set` on pubsub: a group native users make with the user in it is in the user's
 * `urn:xmpp:bookmarks:1` node (name = subject, autojoin, nick), announced to their client
 * (+notify), readable by no one else; removed from the group, the item is retracted. On ejabberd
 * 23.01, whose mod_privilege has no `iq` permission (XEP-0356 before 0.4): the invitation only, and
 * the component says once, at info, that bookmarks are off, without trying.
 */
import { Writable } from 'node:stream';
import { jest } from '@jest/globals';
import { xml, type Element } from '@xmpp/xml';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { until } from '../support/wait.js';
import { DOMAIN, XmppBridgeHarness } from '../support/xmpp-bridge.js';
import { prosodyModuleDir, type TestUser } from '../support/xmpp-servers.js';

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
const BOOKMARKS = 'urn:xmpp:bookmarks:1';
const CONFERENCE = 'jabber:x:conference';
const DISCO_INFO = 'http://jabber.org/protocol/disco#info';

/** The adapter's log lines (JSON), for what it says about bookmarks. */
function capturedLog(): { logger: Logger; said: (text: string) => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return {
    logger: createLogger({ destination, format: 'json', level: 'info' }),
    said: (text) => lines.filter((l) => String(l.msg).includes(text)),
  };
}

/** The items of the user's own bookmarks node (an error answer: none). */
async function bookmarksOf(user: TestUser): Promise<{ answer: Element; items: Element[] }> {
  const answer = await user.iq(
    xml(
      'iq',
      { type: 'get', to: user.jid },
      xml('pubsub', { xmlns: PUBSUB }, xml('items', { node: BOOKMARKS })),
    ),
  );
  const items = answer.getChild('pubsub', PUBSUB)?.getChild('items')?.getChildren('item') ?? [];
  return { answer, items };
}

/**
 * Makes the client interested in bookmark notifications, as Conversations does: XEP-0115 caps in
 * its presence, and `urn:xmpp:bookmarks:1+notify` in the disco#info the server asks for.
 */
async function notifyBookmarks(user: TestUser): Promise<void> {
  const node = 'https://interop-bridge.test/client';
  const callee = (user.client as unknown as { iqCallee: IqCallee }).iqCallee;
  let asked!: () => void;
  const discoAsked = new Promise<void>((resolve) => (asked = resolve));
  callee.get(DISCO_INFO, 'query', () => {
    asked();
    return xml(
      'query',
      { xmlns: DISCO_INFO },
      xml('identity', { category: 'client', type: 'pc', name: 'test' }),
      xml('feature', { var: DISCO_INFO }),
      xml('feature', { var: `${BOOKMARKS}+notify` }),
    );
  });
  await user.client.send(
    xml(
      'presence',
      {},
      xml('c', { xmlns: 'http://jabber.org/protocol/caps', hash: 'sha-1', node, ver: 'bookmarks+notify=' }),
    ),
  );
  await discoAsked;
}

interface IqCallee {
  get(xmlns: string, name: string, handler: () => Element): void;
}

const notification = (s: Element, room: string, kind: 'item' | 'retract'): boolean =>
  s.name === 'message' &&
  s.getChild('event', PUBSUB_EVENT)?.getChild('items')?.attrs.node === BOOKMARKS &&
  s
    .getChild('event', PUBSUB_EVENT)!
    .getChild('items')!
    .getChildren(kind)
    .some((i) => i.attrs.id === room);

describe('XEP-0402 bookmarks on prosody (mod_privilege)', () => {
  let h: XmppBridgeHarness;
  const log = capturedLog();

  beforeAll(async () => {
    if (!prosodyModuleDir('privilege')) {
      throw new Error(
        "Prosody's mod_privilege is not installed: apt-get install prosody-modules (scripts/install-system-deps.sh installs it)",
      );
    }
    h = await XmppBridgeHarness.start('prosody', { database: 'sqlite', logger: log.logger });
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
  });

  it('a group the user is added to is bookmarked (name, autojoin, nick), and unbookmarked when they are removed', async () => {
    const alice = await h.registeredUser('alice');
    await notifyBookmarks(alice);
    const bob = await h.native('+4915200070001');
    const me = await h.puppetJid(alice.jid);
    const { group } = await bob.groups.create('Lunch crew <3 & co', [me]);
    const room = `${group.jid.split('@')[0]}@${DOMAIN}`;

    // The invitation still comes (clients without bookmarks, and the user's attention).
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('x', CONFERENCE)?.attrs.jid === room);
    // The PEP notification to the interested client, then the item in the node.
    const pushed = await alice.waitForStanza((s) => notification(s, room, 'item'));
    expect(pushed.attrs.from).toBe(alice.jid);
    const { items } = await bookmarksOf(alice);
    const item = items.find((i) => i.attrs.id === room);
    const conference = item?.getChild('conference', BOOKMARKS);
    expect(conference?.attrs).toMatchObject({ name: 'Lunch crew <3 & co', autojoin: 'true' });
    expect(conference?.getChild('nick')?.getText()).toBe(alice.jid.split('@')[0]);
    expect(log.said('group rooms are bookmarked')).toEqual([
      expect.objectContaining({ host: h.server.host, level: 30 }),
    ]);

    // The node as XEP-0402 configures it (publish-options): private, every item kept, none pushed
    // on presence.
    const configure = await alice.iq(
      xml(
        'iq',
        { type: 'get', to: alice.jid },
        xml('pubsub', { xmlns: `${PUBSUB}#owner` }, xml('configure', { node: BOOKMARKS })),
      ),
    );
    const fields = new Map(
      (configure.getChild('pubsub')?.getChild('configure')?.getChild('x')?.getChildren('field') ?? []).map(
        (f) => [f.attrs.var, f.getChild('value')?.getText()],
      ),
    );
    expect(Object.fromEntries(fields)).toMatchObject({
      'pubsub#access_model': 'whitelist',
      'pubsub#max_items': 'max',
      'pubsub#persist_items': expect.stringMatching(/^(1|true)$/),
      'pubsub#send_last_published_item': 'never',
    });
    // Another user of the server cannot read it.
    const eve = await h.user('eve');
    const peek = await eve.iq(
      xml(
        'iq',
        { type: 'get', to: alice.jid },
        xml('pubsub', { xmlns: PUBSUB }, xml('items', { node: BOOKMARKS })),
      ),
    );
    expect(peek.attrs.type).toBe('error');

    // Removed by the admin: the item is retracted (notified, and gone from the node).
    await bob.groups.participants(group.jid, 'remove', [me]);
    await alice.waitForStanza((s) => notification(s, room, 'retract'));
    expect((await bookmarksOf(alice)).items.some((i) => i.attrs.id === room)).toBe(false);
    expect(log.said('bookmark not')).toEqual([]);
  });
});

// ejabberd 23.01's mod_privilege speaks urn:xmpp:privilege:1, which has no iq permission: no
// bookmarks from the component there, whatever the config. The test config does not enable it.
describe('XEP-0402 bookmarks on ejabberd 23.01 (no iq privilege)', () => {
  let h: XmppBridgeHarness;
  const log = capturedLog();

  beforeAll(async () => {
    h = await XmppBridgeHarness.start('ejabberd', { database: 'sqlite', logger: log.logger });
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
  });

  it('the invitation comes, no bookmark is written, and the component says once that bookmarks are off', async () => {
    const sent = jest.spyOn(h.xmpp.link, 'send');
    const alice = await h.registeredUser('alice');
    const bob = await h.native('+4915200070002');
    const me = await h.puppetJid(alice.jid);
    const rooms: string[] = [];
    for (const subject of ['First', 'Second']) {
      const { group } = await bob.groups.create(subject, [me]);
      const room = `${group.jid.split('@')[0]}@${DOMAIN}`;
      rooms.push(room);
      await alice.waitForStanza(
        (s) => s.name === 'message' && s.getChild('x', CONFERENCE)?.attrs.jid === room,
      );
      // Bookmarks follow the invitation without holding it up.
      await until(() => log.said('XEP-0402 bookmarks are off').length > 0, 'bookmarks said to be off', 5_000);
    }
    await new Promise((r) => setTimeout(r, 300));
    const off = log.said('XEP-0402 bookmarks are off');
    expect(off).toEqual([expect.objectContaining({ host: h.server.host, level: 30 })]);
    expect(String(off[0]?.msg)).toContain('announced no XEP-0356 privileges');
    const privileged = sent.mock.calls.filter(([s]) => s.getChild('privileged_iq') !== undefined);
    expect(privileged).toEqual([]);
    // No bookmark of these rooms (this test server has no PEP at all: an error answer).
    const { items } = await bookmarksOf(alice);
    expect(items.filter((i) => rooms.includes(String(i.attrs.id)))).toEqual([]);
    sent.mockRestore();
  });
});
