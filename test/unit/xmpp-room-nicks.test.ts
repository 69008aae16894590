/**
 * Occupants' nicks in a group's room (adapters/xmpp/rooms.ts): a contact's name learned while the
 * user's join is reading the names (their profile read just as the user joins) still reaches the
 * user's client, as a nick change (XEP-0045 status 303). It was lost before: the join's nicks had
 * been worked out from the old name, and the change found no room to renick yet.
 */
import type { Element } from '@xmpp/xml';
import xml from '@xmpp/xml';
import type { UserChain } from '../../adapters/xmpp/context.js';
import { Rooms } from '../../adapters/xmpp/rooms.js';
import type { GroupSnapshot } from '../../src/bridge/events.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';

const DOMAIN = 'wa.localhost';
const ALICE = 'alice@localhost';
const FULL = `${ALICE}/phone`;
const ROOM = `120363044290343342@${DOMAIN}`;
const SAM1 = '4915200002006@wa.interop';
const SAM2 = '4915200002007@wa.interop';
const MUC_USER = 'http://jabber.org/protocol/muc#user';

const group: GroupSnapshot = {
  group: '120363044290343342@g.wa.interop',
  subject: 'Two Sams',
  announce: false,
  locked: false,
  version: 1,
  members: [
    { remote: SAM1, phone: '+4915200002006', admin: true },
    { remote: SAM2, phone: '+4915200002007', admin: false },
    { remote: '4915100000001@wa.interop', phone: '+4915100000001', admin: false, self: true },
  ],
};

describe('occupants named by push names in a room', () => {
  it('a name kept while the join reads the names comes as a nick change', async () => {
    const names = new Map<string, string>([[SAM1, 'Sam']]);
    const sent: Element[] = [];
    const queue = new KeyedQueue();
    const chain: UserChain = {
      run: (user, work) => queue.run(user, work),
      queue: (user, work) => void queue.run(user, work),
    };
    // The join's read of the second Sam's name waits until that name has been kept and announced.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reading!: () => void;
    const readingSam2 = new Promise<void>((resolve) => (reading = resolve));
    const rooms = new Rooms({
      domain: DOMAIN,
      core: {
        submit: async () => ({}) as never,
        group: async () => group,
        retryDeliveries: async () => undefined,
      },
      out: { send: async (s) => void sent.push(s), fire: (s) => void sent.push(s) },
      access: {
        mayUse: () => true,
        notAllowed: () => new Error('no') as never,
        isRegistered: async () => true,
        isAdmin: () => false,
      },
      chain,
      log: undefined,
      nameOf: async (_user, remote) => {
        if (remote !== SAM2) return names.get(remote);
        const name = names.get(remote);
        reading();
        await held;
        return name;
      },
    });

    rooms.presence(
      xml(
        'presence',
        { from: FULL, to: `${ROOM}/alice` },
        xml('x', { xmlns: 'http://jabber.org/protocol/muc' }),
      ),
    );
    await readingSam2;
    names.set(SAM2, 'Sam'); // the profile is kept (ContactProfiles.update), then the rooms are told
    rooms.renamed(ALICE, SAM2);
    release();
    await queue.idle();

    const from = (s: Element) => s.attrs.from as string;
    const joined = sent.filter((s) => s.name === 'presence' && s.attrs.type === undefined);
    // At the join: the first Sam by name, the second by number (the name was not kept when read).
    expect(joined.slice(0, 2).map(from)).toEqual([`${ROOM}/Sam`, `${ROOM}/+4915200002007`]);
    // Then both change: two Sams, each made unique by their number.
    const gone = sent.filter((s) => s.name === 'presence' && s.attrs.type === 'unavailable');
    expect(gone.map((s) => [from(s), s.getChild('x', MUC_USER)?.getChild('item')?.attrs.nick])).toEqual([
      [`${ROOM}/Sam`, 'Sam (+4915200002006)'],
      [`${ROOM}/+4915200002007`, 'Sam (+4915200002007)'],
    ]);
    expect(
      gone.every((s) =>
        s
          .getChild('x', MUC_USER)
          ?.getChildren('status')
          .some((c) => c.attrs.code === '303'),
      ),
    ).toBe(true);
    expect(joined.map(from)).toEqual(
      expect.arrayContaining([`${ROOM}/Sam (+4915200002006)`, `${ROOM}/Sam (+4915200002007)`]),
    );
  });
});
