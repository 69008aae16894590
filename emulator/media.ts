/**
 * The gateway's media service (plain HTTP, node:http). It stores and relays *encrypted* blobs only:
 * it never has a media key, so it cannot decrypt, and it checks what it can without one, the
 * SHA-256 of the uploaded bytes (`fileEncSha256`), before it keeps or serves anything.
 *
 *   POST /media/<fileEncSha256>   upload by a native sender; stored content-addressed on disk
 *   GET  /media/<fileEncSha256>   download (the `direct_path`), by any authenticated account
 *   GET  /proxy?provider=&url=&file_enc_sha256=
 *                                 fetch a third-party provider's hosted media, from its allowed hosts only
 *   GET  /pp/<picture id>         a profile picture (a user's or a group's JPEG; PROTOCOL.md 5.8.2),
 *                                 read from the gateway while its id is current
 *
 * Every request carries the `auth` of a `<media_conn>` answer (`Authorization: Bearer <auth>` or
 * `?auth=<auth>`). Hashes in paths and parameters are base64url (43 characters, no padding).
 * Sizes are limited before anything is buffered: a Content-Length over the limit is refused without
 * reading the body, and the bytes are counted while they stream to a temporary file.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InteropError } from '../src/errors.js';
import type { Logger } from '../src/observability/logger.js';
import { requestUrl } from '../src/util/http-listener.js';
import { NATIVE_SERVER, parseJid } from '../src/protocol/stanza/index.js';
import type { MediaAuthority } from './core.js';

export const SHA256_LENGTH = 32;
/** At most this many live tokens per account: older ones are dropped first. */
export const MAX_TOKENS_PER_ACCOUNT = 8;

export type MediaServiceErrorCode =
  | 'media_auth_invalid'
  | 'media_upload_forbidden'
  | 'media_forbidden'
  | 'media_bad_request'
  | 'media_not_found'
  | 'media_too_large'
  | 'media_hash_mismatch'
  | 'media_host_not_allowed'
  | 'media_unknown_provider'
  | 'media_fetch_failed';

/** HTTP status of each error code. */
export const MEDIA_ERROR_STATUS: Readonly<Record<MediaServiceErrorCode, number>> = {
  media_auth_invalid: 401,
  media_upload_forbidden: 403,
  media_forbidden: 403,
  media_bad_request: 400,
  media_not_found: 404,
  media_too_large: 413,
  media_hash_mismatch: 422,
  media_host_not_allowed: 403,
  media_unknown_provider: 400,
  media_fetch_failed: 502,
};

/** A refused media request; `code` and `message` are the JSON body, `status` the HTTP status. */
export class MediaServiceError extends InteropError {
  declare readonly code: MediaServiceErrorCode;
  readonly status: number;

  constructor(code: MediaServiceErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = MEDIA_ERROR_STATUS[code];
  }
}

// --- credentials -----------------------------------------------------------------------------

export interface MediaTokensOptions {
  ttlSeconds: number;
  /** Media hosts in order of preference (`host` or `host:port`); can be set later with `setHosts`. */
  hosts?: string[];
  /** Milliseconds since the epoch; injected by tests. */
  now?: () => number;
}

/**
 * The `<media_conn>` credentials: random 128-bit tokens, each bound to one account and valid for
 * `ttlSeconds`. Kept in memory: a restart invalidates them, and clients simply ask again.
 */
export class MediaTokens implements MediaAuthority {
  readonly #ttlSeconds: number;
  readonly #now: () => number;
  #hosts: string[];
  #scheme: 'http' | 'https' = 'http';
  /** token -> account and expiry (ms). */
  readonly #tokens = new Map<string, { account: string; expiresAt: number }>();

  constructor(options: MediaTokensOptions) {
    this.#ttlSeconds = options.ttlSeconds;
    this.#hosts = options.hosts ?? [];
    this.#now = options.now ?? Date.now;
  }

  setHosts(hosts: string[], scheme: 'http' | 'https' = this.#scheme): void {
    this.#hosts = [...hosts];
    this.#scheme = scheme;
  }

  /** The URL of a profile picture on the first media host (undefined before the service listens). */
  pictureUrl(id: string): string | undefined {
    const host = this.#hosts[0];
    return host === undefined ? undefined : `${this.#scheme}://${host}/pp/${id}`;
  }

  issue(accountJid: string): { auth: string; ttl: number; hosts: string[] } {
    this.#purge();
    const mine = [...this.#tokens].filter(([, t]) => t.account === accountJid);
    for (const [token] of mine.slice(0, Math.max(0, mine.length - MAX_TOKENS_PER_ACCOUNT + 1))) {
      this.#tokens.delete(token);
    }
    const auth = randomBytes(16).toString('base64url');
    this.#tokens.set(auth, { account: accountJid, expiresAt: this.#now() + this.#ttlSeconds * 1000 });
    return { auth, ttl: this.#ttlSeconds, hosts: [...this.#hosts] };
  }

  /** The account a token was issued to, or undefined when it is unknown or expired. */
  accountOf(auth: string): string | undefined {
    const t = this.#tokens.get(auth);
    if (t === undefined) return undefined;
    if (this.#now() >= t.expiresAt) {
      this.#tokens.delete(auth);
      return undefined;
    }
    return t.account;
  }

  /** Drops every token of an account (on opt-out). */
  revoke(accountJid: string): void {
    for (const [token, t] of this.#tokens) if (t.account === accountJid) this.#tokens.delete(token);
  }

  #purge(): void {
    const now = this.#now();
    for (const [token, t] of this.#tokens) if (now >= t.expiresAt) this.#tokens.delete(token);
  }
}

// --- the HTTP service ------------------------------------------------------------------------

/** Where profile pictures come from: the gateway that holds them (emulator/profiles.ts). */
export interface PictureSource {
  /**
   * The picture whose id is current, and whether `account` may see it (a user's: any account; a
   * group's: its participants); undefined when no picture has this id (any more).
   */
  picture(id: string, account: string): { image: Uint8Array; allowed: boolean } | undefined;
}

/** What the proxy needs to know about providers (the ProviderRegistry). */
export interface MediaProviderPolicy {
  isKnownProvider(providerId: string): boolean;
  isAllowedMediaUrl(providerId: string, url: URL): boolean;
  allowedMediaHosts(providerId: string): readonly string[];
}

export interface MediaServerOptions {
  host: string;
  /** 0 for any free port. */
  port: number;
  /** The content-addressed store (created with mode 0700); `.incoming/` holds partial blobs. */
  storeDir: string;
  /** Largest blob, in encrypted bytes. */
  maxBytes: number;
  tokens: MediaTokens;
  providers: MediaProviderPolicy;
  logger: Logger;
  /** The host handed out in `<media_conn>` and in upload URLs; default the listen address. */
  publicHost?: string;
  publicScheme?: 'http' | 'https';
  fetchTimeoutMs?: number;
  /** Who may upload; default: native accounts (`…@wa.interop`). Third parties host their own media. */
  mayUpload?: (accountJid: string) => boolean;
  /** Serves `GET /pp/<id>`; can be set later with `servePictures`. */
  pictures?: PictureSource;
}

/** The answer to an upload. */
export interface UploadResult {
  url: string;
  direct_path: string;
  /** base64url. */
  file_enc_sha256: string;
  size: number;
}

export class MediaServer {
  readonly #server: http.Server;
  readonly #o: MediaServerOptions;
  readonly #incoming: string;
  readonly #log: Logger;
  #address: AddressInfo | undefined;
  #baseUrl = '';
  #pictures: PictureSource | undefined;

  private constructor(options: MediaServerOptions) {
    this.#o = options;
    this.#pictures = options.pictures;
    this.#log = options.logger;
    this.#incoming = path.join(options.storeDir, '.incoming');
    this.#server = http.createServer((req, res) => void this.#dispatch(req, res));
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 0; // large uploads may take long; idle sockets still time out
  }

  static async start(options: MediaServerOptions): Promise<MediaServer> {
    const server = new MediaServer(options);
    mkdirSync(options.storeDir, { recursive: true, mode: 0o700 });
    mkdirSync(server.#incoming, { recursive: true, mode: 0o700 });
    // Partial blobs of a previous run are never served; drop them.
    for (const name of readdirSync(server.#incoming))
      rmSync(path.join(server.#incoming, name), { force: true });
    await new Promise<void>((resolve, reject) => {
      server.#server.once('error', reject);
      server.#server.listen(options.port, options.host, () => {
        server.#server.off('error', reject);
        resolve();
      });
    });
    server.#address = server.#server.address() as AddressInfo;
    server.#baseUrl = `${options.publicScheme ?? 'http'}://${server.hosts[0]}`;
    options.tokens.setHosts(server.hosts, options.publicScheme ?? 'http');
    return server;
  }

  /** Serves profile pictures from `source` (the gateway, started after the media service). */
  servePictures(source: PictureSource): void {
    this.#pictures = source;
  }

  get port(): number {
    return this.#address?.port ?? 0;
  }

  /** The media hosts for `<media_conn>`, in order of preference. */
  get hosts(): string[] {
    if (this.#o.publicHost !== undefined) return [this.#o.publicHost];
    const a = this.#address;
    if (a === undefined) return [];
    return [a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`];
  }

  /** The full URL of a stored blob. */
  urlOf(fileEncSha256: Uint8Array): string {
    return `${this.#baseUrl}${directPathOf(fileEncSha256)}`;
  }

  /** The store file of a blob (for tests and the admin API; the bytes are ciphertext). */
  fileOf(fileEncSha256: Uint8Array): string {
    return path.join(this.#o.storeDir, Buffer.from(fileEncSha256).toString('hex'));
  }

  async stop(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = requestUrl(req.url, 'http://media.invalid');
    try {
      const media = /^\/media\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
      if (media && req.method === 'POST') return await this.#upload(req, res, url, media[1] as string);
      if (media && (req.method === 'GET' || req.method === 'HEAD')) {
        return await this.#download(req, res, url, media[1] as string);
      }
      if (url.pathname === '/proxy' && req.method === 'GET') return await this.#proxy(req, res, url);
      const picture = /^\/pp\/([A-Za-z0-9_-]{1,64})$/.exec(url.pathname);
      if (picture && (req.method === 'GET' || req.method === 'HEAD')) {
        return this.#picture(req, res, url, picture[1] as string);
      }
      sendError(res, 404, 'not_found', `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof MediaServiceError) {
        this.#log.info({ code: err.code, path: url.pathname }, `media request refused: ${err.message}`);
        sendError(res, err.status, err.code, err.message);
        return;
      }
      this.#log.error({ err, path: url.pathname }, 'media request failed');
      if (!res.headersSent) sendError(res, 500, 'internal', 'internal error');
      else res.destroy();
    }
  }

  #authenticate(req: http.IncomingMessage, url: URL): string {
    const header = req.headers.authorization;
    const auth = header?.startsWith('Bearer ')
      ? header.slice(7).trim()
      : (url.searchParams.get('auth') ?? '');
    const account = auth ? this.#o.tokens.accountOf(auth) : undefined;
    if (account === undefined) {
      throw new MediaServiceError(
        'media_auth_invalid',
        auth
          ? 'the media auth is unknown or expired: ask the gateway for a fresh one with a <media_conn> iq'
          : 'no media auth: send the auth of a <media_conn> answer as "Authorization: Bearer <auth>" or ?auth=',
      );
    }
    return account;
  }

  async #upload(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    hashText: string,
  ): Promise<void> {
    const account = this.#authenticate(req, url);
    const mayUpload = this.#o.mayUpload ?? isNativeAccount;
    if (!mayUpload(account)) {
      throw new MediaServiceError(
        'media_upload_forbidden',
        `${account} may not upload media here: third-party providers host their own media and send its URL`,
      );
    }
    const expected = parseHash(hashText, 'the upload path');
    this.#refuseDeclaredSize(req);
    const size = await this.#receive(req, expected, `upload by ${account}`);
    const result: UploadResult = {
      url: this.urlOf(expected),
      direct_path: directPathOf(expected),
      file_enc_sha256: Buffer.from(expected).toString('base64url'),
      size,
    };
    this.#log.info({ account, file_enc_sha256: result.file_enc_sha256, size }, 'media uploaded');
    sendJson(res, 201, result);
  }

  async #download(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    hashText: string,
  ): Promise<void> {
    this.#authenticate(req, url);
    const hash = parseHash(hashText, 'the download path');
    await this.#serveStored(req, res, hash);
  }

  /** A profile picture, while its id is current: 401 without auth, 404 unknown id, 403 a group's to an outsider. */
  #picture(req: http.IncomingMessage, res: http.ServerResponse, url: URL, id: string): void {
    const account = this.#authenticate(req, url);
    const found = this.#pictures?.picture(id, account);
    if (found === undefined) {
      throw new MediaServiceError(
        'media_not_found',
        `no current picture has the id ${id}: ask for the picture again (<iq xmlns="w:profile:picture">) for its new id`,
      );
    }
    if (!found.allowed) {
      throw new MediaServiceError(
        'media_forbidden',
        `${account} may not see picture ${id}: a group's picture is shown to its participants only`,
      );
    }
    res.writeHead(200, {
      'content-type': 'image/jpeg',
      'content-length': found.image.byteLength,
      'cache-control': 'private, max-age=0',
    });
    res.end(req.method === 'HEAD' ? undefined : found.image);
  }

  async #proxy(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const account = this.#authenticate(req, url);
    const provider = url.searchParams.get('provider') ?? '';
    const target = url.searchParams.get('url') ?? '';
    const expected = parseHash(url.searchParams.get('file_enc_sha256') ?? '', 'file_enc_sha256');
    if (!this.#o.providers.isKnownProvider(provider)) {
      throw new MediaServiceError(
        'media_unknown_provider',
        `provider "${provider}" is not configured on this gateway: pass the sender's provider id as ?provider=`,
      );
    }
    let source: URL;
    try {
      source = new URL(target);
    } catch {
      throw new MediaServiceError(
        'media_bad_request',
        `url ${JSON.stringify(target)} is not an absolute URL`,
      );
    }
    if (
      (source.protocol !== 'http:' && source.protocol !== 'https:') ||
      !this.#o.providers.isAllowedMediaUrl(provider, source)
    ) {
      const allowed = this.#o.providers.allowedMediaHosts(provider);
      throw new MediaServiceError(
        'media_host_not_allowed',
        `${source.protocol}//${source.host} is not an allowed media host of provider "${provider}" ` +
          `(allowed: ${allowed.length > 0 ? allowed.join(', ') : 'none'}): the gateway fetches its media ` +
          'only from the hosts listed in providers[].allowed_media_hosts',
      );
    }
    if (!(await exists(this.fileOf(expected)))) {
      await this.#fetchInto(source, expected, provider, account);
    }
    await this.#serveStored(req, res, expected);
  }

  /** Fetches a provider's blob into the store; only a blob whose SHA-256 matches is kept. */
  async #fetchInto(source: URL, expected: Uint8Array, provider: string, account: string): Promise<void> {
    const where = `${source.protocol}//${source.host}${source.pathname}`;
    let upstream: Response;
    try {
      upstream = await fetch(source, {
        // A redirect could lead to a host that is not allowed: refuse rather than follow.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#o.fetchTimeoutMs ?? 30_000),
      });
    } catch (err) {
      const reason =
        err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new MediaServiceError('media_fetch_failed', `cannot fetch ${where}: ${reason}`, { cause: err });
    }
    if (upstream.status !== 200) {
      await upstream.body?.cancel();
      throw new MediaServiceError(
        'media_fetch_failed',
        `${where} answered HTTP ${upstream.status}${upstream.status >= 300 && upstream.status < 400 ? ' (redirects are not followed)' : ''}: expected 200 with the encrypted media`,
      );
    }
    const declared = Number(upstream.headers.get('content-length') ?? Number.NaN);
    if (declared > this.#o.maxBytes) {
      await upstream.body?.cancel();
      throw tooLarge(`${where} announces ${declared} bytes`, this.#o.maxBytes);
    }
    const body = upstream.body ?? (async function* () {})();
    try {
      await this.#receive(body, expected, `media of ${provider} from ${where}`);
    } catch (err) {
      await upstream.body?.cancel().catch(() => undefined);
      throw err;
    }
    this.#log.info({ provider, account, host: source.host }, 'provider media fetched and verified');
  }

  /**
   * Streams `source` into the store under `expected`, counting bytes against the limit and hashing
   * as it goes; the blob becomes visible (one rename) only once its SHA-256 matches.
   */
  async #receive(source: AsyncIterable<Uint8Array>, expected: Uint8Array, what: string): Promise<number> {
    const tmp = path.join(this.#incoming, `${randomBytes(12).toString('hex')}.part`);
    const file = await open(tmp, 'wx', 0o600);
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of source) {
        size += chunk.byteLength;
        if (size > this.#o.maxBytes)
          throw tooLarge(`the ${what} passed ${this.#o.maxBytes} bytes`, this.#o.maxBytes);
        hash.update(chunk);
        await file.write(chunk);
      }
      await file.close();
      const actual = hash.digest();
      if (!timingSafeEqual(actual, expected)) {
        throw new MediaServiceError(
          'media_hash_mismatch',
          `the ${what} has SHA-256 ${actual.toString('base64url')}, not the fileEncSha256 ` +
            `${Buffer.from(expected).toString('base64url')} it was named by: the blob is not the one the message refers to`,
        );
      }
      await rename(tmp, this.fileOf(expected));
      return size;
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** A Content-Length over the limit is refused before a byte of the body is read. */
  #refuseDeclaredSize(req: http.IncomingMessage): void {
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (declared > this.#o.maxBytes)
      throw tooLarge(`the upload announces ${declared} bytes`, this.#o.maxBytes);
  }

  async #serveStored(req: http.IncomingMessage, res: http.ServerResponse, hash: Uint8Array): Promise<void> {
    const file = this.fileOf(hash);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      throw new MediaServiceError(
        'media_not_found',
        `no media with fileEncSha256 ${Buffer.from(hash).toString('base64url')} is stored here`,
      );
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': size,
      'cache-control': 'private, max-age=0',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await pipeline(createReadStream(file), res);
  }
}

export function directPathOf(fileEncSha256: Uint8Array): string {
  return `/media/${Buffer.from(fileEncSha256).toString('base64url')}`;
}

function isNativeAccount(accountJid: string): boolean {
  try {
    return parseJid(accountJid).server === NATIVE_SERVER;
  } catch {
    return false;
  }
}

function parseHash(text: string, where: string): Uint8Array {
  const bytes = /^[A-Za-z0-9_-]{43}$/.test(text) ? Buffer.from(text, 'base64url') : undefined;
  if (bytes?.length !== SHA256_LENGTH) {
    throw new MediaServiceError(
      'media_bad_request',
      `${where} must name the fileEncSha256 as 43 base64url characters (32 bytes), found ${JSON.stringify(text.slice(0, 64))}`,
    );
  }
  return new Uint8Array(bytes);
}

function tooLarge(what: string, max: number): MediaServiceError {
  return new MediaServiceError(
    'media_too_large',
    `${what}, over this gateway's limit of ${max} bytes (media.max_bytes): send a smaller file`,
  );
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * An error answer. When the request body has not been read (a refused upload), the connection is
 * closed after the answer instead of reading what the client is still sending.
 */
function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const req = res.req;
  const unread = !req.complete;
  const text = JSON.stringify({ error: code, message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Bearer realm="media"' } : {}),
    ...(unread ? { connection: 'close' } : {}),
  });
  res.end(text, () => {
    if (unread) req.destroy();
  });
}
