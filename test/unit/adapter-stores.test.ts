/**
 * The adapters' storage contracts (`MatrixStore`, `XmppStore`) on both backends: SQLite and a real
 * PostgreSQL (test/support/store-backends.ts), every method, through `openMatrixStore` /
 * `openXmppStore` on the bridge's database as the daemon opens them. The two backends must answer
 * alike: the same records, the same order, the same counts.
 */
import type { InboundRow } from '../../adapters/matrix/store.js';
import { openMatrixStore, type MatrixStore } from '../../adapters/matrix/index.js';
import { openXmppStore, type XmppStore } from '../../adapters/xmpp/index.js';
import { storeBackends } from '../support/store-backends.js';

const ROOM = '!r:example.org';
const ALICE_MX = '@alice:example.org';
const DAY = 24 * 3600 * 1000;

const ALICE = 'alice@example.org';
const CAROL = 'carol@example.org';
const BOB = '+4915112345678';
const BOB_REMOTE = '4915112345678@wa.interop';
const DAVE = '+4915112340000';
const DAVE_REMOTE = '4915112340000@wa.interop';

describe.each(storeBackends())('the adapters’ stores on $name', (backend) => {
  let clock: number;
  const now = () => clock;
  const openBoth = async (): Promise<{ matrix: MatrixStore; xmpp: XmppStore }> => {
    const store = await backend.open({ migrations: backend.bridgeMigrations() });
    const on = backend.adapterDb(store);
    return { matrix: openMatrixStore(on, now), xmpp: openXmppStore(on, now) };
  };

  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());
  beforeEach(async () => {
    clock = 10 * DAY;
    await backend.fresh();
  });

  describe('MatrixStore', () => {
    let store: MatrixStore;
    beforeEach(async () => (store = (await openBoth()).matrix));

    it('records each event of a transaction once: a resend adds nothing, a reused id with new events adds them', async () => {
      const event = { key: '$e1', roomId: ROOM, kind: 'event' as const, payload: { body: 'hi' } };
      expect(await store.recordTransaction('1', [event])).toEqual({ newTransaction: true, newEvents: 1 });
      expect(await store.recordTransaction('1', [event])).toEqual({ newTransaction: false, newEvents: 0 });
      // The homeserver restarted and numbers from 1 again: the id is known, the event is new.
      expect(await store.recordTransaction('1', [{ ...event, key: '$e2' }])).toEqual({
        newTransaction: false,
        newEvents: 1,
      });
      // The same key twice in one transaction is one event; an empty transaction is recorded too.
      const twice = { ...event, key: '$e3' };
      expect(await store.recordTransaction('2', [twice, twice])).toEqual({
        newTransaction: true,
        newEvents: 1,
      });
      expect(await store.recordTransaction('3', [])).toEqual({ newTransaction: true, newEvents: 0 });
      expect(await store.pendingInboundRooms()).toEqual([ROOM]);
      const pending = await store.pendingInboundOf(ROOM);
      expect(pending.map((r) => [r.key, r.kind, r.roomId, r.payload, r.attempts])).toEqual([
        ['$e1', 'event', ROOM, { body: 'hi' }, 0],
        ['$e2', 'event', ROOM, { body: 'hi' }, 0],
        ['$e3', 'event', ROOM, { body: 'hi' }, 0],
      ]);
      expect(pending[0]!.seq).toBeLessThan(pending[1]!.seq);
      expect((await store.pendingInboundOf(ROOM, 2)).map((r) => r.key)).toEqual(['$e1', '$e2']);
      // The new rows are handed over as the commit returns, as a read would return them.
      const handed: InboundRow[] = [];
      const fourth = { ...event, key: '$e4' };
      const recorded = await store.recordTransaction('4', [event, fourth, fourth], (rows) =>
        handed.push(...rows),
      );
      expect(recorded.newEvents).toBe(1);
      expect(handed).toEqual((await store.pendingInboundOf(ROOM)).slice(-1));
      expect(handed[0]!.key).toBe('$e4');
    });

    it('an inbound event is done once handled, counts its failed attempts, and is set aside on giving up', async () => {
      const events = ['$a', '$b', '$c'].map((key, i) => ({
        key,
        roomId: i === 2 ? '!other:example.org' : ROOM,
        kind: (i === 1 ? 'receipt' : 'event') as 'event' | 'receipt',
        payload: { n: i },
      }));
      await store.recordTransaction('t', events);
      expect((await store.pendingInboundRooms()).sort()).toEqual(['!other:example.org', ROOM]);
      const [a, b] = await store.pendingInboundOf(ROOM);
      await store.markInboundDone([a!.seq]);
      await store.markInboundAttempt(b!.seq, 'homeserver down', false);
      expect(await store.inboundState('$a')).toEqual({
        seq: a!.seq,
        state: 'done',
        attempts: 0,
        error: null,
      });
      expect(await store.inboundState('$b')).toEqual({
        seq: b!.seq,
        state: 'pending',
        attempts: 1,
        error: 'homeserver down',
      });
      expect((await store.pendingInboundOf(ROOM)).map((r) => [r.key, r.attempts])).toEqual([['$b', 1]]);
      await store.markInboundAttempt(b!.seq, 'still down', true);
      expect(await store.inboundState('$b')).toEqual({
        seq: b!.seq,
        state: 'failed',
        attempts: 2,
        error: 'still down',
      });
      expect(await store.pendingInboundRooms()).toEqual(['!other:example.org']);
      expect(await store.inboundState('$nothing')).toBeUndefined();
    });

    it('keeps one portal per user and contact and one management room per user, replacing the older one', async () => {
      expect(await store.room(ROOM)).toBeUndefined();
      await store.putRoom({ roomId: ROOM, kind: 'portal', localUser: ALICE_MX, remoteJid: BOB_REMOTE });
      clock += 1;
      await store.putRoom({
        roomId: '!r2:example.org',
        kind: 'portal',
        localUser: ALICE_MX,
        remoteJid: DAVE_REMOTE,
      });
      await store.putRoom({ roomId: '!m:example.org', kind: 'management', localUser: ALICE_MX });
      const portal = {
        roomId: ROOM,
        kind: 'portal',
        localUser: ALICE_MX,
        remoteJid: BOB_REMOTE,
        encryptionTold: false,
      };
      expect(await store.room(ROOM)).toEqual(portal);
      expect(await store.portalOf(ALICE_MX, BOB_REMOTE)).toEqual(portal);
      expect((await store.portalsOf(ALICE_MX)).map((r) => r.roomId)).toEqual([ROOM, '!r2:example.org']);
      // Every user's portals a page at a time (in the database's order of room ids); no management room.
      await store.putRoom({
        roomId: '!a0:example.org',
        kind: 'portal',
        localUser: '@carol:example.org',
        remoteJid: BOB_REMOTE,
      });
      const first = await store.portalPage('', 2);
      const second = await store.portalPage(first.at(-1)!.roomId, 2);
      expect([first.length, second.length]).toEqual([2, 1]);
      expect(await store.portalPage(second[0]!.roomId, 2)).toEqual([]);
      expect([...first, ...second].map((r) => r.roomId).sort()).toEqual(
        ['!a0:example.org', ROOM, '!r2:example.org'].sort(),
      );
      expect(await store.managementRoomOf(ALICE_MX)).toMatchObject({
        roomId: '!m:example.org',
        remoteJid: null,
      });
      // A new portal with Bob replaces the old one; a new management room too.
      clock += 1;
      await store.putRoom({
        roomId: '!r3:example.org',
        kind: 'portal',
        localUser: ALICE_MX,
        remoteJid: BOB_REMOTE,
      });
      await store.putRoom({ roomId: '!m2:example.org', kind: 'management', localUser: ALICE_MX });
      expect(await store.room(ROOM)).toBeUndefined();
      expect((await store.portalOf(ALICE_MX, BOB_REMOTE))?.roomId).toBe('!r3:example.org');
      expect((await store.managementRoomOf(ALICE_MX))?.roomId).toBe('!m2:example.org');
      expect((await store.portalsOf(ALICE_MX)).map((r) => r.roomId)).toEqual([
        '!r2:example.org',
        '!r3:example.org',
      ]);
      // Each change is seen by the next read (the SQLite store keeps what it read in memory).
      expect((await store.room('!r3:example.org'))?.encryptionTold).toBe(false);
      expect(await store.markEncryptionTold('!r3:example.org')).toBe(true);
      expect(await store.markEncryptionTold('!r3:example.org')).toBe(false);
      expect((await store.room('!r3:example.org'))?.encryptionTold).toBe(true);
      await store.forgetRoom('!r3:example.org');
      expect(await store.portalOf(ALICE_MX, BOB_REMOTE)).toBeUndefined();
      expect(await store.room('!r3:example.org')).toBeUndefined();
      expect(await store.portalsOf('@nobody:example.org')).toEqual([]);
      expect(await store.managementRoomOf('@nobody:example.org')).toBeUndefined();
    });

    it('knows ghosts, which contact each stands for, and whether it is registered', async () => {
      expect(await store.ghost('@wa_1:example.org')).toBeUndefined();
      await store.putGhost('@wa_1:example.org', BOB_REMOTE);
      expect(await store.ghost('@wa_1:example.org')).toEqual({
        userId: '@wa_1:example.org',
        jid: BOB_REMOTE,
        displayname: null,
        registered: false,
      });
      await store.markGhostRegistered('@wa_1:example.org', 'Bob (WA)');
      await store.putGhost('@wa_1:example.org', BOB_REMOTE);
      expect(await store.ghost('@wa_1:example.org')).toMatchObject({
        displayname: 'Bob (WA)',
        registered: true,
      });
    });

    it("remembers the local users' reactions and who turned double puppeting on", async () => {
      expect(await store.reaction('$re1')).toBeUndefined();
      await store.putReaction(ROOM, '$re1', '$s1', '👍');
      await store.putReaction(ROOM, '$re1', '$s2', '❤️');
      expect(await store.reaction('$re1')).toEqual({ target: '$s1', emoji: '👍' });
      expect(await store.doublePuppet(ALICE_MX)).toBe(false);
      await store.setDoublePuppet(ALICE_MX, true);
      await store.setDoublePuppet(ALICE_MX, true);
      expect(await store.doublePuppet(ALICE_MX)).toBe(true);
      await store.setDoublePuppet(ALICE_MX, false);
      expect(await store.doublePuppet(ALICE_MX)).toBe(false);
    });
  });

  describe('XmppStore', () => {
    let store: XmppStore;
    beforeEach(async () => (store = (await openBoth()).xmpp));

    it('a contact found again keeps its subscription state and its name', async () => {
      await store.ensureContact(ALICE, BOB, BOB_REMOTE, 'Bob');
      await store.setSubscription(ALICE, BOB, { subTo: true, asked: true });
      const again = await store.ensureContact(ALICE, BOB, BOB_REMOTE);
      expect(again).toEqual({
        localUser: ALICE,
        contact: BOB,
        remote: BOB_REMOTE,
        name: 'Bob',
        subTo: true,
        subFrom: false,
        asked: true,
        about: null,
        photoId: null,
        photoHash: null,
      });
      expect(await store.contactByRemote(ALICE, BOB_REMOTE)).toEqual(again);
      expect(await store.contact(ALICE, BOB)).toEqual(again);
      expect(await store.contact(CAROL, BOB)).toBeUndefined();
      expect(await store.contactByRemote(CAROL, BOB_REMOTE)).toBeUndefined();
      expect((await store.ensureContact(ALICE, BOB, BOB_REMOTE, 'Bobby')).name).toBe('Bobby');
    });

    it("keeps a contact's profile: name, about text and picture (kept when the same id comes without bytes)", async () => {
      await store.ensureContact(ALICE, BOB, BOB_REMOTE);
      const photo = Buffer.from([0xff, 0xd8, 0xff, 1, 2, 3]);
      await store.setProfile(ALICE, BOB, {
        name: 'Bob',
        about: 'fishing',
        photo: { id: 'p1', hash: 'h1', bytes: photo, type: 'image/jpeg' },
      });
      expect(await store.contact(ALICE, BOB)).toMatchObject({
        name: 'Bob',
        about: 'fishing',
        photoId: 'p1',
        photoHash: 'h1',
      });
      expect(await store.contactPhoto(ALICE, BOB)).toEqual({ bytes: photo, type: 'image/jpeg' });
      await store.setProfile(ALICE, BOB, { name: 'Bobby', about: null, photo: { id: 'p1', hash: 'h1' } });
      expect(await store.contact(ALICE, BOB)).toMatchObject({ name: 'Bobby', about: null, photoHash: 'h1' });
      expect((await store.contactPhoto(ALICE, BOB))?.bytes).toEqual(photo);
      await store.setProfile(ALICE, BOB, { name: 'Bobby', about: null });
      expect(await store.contact(ALICE, BOB)).toMatchObject({ photoId: null, photoHash: null });
      expect(await store.contactPhoto(ALICE, BOB)).toBeUndefined();
    });

    it('lists contacts by JID local part, bytewise', async () => {
      for (const [c, r] of [
        [DAVE, DAVE_REMOTE],
        [BOB, BOB_REMOTE],
        ['+441234', '441234@wa.interop'],
      ] as const) {
        await store.ensureContact(ALICE, c, r);
      }
      expect((await store.contacts(ALICE)).map((c) => c.contact)).toEqual(['+441234', DAVE, BOB]);
      expect(await store.contacts(CAROL)).toEqual([]);
    });

    it('a subscription change sets only the flags it names', async () => {
      await store.ensureContact(ALICE, BOB, BOB_REMOTE);
      await store.setSubscription(ALICE, BOB, { subTo: true, subFrom: true, asked: true });
      await store.setSubscription(ALICE, BOB, { subFrom: false });
      await store.setSubscription(ALICE, BOB, {});
      expect(await store.contact(ALICE, BOB)).toMatchObject({ subTo: true, subFrom: false, asked: true });
    });

    it('runs: each start sees the one before, unset stoppedAt after an unclean stop', async () => {
      const first = await store.beginRun();
      expect(first.previous).toBeUndefined();
      expect(first.run).toEqual({ run: first.run.run, startedAt: clock, stoppedAt: undefined });
      clock += 1000;
      const second = await store.beginRun(); // the first never stopped
      expect(second.previous).toEqual(first.run);
      expect(second.run.run).toBeGreaterThan(first.run.run);
      clock += 1000;
      await store.endRun(second.run.run);
      const third = await store.beginRun();
      expect(third.previous).toEqual({ ...second.run, stoppedAt: clock });
    });

    it('the journal: appends in order, settles, prunes, replays, summarises and forgets', async () => {
      const { run } = (await store.beginRun()).run;
      const append = (contact: string, localId: string, at: number) => ({
        localUser: ALICE,
        contact,
        localId,
        stanza: `<message id="${localId}"/>`,
        receivedAt: at,
      });
      const seqs = await store.writeJournal({
        run,
        append: [append(BOB, 'a1', 1), append(DAVE, 'a2', 2), append(BOB, 'a3', 3)],
        settle: [],
      });
      expect(seqs).toHaveLength(3);
      expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
      expect(await store.writeJournal({ run, append: [], settle: [] })).toEqual([]);
      // Settling clears the content: the row is no longer replayed.
      const more = await store.writeJournal({ run, append: [append(BOB, 'a4', 4)], settle: [seqs[0]!] });
      expect(more[0]).toBeGreaterThan(seqs[2]!);
      expect(await store.journaled()).toEqual([
        { seq: seqs[1], localUser: ALICE, localId: 'a2', stanza: '<message id="a2"/>' },
        { seq: seqs[2], localUser: ALICE, localId: 'a3', stanza: '<message id="a3"/>' },
        { seq: more[0], localUser: ALICE, localId: 'a4', stanza: '<message id="a4"/>' },
      ]);
      // Pruning removes content-free rows below the mark only.
      await store.writeJournal({ run, append: [], settle: [seqs[1]!, seqs[2]!], pruneBelow: seqs[2]! });
      expect((await store.journaled()).map((j) => j.localId)).toEqual(['a4']);
      // The next run sees what this one held, per user and contact; then forgets the settled rows.
      const next = (await store.beginRun()).run.run;
      expect(await store.journalSummary(next)).toEqual([
        { localUser: ALICE, contact: BOB, count: 2, lastLocalId: 'a4', lastAt: 4 },
      ]);
      expect(await store.journalSummary(run)).toEqual([]);
      await store.forgetJournal(next);
      expect(await store.journalSummary(next)).toEqual([
        { localUser: ALICE, contact: BOB, count: 1, lastLocalId: 'a4', lastAt: 4 },
      ]);
      // A clean stop drops content-free rows; content stays to be replayed.
      await store.writeJournal({ run: next, append: [append(DAVE, 'b1', 5)], settle: [] });
      await store.endRun(next);
      expect((await store.journaled()).map((j) => j.localId)).toEqual(['a4', 'b1']);
    });

    it("unregistering forgets the user's contacts and journal, and no one else's", async () => {
      const { run } = (await store.beginRun()).run;
      await store.ensureContact(ALICE, BOB, BOB_REMOTE);
      await store.ensureContact(CAROL, BOB, BOB_REMOTE);
      const entry = (localUser: string) => ({
        localUser,
        contact: BOB,
        localId: 'x',
        stanza: '<m/>',
        receivedAt: 1,
      });
      await store.writeJournal({ run, append: [entry(ALICE), entry(CAROL)], settle: [] });
      await store.forgetUser(ALICE);
      expect(await store.contacts(ALICE)).toEqual([]);
      expect((await store.journaled()).map((j) => j.localUser)).toEqual([CAROL]);
      expect(await store.contact(CAROL, BOB)).toBeDefined();
    });
  });
});
