/**
 * The bridge core end to end: a local user's puppet, driven through a test adapter, talks to
 * simulated gatekeeper users through the emulator over real TCP (Noise, JWT, stanzas, Signal).
 */
import { Bridge } from '../../src/bridge/core.js';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { OutgoingEvent } from '../../src/bridge/events.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { addressUser } from '../../src/bridge/sessions.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { signalAddress } from '../../src/signal/address.js';
import { SqliteSignalBackend } from '../../src/signal/index.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { TestAdapter } from '../support/test-adapter.js';
import { PreparedOnlySignalBackend } from '../support/prepared-only-backend.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/wait.js';

const PROVIDER = 'testbridge';
const ALICE = '@alice:example.org';

// Once on the SQLite Signal backend as the daemon runs it, once behind a backend that refuses any
// read not prepared first (as an asynchronous database would need): the core must not care.
describe.each([
  ['SQLite', false],
  ['Signal state read only after prepare()', true],
])('bridge core against the emulator (%s)', (_backend, preparedOnly) => {
  /** The prepare-only backends of this test, whose refused reads must stay none. */
  const strict: PreparedOnlySignalBackend[] = [];
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

  /** Opens the store and starts a bridge with a fresh test adapter (as after a process restart). */
  const startBridge = async (
    lifecycle: 'always' | 'presence' = 'always',
    identityPolicy: 'trust_on_first_use' | 'block_until_confirmed' = 'trust_on_first_use',
    maxFrameSize?: number,
  ) => {
    store = openSqliteStore(tmp.file('bridge.db'));
    const opened = store;
    bridge = new Bridge({
      store: opened,
      signalBackend: (id) => {
        const sqlite = new SqliteSignalBackend(opened.db, id);
        if (!preparedOnly) return sqlite;
        const b = new PreparedOnlySignalBackend(sqlite);
        strict.push(b);
        return b;
      },
      gateway: emulatorGateway(
        running.gateway,
        root,
        { id: PROVIDER, signingKey },
        maxFrameSize !== undefined ? { maxFrameSize } : {},
      ),
      preKeys: 20,
      lifecycle,
      identityPolicy,
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

  const text = (localId: string, remote: string, body: string): OutgoingEvent => ({
    localId,
    localUser: ALICE,
    remote,
    event: { type: 'message', body: { kind: 'text', text: body } },
  });

  const connected = () =>
    adapter.until(() => bridge.puppet(ALICE)?.connection.isConnected === true, 'the puppet to connect');

  beforeEach(async () => {
    tmp = tempDir();
    signingKey = await generateProviderKey('EdDSA');
    ({ running, root } = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey } }));
    await startBridge();
  });

  afterEach(async () => {
    for (const b of strict.splice(0)) expect(b.refused).toEqual([]);
    await Promise.all(natives.splice(0).map((u) => u.close()));
    await stopBridge();
    await running.stop();
    tmp.cleanup();
  });

  it('enlists a local user: the gateway knows the account, the puppet connects, the user is told', async () => {
    await core.enlist(ALICE);
    await connected();
    const jid = await aliceJid();
    const account = running.gateway.accounts().find((a) => a.jid === jid);
    expect(account?.enlisted_identity_key).not.toBeNull();
    expect(await aliceJid()).toMatch(/^alice_example\.org=[0-9a-f]{16}@testbridge\.interop$/);
    expect(adapter.notices.map((n) => n.notice.kind)).toContain('enlisted');
    expect(await core.status(ALICE)).toMatchObject({ enlisted: true, connection: 'connected', queued: 0 });
  });

  it('takes several enlistments of one user at once as one: all succeed, one account', async () => {
    await Promise.all([core.enlist(ALICE), core.enlist(ALICE), core.enlist(ALICE)]);
    await connected();
    const jid = await aliceJid();
    expect(running.gateway.accounts().filter((a) => a.jid === jid)).toHaveLength(1);
    expect(await core.status(ALICE)).toMatchObject({ enlisted: true });
  });

  it('gives the safety number of a contact before any message, the same digits the contact computes', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    const number = await core.safetyNumber(ALICE, bob.jid);
    expect(number).toMatch(/^\d{60}$/);
    // Bob learns Alice's identity from her first message; his number must then match hers.
    await core.submit(text('$first', bob.jid, 'hi'));
    await bob.waitForMessage((m) => m.content.kind === 'text');
    expect(bob.signal.safetyNumber(addressUser(await aliceJid()))).toBe(number);
    await expect(core.safetyNumber(ALICE, '4915100000000@wa.interop')).rejects.toThrow(/cannot be reached/);
  });

  it('refuses a text longer than the network takes, with a clear error, before queueing it', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await expect(core.submit(text('$long', bob.jid, 'x'.repeat(65_537)))).rejects.toMatchObject({
      code: 'bridge_text_too_long',
      message: expect.stringMatching(/65537 characters long; the interop network takes at most 65536/),
    });
    expect((await core.status(ALICE)).queued).toBe(0);
  });

  it('fails a message too large for a gateway frame at once, and the next message to that contact still goes', async () => {
    await stopBridge();
    await startBridge('always', 'trust_on_first_use', 8192);
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$huge', bob.jid, 'y'.repeat(20_000)));
    await adapter.until(() => adapter.statesOf('$huge').includes('failed'), 'the large message failed');
    expect(adapter.updates.find((u) => u.localId === '$huge')?.reason).toMatch(
      /too large for the interop gateway/,
    );
    await core.submit(text('$after', bob.jid, 'hello after'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    expect(got.content.kind === 'text' && got.content.text).toBe('hello after');
    await adapter.until(() => adapter.statesOf('$after').includes('sent'), 'the next message acknowledged');
    expect((await core.status(ALICE)).queued).toBe(0);
  });

  it('carries text both ways; receipts move the outbox to sent, delivered and read', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();

    await core.submit(text('$out1', bob.jid, 'hello bob'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text');
    expect(got).toMatchObject({ from: await aliceJid(), content: { kind: 'text', text: 'hello bob' } });
    await adapter.until(() => adapter.statesOf('$out1').includes('delivered'), 'delivered');
    await bob.sendReceipt(await aliceJid(), [got.id], 'read');
    await adapter.until(() => adapter.statesOf('$out1').includes('read'), 'read');
    expect(adapter.statesOf('$out1')).toEqual(['sent', 'delivered', 'read']);

    const reply = await bob.sendText(await aliceJid(), 'hi alice', { replyTo: got.id });
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the reply');
    const incoming = adapter.delivered[0]!;
    expect(incoming).toMatchObject({
      remoteId: reply,
      localUser: ALICE,
      remote: bob.jid,
      event: {
        type: 'message',
        body: { kind: 'text', text: 'hi alice' },
        replyTo: { id: got.id, localId: '$out1' },
      },
    });
    await bob.waitForReceipt(reply, 'delivery');
    await core.submit({
      localId: '$r1',
      localUser: ALICE,
      remote: bob.jid,
      event: { type: 'receipt', receipt: 'read', targets: ['$local1'] },
    });
    await bob.waitForReceipt(reply, 'read');
  });

  it('resubmitting the same local event does not send it twice', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$same', bob.jid, 'once'));
    await core.submit(text('$same', bob.jid, 'once'));
    await adapter.until(() => adapter.statesOf('$same').includes('delivered'), 'delivered');
    await core.submit(text('$after', bob.jid, 'after'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'after');
    expect(bob.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual([
      'once',
      'after',
    ]);
  });

  it('fails a message to a number that is not on the network, with a reason for the user', async () => {
    await core.enlist(ALICE);
    await connected();
    await core.submit(text('$nobody', '4915199999999@wa.interop', 'anyone?'));
    await adapter.until(() => adapter.statesOf('$nobody').includes('failed'), 'failed');
    const update = adapter.updates.find((u) => u.localId === '$nobody');
    expect(update?.reason).toMatch(/cannot be reached through interoperability/);
  });

  it("shows a native user's typing to the local user", async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await bob.typing(await aliceJid(), true);
    await adapter.until(() => adapter.ephemeral.length > 0, 'typing');
    expect(adapter.ephemeral[0]).toEqual({
      localUser: ALICE,
      remote: bob.jid,
      event: { type: 'typing', typing: true },
    });
    // Outgoing typing is live only: sent when connected, nothing queued; the native user sees it.
    await core.submit({
      localId: '$t',
      localUser: ALICE,
      remote: bob.jid,
      event: { type: 'typing', typing: true },
    });
    expect((await core.status(ALICE)).queued).toBe(0);
    for (let i = 0; i < 500 && bob.chatstates.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(bob.chatstates[0]).toEqual({ from: await aliceJid(), composing: true });
  });

  it("tells the local user when a native user's identity key changes", async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$hi', bob.jid, 'hi'));
    await adapter.until(() => adapter.statesOf('$hi').includes('delivered'), 'delivered');
    await bob.close();
    natives.splice(natives.indexOf(bob), 1);
    const newBob = await native('+4915112345678'); // same number, new phone: a new identity key
    await adapter.until(
      () => adapter.notices.some((n) => n.notice.kind === 'identity_changed'),
      'the identity change notice',
    );
    const notice = adapter.notices.find((n) => n.notice.kind === 'identity_changed')!;
    expect(notice.localUser).toBe(ALICE);
    expect(notice.notice).toMatchObject({ remote: newBob.jid, blocked: false });
    expect((notice.notice as { safetyNumber: string }).safetyNumber).toMatch(/^\d{60}$/);
    // The new session works: the next message reaches the new phone.
    await core.submit(text('$again', newBob.jid, 'welcome back'));
    await newBob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'welcome back');
  });

  it('under block_until_confirmed, holds back messages to a changed identity until the user confirms it', async () => {
    await stopBridge();
    await startBridge('always', 'block_until_confirmed');
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$hi', bob.jid, 'hi'));
    await adapter.until(() => adapter.statesOf('$hi').includes('delivered'), 'delivered');
    await bob.close();
    natives.splice(natives.indexOf(bob), 1);
    const newBob = await native('+4915112345678');
    await adapter.until(
      () => adapter.notices.some((n) => n.notice.kind === 'identity_changed'),
      'the identity change notice',
    );
    expect(adapter.notices.find((n) => n.notice.kind === 'identity_changed')!.notice).toMatchObject({
      blocked: true,
    });
    await core.submit(text('$blocked', newBob.jid, 'not yet'));
    await adapter.until(() => adapter.statesOf('$blocked').includes('failed'), 'the refusal');
    await core.confirmIdentity(ALICE, newBob.jid);
    await core.submit(text('$confirmed', newBob.jid, 'now'));
    await newBob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'now');
    expect(newBob.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual(['now']);
  });

  it('tops its one-time prekeys up when the gateway says they run low', async () => {
    await core.enlist(ALICE);
    await connected();
    const count = async () => {
      const answer = await bridge.puppet(ALICE)!.connection.request({ op: 'prekey_count' });
      return answer.body.op === 'prekey_count_result' ? answer.body.count : -1;
    };
    expect(await count()).toBe(20);
    // Each native user that starts a session takes one one-time prekey; below 10 the gateway notifies.
    for (let i = 0; i < 11; i++) {
      const u = await native(`+49151000001${String(i).padStart(2, '0')}`);
      await u.sendText(await aliceJid(), `hello ${i}`, {
        devices: [(await store.puppets.byLocalId(ALICE))!.deviceId],
      });
    }
    let now = await count();
    for (let i = 0; i < 200 && now < 20; i++) {
      await new Promise((r) => setTimeout(r, 10));
      now = await count();
    }
    expect(now).toBeGreaterThanOrEqual(20);
    await adapter.until(() => adapter.delivered.length === 11, 'all 11 messages');
  });

  it('keeps order per conversation in both directions with many messages', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    const carol = await native('+4915100000003');
    await connected();
    const n = 60;
    for (let i = 0; i < n; i++) {
      await core.submit(text(`$b${i}`, bob.jid, `to bob ${i}`));
      await core.submit(text(`$c${i}`, carol.jid, `to carol ${i}`));
    }
    await bob.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === `to bob ${n - 1}`,
      20_000,
    );
    await carol.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === `to carol ${n - 1}`,
      20_000,
    );
    const texts = (u: NativeUser) => u.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''));
    expect(texts(bob)).toEqual(Array.from({ length: n }, (_, i) => `to bob ${i}`));
    expect(texts(carol)).toEqual(Array.from({ length: n }, (_, i) => `to carol ${i}`));

    await Promise.all([
      (async () => {
        for (let i = 0; i < n; i++) await bob.sendText(await aliceJid(), `from bob ${i}`);
      })(),
      (async () => {
        for (let i = 0; i < n; i++) await carol.sendText(await aliceJid(), `from carol ${i}`);
      })(),
    ]);
    await adapter.until(
      () => adapter.textsFrom(bob.jid).length === n && adapter.textsFrom(carol.jid).length === n,
      'every incoming message',
      20_000,
    );
    expect(adapter.textsFrom(bob.jid)).toEqual(Array.from({ length: n }, (_, i) => `from bob ${i}`));
    expect(adapter.textsFrom(carol.jid)).toEqual(Array.from({ length: n }, (_, i) => `from carol ${i}`));
  });

  it('loses and duplicates nothing across a restart with messages queued in both directions', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$first', bob.jid, 'out 0'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'out 0');

    // Received and persisted, but the local server is down: pending in the inbox.
    adapter.refuse = true;
    for (let i = 0; i < 5; i++) await bob.sendText(await aliceJid(), `in ${i}`);
    const alice = (await store.puppets.byLocalId(ALICE))!;
    await until(async () => (await store.inbox.pending(alice.id)).length === 5, 'five pending inbox entries');
    await bridge.stop();
    // Submitted while the puppet is down: queued in the outbox.
    for (let i = 1; i <= 5; i++) await core.submit(text(`$q${i}`, bob.jid, `out ${i}`));
    // Sent by bob while the bridge is down: queued at the gateway.
    for (let i = 5; i < 10; i++) await bob.sendText(await aliceJid(), `in ${i}`);
    await store.close();

    await startBridge();
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 10, 'all ten incoming messages');
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'out 5');
    expect(adapter.textsFrom(bob.jid)).toEqual(Array.from({ length: 10 }, (_, i) => `in ${i}`));
    expect(bob.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual(
      Array.from({ length: 6 }, (_, i) => `out ${i}`),
    );
    await adapter.until(() => adapter.statesOf('$q5').includes('delivered'), 'the last one delivered');
    // The receipts' `sent` states are written a moment after their acks (outbox-marks.ts).
    await until(async () => (await store.outbox.countQueued()) === 0, 'nothing left queued in the store');
  });

  it('sends a delivery receipt owed when the connection went down, after a restart, once', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    // The local network takes the message just as the puppet's connection goes down: the receipt
    // is owed (on the inbox row) with no connection to send it on; then the process stops.
    adapter.beforeTaking = () => bridge.puppet(ALICE)!.disconnect();
    const id = await bob.sendText(await aliceJid(), 'taken offline', { devices: [0] });
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the message taken');
    const alice = (await store.puppets.byLocalId(ALICE))!;
    await until(async () => (await store.inbox.pending(alice.id)).length === 0, 'the delivery written');
    await stopBridge();
    expect(bob.receipts.filter((r) => r.id === id)).toEqual([]);

    await startBridge();
    await bob.waitForReceipt(id, 'delivery');
    await until(
      async () => (await store.inbox.receiptsOwed(alice.id, 0, 10)).length === 0,
      'the receipt no longer owed once the gateway has it',
    );
    // Not shown again after the restart (the adapter is the new process's), and the receipt not
    // sent again by the next connection.
    expect(adapter.textsFrom(bob.jid)).toEqual([]);
    await bridge.reconnect(ALICE); // the next message waits at the gateway until it is back
    await bob.waitForReceipt(await bob.sendText(await aliceJid(), 'after', { devices: [0] }), 'delivery');
    expect(adapter.textsFrom(bob.jid)).toEqual(['after']);
    expect(bob.receipts.filter((r) => r.id === id && r.type === 'delivery')).toHaveLength(1);
  });

  it('acknowledges again a message the gateway delivers twice (its ack lost): shown once, no retry asked', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    // The puppet's ack of the first message never leaves: the gateway delivers it again when the
    // puppet reconnects. It cannot decrypt twice (its key was spent with the inbox row).
    const connection = bridge.puppet(ALICE)!.connection;
    const send = connection.send.bind(connection);
    const arrivals: string[] = [];
    connection.on('stanza', (st: { kind?: string; id?: string }) => {
      if (st.kind === 'message' && st.id !== undefined) arrivals.push(st.id);
    });
    let dropped = false;
    connection.send = (st) => {
      if (!dropped && st.kind === 'ack' && st.class === 'message') {
        dropped = true;
        return;
      }
      send(st);
    };
    const id = await bob.sendText(await aliceJid(), 'once only', { devices: [0] });
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'shown');
    await bob.waitForReceipt(id, 'delivery');
    connection.send = send;
    await bridge.reconnect(ALICE);
    const next = await bob.sendText(await aliceJid(), 'next', { devices: [0] });
    await bob.waitForReceipt(next, 'delivery');
    expect(arrivals.filter((a) => a === id)).toHaveLength(2);
    expect(adapter.textsFrom(bob.jid)).toEqual(['once only', 'next']);
    expect(bob.receipts.filter((r) => r.type === 'retry')).toEqual([]);
  });

  it('recovers a message the recipient could not decrypt through its retry receipt', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$1', bob.jid, 'before'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'before');
    // Bob loses his session (a reinstall without a new identity): our next message is undecryptable.
    await bob.signal.deleteSession(signalAddress(await aliceJid(), 0));
    await core.submit(text('$2', bob.jid, 'after the loss'));
    const got = await bob.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === 'after the loss',
    );
    expect(got.id).toBe(
      (await store.messages.byLocal(
        (await store.portals.byRemote((await store.puppets.byLocalId(ALICE))!.id, bob.jid))!.id,
        '$2',
      ))!.remoteId,
    );
  });

  it('asks the sender for a retry when it cannot decrypt a message, and shows the resend once', async () => {
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    await connected();
    await core.submit(text('$1', bob.jid, 'hi'));
    await bob.waitForMessage(() => true);
    const id0 = await bob.sendText(await aliceJid(), 'fine');
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the first message');
    await bridge.puppet(ALICE)!.signal.deleteSession(signalAddress(bob.jid, 0));
    const id = await bob.sendText(await aliceJid(), 'lost');
    const retry = await bob.waitForReceipt(id, 'retry');
    expect(retry.from).toBe(await aliceJid());
    expect(id).not.toBe(id0);
    // The native user re-encrypts (from the keys of the second retry receipt) and resends under the same id.
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 2, 'the resent message');
    expect(adapter.textsFrom(bob.jid)).toEqual(['fine', 'lost']);
  });

  it('with the presence lifecycle, connects a puppet only while its user is online', async () => {
    await stopBridge();
    await startBridge('presence');
    await core.enlist(ALICE);
    const bob = await native('+4915112345678');
    expect(bridge.puppet(ALICE)?.isStarted).toBe(false);
    await core.submit(text('$while-away', bob.jid, 'queued while away'));
    expect((await core.status(ALICE)).queued).toBe(1);
    core.setOnline(ALICE, true);
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'queued while away');
    core.setOnline(ALICE, false);
    await adapter.until(
      () => bridge.puppet(ALICE)?.connection.isConnected === false,
      'the puppet to disconnect',
    );
    expect(bridge.puppet(ALICE)?.isStarted).toBe(false);
  });

  it('opts a user out: the gateway forgets the account and the puppet is deleted', async () => {
    await core.enlist(ALICE);
    await connected();
    const jid = await aliceJid();
    await core.optOut(ALICE);
    expect(running.gateway.accounts().some((a) => a.jid === jid)).toBe(false);
    expect(await store.puppets.byLocalId(ALICE)).toBeUndefined();
    expect(await core.status(ALICE)).toEqual({ enlisted: false, connection: 'none', queued: 0 });
    expect(adapter.notices.map((n) => n.notice.kind)).toContain('opted_out');
  });
});
