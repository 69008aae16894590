import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { MediaServer, MediaTokens, type UploadResult } from '../../emulator/media.js';
import { ProviderRegistry } from '../../emulator/providers.js';
import { decryptMedia, encryptMedia } from '../../src/media/crypto.js';
import { createLogger } from '../../src/observability/logger.js';
import { tempDir } from '../support/tmp.js';

const NATIVE = '4915112345678@wa.interop';
const THIRD_PARTY = 'alice@acme.interop';
const MAX = 64 * 1024;
const logger = createLogger({ level: 'silent' });

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

async function encrypted(plaintext: string) {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  const info = await encryptMedia(Readable.from([Buffer.from(plaintext)]), sink, 'image');
  return { blob: Buffer.concat(chunks), info };
}

/** A provider's media host: serves whatever `files` holds, and records every request path. */
async function startProviderHost(files: Map<string, Buffer>) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = files.get(req.url ?? '');
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('emulator media service', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: number;
  let tokens: MediaTokens;
  let providers: ProviderRegistry;
  let media: MediaServer;
  let providerHost: Awaited<ReturnType<typeof startProviderHost>>;
  const providerFiles = new Map<string, Buffer>();
  let storeDir: string;

  beforeEach(async () => {
    tmp = tempDir();
    clock = Date.now();
    providerFiles.clear();
    providerHost = await startProviderHost(providerFiles);
    tokens = new MediaTokens({ ttlSeconds: 300, now: () => clock });
    providers = await ProviderRegistry.create(
      [
        {
          id: 'acme',
          jwks: { file: tmp.file('jwks.json', '{"keys": []}') },
          refreshSeconds: 300,
          allowedMediaHosts: [`127.0.0.1:${providerHost.port}`],
        },
      ],
      { logger, periodicRefresh: false },
    );
    storeDir = path.join(tmp.dir, 'media');
    media = await MediaServer.start({
      host: '127.0.0.1',
      port: 0,
      storeDir,
      maxBytes: MAX,
      tokens,
      providers,
      logger,
    });
  });

  afterEach(async () => {
    await media.stop();
    await providerHost.close();
    providers.close();
    tmp.cleanup();
  });

  const base = () => `http://127.0.0.1:${media.port}`;
  const auth = (account: string) => ({ authorization: `Bearer ${tokens.issue(account).auth}` });
  const upload = (blob: Uint8Array, headers: Record<string, string>, hash = sha(blob)) =>
    fetch(`${base()}/media/${b64u(hash)}`, { method: 'POST', body: blob, headers });
  const stored = () => readdirSync(storeDir).filter((n) => n !== '.incoming');
  const incoming = () => readdirSync(path.join(storeDir, '.incoming'));

  it('hands out media credentials bound to the account, with the media host', () => {
    const issued = tokens.issue(NATIVE);
    expect(issued.ttl).toBe(300);
    expect(issued.hosts).toEqual([`127.0.0.1:${media.port}`]);
    expect(tokens.accountOf(issued.auth)).toBe(NATIVE);
    expect(tokens.issue(NATIVE).auth).not.toBe(issued.auth);
  });

  it('a native upload is stored by its fileEncSha256 and a third-party recipient downloads and decrypts it', async () => {
    const { blob, info } = await encrypted('a photo of the sea');
    const res = await upload(blob, auth(NATIVE));
    expect(res.status).toBe(201);
    const result = (await res.json()) as UploadResult;
    expect(result).toEqual({
      url: `${base()}/media/${b64u(info.fileEncSha256)}`,
      direct_path: `/media/${b64u(info.fileEncSha256)}`,
      file_enc_sha256: b64u(info.fileEncSha256),
      size: blob.length,
    });
    expect(stored()).toEqual([Buffer.from(info.fileEncSha256).toString('hex')]);

    const download = await fetch(`${base()}${result.direct_path}?auth=${tokens.issue(THIRD_PARTY).auth}`);
    expect(download.status).toBe(200);
    const bytes = Buffer.from(await download.arrayBuffer());
    expect(bytes.equals(blob)).toBe(true);
    const verified = await decryptMedia(
      Readable.from([bytes]),
      { type: 'image', ...info },
      { maxBytes: MAX },
    );
    await verified.dispose();
    expect(verified.fileLength).toBe('a photo of the sea'.length);
  });

  it('answers an upload of the documented example blob as docs/PROTOCOL.md (section 7) shows', async () => {
    const blob = Buffer.from('39dc616360f36e5822563b937c08346066abc42cdd58a415e4e0', 'hex');
    const res = await upload(blob, auth(NATIVE));
    const hash = 'cmF6vDX6dRb_enJs1ADrCGoZ6VFvM452WAERTuxZqt8';
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({
      url: `http://127.0.0.1:${media.port}/media/${hash}`,
      direct_path: `/media/${hash}`,
      file_enc_sha256: hash,
      size: 26,
    });
  });

  it('refuses a download with no, a wrong or an expired auth (401)', async () => {
    const { blob } = await encrypted('private');
    await upload(blob, auth(NATIVE));
    const direct = `${base()}/media/${b64u(sha(blob))}`;
    const expiring = tokens.issue(THIRD_PARTY).auth;

    const none = await fetch(direct);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: string }).error).toBe('media_auth_invalid');
    expect((await fetch(direct, { headers: { authorization: 'Bearer made-up' } })).status).toBe(401);
    clock += 301_000;
    expect((await fetch(direct, { headers: { authorization: `Bearer ${expiring}` } })).status).toBe(401);
    expect((await fetch(direct, { headers: auth(THIRD_PARTY) })).status).toBe(200);
  });

  it('answers 404 for media it does not have', async () => {
    const res = await fetch(`${base()}/media/${b64u(sha(Buffer.from('nothing')))}`, {
      headers: auth(THIRD_PARTY),
    });
    expect(res.status).toBe(404);
  });

  it('does not let a third-party account upload: providers host their own media', async () => {
    const res = await upload(Buffer.from('x'.repeat(26)), auth(THIRD_PARTY));
    expect(res.status).toBe(403);
    expect(stored()).toEqual([]);
  });

  it('refuses an upload whose bytes are not the fileEncSha256 it names, and keeps nothing', async () => {
    const res = await upload(Buffer.from('these bytes'), auth(NATIVE), sha(Buffer.from('other bytes')));
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: string }).error).toBe('media_hash_mismatch');
    expect(stored()).toEqual([]);
    expect(incoming()).toEqual([]);
  });

  it('refuses a huge Content-Length without reading the body', async () => {
    const token = tokens.issue(NATIVE).auth;
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(media.port, '127.0.0.1');
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      // Headers only: the 10^12 bytes announced never come. An answer proves none were awaited.
      socket.write(
        `POST /media/${b64u(sha(Buffer.from('x')))} HTTP/1.1\r\nHost: media\r\n` +
          `Authorization: Bearer ${token}\r\nContent-Length: 1000000000000\r\n\r\n`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"error":"media_too_large"');
    expect(answer.toLowerCase()).toContain('connection: close');
  });

  it('cuts off a chunked upload that passes the limit, and keeps nothing of it', async () => {
    const token = tokens.issue(NATIVE).auth;
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: media.port,
          method: 'POST',
          path: `/media/${b64u(sha(Buffer.from('x')))}`,
          headers: { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      // One chunk over the limit, and the request is left open as if more were coming.
      req.write(randomBytes(MAX + 1));
    });
    expect(status).toBe(413);
    expect(stored()).toEqual([]);
    expect(incoming()).toEqual([]);
  });

  describe('proxy for third-party hosted media', () => {
    const proxy = (params: Record<string, string>, headers: Record<string, string>) =>
      fetch(`${base()}/proxy?${new URLSearchParams(params).toString()}`, { headers });

    it('fetches from an allowed host, checks fileEncSha256, then serves and keeps the blob', async () => {
      const { blob, info } = await encrypted('hosted by the bridge');
      providerFiles.set('/m/1', blob);
      const res = await proxy(
        {
          provider: 'acme',
          url: `http://127.0.0.1:${providerHost.port}/m/1`,
          file_enc_sha256: b64u(info.fileEncSha256),
        },
        auth(NATIVE),
      );
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(blob)).toBe(true);
      expect(existsSync(media.fileOf(info.fileEncSha256))).toBe(true);
    });

    it('refuses a URL on any other host, without contacting it', async () => {
      const { blob } = await encrypted('elsewhere');
      providerFiles.set('/m/2', blob);
      const res = await proxy(
        {
          provider: 'acme',
          url: `http://localhost:${providerHost.port}/m/2`,
          file_enc_sha256: b64u(sha(blob)),
        },
        auth(NATIVE),
      );
      expect(res.status).toBe(403);
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe('media_host_not_allowed');
      expect(body.message).toContain(`allowed: 127.0.0.1:${providerHost.port}`);
      expect(providerHost.requests).toEqual([]);
    });

    it('refuses a blob whose SHA-256 is not the fileEncSha256, and keeps nothing', async () => {
      providerFiles.set('/m/3', Buffer.from('tampered bytes'));
      const expected = sha(Buffer.from('original bytes'));
      const res = await proxy(
        {
          provider: 'acme',
          url: `http://127.0.0.1:${providerHost.port}/m/3`,
          file_enc_sha256: b64u(expected),
        },
        auth(NATIVE),
      );
      expect(res.status).toBe(422);
      expect(((await res.json()) as { error: string }).error).toBe('media_hash_mismatch');
      expect(stored()).toEqual([]);
      expect(incoming()).toEqual([]);
    });

    it('refuses a blob over the size limit', async () => {
      const big = randomBytes(MAX + 100);
      providerFiles.set('/m/4', big);
      const res = await proxy(
        {
          provider: 'acme',
          url: `http://127.0.0.1:${providerHost.port}/m/4`,
          file_enc_sha256: b64u(sha(big)),
        },
        auth(NATIVE),
      );
      expect(res.status).toBe(413);
      expect(stored()).toEqual([]);
    });

    it('refuses an unknown provider and an unauthenticated request', async () => {
      const params = {
        provider: 'nobody',
        url: `http://127.0.0.1:${providerHost.port}/m/1`,
        file_enc_sha256: b64u(sha(Buffer.from('x'))),
      };
      expect((await proxy(params, auth(NATIVE))).status).toBe(400);
      expect((await proxy({ ...params, provider: 'acme' }, {})).status).toBe(401);
      expect(providerHost.requests).toEqual([]);
    });
  });
});
