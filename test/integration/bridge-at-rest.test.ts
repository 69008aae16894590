/**
 * Plaintext only in flight (docs/SECURITY.md, "What the bridge stores"): through the real core, the
 * emulator over real sockets and a real SQLite file, a message's content is gone from the database
 * once delivered; while it waits it is sealed with the at-rest key; a lost key fails only what was
 * waiting; a message that cannot be sent within the queue age limit fails with a notice.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Bridge, type BridgeOptions } from '../../src/bridge/core.js';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { OutgoingEvent } from '../../src/bridge/events.js';
import { LOST_INCOMING_TEXT } from '../../src/bridge/inbox.js';
import { BridgeMediaHandler } from '../../src/bridge/media-handler.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { MediaHost } from '../../src/media/host.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { SqliteSignalBackend } from '../../src/signal/index.js';
import { PayloadVault } from '../../src/store/at-rest.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { HttpListener } from '../../src/util/http-listener.js';
import { findMarkers } from '../support/at-rest.js';
import { TestAdapter } from '../support/test-adapter.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/wait.js';

const PROVIDER = 'testbridge';
const ALICE = '@alice:example.org';
const BOB = '+4915112345678';

/** A text no other byte string in the files is likely to match by chance. */
const marker = (what: string) => `MARKER-${what}-${randomBytes(8).toString('hex')}`;

describe('plaintext only in flight', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let signingKey: ProviderPrivateJwk;
  let http: HttpListener;
  let host: MediaHost;
  let media: BridgeMediaHandler;
  let store: SqliteStore;
  let bridge: Bridge;
  let adapter: TestAdapter;
  let core: BridgeCore;
  let key: Uint8Array;
  const natives: NativeUser[] = [];

  const dbFile = () => path.join(tmp.dir, 'bridge', 'bridge.db');
  /** Everything of the bridge's on disk that could hold content: the database, its WAL, the media. */
  const bridgeFiles = () => [dbFile(), `${dbFile()}-wal`, path.join(tmp.dir, 'bridge', 'media-received')];

  const startBridge = async (options: Partial<BridgeOptions> = {}) => {
    store = openSqliteStore(dbFile());
    const opened = store;
    bridge = new Bridge({
      store: opened,
      signalBackend: (id) => new SqliteSignalBackend(opened.db, id),
      gateway: emulatorGateway(running.gateway, root, { id: PROVIDER, signingKey }),
      preKeys: 20,
      media,
      vault: new PayloadVault(key),
      ...options,
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

  const text = (localId: string, remote: string, body: string): OutgoingEvent => ({
    localId,
    localUser: ALICE,
    remote,
    event: { type: 'message', body: { kind: 'text', text: body } },
  });

  const native = async () => {
    const u = await NativeUser.connect({ emulator: running.gateway, phone: BOB, rootPublicKey: root });
    natives.push(u);
    return u;
  };

  const rows = () => ({
    outbox: store.db.prepare('SELECT id, kind, state, payload, local_id FROM outbox').all() as {
      id: string;
      kind: string;
      state: string;
      payload: Buffer;
      local_id: string | null;
    }[],
    inbox: store.db.prepare('SELECT message_id, state, payload, receipt FROM inbox').all() as {
      receipt: string | null;
      message_id: string;
      state: string;
      payload: Buffer;
    }[],
  });

  beforeEach(async () => {
    tmp = tempDir();
    key = randomBytes(32);
    signingKey = await generateProviderKey('EdDSA');
    ({ running, root } = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey } }));
    http = new HttpListener(createLogger({ level: 'silent' }));
    const address = await http.listen('127.0.0.1', 0);
    host = await MediaHost.open({
      dir: path.join(tmp.dir, 'bridge', 'media'),
      publicUrl: `http://127.0.0.1:${address.port}`,
      maxBytes: 1 << 20,
    });
    host.mount(http);
    media = await BridgeMediaHandler.open({
      host,
      mediaConn: (localUser) => bridge.mediaConn(localUser),
      receivedDir: path.join(tmp.dir, 'bridge', 'media-received'),
      maxBytes: 1 << 20,
    });
  });

  afterEach(async () => {
    await Promise.all(natives.splice(0).map((u) => u.close()));
    if (store.db.open) await stopBridge();
    media.close();
    host.close();
    await http.close();
    await running.stop();
    tmp.cleanup();
  });

  it('keeps no content once delivered both ways: not in the database, its WAL or the received media', async () => {
    await startBridge();
    await core.enlist(ALICE);
    const bob = await native();
    await connected();
    const out = marker('out');
    const inText = marker('in');
    const caption = marker('caption');
    const picture = Buffer.concat([Buffer.from(marker('picture')), randomBytes(2000)]);

    await core.submit(text('$out', bob.jid, out));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === out);
    await adapter.until(() => adapter.statesOf('$out').includes('delivered'), 'the delivery receipt');
    await bob.sendReceipt(await aliceJid(), [got.id], 'read');
    await adapter.until(() => adapter.statesOf('$out').includes('read'), 'the read receipt');

    const textId = await bob.sendText(await aliceJid(), inText);
    const pictureId = await bob.sendMedia(
      await aliceJid(),
      { kind: 'image', bytes: picture, mimetype: 'image/png', caption },
      { devices: [0] },
    );
    await adapter.until(() => adapter.delivered.length === 2, 'both incoming messages');
    expect(adapter.textsFrom(bob.jid)).toEqual([inText]);
    expect(adapter.files.get(pictureId)?.equals(picture)).toBe(true);
    await bob.waitForReceipt(textId, 'delivery');
    await bob.waitForReceipt(pictureId, 'delivery');
    // A reply and an edit still find what they refer to: the ids outlive the content.
    await core.submit({
      localId: '$edit',
      localUser: ALICE,
      remote: bob.jid,
      event: { type: 'edit', target: '$out', body: { kind: 'text', text: 'edited' } },
    });
    const edit = await bob.waitForMessage((m) => m.content.kind === 'edit');
    expect(edit.content.kind === 'edit' && edit.content.target.id).toBe(got.id);
    await adapter.until(() => adapter.statesOf('$edit').includes('delivered'), 'the edit delivered');

    // Every row is past its waiting state, and none keeps a byte of content (the receipts' `sent`
    // states are written a moment after their acks: outbox-marks.ts).
    await until(async () => rows().outbox.every((o) => o.state !== 'queued'), 'every outbox row past queued');
    // The delivery receipts the inbox owed are cleared once the gateway has them (inbox-receipts.ts).
    await until(async () => rows().inbox.every((i) => i.receipt === null), 'no delivery receipt owed');
    const r = rows();
    expect(r.outbox.filter((o) => o.state === 'queued')).toEqual([]);
    expect(r.outbox.filter((o) => o.payload.length > 0).map((o) => o.id)).toEqual([]);
    expect(r.outbox.find((o) => o.kind === 'message')?.local_id).toBe('$out');
    expect(r.inbox.map((i) => [i.state, i.payload.length])).toEqual([
      ['delivered', 0],
      ['delivered', 0],
    ]);

    // While running, after a scrub, and after the stop: the marker is nowhere.
    await store.scrub();
    expect(findMarkers(bridgeFiles(), [out, inText, caption, 'MARKER-picture'])).toEqual([]);
    await stopBridge();
    expect(existsSync(`${dbFile()}-wal`) ? findMarkers([`${dbFile()}-wal`], [out]) : []).toEqual([]);
    expect(findMarkers(bridgeFiles(), [out, inText, caption, 'MARKER-picture'])).toEqual([]);
    expect(
      readdirSync(path.join(tmp.dir, 'bridge', 'media-received')).filter((n) => !n.startsWith('.')),
    ).toEqual([]);
  });

  /** Leaves one message waiting each way, sealed: the local server down, then the puppet down. */
  const leaveWaiting = async (out: string, inText: string) => {
    await startBridge();
    await core.enlist(ALICE);
    const bob = await native();
    await connected();
    adapter.refuse = true; // the homeserver is down: the incoming message waits in the inbox
    await bob.sendText(await aliceJid(), inText, { devices: [0] });
    const alice = (await store.puppets.byLocalId(ALICE))!;
    await until(async () => (await store.inbox.pending(alice.id)).length === 1, 'the pending inbox entry');
    await bridge.stop(); // the puppet is offline: the outgoing message waits in the outbox
    await core.submit(text('$waiting', bob.jid, out));
    expect(await store.outbox.countQueued()).toBe(1);
    await store.close();
    return bob;
  };

  it('seals what waits (puppet offline, local server down) and delivers it once they are back', async () => {
    const out = marker('waiting-out');
    const inText = marker('waiting-in');
    const bob = await leaveWaiting(out, inText);

    // On disk the waiting content is sealed: the rows are there, the markers are not.
    expect(findMarkers(bridgeFiles(), [out, inText])).toEqual([]);

    store = openSqliteStore(dbFile());
    const r = rows();
    await store.close();
    expect(r.outbox.filter((o) => o.state === 'queued').map((o) => o.payload[0])).toEqual([0x01]);
    expect(r.inbox.map((i) => [i.state, i.payload[0]])).toEqual([['pending', 0x01]]);

    await startBridge();
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === out);
    await adapter.until(() => adapter.textsFrom(bob.jid).includes(inText), 'the waiting incoming message');
    await adapter.until(() => adapter.statesOf('$waiting').includes('delivered'), 'delivered');
    await stopBridge();
    expect(findMarkers(bridgeFiles(), [out, inText])).toEqual([]);
  });

  it('losing the at-rest key fails only what was waiting, with a notice each way; the bridge goes on', async () => {
    const out = marker('lost-out');
    const inText = marker('lost-in');
    const bob = await leaveWaiting(out, inText);

    key = randomBytes(32); // the key file was lost and a new one made
    await startBridge();
    await connected();
    await adapter.until(
      () => adapter.statesOf('$waiting').includes('failed'),
      'the failure of the waiting message',
    );
    expect(adapter.updates.find((u) => u.localId === '$waiting' && u.state === 'failed')?.reason).toMatch(
      /lost the key this message was kept under/,
    );
    await adapter.until(
      () => adapter.textsFrom(bob.jid).includes(LOST_INCOMING_TEXT),
      'the notice in its place',
    );

    // The daemon keeps running: new messages go both ways.
    const after = marker('after');
    await core.submit(text('$after', bob.jid, after));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === after);
    await bob.sendText(await aliceJid(), 'still here', { devices: [0] });
    await adapter.until(() => adapter.textsFrom(bob.jid).includes('still here'), 'a new incoming message');
    expect(bob.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).not.toContain(out);
  });

  it('fails a message not sent within the queue age limit, with a notice, and never sends it later', async () => {
    await startBridge({ lifecycle: 'presence', queueMaxAgeMs: 1_500, maintenanceIntervalMs: 100 });
    await core.enlist(ALICE);
    const bob = await native();
    expect(bridge.puppet(ALICE)?.isStarted).toBe(false); // the user is away: the puppet is offline
    const old = marker('too-old');
    await core.submit(text('$old', bob.jid, old));
    await adapter.until(() => adapter.statesOf('$old').includes('failed'), 'the age limit', 10_000);
    const failure = adapter.updates.find((u) => u.localId === '$old' && u.state === 'failed');
    expect(failure).toMatchObject({ localUser: ALICE, remote: bob.jid });
    expect(failure?.reason).toMatch(/could not be sent within 2 seconds/);
    expect(rows().outbox.map((o) => [o.state, o.payload.length])).toEqual([['failed', 0]]);

    core.setOnline(ALICE, true);
    await core.submit(text('$new', bob.jid, 'fresh'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'fresh');
    expect(bob.received.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual(['fresh']);
  });
});
