import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  EmulatorClient,
  enlistedClient,
  message,
  startTestEmulator,
  type TestEmulator,
} from '../support/emulator-client.js';

const BOB_PHONE = '+4915112345678';
const BOB = '4915112345678@wa.interop';
const ALICE = 'alice@testprov.interop';

describe('gateway emulator: relay', () => {
  let te: TestEmulator;
  beforeEach(async () => {
    te = await startTestEmulator();
    te.emulator.createNativeUser(BOB_PHONE);
  });
  afterEach(async () => te.close());

  const bytes = (s: string) => new TextEncoder().encode(s);

  it('relays a message to an online recipient after acking it to the sender, and the receipt back', async () => {
    const alice = await enlistedClient(te, 'alice', 1);
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    alice.send(message('m1', BOB, { 0: bytes('ciphertext-1') }));
    expect(await alice.nextOf('ack', (a) => a.id === 'm1')).toMatchObject({
      class: 'message',
      from: 'wa.interop',
    });
    const got = await bob.nextOf('message');
    expect(got).toMatchObject({ id: 'm1', from: 'alice:1@testprov.interop', type: 'text' });
    expect(got.encs).toEqual([{ type: 'msg', device: 0, ciphertext: bytes('ciphertext-1') }]);

    bob.send({ kind: 'ack', class: 'message', id: 'm1' });
    bob.send({ kind: 'receipt', id: 'm1', to: ALICE, type: 'read', t: 1 });
    expect(await bob.nextOf('ack', (a) => a.id === 'm1')).toMatchObject({ class: 'receipt' });
    expect(await alice.nextOf('receipt')).toMatchObject({
      id: 'm1',
      from: '4915112345678:0@wa.interop',
      type: 'read',
    });
    // The receipt stays queued until Alice's device acks it (as the bridge does once recorded).
    expect(te.emulator.queued().map((q) => q.kind)).toEqual(['receipt']);
    alice.send({ kind: 'ack', class: 'receipt', id: 'm1' });
    await alice.sync();
    expect(te.emulator.queued()).toEqual([]);
    alice.close();
    bob.close();
  });

  it('keeps receipts for an offline device, and one written but not acked, until acked, across a restart', async () => {
    const alice = await enlistedClient(te, 'alice', 1);
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    for (const id of ['m1', 'm2']) {
      alice.send(message(id, BOB, { 0: bytes(id) }));
      await alice.nextOf('ack', (a) => a.id === id);
    }
    alice.close();
    // Alice's device is offline: Bob's receipts wait for it.
    bob.send({ kind: 'receipt', id: 'm1', to: ALICE, t: 1 });
    bob.send({ kind: 'receipt', id: 'm2', to: ALICE, t: 2 });
    await bob.nextOf('ack', (a) => a.id === 'm2' && a.class === 'receipt');
    expect(te.emulator.queued(ALICE).map((q) => [q.kind, q.stanza_id])).toEqual([
      ['receipt', 'm1'],
      ['receipt', 'm2'],
    ]);

    // Alice connects, is sent both, acks only the first, and dies.
    let again = await EmulatorClient.connect(te, { account: 'alice', device: 1 });
    expect((await again.nextOf('receipt')).id).toBe('m1');
    expect((await again.nextOf('receipt')).id).toBe('m2');
    again.send({ kind: 'ack', class: 'receipt', id: 'm1' });
    await again.sync();
    again.close();
    await te.restart();

    // The second comes again, alone, on the next connection after the gateway's restart.
    again = await EmulatorClient.connect(te, { account: 'alice', device: 1 });
    expect(await again.nextOf('receipt')).toMatchObject({ id: 'm2', from: '4915112345678:0@wa.interop' });
    again.send({ kind: 'ack', class: 'receipt', id: 'm2' });
    await again.sync();
    expect(again.received.filter((s) => s.kind === 'receipt')).toEqual([]);
    expect(te.emulator.queued(ALICE)).toEqual([]);
    again.close();
    bob.close();
  });

  it('gives each recipient device only its own <enc>', async () => {
    const alice = await enlistedClient(te, 'alice');
    const bob0 = await EmulatorClient.connect(te, { phone: BOB_PHONE, device: 0 });
    const bob2 = await EmulatorClient.connect(te, { phone: BOB_PHONE, device: 2 });
    alice.send(message('m1', BOB, { 0: bytes('for-0'), 2: bytes('for-2') }));
    expect((await bob0.nextOf('message')).encs).toEqual([
      { type: 'msg', device: 0, ciphertext: bytes('for-0') },
    ]);
    expect((await bob2.nextOf('message')).encs).toEqual([
      { type: 'msg', device: 2, ciphertext: bytes('for-2') },
    ]);
    for (const c of [alice, bob0, bob2]) c.close();
  });

  it('relays chatstate and presence live to connected devices', async () => {
    const alice = await enlistedClient(te, 'alice');
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    alice.send({ kind: 'chatstate', to: BOB, state: 'composing' });
    expect(await bob.nextOf('chatstate')).toEqual({ kind: 'chatstate', from: ALICE, state: 'composing' });
    bob.send({ kind: 'presence', type: 'available', to: ALICE });
    expect(await alice.nextOf('presence')).toEqual({ kind: 'presence', type: 'available', from: BOB });
    alice.close();
    bob.close();
  });

  it('refuses a message to a user who does not exist with ack error 404', async () => {
    const alice = await enlistedClient(te, 'alice');
    alice.send(message('m1', '4930123456@wa.interop', { 0: bytes('x') }));
    expect(await alice.nextOf('ack', (a) => a.id === 'm1')).toMatchObject({ error: 404 });
    expect(te.emulator.queued()).toEqual([]);
    alice.close();
  });

  it('delivers the offline queue in order on the next connection, and again after a restart until acked', async () => {
    const alice = await enlistedClient(te, 'alice');
    for (let i = 1; i <= 5; i++) alice.send(message(`m${i}`, BOB, { 0: bytes(`c${i}`) }));
    await alice.nextOf('ack', (a) => a.id === 'm5');

    let bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    const first: string[] = [];
    for (let i = 0; i < 5; i++) first.push((await bob.nextOf('message')).id);
    expect(first).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    bob.send({ kind: 'ack', class: 'message', id: 'm1' });
    bob.send({ kind: 'ack', class: 'message', id: 'm2' });
    await bob.sync();
    bob.close();
    alice.close();

    await te.restart();
    bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    const second: string[] = [];
    for (let i = 0; i < 3; i++) second.push((await bob.nextOf('message')).id);
    expect(second).toEqual(['m3', 'm4', 'm5']);
    bob.close();
  });

  it('acks a resent message id again but delivers it once', async () => {
    const alice = await enlistedClient(te, 'alice');
    const m = message('dup-1', BOB, { 0: bytes('once') });
    alice.send(m);
    await alice.nextOf('ack', (a) => a.id === 'dup-1');
    alice.close();
    const aliceAgain = await EmulatorClient.connect(te, { account: 'alice' });
    aliceAgain.send(m);
    expect(await aliceAgain.nextOf('ack', (a) => a.id === 'dup-1')).toMatchObject({ class: 'message' });
    await aliceAgain.sync();
    expect(aliceAgain.received.filter((s) => s.kind === 'ack')).toEqual([]);

    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    await bob.nextOf('message', (s) => s.id === 'dup-1');
    await bob.sync();
    expect(bob.received.filter((s) => s.kind === 'message')).toEqual([]);
    expect(te.emulator.queued(BOB)).toHaveLength(1);
    aliceAgain.close();
    bob.close();
  });

  it('delivers the resend that answers a retry receipt, though it carries the same id', async () => {
    const alice = await enlistedClient(te, 'alice', 1);
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    alice.send(message('r-1', BOB, { 0: bytes('undecryptable') }));
    await bob.nextOf('message', (s) => s.id === 'r-1');
    bob.send({ kind: 'ack', class: 'message', id: 'r-1', to: ALICE });
    bob.send({
      kind: 'receipt',
      id: 'r-1',
      to: ALICE,
      type: 'retry',
      t: 1,
      retry: { count: 1, id: 'r-1', t: 1, registrationId: 7 },
    });
    expect(await alice.nextOf('receipt', (r) => r.id === 'r-1')).toMatchObject({ type: 'retry' });
    alice.send(message('r-1', BOB, { 0: bytes('re-encrypted') }));
    const again = await bob.nextOf('message', (s) => s.id === 'r-1');
    expect(again.kind === 'message' && Buffer.from(again.encs[0]!.ciphertext).toString()).toBe(
      're-encrypted',
    );
    alice.close();
    bob.close();
  });

  it('keeps one connection per device: a second connection replaces the first', async () => {
    const first = await EmulatorClient.connect(te, { phone: BOB_PHONE, device: 1 });
    const second = await EmulatorClient.connect(te, { phone: BOB_PHONE, device: 1 });
    await first.ended;
    expect(first.isOpen).toBe(false);
    expect(await second.iq({ op: 'ping' })).toEqual({ op: 'result' });
    expect(te.emulator.connectedDevices()).toEqual(['4915112345678:1@wa.interop']);
    const alice = await enlistedClient(te, 'alice');
    alice.send(message('m1', BOB, { 1: bytes('to the new one') }));
    expect(await second.nextOf('message')).toMatchObject({ id: 'm1' });
    alice.close();
    second.close();
  });

  it('answers an unknown stanza with an error and keeps the connection', async () => {
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    bob.socket.send(bytes('<iq id="u1" type="get" xmlns="urn:nothing"><what/></iq>'));
    expect(await bob.nextOf('iq', (s) => s.id === 'u1')).toMatchObject({
      body: { op: 'error', error: { code: 501 } },
    });
    bob.socket.send(bytes('<gadget id="g1"/>'));
    expect(await bob.nextOf('ack', (s) => s.id === 'g1')).toMatchObject({ error: 501 });
    bob.socket.send(bytes('<message id="x1" to="4915112345678@wa.interop" type="text" t="1"/>'));
    expect(await bob.nextOf('ack', (s) => s.id === 'x1')).toMatchObject({ class: 'message', error: 400 });
    expect(await bob.iq({ op: 'ping' })).toEqual({ op: 'result' });
    bob.close();
  });

  it('closes a connection that sends malformed XML and keeps serving the next client', async () => {
    const bad = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    bad.socket.send(bytes('<iq id="1" type="get"'));
    await bad.ended;
    expect(bad.isOpen).toBe(false);
    const good = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    expect(await good.iq({ op: 'ping' })).toEqual({ op: 'result' });
    good.close();
  });

  it('stores exactly the opaque ciphertext it was given and no plaintext', async () => {
    const marker = `PLAINTEXT-MARKER-${randomBytes(8).toString('hex')}`;
    // The "encryption" only the two ends know: the gateway must carry these bytes unchanged.
    const key = randomBytes(marker.length);
    const ciphertext = Buffer.from(bytes(marker).map((b, i) => b ^ (key[i] as number)));
    const alice = await enlistedClient(te, 'alice');
    alice.send(message('secret-1', BOB, { 0: ciphertext }));
    await alice.nextOf('ack', (a) => a.id === 'secret-1');
    alice.close();

    const files = readdirSync(path.dirname(te.databaseFile)).map((f) =>
      path.join(path.dirname(te.databaseFile), f),
    );
    const contents = Buffer.concat(files.map((f) => readFileSync(f)));
    expect(contents.includes(Buffer.from(marker))).toBe(false);
    expect(contents.includes(ciphertext)).toBe(true);
    expect(te.emulator.queued(BOB)[0]?.payload).toEqual(ciphertext);

    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    const got = await bob.nextOf('message');
    const plain = Buffer.from(
      (got.encs[0]?.ciphertext ?? new Uint8Array()).map((b, i) => b ^ (key[i] as number)),
    );
    expect(plain.toString()).toBe(marker);
    bob.close();
  });

  it('drops queued items once the retention period has passed', async () => {
    await te.close();
    let now = 1_800_000_000;
    te = await startTestEmulator({ offlineRetentionSeconds: 60, clock: () => now });
    te.emulator.createNativeUser(BOB_PHONE);
    te.emulator.createNativeUser('+4930123456');
    const sender = await EmulatorClient.connect(te, { phone: '+4930123456' });
    sender.send(message('old', BOB, { 0: bytes('old') }));
    await sender.nextOf('ack', (a) => a.id === 'old');
    now += 61;
    sender.send(message('new', BOB, { 0: bytes('new') }));
    await sender.nextOf('ack', (a) => a.id === 'new');
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    expect((await bob.nextOf('message')).id).toBe('new');
    await bob.sync();
    expect(bob.received.filter((s) => s.kind === 'message')).toEqual([]);
    sender.close();
    bob.close();
  });
});
