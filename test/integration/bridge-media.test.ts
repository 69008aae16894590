/**
 * Media through the bridge core end to end: a local user's files are encrypted and hosted on the
 * bridge's HTTP listener and reach native users through the gateway's proxy; native users' uploads
 * are fetched with the puppet's `<media_conn>` credential, verified and handed to the adapter as
 * files. The emulator runs over real TCP and HTTP.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { Bridge } from '../../src/bridge/core.js';
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { IncomingEvent, MediaBody, MediaKind } from '../../src/bridge/events.js';
import { BridgeMediaHandler } from '../../src/bridge/media-handler.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { loadConfig } from '../../src/config/loader.js';
import { startDaemon, type Daemon } from '../../app/daemon.js';
import { HttpListener } from '../../src/util/http-listener.js';
import { MediaHost } from '../../src/media/host.js';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser, type NativeMediaKind } from '../../emulator/native-user.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateProviderKey, publicJwks, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { writeProviderKey } from '../../src/provider-keys.js';
import { SqliteSignalBackend } from '../../src/signal/index.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { TestAdapter } from '../support/test-adapter.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';
import { metricSample, until } from '../support/wait.js';

const PROVIDER = 'testbridge';
const ALICE = '@alice:example.org';
const BOB = '+4915112345678';
/** The bridge's media.max_bytes in these tests: small, so the over-size case stays small too. */
const MAX_BYTES = 256 * 1024;

/** One file of each kind, as the local user sends it and as a native user sends it. */
const SAMPLES: readonly {
  kind: MediaKind;
  native: NativeMediaKind;
  mimetype: string;
  bytes: Buffer;
  caption?: string;
  fileName?: string;
}[] = [
  { kind: 'image', native: 'image', mimetype: 'image/jpeg', bytes: randomBytes(70_001), caption: 'the view' },
  { kind: 'video', native: 'video', mimetype: 'video/mp4', bytes: randomBytes(150_000), caption: 'a clip' },
  { kind: 'voice', native: 'voice', mimetype: 'audio/ogg; codecs=opus', bytes: randomBytes(12_345) },
  {
    kind: 'file',
    native: 'document',
    mimetype: 'application/pdf',
    bytes: randomBytes(40_960),
    caption: 'as promised',
    fileName: 'Quarterly report.pdf',
  },
];

describe('bridge media against the emulator', () => {
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
      gateway: emulatorGateway(running.gateway, root, { id: PROVIDER, signingKey }),
      preKeys: 20,
      media,
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

  /** Enlists Alice, connects Bob, and waits for the puppet. */
  const aliceAndBob = async () => {
    await core.enlist(ALICE);
    const bob = await native(BOB);
    await connected();
    return bob;
  };

  const mediaFrom = (remote: string): (IncomingEvent & { body: MediaBody })[] =>
    adapter.delivered.flatMap((e) =>
      e.remote === remote && e.event.type === 'message' && e.event.body.kind === 'media'
        ? [{ ...e, body: e.event.body }]
        : [],
    );

  beforeEach(async () => {
    tmp = tempDir();
    signingKey = await generateProviderKey('EdDSA');
    // The bridge's listener first: the gateway's proxy may fetch this provider's media from it only.
    http = new HttpListener(createLogger({ level: 'silent' }));
    const address = await http.listen('127.0.0.1', 0);
    const listener = `127.0.0.1:${address.port}`;
    host = await MediaHost.open({
      dir: path.join(tmp.dir, 'media'),
      publicUrl: `http://${listener}`,
      maxBytes: MAX_BYTES,
    });
    host.mount(http);
    media = await BridgeMediaHandler.open({
      host,
      mediaConn: (localUser) => bridge.mediaConn(localUser),
      receivedDir: path.join(tmp.dir, 'media-received'),
      maxBytes: MAX_BYTES,
    });
    ({ running, root } = await startEmulator(tmp, {
      provider: { id: PROVIDER, signingKey, allowedMediaHosts: [listener] },
    }));
    await startBridge();
  });

  afterEach(async () => {
    await Promise.all(natives.splice(0).map((u) => u.close()));
    await stopBridge();
    media.close();
    host.close();
    await http.close();
    await running.stop();
    tmp.cleanup();
  });

  it('sends an image, a video, a voice note and a document that a native user downloads byte for byte through the gateway proxy', async () => {
    const bob = await aliceAndBob();
    for (const [i, s] of SAMPLES.entries()) {
      const file = tmp.file(`out-${i}`);
      writeFileSync(file, s.bytes);
      await core.submit({
        localId: `$media${i}`,
        localUser: ALICE,
        remote: bob.jid,
        event: {
          type: 'message',
          body: {
            kind: 'media',
            media: s.kind,
            path: file,
            mimetype: s.mimetype,
            size: s.bytes.length,
            ...(s.caption ? { caption: s.caption } : {}),
            ...(s.fileName ? { fileName: s.fileName } : {}),
          },
        },
      });
    }
    await bob.waitForMessage(() => bob.received.length === SAMPLES.length);

    expect(bob.received.map((m) => m.content.kind)).toEqual(['image', 'video', 'voice', 'document']);
    for (const [i, s] of SAMPLES.entries()) {
      const m = bob.received[i]!;
      expect(m.from).toBe(await aliceJid());
      expect((await bob.downloadMedia(m)).equals(s.bytes)).toBe(true);
      const c = m.content;
      if (!('media' in c)) throw new Error('not media');
      expect(c.media.mimetype).toBe(s.mimetype);
      // Hosted by the bridge, not uploaded to the gateway.
      expect(new URL(c.media.url).pathname).toMatch(/^\/_interop\/media\/[A-Za-z0-9_-]{43}$/);
      if ('caption' in c) expect(c.caption).toBe(s.caption ?? '');
    }
    const doc = bob.received[3]!.content;
    expect(doc.kind === 'document' && doc.media.fileName).toBe('Quarterly report.pdf');
    const voice = bob.received[2]!.content;
    expect(voice.kind === 'voice' && voice.media.ptt).toBe(true);
    await adapter.until(
      () => SAMPLES.every((_, i) => adapter.statesOf(`$media${i}`).includes('delivered')),
      'every file delivered',
    );
  });

  it('hands the adapter a file with the same bytes, caption and file name for each kind a native user sends', async () => {
    const bob = await aliceAndBob();
    const ids: string[] = [];
    for (const s of SAMPLES) {
      ids.push(
        await bob.sendMedia(
          await aliceJid(),
          {
            kind: s.native,
            bytes: s.bytes,
            mimetype: s.mimetype,
            ...(s.caption ? { caption: s.caption } : {}),
            ...(s.fileName ? { fileName: s.fileName } : {}),
          },
          { devices: [0] },
        ),
      );
    }
    await adapter.until(() => mediaFrom(bob.jid).length === SAMPLES.length, 'every incoming file');

    const got = mediaFrom(bob.jid);
    expect(got.map((e) => e.remoteId)).toEqual(ids);
    for (const [i, s] of SAMPLES.entries()) {
      const { body } = got[i]!;
      expect(body.media).toBe(s.kind);
      expect(adapter.files.get(got[i]!.remoteId)?.equals(s.bytes)).toBe(true);
      expect(body.size).toBe(s.bytes.length);
      expect(body.mimetype).toBe(s.mimetype);
      expect(body.caption).toBe(s.caption);
      expect(body.fileName).toBe(s.fileName);
      // Written under the bridge's own directory, not wherever the sender would like.
      expect(path.dirname(body.path)).toBe(path.join(tmp.dir, 'media-received'));
    }
    await bob.waitForReceipt(ids[ids.length - 1]!, 'delivery');
  });

  it('tells the local user about an incoming file over media.max_bytes instead of losing it', async () => {
    const bob = await aliceAndBob();
    const big = await bob.sendMedia(
      await aliceJid(),
      { kind: 'document', bytes: randomBytes(300_000), mimetype: 'application/zip', caption: 'backup' },
      { devices: [0] },
    );
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the notice');

    expect(adapter.delivered[0]?.remoteId).toBe(big);
    expect(adapter.textsFrom(bob.jid)[0]).toBe(
      '(sent a file that could not be shown: it is 293.0 KB, and this bridge takes files up to 256.0 KB: backup)',
    );
    // The message counts as delivered (the sender is told), and the conversation goes on.
    await bob.waitForReceipt(big, 'delivery');
    await bob.sendText(await aliceJid(), 'did you get it?', { devices: [0] });
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 2, 'the next message');
  });

  it('tells the local user when a download keeps failing, after the configured attempts', async () => {
    const bob = await aliceAndBob();
    const alice = await aliceJid();
    await stopBridge();
    const id = await bob.sendMedia(
      alice,
      { kind: 'voice', bytes: randomBytes(5_000), mimetype: 'audio/ogg' },
      { devices: [0] },
    );
    await running.media.stop(); // the gateway's media service is down for good
    media.close();
    media = await BridgeMediaHandler.open({
      host,
      mediaConn: (localUser) => bridge.mediaConn(localUser),
      receivedDir: path.join(tmp.dir, 'media-received'),
      maxBytes: MAX_BYTES,
      maxAttempts: 2,
    });

    await startBridge();
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the notice');

    expect(adapter.delivered[0]?.remoteId).toBe(id);
    expect(adapter.textsFrom(bob.jid)[0]).toMatch(
      /^\(sent a voice note that could not be shown: it could not be downloaded after 2 attempts \(cannot reach the media host 127\.0\.0\.1:\d+/,
    );
  });

  it('refuses a blob altered at the gateway and tells the local user', async () => {
    const bob = await aliceAndBob();
    const alice = await aliceJid();
    await stopBridge(); // the message waits at the gateway while its blob is altered
    const id = await bob.sendMedia(
      alice,
      { kind: 'image', bytes: randomBytes(30_000), mimetype: 'image/png', caption: 'look' },
      { devices: [0] },
    );
    const storeDir = running.loaded.paths.media;
    const blobs = readdirSync(storeDir).filter((n) => !n.startsWith('.'));
    expect(blobs).toHaveLength(1);
    const blob = readFileSync(path.join(storeDir, blobs[0]!));
    blob[100] = blob[100]! ^ 0xff;
    writeFileSync(path.join(storeDir, blobs[0]!), blob);

    await startBridge();
    await adapter.until(() => adapter.textsFrom(bob.jid).length === 1, 'the notice');

    expect(adapter.delivered[0]?.remoteId).toBe(id);
    expect(adapter.textsFrom(bob.jid)[0]).toBe(
      '(sent an image that could not be shown: it failed its integrity check (it was altered or damaged on the way), so it was discarded: look)',
    );
    expect(mediaFrom(bob.jid)).toHaveLength(0);
    expect(readdirSync(path.join(tmp.dir, 'media-received')).filter((n) => !n.startsWith('.'))).toEqual([]);
  });
});

/** A port nobody listens on right now (the emulator must know the bridge's before either starts). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('the daemon with a gateway configured', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let daemon: Daemon;
  const natives: NativeUser[] = [];

  afterEach(async () => {
    await Promise.all(natives.splice(0).map((u) => u.close()));
    await daemon?.stop();
    await running?.stop();
    tmp.cleanup();
  });

  it('hosts outgoing media on its listener, writes incoming media under its data directory, and counts both in its metrics and health', async () => {
    tmp = tempDir();
    const port = await freePort();
    const signingKey = await generateProviderKey('EdDSA');
    writeProviderKey(path.join(tmp.dir, 'state', 'provider-signing-key.jwk'), signingKey);
    const jwks = tmp.file('bridge-jwks.json', JSON.stringify(publicJwks([signingKey])));
    const loaded = loadEmulatorConfig(
      tmp.file(
        'emulator.yaml',
        [
          'gateway:',
          '  port: 0',
          'emulator:',
          '  data_dir: emulator',
          'media:',
          '  port: 0',
          'admin:',
          '  enabled: false',
          'providers:',
          `  - id: ${PROVIDER}`,
          `    jwks_file: ${jwks}`,
          `    allowed_media_hosts: ["127.0.0.1:${port}"]`,
          '',
        ].join('\n'),
      ),
    );
    const root = initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 });
    running = await RunningEmulator.start({ loaded, logger: createLogger({ level: 'silent' }) });
    const config = tmp.file(
      'bridge.yaml',
      [
        'bridge:',
        `  provider_id: ${PROVIDER}`,
        '  data_dir: state',
        '  http:',
        `    port: ${port}`,
        'gateway:',
        `  port: ${running.gateway.port}`,
        `  root_key: ${Buffer.from(root.rootPublicKey).toString('base64')}`,
        '  reconnect:',
        '    initial_delay_ms: 50',
        '    max_delay_ms: 500',
        'signal:',
        '  prekey_batch_size: 20',
        'media:',
        `  max_bytes: ${MAX_BYTES}`,
        '',
      ].join('\n'),
    );
    daemon = await startDaemon(loadConfig({ path: config, env: {} }), createLogger({ level: 'silent' }));
    const adapter = new TestAdapter();
    const core = daemon.bridge!.attach(adapter);
    await core.enlist(ALICE);
    const bob = await NativeUser.connect({
      emulator: running.gateway,
      phone: BOB,
      rootPublicKey: root.rootPublicKey,
    });
    natives.push(bob);
    await adapter.until(() => daemon.bridge!.puppet(ALICE)?.connection.isConnected === true, 'connected');

    const photo = randomBytes(20_000);
    const file = tmp.file('photo.jpg');
    writeFileSync(file, photo);
    await core.submit({
      localId: '$photo',
      localUser: ALICE,
      remote: bob.jid,
      event: {
        type: 'message',
        body: { kind: 'media', media: 'image', path: file, mimetype: 'image/jpeg', size: photo.length },
      },
    });
    const got = await bob.waitForMessage((m) => m.content.kind === 'image');
    expect((await bob.downloadMedia(got)).equals(photo)).toBe(true);
    const url = got.content.kind === 'image' ? new URL(got.content.media.url) : undefined;
    expect(url?.host).toBe(`127.0.0.1:${port}`);

    const doc = randomBytes(10_000);
    const docId = await bob.sendMedia(
      got.from,
      { kind: 'document', bytes: doc, mimetype: 'text/plain', fileName: 'notes.txt' },
      { devices: [0] },
    );
    await adapter.until(() => adapter.delivered.length === 1, 'the incoming document');
    const event = adapter.delivered[0]!.event;
    const body = event.type === 'message' && event.body.kind === 'media' ? event.body : undefined;
    expect(body?.fileName).toBe('notes.txt');
    expect(path.dirname(body!.path)).toBe(path.join(tmp.dir, 'state', 'media-received'));
    // Taken by the adapter during its delivery; the bridge's received copy is gone after it.
    expect(adapter.files.get(docId)?.equals(doc)).toBe(true);
    await until(
      () => readdirSync(path.join(tmp.dir, 'state', 'media-received')).every((n) => n.startsWith('.')),
      'the received file deleted',
    );
    expect(statSync(path.join(tmp.dir, 'state', 'media')).mode & 0o777).toBe(0o700);

    // What crossed shows in the operator's metrics and health.
    await bob.waitForReceipt(docId);
    await adapter.until(() => adapter.statesOf('$photo').includes('sent'), 'the photo acknowledged');
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sample = (name: string) => metricSample(metrics, name);
    expect(sample('interop_bridge_messages_total{direction="outgoing",outcome="queued"}')).toBe(1);
    expect(sample('interop_bridge_messages_total{direction="outgoing",outcome="sent"}')).toBe(1);
    expect(sample('interop_bridge_messages_total{direction="incoming",outcome="received"}')).toBe(1);
    expect(sample('interop_bridge_messages_total{direction="incoming",outcome="delivered"}')).toBe(1);
    expect(sample('interop_bridge_message_latency_seconds_count{direction="outgoing"}')).toBe(1);
    expect(sample('interop_bridge_message_latency_seconds_count{direction="incoming"}')).toBe(1);
    expect(sample('interop_bridge_gateway_connections{state="connected"}')).toBe(1);
    expect(sample('interop_bridge_puppets')).toBe(1);
    expect(sample('interop_bridge_inbox_pending')).toBe(0);
    expect(metrics).toContain('interop_bridge_process_resident_memory_bytes');
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', puppets: 1, inbox_pending: 0, gateway: { connected: 1 } });
  });
});
