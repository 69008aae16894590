/**
 * The outgoing media host. A third-party provider hosts its own media (PROTOCOL.md section 7): the
 * bridge encrypts each outgoing file while streaming it to disk, serves the encrypted blob on its
 * HTTP listener under an unguessable, expiring URL, and the gateway's proxy fetches it from there and
 * checks its `fileEncSha256`. The host never keeps a media key: only the message carries it.
 *
 *   <dir>/                     0700
 *     <id>.bin                 0600, the uploaded bytes (ciphertext | mac)
 *     <id>.json                0600, {"v":1,"type","createdAt","expiresAt","encLength"}
 *     .incoming/<id>.part      a blob being encrypted; dropped on failure and at start-up
 *
 * `<id>` is the hex SHA-256 of the URL's token, so neither a directory listing nor a backup of the
 * data directory reveals a live URL. One record per blob, written after the blob is in place, rather
 * than one shared index: nothing is rewritten per upload, and a crash at any point leaves at worst an
 * orphan that the sweep deletes. A restart serves every unexpired blob, as the records are on disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { HttpListener } from '../util/http-listener.js';
import type { Logger } from '../observability/logger.js';
import { encryptMedia, MediaError } from './crypto.js';
import type { EncryptedMediaInfo, MediaSource, MediaType } from './crypto.js';

/** Where hosted blobs are served on the bridge's listener. */
export const MEDIA_HOST_PREFIX = '/_interop/media/';
/** Bytes of randomness in a URL token (base64url: 43 characters). */
export const MEDIA_TOKEN_BYTES = 32;
export const DEFAULT_MEDIA_TTL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_MEDIA_SWEEP_SECONDS = 3600;

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const INCOMING = '.incoming';
const RECORD_VERSION = 1;

export interface MediaHostOptions {
  /** The host's private directory, e.g. `<bridge.data_dir>/media` (created with mode 0700). */
  dir: string;
  /**
   * The listener as the gateway reaches it: `bridge.http.public_url`, or `http://<host>:<port>` of
   * the listen address. A path in it (a reverse proxy's prefix) is kept.
   */
  publicUrl: string;
  /** Largest plaintext accepted (`media.max_bytes`); enforced while streaming, before buffering. */
  maxBytes: number;
  /** How long a URL stays valid. Default 7 days. */
  ttlSeconds?: number;
  /** How often expired blobs are deleted; 0 turns the periodic sweep off. Default 1 hour. */
  sweepIntervalSeconds?: number;
  /** Milliseconds since the epoch; injected by tests. */
  now?: () => number;
  logger?: Logger;
}

/** Everything a media message needs about a hosted file. */
export interface HostedMedia extends EncryptedMediaInfo {
  type: MediaType;
  /** The absolute URL for the message's `url` (the gateway proxy fetches it). */
  url: string;
  /** The path on the bridge's listener, for the message's `directPath`. */
  directPath: string;
  /** The URL's secret part; `revoke` takes it. Treat it as a credential: never log it. */
  token: string;
  /** Milliseconds since the epoch after which the URL answers 404. */
  expiresAt: number;
}

interface BlobRecord {
  v: number;
  type: MediaType;
  createdAt: number;
  expiresAt: number;
  encLength: number;
}

export class MediaHost {
  readonly #o: MediaHostOptions;
  readonly #baseUrl: string;
  readonly #now: () => number;
  readonly #incoming: string;
  /** Ids being written: the sweep must not take a blob whose record is not written yet. */
  readonly #writing = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  private constructor(options: MediaHostOptions) {
    this.#o = options;
    this.#baseUrl = options.publicUrl.replace(/\/+$/, '');
    this.#now = options.now ?? Date.now;
    this.#incoming = path.join(options.dir, INCOMING);
  }

  /** Creates the directory, drops partial blobs of a previous run and starts the periodic sweep. */
  static async open(options: MediaHostOptions): Promise<MediaHost> {
    const host = new MediaHost(options);
    await mkdir(host.#incoming, { recursive: true, mode: 0o700 });
    // mkdir's mode is ignored for a directory that exists already, and is subject to the umask.
    await chmod(options.dir, 0o700);
    await chmod(host.#incoming, 0o700);
    for (const name of await readdir(host.#incoming)) {
      await rm(path.join(host.#incoming, name), { force: true });
    }
    const every = options.sweepIntervalSeconds ?? DEFAULT_MEDIA_SWEEP_SECONDS;
    if (every > 0) {
      host.#timer = setInterval(() => {
        host.sweep().catch((err: unknown) => host.#o.logger?.warn({ err }, 'media sweep failed'));
      }, every * 1000);
      host.#timer.unref();
    }
    return host;
  }

  /** Serves hosted blobs on `listener` under MEDIA_HOST_PREFIX. */
  mount(listener: HttpListener): void {
    listener.routePrefix(MEDIA_HOST_PREFIX, (req, res) => this.handle(req, res));
  }

  /**
   * Encrypts `source` (a file path, or a stream of plaintext) as `type` into the store, and returns
   * what the media message needs. A plaintext over `maxBytes` fails with `media_too_large` as soon as
   * it is known (a file's size before reading it, a stream's while counting) and nothing is kept.
   */
  async host(
    source: string | MediaSource,
    type: MediaType,
    options: { ttlSeconds?: number } = {},
  ): Promise<HostedMedia> {
    let input: MediaSource;
    if (typeof source === 'string') {
      const size = (await stat(source)).size;
      if (size > this.#o.maxBytes) throw tooLarge(size, this.#o.maxBytes);
      input = createReadStream(source);
    } else {
      input = source;
    }
    const token = randomBytes(MEDIA_TOKEN_BYTES).toString('base64url');
    const id = idOf(token);
    const part = path.join(this.#incoming, `${id}.part`);
    this.#writing.add(id);
    try {
      let info: EncryptedMediaInfo;
      try {
        info = await encryptMedia(input, createWriteStream(part, { flags: 'wx', mode: 0o600 }), type, {
          maxBytes: this.#o.maxBytes,
        });
      } catch (err) {
        await rm(part, { force: true });
        throw err;
      }
      const createdAt = this.#now();
      const expiresAt = createdAt + (options.ttlSeconds ?? this.#ttlSeconds) * 1000;
      await rename(part, this.#blobFile(id));
      const record: BlobRecord = { v: RECORD_VERSION, type, createdAt, expiresAt, encLength: info.encLength };
      const tmp = path.join(this.#incoming, `${id}.json`);
      await writeFile(tmp, JSON.stringify(record), { mode: 0o600, flag: 'wx' });
      await rename(tmp, this.#recordFile(id));
      const directPath = `${MEDIA_HOST_PREFIX}${token}`;
      this.#o.logger?.info(
        { media_id: id.slice(0, 12), type, enc_length: info.encLength, expires_at: expiresAt },
        'media hosted',
      );
      return { ...info, type, url: `${this.#baseUrl}${directPath}`, directPath, token, expiresAt };
    } finally {
      this.#writing.delete(id);
    }
  }

  /** Withdraws a hosted blob before it expires (its URL answers 404 from now on). */
  async revoke(token: string): Promise<void> {
    if (!TOKEN_PATTERN.test(token)) return;
    await this.#remove(idOf(token));
  }

  /** Deletes expired blobs, unreadable records and orphans; resolves with the number of blobs removed. */
  async sweep(): Promise<number> {
    const names = new Set(await readdir(this.#o.dir));
    const now = this.#now();
    let removed = 0;
    for (const name of names) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : name.endsWith('.bin') ? name.slice(0, -4) : '';
      if (id === '' || this.#writing.has(id)) continue;
      if (name.endsWith('.bin')) {
        if (names.has(`${id}.json`)) continue; // judged by its record
        await rm(path.join(this.#o.dir, name), { force: true }); // a crash before its record was written
        removed++;
        continue;
      }
      const record = await this.#record(id);
      if (record === undefined || now >= record.expiresAt || !names.has(`${id}.bin`)) {
        await this.#remove(id);
        removed++;
      }
    }
    if (removed > 0) this.#o.logger?.info({ removed }, 'expired media deleted');
    return removed;
  }

  /** Stops the periodic sweep (blobs stay on disk for the next start). */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The HTTP handler for everything under MEDIA_HOST_PREFIX: GET and HEAD only. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(
        res,
        405,
        'method_not_allowed',
        `${req.method ?? '?'} is not allowed on hosted media: use GET or HEAD`,
        {
          allow: 'GET, HEAD',
        },
      );
      return;
    }
    const urlPath = (req.url ?? '/').split('?')[0] as string;
    const token = urlPath.startsWith(MEDIA_HOST_PREFIX) ? urlPath.slice(MEDIA_HOST_PREFIX.length) : '';
    const found = TOKEN_PATTERN.test(token) ? await this.#open(idOf(token)) : undefined;
    if (found === undefined) {
      // Unknown, malformed and expired tokens get the same answer: no oracle for guessing.
      sendError(
        res,
        404,
        'media_not_found',
        'no hosted media at this URL: it never existed, was withdrawn or has expired; ask the sender to send it again',
      );
      return;
    }
    const { file, size } = found;
    try {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': size,
        'cache-control': 'private, no-store',
        'x-content-type-options': 'nosniff',
      });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      // A client that goes away mid-download is normal, not a handler failure worth an error log.
      await pipeline(file.createReadStream({ autoClose: false }), res).catch(() => res.destroy());
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  get #ttlSeconds(): number {
    return this.#o.ttlSeconds ?? DEFAULT_MEDIA_TTL_SECONDS;
  }

  /** The blob of `id` opened for reading, if it exists and has not expired (an expired one is deleted). */
  async #open(id: string): Promise<{ file: FileHandle; size: number } | undefined> {
    const record = await this.#record(id);
    if (record === undefined) return undefined;
    if (this.#now() >= record.expiresAt) {
      await this.#remove(id);
      return undefined;
    }
    // Opened before it is measured: a sweep that deletes it meanwhile cannot cut the answer short.
    const file = await open(this.#blobFile(id), 'r').catch(() => undefined);
    if (file === undefined) return undefined;
    return { file, size: (await file.stat()).size };
  }

  async #record(id: string): Promise<BlobRecord | undefined> {
    try {
      const parsed = JSON.parse(await readFile(this.#recordFile(id), 'utf8')) as Partial<BlobRecord>;
      return parsed.v === RECORD_VERSION && typeof parsed.expiresAt === 'number'
        ? (parsed as BlobRecord)
        : undefined;
    } catch {
      return undefined;
    }
  }

  async #remove(id: string): Promise<void> {
    await rm(this.#blobFile(id), { force: true });
    await rm(this.#recordFile(id), { force: true });
  }

  #blobFile(id: string): string {
    return path.join(this.#o.dir, `${id}.bin`);
  }

  #recordFile(id: string): string {
    return path.join(this.#o.dir, `${id}.json`);
  }
}

function idOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function tooLarge(size: number, maxBytes: number): MediaError {
  return new MediaError(
    'media_too_large',
    `media plaintext exceeds the limit of ${maxBytes} bytes (the file has ${size}); it was refused and ` +
      'nothing of it was kept; raise media.max_bytes if such files must pass',
  );
}

function sendError(
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify({ error: code, message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
