/**
 * The bridge's media, over real sockets: outgoing files hosted on the bridge's HTTP listener and
 * fetched by the gateway's proxy; incoming files downloaded from the gateway and verified.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { MediaServer, MediaTokens } from '../../emulator/media.js';
import { NativeUser } from '../../emulator/native-user.js';
import { ProviderRegistry } from '../../emulator/providers.js';
import { HttpListener, sendJson } from '../../src/util/http-listener.js';
import { decryptMedia, encryptMedia, MediaError } from '../../src/media/crypto.js';
import type { EncryptedMediaInfo, MediaType, VerifiedMedia } from '../../src/media/crypto.js';
import { fetchMedia, MediaFetchError } from '../../src/media/fetch.js';
import type { IncomingMedia, MediaConn } from '../../src/media/fetch.js';
import { MediaHost, MEDIA_HOST_PREFIX } from '../../src/media/host.js';
import type { HostedMedia } from '../../src/media/host.js';
import { createLogger } from '../../src/observability/logger.js';
import { tempDir } from '../support/tmp.js';

const MAX = 256 * 1024;
const DAY = 24 * 3600 * 1000;
const logger = createLogger({ level: 'silent' });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

async function bodyOf(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

async function plaintextOf(verified: VerifiedMedia): Promise<Buffer> {
  try {
    return readFileSync(verified.path);
  } finally {
    await verified.dispose();
  }
}

async function decrypt(blob: Uint8Array, info: EncryptedMediaInfo, type: MediaType): Promise<Buffer> {
  return plaintextOf(await decryptMedia(Readable.from([blob]), { type, ...info }, { maxBytes: MAX * 2 }));
}

/** The bridge's listener with a media host mounted, on a free port. */
async function startBridge(dir: string, now: () => number, ttlSeconds?: number) {
  const listener = new HttpListener(logger);
  listener.route('GET', '/health', (_req, res) => sendJson(res, 200, { ok: true }));
  const address = await listener.listen('127.0.0.1', 0);
  const base = `http://127.0.0.1:${address.port}`;
  const host = await MediaHost.open({
    dir,
    publicUrl: base,
    maxBytes: MAX,
    now,
    sweepIntervalSeconds: 0,
    ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
  });
  host.mount(listener);
  return {
    listener,
    host,
    base,
    port: address.port,
    stop: async () => {
      host.close();
      await listener.close();
    },
  };
}

describe('bridge media host', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: number;
  let dir: string;
  let bridge: Awaited<ReturnType<typeof startBridge>>;

  beforeEach(async () => {
    tmp = tempDir();
    clock = Date.UTC(2026, 0, 1);
    dir = path.join(tmp.dir, 'data', 'media');
    bridge = await startBridge(dir, () => clock);
  });

  afterEach(async () => {
    await bridge.stop();
    tmp.cleanup();
  });

  const hostBytes = (bytes: Uint8Array, type: MediaType = 'image', ttlSeconds?: number) =>
    bridge.host.host(Readable.from([bytes]), type, ttlSeconds !== undefined ? { ttlSeconds } : {});
  const files = () => readdirSync(dir).filter((n) => n !== '.incoming');

  it('serves the encrypted file under its URL, and the download decrypts to the original', async () => {
    const photo = randomBytes(100_000);
    const hosted = await hostBytes(photo);
    expect(hosted.url).toBe(`${bridge.base}${hosted.directPath}`);
    expect(hosted.fileLength).toBe(photo.length);
    expect(Buffer.from(hosted.fileSha256).equals(sha(photo))).toBe(true);

    const res = await fetch(hosted.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(Number(res.headers.get('content-length'))).toBe(hosted.encLength);
    const blob = await bodyOf(res);
    expect(sha(blob).equals(Buffer.from(hosted.fileEncSha256))).toBe(true);
    expect((await decrypt(blob, hosted, 'image')).equals(photo)).toBe(true);
  });

  it('hosts a file given by its path, and answers HEAD with the length and no body', async () => {
    const file = tmp.file('report.pdf', '%PDF-1.7 a small report');
    const hosted = await bridge.host.host(file, 'document');
    const head = await fetch(hosted.url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(hosted.encLength);
    expect((await bodyOf(head)).length).toBe(0);
    const blob = await bodyOf(await fetch(hosted.url));
    expect((await decrypt(blob, hosted, 'document')).toString()).toBe('%PDF-1.7 a small report');
  });

  it('gives every file its own unguessable URL, which the data directory does not reveal', async () => {
    const same = Buffer.from('the same file twice');
    const a = await hostBytes(same);
    const b = await hostBytes(same);
    for (const h of [a, b]) {
      expect(h.directPath).toMatch(/^\/_interop\/media\/[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(h.token, 'base64url')).toHaveLength(32);
    }
    expect(a.token).not.toBe(b.token);
    expect(Buffer.from(a.mediaKey).equals(Buffer.from(b.mediaKey))).toBe(false);
    const listing = files().join(' ');
    expect(listing).not.toContain(a.token);
    expect(listing).not.toContain(b.token);
  });

  it('keeps the blobs private: directory 0700, files 0600, no media key on disk', async () => {
    const hosted = await hostBytes(Buffer.from('private picture'));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const name of files()) expect(statSync(path.join(dir, name)).mode & 0o777).toBe(0o600);
    const key = Buffer.from(hosted.mediaKey);
    for (const name of files()) {
      const content = readFileSync(path.join(dir, name));
      expect(content.includes(key)).toBe(false);
      expect(content.includes(Buffer.from(b64u(key)))).toBe(false);
      expect(content.includes(Buffer.from(key.toString('base64')))).toBe(false);
    }
  });

  it('answers 404 for an unknown or malformed token, and the listener keeps its other routes', async () => {
    await hostBytes(Buffer.from('something'));
    const unknown = await fetch(`${bridge.base}${MEDIA_HOST_PREFIX}${b64u(randomBytes(32))}`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toBe('media_not_found');
    expect((await fetch(`${bridge.base}${MEDIA_HOST_PREFIX}short`)).status).toBe(404);
    expect((await fetch(`${bridge.base}${MEDIA_HOST_PREFIX}`)).status).toBe(404);
    expect((await fetch(`${bridge.base}/health`)).status).toBe(200);
    expect((await fetch(`${bridge.base}/elsewhere`)).status).toBe(404);
  });

  it('answers 405 with Allow: GET, HEAD to any other method', async () => {
    const hosted = await hostBytes(Buffer.from('read only'));
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(hosted.url, { method, body: method === 'DELETE' ? null : 'x' });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
    }
    expect((await fetch(hosted.url)).status).toBe(200);
  });

  it('expires a URL after its TTL (404), and the sweep deletes the expired blob only', async () => {
    const shortLived = await hostBytes(Buffer.from('one hour'), 'image', 3600);
    const weekLong = await hostBytes(Buffer.from('seven days'));
    expect(weekLong.expiresAt).toBe(clock + 7 * DAY);
    expect(files()).toHaveLength(4);

    clock += 3600 * 1000;
    expect((await fetch(shortLived.url)).status).toBe(404);
    expect(await bridge.host.sweep()).toBe(0); // the request already removed it
    expect(files()).toHaveLength(2);
    expect((await fetch(weekLong.url)).status).toBe(200);

    clock += 7 * DAY;
    expect(await bridge.host.sweep()).toBe(1);
    expect(files()).toEqual([]);
    expect((await fetch(weekLong.url)).status).toBe(404);
  });

  it('the sweep deletes an expired blob that nobody asked for', async () => {
    await hostBytes(Buffer.from('never fetched'), 'image', 60);
    clock += 60_000;
    expect(await bridge.host.sweep()).toBe(1);
    expect(files()).toEqual([]);
  });

  it('withdraws a URL on revoke', async () => {
    const hosted = await hostBytes(Buffer.from('sent by mistake'));
    await bridge.host.revoke(hosted.token);
    expect((await fetch(hosted.url)).status).toBe(404);
    expect(files()).toEqual([]);
  });

  it('keeps serving unexpired blobs after a restart, and drops what was half written', async () => {
    const kept = await hostBytes(Buffer.from('survives a restart'));
    const expiring = await hostBytes(Buffer.from('expires while down'), 'image', 60);
    await bridge.stop();
    writeFileSync(path.join(dir, '.incoming', 'deadbeef.part'), 'half an upload');
    clock += 120_000;

    bridge = await startBridge(dir, () => clock);
    expect(readdirSync(path.join(dir, '.incoming'))).toEqual([]);
    const res = await fetch(`${bridge.base}${kept.directPath}`);
    expect(res.status).toBe(200);
    expect((await decrypt(await bodyOf(res), kept, 'image')).toString()).toBe('survives a restart');
    expect((await fetch(`${bridge.base}${expiring.directPath}`)).status).toBe(404);
  });

  it('refuses a plaintext over media.max_bytes while streaming, and keeps nothing', async () => {
    async function* endless() {
      for (;;) yield randomBytes(16 * 1024);
    }
    await expect(bridge.host.host(Readable.from(endless()), 'video')).rejects.toMatchObject({
      code: 'media_too_large',
    });
    expect(files()).toEqual([]);
    expect(readdirSync(path.join(dir, '.incoming'))).toEqual([]);
  });

  it('refuses a file over media.max_bytes by its size, before reading it', async () => {
    const big = tmp.file('big.bin');
    writeFileSync(big, Buffer.alloc(MAX + 1));
    await expect(bridge.host.host(big, 'document')).rejects.toBeInstanceOf(MediaError);
    expect(files()).toEqual([]);
    const exact = tmp.file('exact.bin');
    writeFileSync(exact, Buffer.alloc(MAX));
    expect((await bridge.host.host(exact, 'document')).fileLength).toBe(MAX);
  });
});

describe('bridge media through the emulator', () => {
  let tmp: ReturnType<typeof tempDir>;
  let bridge: Awaited<ReturnType<typeof startBridge>>;
  let bridgeClock: number;
  let running: RunningEmulator;
  let root: Uint8Array;
  const users: NativeUser[] = [];
  const PUPPET = 'alice@acme.interop';

  beforeEach(async () => {
    tmp = tempDir();
    bridgeClock = Date.now();
    bridge = await startBridge(path.join(tmp.dir, 'bridge-media'), () => bridgeClock);
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
        '  enabled: false',
        'providers:',
        '  - id: acme',
        `    jwks_file: ${tmp.file('jwks.json', '{"keys": []}')}`,
        `    allowed_media_hosts: ["127.0.0.1:${bridge.port}"]`,
        '',
      ].join('\n'),
    );
    const loaded = loadEmulatorConfig(config);
    root = initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 }).rootPublicKey;
    running = await RunningEmulator.start({ loaded, logger });
  });

  afterEach(async () => {
    await Promise.all(users.splice(0).map((u) => u.close()));
    await running.stop();
    await bridge.stop();
    tmp.cleanup();
  });

  const conn = (): MediaConn => running.mediaTokens.issue(PUPPET);
  const proxy = (hosted: Pick<HostedMedia, 'url' | 'fileEncSha256'>, hash = hosted.fileEncSha256) => {
    const c = conn();
    const q = new URLSearchParams({ provider: 'acme', url: hosted.url, file_enc_sha256: b64u(hash) });
    return fetch(`http://${c.hosts[0]}/proxy?${q}`, { headers: { authorization: `Bearer ${c.auth}` } });
  };

  it("the gateway's proxy fetches a bridge-hosted blob, checks it and serves it", async () => {
    const voice = randomBytes(40_000);
    const hosted = await bridge.host.host(Readable.from([voice]), 'audio');
    const res = await proxy(hosted);
    expect(res.status).toBe(200);
    const blob = await bodyOf(res);
    expect(sha(blob).equals(Buffer.from(hosted.fileEncSha256))).toBe(true);
    expect((await decrypt(blob, hosted, 'audio')).equals(voice)).toBe(true);
  });

  it("the gateway's proxy refuses a bridge blob that is not the fileEncSha256 named (422)", async () => {
    const hosted = await bridge.host.host(Readable.from([Buffer.from('a picture')]), 'image');
    const res = await proxy(hosted, sha(Buffer.from('another picture')));
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: string }).error).toBe('media_hash_mismatch');
  });

  it("the gateway's proxy cannot fetch an expired bridge URL and serves nothing", async () => {
    const hosted = await bridge.host.host(Readable.from([Buffer.from('gone')]), 'image');
    bridgeClock += 8 * DAY;
    const res = await proxy(hosted);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toBe('media_fetch_failed');
  });

  it('fetchMedia downloads what a native user uploaded, verifies it and decrypts it', async () => {
    const alice = await NativeUser.connect({
      emulator: running.gateway,
      phone: '+4915100000001',
      rootPublicKey: root,
    });
    const bob = await NativeUser.connect({
      emulator: running.gateway,
      phone: '+4915112345678',
      rootPublicKey: root,
    });
    users.push(alice, bob);
    const photo = randomBytes(120_000);
    const id = await alice.sendMedia(bob.jid, { kind: 'image', bytes: photo, mimetype: 'image/jpeg' });
    const got = await bob.waitForMessage((m) => m.id === id);
    if (got.content.kind !== 'image') throw new Error('expected an image');
    const m = got.content.media;
    const incoming: IncomingMedia = {
      type: 'image',
      url: m.url,
      directPath: m.directPath,
      mediaKey: m.mediaKey,
      fileEncSha256: m.fileEncSha256,
      fileSha256: m.fileSha256,
      fileLength: m.fileLength,
    };
    const verified = await fetchMedia(incoming, { conn: conn(), maxBytes: MAX, spoolDir: tmp.dir });
    expect(verified.fileLength).toBe(photo.length);
    expect((await plaintextOf(verified)).equals(photo)).toBe(true);

    // The same message with a fileSha256 that is not its plaintext's: nothing is released.
    await expect(
      fetchMedia({ ...incoming, fileSha256: sha(Buffer.from('other')) }, { conn: conn(), maxBytes: MAX }),
    ).rejects.toMatchObject({ code: 'media_hash_mismatch' });
    // A credential the gateway no longer accepts.
    const revoked = conn();
    running.mediaTokens.revoke(PUPPET);
    await expect(fetchMedia(incoming, { conn: revoked, maxBytes: MAX })).rejects.toMatchObject({
      code: 'media_fetch_auth_invalid',
      status: 401,
    });
  });
});

describe('fetchMedia against hostile or failing media hosts', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: number;
  let tokens: MediaTokens;
  let providers: ProviderRegistry;
  let media: MediaServer;
  const NATIVE = '4915112345678@wa.interop';
  const PUPPET = 'alice@acme.interop';

  beforeEach(async () => {
    tmp = tempDir();
    clock = Date.now();
    tokens = new MediaTokens({ ttlSeconds: 300, now: () => clock });
    providers = await ProviderRegistry.create([], { logger, periodicRefresh: false });
    media = await MediaServer.start({
      host: '127.0.0.1',
      port: 0,
      storeDir: path.join(tmp.dir, 'gateway-media'),
      maxBytes: MAX * 4,
      tokens,
      providers,
      logger,
    });
  });

  afterEach(async () => {
    await media.stop();
    providers.close();
    tmp.cleanup();
  });

  /** A native upload to the gateway: the blob and the message that names it. */
  async function uploaded(plaintext: Uint8Array, type: MediaType = 'image') {
    const chunks: Buffer[] = [];
    const info = await encryptMedia(
      Readable.from([plaintext]),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          chunks.push(chunk);
          cb();
        },
      }),
      type,
    );
    const blob = Buffer.concat(chunks);
    const res = await fetch(`http://${media.hosts[0]}/media/${b64u(info.fileEncSha256)}`, {
      method: 'POST',
      body: blob,
      headers: { authorization: `Bearer ${tokens.issue(NATIVE).auth}` },
    });
    const { direct_path: directPath, url } = (await res.json()) as { direct_path: string; url: string };
    const message: IncomingMedia = { type, url, directPath, ...info };
    return { blob, message };
  }

  /** A media host that answers every request with `answer`. */
  async function rogueHost(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
    const server = http.createServer(answer);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      conn: { auth: 'token', hosts: [`127.0.0.1:${port}`] } satisfies MediaConn,
      close: () => {
        server.closeAllConnections();
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it('refuses an expired media credential (401 from the gateway)', async () => {
    const { message } = await uploaded(Buffer.from('a photo'));
    const c = tokens.issue(PUPPET);
    clock += 301_000;
    const err = await fetchMedia(message, { conn: c, maxBytes: MAX }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaFetchError);
    expect(err).toMatchObject({ code: 'media_fetch_auth_invalid', status: 401 });
  });

  it('refuses a blob whose fileEncSha256 is not the message’s, and releases nothing', async () => {
    const { message } = await uploaded(Buffer.from('the real photo'));
    const other = await uploaded(Buffer.from('a different photo'));
    const spool = path.join(tmp.dir, 'spool');
    mkdirSync(spool);
    // The message names blob A's path but B's keys and hashes: the MAC fails first.
    await expect(
      fetchMedia(
        { ...other.message, directPath: message.directPath! },
        { conn: tokens.issue(PUPPET), maxBytes: MAX, spoolDir: spool },
      ),
    ).rejects.toMatchObject({ code: 'media_mac_mismatch' });
    // Same blob and key, wrong fileEncSha256.
    await expect(
      fetchMedia(
        { ...message, fileEncSha256: sha(Buffer.from('x')) },
        { conn: tokens.issue(PUPPET), maxBytes: MAX, spoolDir: spool },
      ),
    ).rejects.toMatchObject({ code: 'media_hash_mismatch', which: 'enc' });
    expect(readdirSync(spool)).toEqual([]);
  });

  it('refuses by the announced fileLength before downloading anything', async () => {
    const requests: string[] = [];
    const host = await rogueHost((req, res) => {
      requests.push(req.url ?? '');
      res.writeHead(500).end();
    });
    try {
      await expect(
        fetchMedia(
          {
            type: 'video',
            directPath: '/media/x',
            mediaKey: randomBytes(32),
            fileEncSha256: randomBytes(32),
            fileSha256: randomBytes(32),
            fileLength: MAX + 1,
          },
          { conn: host.conn, maxBytes: MAX },
        ),
      ).rejects.toMatchObject({ code: 'media_too_large' });
      expect(requests).toEqual([]);
    } finally {
      await host.close();
    }
  });

  it('refuses an oversize download: by Content-Length, and while counting when there is none', async () => {
    const { message } = await uploaded(randomBytes(1000));
    const announced = await rogueHost((_req, res) => {
      res.writeHead(200, { 'content-length': String(MAX * 2) });
      res.write(Buffer.alloc(1024));
    });
    const chunked = await rogueHost((_req, res) => {
      res.writeHead(200);
      const push = () => {
        if (res.write(Buffer.alloc(64 * 1024))) setImmediate(push);
        else res.once('drain', push);
      };
      push();
    });
    try {
      const { fileLength: _announced, ...noLength } = message;
      await expect(fetchMedia(noLength, { conn: announced.conn, maxBytes: MAX })).rejects.toMatchObject({
        code: 'media_too_large',
      });
      await expect(fetchMedia(noLength, { conn: chunked.conn, maxBytes: MAX })).rejects.toMatchObject({
        code: 'media_too_large',
      });
    } finally {
      await announced.close();
      await chunked.close();
    }
  });

  it('refuses a truncated blob, and reports a download that broke off', async () => {
    const { blob, message } = await uploaded(randomBytes(5000));
    const short = await rogueHost((_req, res) => {
      const cut = blob.subarray(0, blob.length - 10);
      res.writeHead(200, { 'content-length': String(cut.length) }).end(cut);
    });
    const broken = await rogueHost((req, res) => {
      res.writeHead(200, { 'content-length': String(blob.length) });
      res.write(blob.subarray(0, 1000), () => req.socket.destroy());
    });
    try {
      await expect(fetchMedia(message, { conn: short.conn, maxBytes: MAX })).rejects.toMatchObject({
        code: 'media_truncated',
      });
      await expect(fetchMedia(message, { conn: broken.conn, maxBytes: MAX })).rejects.toMatchObject({
        code: 'media_fetch_interrupted',
      });
    } finally {
      await short.close();
      await broken.close();
    }
  });

  it('does not follow a redirect to another host, nor send the credential to one', async () => {
    const { message } = await uploaded(Buffer.from('photo'));
    const seen: (string | undefined)[] = [];
    const elsewhere = await rogueHost((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200).end('x');
    });
    const redirecting = await rogueHost((_req, res) => {
      res.writeHead(302, { location: `http://${elsewhere.conn.hosts[0]}/stolen` }).end();
    });
    try {
      await expect(fetchMedia(message, { conn: redirecting.conn, maxBytes: MAX })).rejects.toMatchObject({
        code: 'media_fetch_redirect_refused',
      });
      // A message whose only url is on a host the gateway did not name.
      await expect(
        fetchMedia(
          { ...message, directPath: '', url: `http://${elsewhere.conn.hosts[0]}/media/x` },
          { conn: tokens.issue(PUPPET), maxBytes: MAX },
        ),
      ).rejects.toMatchObject({ code: 'media_fetch_host_not_allowed' });
      expect(seen).toEqual([]);
    } finally {
      await redirecting.close();
      await elsewhere.close();
    }
  });

  it('times out a host that never answers', async () => {
    const { message } = await uploaded(Buffer.from('photo'));
    const silent = await rogueHost(() => undefined);
    try {
      await expect(
        fetchMedia(message, { conn: silent.conn, maxBytes: MAX, timeoutMs: 200 }),
      ).rejects.toMatchObject({ code: 'media_fetch_timeout' });
    } finally {
      await silent.close();
    }
  });

  it('reports 404 for media the gateway does not have', async () => {
    const { message } = await uploaded(Buffer.from('photo'));
    await expect(
      fetchMedia(
        { ...message, directPath: `/media/${b64u(sha(Buffer.from('nothing')))}` },
        { conn: tokens.issue(PUPPET), maxBytes: MAX },
      ),
    ).rejects.toMatchObject({ code: 'media_fetch_not_found', status: 404 });
  });
});
