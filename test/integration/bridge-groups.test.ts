/**
 * Groups and contacts' profiles through the bridge core end to end: a local user's puppet (driven through a test adapter
 * that shows groups) in groups with simulated gatekeeper users, through the emulator over real TCP
 * (sender keys, w:g2 requests, w:gp2 notifications), with the bridge's state on a real SQLite file.
 */
import { Bridge } from '../../src/bridge/core.js';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { GroupUpdate, OutgoingEvent } from '../../src/bridge/events.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser, type ReceivedMessage } from '../../emulator/native-user.js';
import { senderKeyAddress } from '../../emulator/native-groups.js';
import { distributionIdOf } from '../../src/bridge/groups.js';
import { deliveryBytes } from '../../emulator/relay.js';
import { decodeStanza, type MessageStanza } from '../../src/protocol/stanza/index.js';
import { groupDecrypt } from '../../src/signal/sender-keys.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { SqliteSenderKeyBackend, SqliteSignalBackend } from '../../src/signal/index.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { TestAdapter } from '../support/test-adapter.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';

const PROVIDER = 'testbridge';
const ALICE = '@alice:example.org';

describe('groups through the bridge core', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let signingKey: ProviderPrivateJwk;
  let store: SqliteStore;
  let bridge: Bridge;
  let adapter: TestAdapter;
  let core: BridgeCore;
  const natives: NativeUser[] = [];

  const native = async (phone: string) => {
    const u = await NativeUser.connect({ emulator: running.gateway, phone, rootPublicKey: root });
    natives.push(u);
    return u;
  };

  const startBridge = async () => {
    store = openSqliteStore(tmp.file('bridge.db'));
    const opened = store;
    bridge = new Bridge({
      store: opened,
      signalBackend: (id) => new SqliteSignalBackend(opened.db, id),
      senderKeyBackend: (id) => new SqliteSenderKeyBackend(opened.db, id),
      gateway: emulatorGateway(running.gateway, root, { id: PROVIDER, signingKey }),
      preKeys: 20,
    });
    adapter = new TestAdapter();
    core = bridge.attach(adapter);
    await bridge.start();
  };

  const stopBridge = async () => {
    await bridge.stop();
    await store.close();
  };

  const aliceJid = async () => accountJidOf((await store.puppets.byLocalId(ALICE))!.accountId, PROVIDER);
  const connected = () =>
    adapter.until(() => bridge.puppet(ALICE)?.connection.isConnected === true, 'the puppet to connect');
  const say = (localId: string, group: string, body: string): OutgoingEvent => ({
    localId,
    localUser: ALICE,
    remote: group,
    event: { type: 'message', body: { kind: 'text', text: body } },
  });
  const update = (match: (u: GroupUpdate) => boolean, what: string) =>
    adapter.until(() => adapter.groupUpdates.some(match), what).then(() => adapter.groupUpdates.find(match)!);
  const groupText = (user: NativeUser, group: string, text: string): Promise<ReceivedMessage> =>
    user.waitForMessage((m) => m.group === group && m.content.kind === 'text' && m.content.text === text);

  beforeEach(async () => {
    tmp = tempDir();
    signingKey = await generateProviderKey('EdDSA');
    ({ running, root } = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey } }));
    await startBridge();
  });

  afterEach(async () => {
    await Promise.all(natives.splice(0).map((u) => u.close()));
    await stopBridge();
    await running.stop();
    tmp.cleanup();
  });

  it('a group made on the gatekeeper side reaches the adapter, and messages cross both ways once each', async () => {
    await core.enlist(ALICE);
    await connected();
    const [bob, carol] = [await native('+4915112345678'), await native('+4915122223333')];
    const me = await aliceJid();
    const { group } = await bob.groups.create('Lunch', [me, carol.jid]);

    const created = await update((u) => u.change.kind === 'created', 'the group created');
    expect(created.snapshot).toMatchObject({ group: group.jid, subject: 'Lunch', version: 1 });
    expect(created.snapshot.members).toEqual(
      expect.arrayContaining([
        { remote: bob.jid, phone: '+4915112345678', admin: true },
        { remote: me, admin: false, self: true },
        { remote: carol.jid, phone: '+4915122223333', admin: false },
      ]),
    );

    // Native -> the local user: shown in the group with its author; Bob gets the receipt from Alice.
    const id = await bob.send(group.jid, { kind: 'text', text: 'who is in?' });
    await adapter.until(() => adapter.textsFrom(group.jid).includes('who is in?'), 'the group message');
    expect(adapter.delivered.find((e) => e.remoteId === id)).toMatchObject({
      remote: group.jid,
      author: bob.jid,
      localUser: ALICE,
    });
    // Carol's device receipts it too, and may come first: the one from Alice is waited for.
    const receipt = await bob.waitForReceipt(id, 'delivery', 10_000, me);
    expect(receipt).toMatchObject({ group: group.jid, from: me });

    // The local user -> everyone, once for the whole group.
    await core.submit(say('$g1', group.jid, 'me!'));
    const [toBob, toCarol] = await Promise.all([
      groupText(bob, group.jid, 'me!'),
      groupText(carol, group.jid, 'me!'),
    ]);
    expect(toBob.from).toBe(me);
    expect(toCarol.id).toBe(toBob.id);
    await adapter.until(() => adapter.statesOf('$g1').includes('sent'), 'the group message acknowledged');
  });

  it('members change on both sides; a removed member cannot read what follows; leaving ends the group', async () => {
    await core.enlist(ALICE);
    await connected();
    const [bob, carol, dave] = [
      await native('+4915112345678'),
      await native('+4915122223333'),
      await native('+4915133334444'),
    ];
    const me = await aliceJid();
    const { group } = await bob.groups.create('Team', [me, carol.jid]);
    await update((u) => u.change.kind === 'created', 'the group created');
    await core.submit(say('$before', group.jid, 'before'));
    await groupText(carol, group.jid, 'before');

    // Bob makes Alice an admin; she adds Dave from her side.
    await bob.groups.participants(group.jid, 'promote', [me]);
    const promoted = await update((u) => u.change.kind === 'promoted', 'Alice promoted');
    expect(promoted.snapshot.members.find((m) => m.self)?.admin).toBe(true);
    await core.changeGroup!(ALICE, group.jid, { action: 'add', members: [dave.jid] });
    await dave.groups.waitForEvent((e) => e.group === group.jid && e.event.event === 'participants_changed');
    await update((u) => u.change.kind === 'added', 'Dave added');
    await core.submit(say('$dave', group.jid, 'welcome Dave'));
    await groupText(dave, group.jid, 'welcome Dave');

    // Bob removes Carol: Alice's next message goes under a new sender key, which Carol never gets.
    await bob.groups.participants(group.jid, 'remove', [carol.jid]);
    await update((u) => u.change.kind === 'removed', 'Carol removed');
    await bob.disconnect();
    await core.submit(say('$after', group.jid, 'after Carol'));
    await groupText(dave, group.jid, 'after Carol');
    // Held for Bob: the one skmsg, with Alice's new sender key pairwise; Carol's keys cannot open it.
    const [held] = running.gateway
      .queued(bob.jid)
      .filter((q) => q.kind === 'message')
      .map((q) => ({ item: q, stanza: decodeStanza(deliveryBytes(q)) as MessageStanza }));
    expect(held?.item.pairwise).not.toBeNull();
    const skmsg = held?.stanza.encs.find((e) => e.type === 'skmsg')?.ciphertext as Uint8Array;
    const alicePuppet = (await store.puppets.byLocalId(ALICE))!;
    await expect(
      groupDecrypt(
        carol.groups.senderKeys,
        senderKeyAddress(me, alicePuppet.deviceId),
        distributionIdOf(group.jid),
        skmsg,
      ),
    ).rejects.toMatchObject({ code: 'signal_no_sender_key' });
    expect(carol.received.some((m) => m.content.kind === 'text' && m.content.text === 'after Carol')).toBe(
      false,
    );
    await bob.reconnect();
    await groupText(bob, group.jid, 'after Carol');

    // A subject change, then Alice leaves: the adapter is told the group is gone for her.
    await bob.groups.setSubject(group.jid, 'Team (old)');
    const subject = await update((u) => u.change.kind === 'subject', 'the subject');
    expect(subject.snapshot.subject).toBe('Team (old)');
    await core.changeGroup!(ALICE, group.jid, { action: 'leave' });
    await update((u) => u.change.kind === 'gone', 'the group gone');
    await expect(
      core.changeGroup!(ALICE, group.jid, { action: 'subject', subject: 'x' }),
    ).rejects.toMatchObject({
      code: 'bridge_group_refused',
    });
  });

  it('a member who cannot read a group message asks again, and gets it pairwise with the sender key', async () => {
    await core.enlist(ALICE);
    await connected();
    const [bob, carol] = [await native('+4915112345678'), await native('+4915122223333')];
    const me = await aliceJid();
    const { group } = await bob.groups.create('Retry', [me, carol.jid]);
    await update((u) => u.change.kind === 'created', 'the group created');
    await core.submit(say('$r1', group.jid, 'one'));
    await groupText(carol, group.jid, 'one');
    // Acknowledged: Carol's device now counts as holding the key, so the next message has none for her.
    await adapter.until(() => adapter.statesOf('$r1').includes('sent'), 'the first message acknowledged');
    // Carol's phone loses Alice's sender key: the next group message is unreadable for her.
    const alicePuppet = (await store.puppets.byLocalId(ALICE))!;
    carol.groups.senderKeys.deleteSenderKey(
      distributionIdOf(group.jid),
      senderKeyAddress(me, alicePuppet.deviceId),
    );
    await core.submit(say('$r2', group.jid, 'two'));
    const again = await groupText(carol, group.jid, 'two');
    expect(again.from).toBe(me);
    await groupText(bob, group.jid, 'two');
    // And the key came with it: the next one is read as usual.
    await core.submit(say('$r3', group.jid, 'three'));
    await groupText(carol, group.jid, 'three');
  });

  it('a group made by the local user appears on the gatekeeper side, and survives a bridge restart', async () => {
    await core.enlist(ALICE);
    await connected();
    const bob = await native('+4915112345678');
    const made = await core.createGroup!(ALICE, 'From Matrix', [bob.jid]);
    expect(made.members.find((m) => m.self)).toMatchObject({ admin: true });
    const seen = await bob.groups.waitForEvent(
      (e) => e.group === made.group && e.event.event === 'group_created',
    );
    expect(seen.event.event === 'group_created' && seen.event.group.subject).toBe('From Matrix');
    await update((u) => u.change.kind === 'created', 'the group created');
    expect(await core.group!(ALICE, made.group)).toMatchObject({ subject: 'From Matrix' });
    expect((await core.groups!(ALICE)).map((g) => g.group)).toEqual([made.group]);
    await core.submit(say('$m1', made.group, 'first'));
    await groupText(bob, made.group, 'first');

    // A restart: the sender key and the group are where they were; nothing is sent twice.
    await stopBridge();
    await startBridge();
    await connected();
    await core.submit(say('$m2', made.group, 'second'));
    await groupText(bob, made.group, 'second');
    const id = await bob.send(made.group, { kind: 'text', text: 'still here' });
    await adapter.until(
      () => adapter.delivered.some((e) => e.remoteId === id),
      'the answer after the restart',
    );
    expect(
      bob.received.filter((m) => m.group === made.group && m.content.kind === 'text').map((m) => m.id),
    ).toHaveLength(2);
  });

  it("a contact's push name, about text and picture reach the adapter, and follow each change", async () => {
    await core.enlist(ALICE);
    await connected();
    const bob = await native('+4915112345678');
    await bob.profile.setName('Bob');
    await bob.profile.setAbout('at work');
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(1000, 7)]);
    await bob.profile.setPicture(jpeg);
    const profileOf = (match: (p: (typeof adapter.profiles)[number]['profile']) => boolean, what: string) =>
      adapter
        .until(() => adapter.profiles.some((p) => p.profile.remote === bob.jid && match(p.profile)), what)
        .then(() => adapter.profiles.filter((p) => p.profile.remote === bob.jid && match(p.profile)).at(-1)!);

    // The first message brings the whole profile, the picture's bytes included.
    await bob.sendText(await aliceJid(), 'hi', { devices: [0] });
    const first = await profileOf((p) => p.name === 'Bob', 'the first profile');
    expect(first.localUser).toBe(ALICE);
    expect(first.profile).toMatchObject({ name: 'Bob', about: 'at work' });
    expect(Buffer.from(first.profile.picture?.bytes ?? [])).toEqual(jpeg);

    // A new name (announced, and on the next message), then a new picture, then none.
    await bob.profile.setName('Bobby');
    await profileOf((p) => p.name === 'Bobby', 'the new name');
    const other = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe1]), Buffer.alloc(500, 9)]);
    await bob.profile.setPicture(other);
    const repainted = await profileOf(
      (p) => p.picture?.bytes !== undefined && p.picture.bytes.length === other.length,
      'the new picture',
    );
    expect(Buffer.from(repainted.profile.picture!.bytes!)).toEqual(other);
    expect(repainted.profile.picture!.id).not.toBe(first.profile.picture!.id);
    await bob.profile.removePicture();
    await profileOf((p) => p.picture === undefined && p.name === 'Bobby', 'the picture removed');
  });
});
