/**
 * The incoming media fetch: a native sender uploaded the encrypted blob to the gateway's media
 * service (PROTOCOL.md section 7); the bridge downloads it with its puppet's `<media_conn>` credential
 * and hands it to decryptMedia, which checks the MAC and both hashes before any plaintext is
 * released. The adapter gets a VerifiedMedia (a spooled plaintext) to re-upload to Matrix or XMPP.
 *
 * The credential is the puppet's, so it goes only to a host the gateway named in `<media_conn>`: the
 * message's `directPath` is resolved against those hosts, and a `url` elsewhere is refused rather
 * than sent the bearer token (the message comes from a remote sender). Redirects are followed only
 * within the same origin, for the same reason.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { InteropError } from '../errors.js';
import { decryptMedia, encryptedMediaLength, MediaError } from './crypto.js';
import type { ExpectedMedia, MediaType, VerifiedMedia } from './crypto.js';

export const DEFAULT_MEDIA_FETCH_TIMEOUT_MS = 60_000;
/** Same-origin redirects followed before giving up. */
export const MAX_MEDIA_REDIRECTS = 3;

/** A `<media_conn>` answer: where the gateway's media service is, and the bearer credential for it. */
export interface MediaConn {
  auth: string;
  /** `host` or `host:port`, in order of preference. */
  hosts: readonly string[];
  /** `http` unless the gateway's media service is behind TLS. Default `http`. */
  scheme?: 'http' | 'https';
}

/** What an incoming media message says about its blob. */
export interface IncomingMedia {
  type: MediaType;
  url?: string;
  directPath?: string;
  mediaKey: Uint8Array;
  fileEncSha256: Uint8Array;
  fileSha256: Uint8Array;
  /** The plaintext length the message announces; refused before downloading when over the limit. */
  fileLength?: number | bigint;
}

export interface FetchMediaOptions {
  conn: MediaConn;
  /** Largest plaintext accepted (`media.max_bytes`); the download may be `encryptedMediaLength` of it. */
  maxBytes: number;
  /** For the whole download, headers and body. Default 60 s. */
  timeoutMs?: number;
  /** Where decryptMedia spools the plaintext (default the OS temp directory). */
  spoolDir?: string;
}

export type MediaFetchErrorCode =
  | 'media_fetch_no_source'
  | 'media_fetch_host_not_allowed'
  | 'media_fetch_auth_invalid'
  | 'media_fetch_not_found'
  | 'media_fetch_redirect_refused'
  | 'media_fetch_failed'
  | 'media_fetch_timeout'
  | 'media_fetch_interrupted';

/** The download itself failed (verification failures are MediaError from crypto.ts). */
export class MediaFetchError extends InteropError {
  declare readonly code: MediaFetchErrorCode;
  /** The HTTP status, when the media service answered. */
  readonly status: number | undefined;

  constructor(
    code: MediaFetchErrorCode,
    message: string,
    options: { cause?: unknown; status?: number } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
  }
}

/**
 * Downloads, verifies and decrypts an incoming media blob. Resolves with a VerifiedMedia (call its
 * `dispose` when done) only when every check of decryptMedia has passed. Rejects with:
 * - MediaFetchError: nowhere to fetch from, a refused host or redirect, an HTTP failure (401: ask
 *   the gateway for a fresh `<media_conn>` and retry), a timeout, a body that broke off;
 * - MediaError (`media_too_large`, `media_truncated`, `media_mac_mismatch`, `media_hash_mismatch`, ...):
 *   the announced or received size is over the limit, or the blob failed verification.
 * Hosts are tried in order while the network fails; an HTTP answer other than 200 is final.
 */
export async function fetchMedia(media: IncomingMedia, options: FetchMediaOptions): Promise<VerifiedMedia> {
  const downloadLimit = encryptedMediaLength(options.maxBytes);
  const expected: ExpectedMedia = {
    type: media.type,
    mediaKey: media.mediaKey,
    fileEncSha256: media.fileEncSha256,
    fileSha256: media.fileSha256,
    ...(media.fileLength !== undefined ? { fileLength: media.fileLength } : {}),
  };
  if (media.fileLength !== undefined && BigInt(media.fileLength) > BigInt(options.maxBytes)) {
    throw tooLarge(`the message announces ${media.fileLength} bytes`, options.maxBytes);
  }
  const candidates = mediaDownloadUrls(media, options.conn);
  let lastNetworkError: MediaFetchError | undefined;
  for (const url of candidates) {
    const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_MEDIA_FETCH_TIMEOUT_MS);
    let res: Response;
    try {
      res = await get(url, options.conn.auth, signal);
    } catch (err) {
      if (err instanceof MediaFetchError && err.code === 'media_fetch_failed' && err.status === undefined) {
        lastNetworkError = err;
        continue; // no answer from this host: try the next one
      }
      throw err;
    }
    const body = res.body;
    const declared = Number(res.headers.get('content-length') ?? Number.NaN);
    if (declared > downloadLimit) {
      await body?.cancel().catch(() => undefined);
      throw tooLarge(`${where(url)} announces ${declared} encrypted bytes`, options.maxBytes);
    }
    const source = counted(body, url, signal);
    return decryptMedia(source, expected, {
      maxBytes: downloadLimit,
      ...(options.spoolDir !== undefined ? { spoolDir: options.spoolDir } : {}),
    });
  }
  throw (
    lastNetworkError ??
    new MediaFetchError(
      'media_fetch_no_source',
      'the gateway named no media host: ask for <media_conn> again',
    )
  );
}

/**
 * Where to download from, in order: the message's `directPath` on each `<media_conn>` host; failing
 * a direct path, its `url` if that is on one of those hosts. Throws `media_fetch_no_source` or
 * `media_fetch_host_not_allowed`.
 */
export function mediaDownloadUrls(media: Pick<IncomingMedia, 'url' | 'directPath'>, conn: MediaConn): URL[] {
  const scheme = conn.scheme ?? 'http';
  const hosts = conn.hosts.map((h) => h.toLowerCase());
  const path = media.directPath;
  if (path !== undefined && path !== '') {
    if (!path.startsWith('/') || path.startsWith('//') || path.includes('\\')) {
      throw new MediaFetchError(
        'media_fetch_no_source',
        `the media message's directPath ${JSON.stringify(path.slice(0, 80))} is not an absolute path: ` +
          'the sender built the message incorrectly; report the media as unavailable',
      );
    }
    return hosts.map((h) => new URL(`${scheme}://${h}${path}`));
  }
  if (media.url === undefined || media.url === '') {
    throw new MediaFetchError(
      'media_fetch_no_source',
      'the media message has neither a directPath nor a url: report the media as unavailable',
    );
  }
  let url: URL;
  try {
    url = new URL(media.url);
  } catch {
    throw new MediaFetchError(
      'media_fetch_no_source',
      `the media message's url ${JSON.stringify(media.url.slice(0, 80))} is not an absolute URL: report the media as unavailable`,
    );
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !hosts.includes(url.host.toLowerCase())) {
    throw new MediaFetchError(
      'media_fetch_host_not_allowed',
      `the media url is on ${url.protocol}//${url.host}, not one of the gateway's media hosts ` +
        `(${conn.hosts.join(', ') || 'none'}): the puppet's media credential is only sent to those, so it was not fetched`,
    );
  }
  return [url];
}

/** One GET with the bearer credential, following same-origin redirects only; 200 or a MediaFetchError. */
async function get(start: URL, auth: string, signal: AbortSignal): Promise<Response> {
  let url = start;
  for (let hop = 0; ; hop++) {
    let res: Response;
    try {
      res = await fetch(url, { headers: { authorization: `Bearer ${auth}` }, redirect: 'manual', signal });
    } catch (err) {
      throw transportError(err, url, signal);
    }
    if (res.status === 200) return res;
    await res.body?.cancel().catch(() => undefined);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location !== null) {
      const next = new URL(location, url);
      if (next.origin !== url.origin || hop >= MAX_MEDIA_REDIRECTS) {
        throw new MediaFetchError(
          'media_fetch_redirect_refused',
          `${where(url)} redirected to ${next.origin}${hop >= MAX_MEDIA_REDIRECTS ? ' once too often' : ''}: ` +
            'media is fetched from the gateway media host only; report the media as unavailable',
          { status: res.status },
        );
      }
      url = next;
      continue;
    }
    throw statusError(res.status, url);
  }
}

/** The body, with transport failures turned into MediaFetchError (decryptMedia passes them on). */
async function* counted(body: Response['body'], url: URL, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  if (body === null) return;
  let received = 0;
  try {
    for await (const chunk of Readable.fromWeb(body as WebReadableStream<Uint8Array>)) {
      received += (chunk as Uint8Array).length;
      yield chunk as Uint8Array;
    }
  } catch (err) {
    if (signal.aborted) throw transportError(err, url, signal);
    throw new MediaFetchError(
      'media_fetch_interrupted',
      `the download from ${where(url)} broke off after ${received} bytes: retry the download`,
      { cause: err },
    );
  }
}

function transportError(err: unknown, url: URL, signal: AbortSignal): MediaFetchError {
  if (signal.aborted) {
    return new MediaFetchError(
      'media_fetch_timeout',
      `the download from ${where(url)} did not finish in time: retry later, or raise the fetch timeout for large files`,
      { cause: err },
    );
  }
  const reason =
    err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
  return new MediaFetchError(
    'media_fetch_failed',
    `cannot reach the media host ${url.host}: ${reason}; retry later`,
    { cause: err },
  );
}

function statusError(status: number, url: URL): MediaFetchError {
  if (status === 401 || status === 403) {
    return new MediaFetchError(
      'media_fetch_auth_invalid',
      `${where(url)} refused the media credential (HTTP ${status}): ask the gateway for a fresh <media_conn> and retry`,
      { status },
    );
  }
  if (status === 404 || status === 410) {
    return new MediaFetchError(
      'media_fetch_not_found',
      `${where(url)} has no such media (HTTP ${status}): it expired or was never uploaded; report the media as unavailable`,
      { status },
    );
  }
  return new MediaFetchError(
    'media_fetch_failed',
    `${where(url)} answered HTTP ${status}, expected 200 with the encrypted media: retry later`,
    { status },
  );
}

function where(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function tooLarge(detail: string, maxBytes: number): MediaError {
  return new MediaError(
    'media_too_large',
    `media exceeds the limit of ${maxBytes} bytes (${detail}); nothing was downloaded or kept; ` +
      'raise media.max_bytes if such files must pass',
  );
}
