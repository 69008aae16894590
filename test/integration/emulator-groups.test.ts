/**
 * Groups through the emulator (docs/PROTOCOL.md 5.7), end to end over real TCP: native users with
 * their own Signal identities create and run groups, send group messages encrypted once with their
 * sender keys, and the gateway holds metadata and ciphertext only.
 */
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { deliveryBytes } from '../../emulator/relay.js';
import { distributionIdOf, NativeGroupError, senderKeyAddress } from '../../emulator/native-groups.js';
import { NativeUser, type ReceivedMessage } from '../../emulator/native-user.js';
import { createLogger } from '../../src/observability/logger.js';
import { decodeStanza, type MessageStanza } from '../../src/protocol/stanza/index.js';
import { groupDecrypt } from '../../src/signal/sender-keys.js';
import { adminApi } from '../support/admin-api.js';
import { tempDir } from '../support/tmp.js';

const MARKER = 'marker-group-5c1e-only-the-members-know-this';
const PHONES = { a: '+4915100000001', b: '+4915100000002', c: '+4915100000003', d: '+4915100000004' };

describe('groups through the emulator', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let dataDir: string;
  let logFile: string;
  const users: NativeUser[] = [];

  const user = async (phone: string) => {
    const u = await NativeUser.connect({ emulator: running.gateway, phone, rootPublicKey: root });
    users.push(u);
    return u;
  };
  const admin = (method: string, pathname: string, body?: unknown) =>
    adminApi(running.admin?.port ?? 0, method, pathname, body);
  const textOf = (m: ReceivedMessage) => (m.content.kind === 'text' ? m.content.text : undefined);
  const said = (u: NativeUser, id: string) => u.waitForMessage((m) => m.id === id).then(textOf);
  /** What the gateway holds for `account`'s devices: the group messages, as they will be delivered. */
  const queuedMessages = (account: string) =>
    running.gateway
      .queued(account)
      .filter((q) => q.kind === 'message')
      .map((q) => ({ item: q, stanza: decodeStanza(deliveryBytes(q)) as MessageStanza }));

  beforeEach(async () => {
    tmp = tempDir('emulator-groups-');
    logFile = path.join(tmp.dir, 'emulator.log');
    const config = tmp.file(
      'emulator.yaml',
      [
        'gateway:',
        '  port: 0',
        'emulator:',
        '  data_dir: data',
        'media:',
        '  port: 0',
        'admin:',
        '  port: 0',
        '',
      ].join('\n'),
    );
    const loaded = loadEmulatorConfig(config);
    dataDir = loaded.paths.dataDir;
    root = initKeys(dataDir, { validityDays: 30, intermediateValidityDays: 365 }).rootPublicKey;
    running = await RunningEmulator.start({
      loaded,
      logger: createLogger({
        level: 'trace',
        format: 'json',
        destination: createWriteStream(logFile) as never,
      }),
    });
  });

  afterEach(async () => {
    await Promise.all(users.splice(0).map((u) => u.close()));
    await running.stop();
    tmp.cleanup();
  });

  /** Three connected members of a new group, created by `a`. */
  async function threeMembers() {
    const [a, b, c] = [await user(PHONES.a), await user(PHONES.b), await user(PHONES.c)];
    const { group } = await a.groups.create('Hiking, Saturday', [b.jid, c.jid]);
    for (const u of [a, b, c]) {
      await u.groups.waitForEvent((e) => e.group === group.jid && e.event.event === 'group_created');
    }
    return { a, b, c, g: group.jid };
  }

  it('every member sees the create at version 1, and messages in every direction decrypt for every member', async () => {
    const { a, b, c, g } = await threeMembers();
    for (const u of [a, b, c]) {
      expect(u.groups.events[0]).toMatchObject({ group: g, version: 1, author: a.jid });
      expect(
        u.groups.groups
          .get(g)
          ?.participants.map((p) => p.jid)
          .sort(),
      ).toEqual([a.jid, b.jid, c.jid].sort());
    }
    const fromA = await a.send(g, { kind: 'text', text: `${MARKER} from a` });
    const fromB = await b.send(g, { kind: 'text', text: 'from b' });
    const fromC = await c.send(g, { kind: 'text', text: 'from c' });
    for (const [u, ids] of [
      [a, [fromB, fromC]],
      [b, [fromA, fromC]],
      [c, [fromA, fromB]],
    ] as const) {
      for (const id of ids) {
        const m = await u.waitForMessage((x) => x.id === id);
        expect(m.group).toBe(g);
        expect(m.participant).toBe(`${m.from.split('@')[0]}:0@wa.interop`);
      }
    }
    expect(await said(b, fromA)).toBe(`${MARKER} from a`);
    expect(await said(a, fromC)).toBe('from c');

    // Nothing of it in the emulator's files or logs.
    await running.stop();
    const files = readdirSync(dataDir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
    for (const f of [...files.map((f) => path.join(f.parentPath, f.name)), logFile]) {
      expect(readFileSync(f).includes(MARKER)).toBe(false);
    }
  });

  it('a message is one skmsg for everyone, with the sender key only for the devices that lack it', async () => {
    const { a, c, g } = await threeMembers();
    await c.disconnect();
    const first = await a.send(g, { kind: 'text', text: 'first' });
    const second = await a.send(g, { kind: 'text', text: 'second' });
    const queued = queuedMessages(c.jid);
    expect(queued.map((q) => q.stanza.id)).toEqual([first, second]);
    for (const q of queued) {
      expect(q.stanza.encs.filter((e) => e.type === 'skmsg')).toHaveLength(1);
      expect(q.stanza).toMatchObject({ from: g, participant: `${a.jid.split('@')[0]}:0@wa.interop` });
    }
    expect(queued[0]?.item.pairwise_type).toBe('pkmsg'); // the first carries a's sender key
    expect(queued[1]?.item.pairwise).toBeNull(); // c already has it
    expect(a.groups.keyHolders.get(g)).toEqual(
      new Set([`${PHONES.b.slice(1)}:0@wa.interop`, `${PHONES.c.slice(1)}:0@wa.interop`]),
    );
    await c.reconnect();
    expect(await said(c, first)).toBe('first');
    expect(await said(c, second)).toBe('second');
  });

  it('a member added later reads what is sent after it joined, and nothing from before', async () => {
    const { a, b, g } = await threeMembers();
    const before = await a.send(g, { kind: 'text', text: 'before d' });
    const d = await user(PHONES.d);
    expect(await a.groups.participants(g, 'add', [d.jid])).toEqual([{ jid: d.jid }]);
    const added = await d.groups.waitForEvent((e) => e.event.event === 'participants_changed');
    expect(added).toMatchObject({ group: g, version: 2, author: a.jid });
    const after = await b.send(g, { kind: 'text', text: 'welcome d' });
    expect(await said(d, after)).toBe('welcome d');
    expect(d.received.some((m) => m.id === before)).toBe(false);
    expect(d.groups.groups.get(g)?.version).toBe(2);
  });

  it('after a removal the others rotate their sender keys, and the removed member cannot read what follows', async () => {
    const { a, b, c, g } = await threeMembers();
    const early = await a.send(g, { kind: 'text', text: 'c can read this' });
    expect(await said(c, early)).toBe('c can read this');
    await a.groups.participants(g, 'remove', [c.jid]);
    await c.groups.waitForEvent((e) => e.event.event === 'participants_changed');
    expect(c.groups.groups.has(g)).toBe(false);
    await b.groups.waitForEvent((e) => e.event.event === 'participants_changed');
    await b.disconnect();
    const later = await a.send(g, { kind: 'text', text: 'c must not read this' });
    const [held] = queuedMessages(b.jid);
    expect(held?.item.pairwise).not.toBeNull(); // a's new sender key, distributed again
    expect(running.gateway.queued(c.jid).filter((q) => q.kind === 'message')).toHaveLength(0);
    const skmsg = held?.stanza.encs.find((e) => e.type === 'skmsg')?.ciphertext as Uint8Array;
    await expect(
      groupDecrypt(c.groups.senderKeys, senderKeyAddress(a.jid, 0), distributionIdOf(g), skmsg),
    ).rejects.toMatchObject({ code: 'signal_no_sender_key' });
    await b.reconnect();
    expect(await said(b, later)).toBe('c must not read this');
    expect(c.received.some((m) => m.id === later)).toBe(false);
    // c, no longer a participant, is refused.
    await expect(c.send(g, { kind: 'text', text: 'still here?' })).rejects.toMatchObject({ status: 403 });
  });

  it('admins add, promote and demote; others are refused with 401; the last admin leaving promotes the eldest', async () => {
    const { a, b, c, g } = await threeMembers();
    const d = await user(PHONES.d);
    await expect(b.groups.participants(g, 'add', [d.jid])).rejects.toMatchObject({ status: 401 });
    expect(await a.groups.participants(g, 'promote', [b.jid])).toEqual([{ jid: b.jid }]);
    await b.groups.waitForEvent((e) => e.version === 2);
    expect(await b.groups.participants(g, 'add', [d.jid, c.jid, '4915199999999@wa.interop'])).toEqual([
      { jid: d.jid },
      { jid: c.jid, error: 409 },
      { jid: '4915199999999@wa.interop', error: 404 },
    ]);
    expect(await a.groups.participants(g, 'demote', [b.jid])).toEqual([{ jid: b.jid }]);
    await expect(a.groups.participants(g, 'demote', [a.jid])).resolves.toEqual([{ jid: a.jid, error: 409 }]);
    await a.groups.leave(g);
    const promoted = await c.groups.waitForEvent(
      (e) => e.event.event === 'participants_changed' && e.author === undefined,
    );
    expect(promoted.event).toMatchObject({ action: 'promote', participants: [b.jid] });
    await expect(a.groups.info(g)).rejects.toMatchObject({ status: 403 });
    const info = await c.groups.info(g);
    expect(info.participants).toEqual([
      { jid: b.jid, admin: true },
      { jid: c.jid, admin: false },
      { jid: d.jid, admin: false },
    ]);
  });

  it('in announce mode only admins send', async () => {
    const { a, b, c, g } = await threeMembers();
    await expect(b.groups.setSetting(g, 'announcement')).rejects.toMatchObject({ status: 401 });
    await a.groups.setSetting(g, 'announcement');
    await b.groups.waitForEvent((e) => e.event.event === 'setting_changed');
    expect(b.groups.groups.get(g)?.announce).toBe(true);
    await expect(b.send(g, { kind: 'text', text: 'may I?' })).rejects.toBeInstanceOf(NativeGroupError);
    await expect(b.send(g, { kind: 'text', text: 'may I?' })).rejects.toMatchObject({ status: 401 });
    const news = await a.send(g, { kind: 'text', text: 'admins only' });
    expect(await said(c, news)).toBe('admins only');
  });

  it('subject and description changes are announced with increasing versions; a stale description is 409', async () => {
    const { a, b, c, g } = await threeMembers();
    await b.groups.setSubject(g, 'Hiking, Sunday');
    const id = await c.groups.setDescription(g, 'Meet at the station.\nBring water.');
    await expect(b.groups.setDescription(g, 'stale', 'NOTTHEID')).rejects.toMatchObject({ status: 409 });
    await expect(b.groups.setSubject(g, 'x'.repeat(101))).rejects.toMatchObject({ status: 406 });
    await a.groups.waitForEvent((e) => e.version === 3);
    expect(a.groups.events.map((e) => [e.version, e.event.event])).toEqual([
      [1, 'group_created'],
      [2, 'subject_changed'],
      [3, 'description_changed'],
    ]);
    expect(a.groups.groups.get(g)).toMatchObject({
      subject: 'Hiking, Sunday',
      version: 3,
      description: { id, text: 'Meet at the station.\nBring water.' },
    });
    await a.groups.setSetting(g, 'locked');
    await c.groups.waitForEvent((e) => e.version === 4);
    await expect(c.groups.setSubject(g, 'mine now')).rejects.toMatchObject({ status: 401 });
  });

  it('joins by invite code; a revoked code is 410, an unknown one 404', async () => {
    const { a, b, g } = await threeMembers();
    const d = await user(PHONES.d);
    await expect(b.groups.inviteCode(g)).rejects.toMatchObject({ status: 401 });
    const code = await a.groups.inviteCode(g);
    expect(code).toMatch(/^[A-Za-z0-9]{22}$/);
    expect(await a.groups.inviteCode(g)).toBe(code);
    expect((await d.groups.inviteInfo(code)).jid).toBe(g);
    const joined = await d.groups.join(code);
    expect(joined.participants.map((p) => p.jid)).toContain(d.jid);
    const event = await b.groups.waitForEvent((e) => e.event.event === 'participants_changed');
    expect(event).toMatchObject({
      author: d.jid,
      event: { action: 'add', reason: 'invite', participants: [d.jid] },
    });
    await expect(d.groups.join(code)).rejects.toMatchObject({ status: 409 });
    const fresh = await a.groups.inviteCode(g, true);
    expect(fresh).not.toBe(code);
    await expect(d.groups.inviteInfo(code)).rejects.toMatchObject({ status: 410 });
    await expect(d.groups.join('AAAAAAAAAAAAAAAAAAAAAA')).rejects.toMatchObject({ status: 404 });
    const hello = await d.send(g, { kind: 'text', text: 'joined by link' });
    expect(await said(a, hello)).toBe('joined by link');
  });

  it('receipts name the participant that sent them and reach the sender', async () => {
    const { a, b, c, g } = await threeMembers();
    const id = await a.send(g, { kind: 'text', text: 'did you get it?' });
    const receiptFrom = (u: NativeUser) =>
      waitUntil(() => a.receipts.find((r) => r.id === id && r.type === 'delivery' && r.from === u.jid));
    expect(await receiptFrom(b)).toEqual({
      from: b.jid,
      id,
      type: 'delivery',
      group: g,
      participant: `${PHONES.b.slice(1)}:0@wa.interop`,
    });
    expect(await receiptFrom(c)).toMatchObject({
      group: g,
      participant: `${PHONES.c.slice(1)}:0@wa.interop`,
    });
  });

  it('a member offline gets the changes and messages in the order they happened, on reconnect', async () => {
    const { a, c, g } = await threeMembers();
    await c.disconnect();
    await a.groups.setSubject(g, 'first change');
    const m1 = await a.send(g, { kind: 'text', text: 'after the first change' });
    await a.groups.setSubject(g, 'second change');
    const m2 = await a.send(g, { kind: 'text', text: 'after the second change' });
    expect(
      running.gateway.queued(c.jid).map((q) => [q.kind, q.kind === 'message' ? q.stanza_id : 'n']),
    ).toEqual([
      ['notification', 'n'],
      ['message', m1],
      ['notification', 'n'],
      ['message', m2],
    ]);
    await c.reconnect();
    expect(await said(c, m2)).toBe('after the second change');
    expect(await said(c, m1)).toBe('after the first change');
    await c.groups.waitForEvent((e) => e.version === 3);
    expect(c.groups.groups.get(g)?.subject).toBe('second change');
    await waitUntil(() => (running.gateway.queued(c.jid).length === 0 ? true : undefined));
  });

  it('a gateway restart keeps the groups and what was queued for them', async () => {
    const { a, c, g } = await threeMembers();
    await c.disconnect();
    const kept = await a.send(g, { kind: 'text', text: 'kept across the restart' });
    expect((await admin('POST', '/admin/restart', {})).status).toBe(200);
    const listed = await admin('GET', '/admin/groups');
    expect(listed.body.groups).toEqual([
      expect.objectContaining({ jid: g, version: 1, subject: 'Hiking, Saturday' }),
    ]);
    await c.reconnect();
    expect(await said(c, kept)).toBe('kept across the restart');
    await waitUntil(() => (a.isConnected ? true : undefined));
    expect((await a.groups.info(g)).participants).toHaveLength(3);
  });

  it('the admin API creates groups, changes participants and subjects, lists metadata, and sends into a group', async () => {
    for (const p of [PHONES.a, PHONES.b, PHONES.c]) {
      expect((await admin('POST', '/admin/native-users', { phone: p, behaviour: 'silent' })).status).toBe(
        201,
      );
    }
    const native = (p: string) => running.native(p) as NativeUser;
    const [a, b, c] = [native(PHONES.a), native(PHONES.b), native(PHONES.c)];
    const made = await admin('POST', '/admin/groups', {
      creator: PHONES.a,
      subject: 'From the admin API',
      participants: [PHONES.b, '4915199999999@wa.interop'],
    });
    expect(made.status).toBe(201);
    const g = made.body.jid as string;
    expect(made.body.failed).toEqual([{ jid: '4915199999999@wa.interop', error: 404 }]);
    await b.groups.waitForEvent((e) => e.group === g);
    expect((await admin('POST', '/admin/groups', { creator: PHONES.a, subject: '' })).status).toBe(406);

    const add = await admin('POST', '/admin/groups/participants', {
      by: PHONES.a,
      group: g,
      action: 'add',
      participants: [PHONES.c],
    });
    expect(add).toMatchObject({ status: 200, body: { results: [{ jid: c.jid }] } });
    const refused = await admin('POST', '/admin/groups/participants', {
      by: PHONES.b,
      group: g,
      action: 'remove',
      participants: [PHONES.c],
    });
    expect(refused).toMatchObject({ status: 401, body: { error: 'admin_group_refused' } });

    expect(
      (await admin('POST', '/admin/groups/subject', { by: PHONES.b, group: g, subject: 'Renamed' })).status,
    ).toBe(200);
    const notIn = await admin('POST', '/admin/groups/subject', { by: PHONES.d, group: g, subject: 'x' });
    expect(notIn.status).toBe(403);

    await c.groups.waitForEvent((e) => e.group === g && e.event.event === 'participants_changed');
    const sent = await admin('POST', '/admin/native-users/send', {
      from: PHONES.a,
      to: g,
      content: { kind: 'text', text: `${MARKER} via admin` },
    });
    expect(sent.status).toBe(200);
    expect(await said(c, sent.body.id as string)).toBe(`${MARKER} via admin`);
    expect(await said(b, sent.body.id as string)).toBe(`${MARKER} via admin`);

    const list = await admin('GET', '/admin/groups');
    expect(list.body.groups).toEqual([
      expect.objectContaining({ jid: g, subject: 'Renamed', version: 3, creator: a.jid }),
    ]);
    expect(JSON.stringify(list.body)).not.toContain(MARKER);
    expect((await admin('GET', `/admin/groups?account=${encodeURIComponent(PHONES.d)}`)).body.groups).toEqual(
      [],
    );
    expect((await admin('GET', '/admin/groups?account=nobody')).status).toBe(400);

    expect((await admin('POST', '/admin/groups/leave', { account: PHONES.c, group: g })).status).toBe(200);
    expect((await admin('POST', '/admin/groups/leave', { account: PHONES.c, group: g })).status).toBe(403);
    await c.groups.waitForEvent((e) => e.group === g && e.author === c.jid);
    expect(c.groups.groups.has(g)).toBe(false);
  });
});

async function waitUntil<T>(probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
