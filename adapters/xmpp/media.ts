/**
 * Files between XMPP and the core. From XMPP: a file a user shares is a URL (XEP-0066 OOB, usually
 * an XEP-0363 upload on their own server); the bridge downloads it, only from the configured hosts
 * and never more than the size limit, into a local file the core encrypts and sends. To XMPP: a
 * decrypted file gets a URL through an XEP-0363 slot of the configured upload service (Prosody's
 * http_file_share, ejabberd's mod_http_upload), or on the bridge's own HTTP listener when no
 * service is configured.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { xml } from '@xmpp/xml';
import type { MediaKind } from '../../src/bridge/events.js';
import type { HttpListener } from '../../src/util/http-listener.js';
import { isSealedFile, plainSizeOf, type FileSealer } from '../../src/util/sealed-file.js';
import { baseMime, extensionOf, mimeOfFileName } from '../../src/util/mime.js';
import type { ComponentLink } from './component.js';
import { XmppUserError } from './errors.js';
import { NS } from './stanzas.js';

export const FILE_HOST_PREFIX = '/_interop/xmpp-files/';

export interface FetchedFile {
  readonly path: string;
  readonly size: number;
  readonly mimetype: string;
  readonly fileName: string;
  /** Written sealed with the at-rest key. */
  readonly sealed: boolean;
}

/** What a file of this type is for the core: voice notes are Opus in Ogg (what XMPP clients record). */
export function mediaKindOf(mimetype: string): MediaKind {
  const base = baseMime(mimetype);
  if (base.startsWith('image/')) return 'image';
  if (base.startsWith('video/')) return 'video';
  if (base === 'audio/ogg' || base === 'audio/opus') return 'voice';
  if (base.startsWith('audio/')) return 'audio';
  return 'file';
}

export function fileNameFor(mimetype: string, given?: string): string {
  const clean = given
    ? path
        .basename(given)
        .replace(/[^\w.+-]/g, '_')
        .slice(0, 100)
    : '';
  if (clean !== '' && clean !== '.' && clean !== '..') return clean;
  const ext = extensionOf(mimetype) ?? 'bin';
  return `file-${randomBytes(4).toString('hex')}.${ext}`;
}

/**
 * The type of a downloaded file: the server's Content-Type, unless it is generic. ejabberd's
 * mod_http_upload serves by extension and calls an Ogg file `application/ogg` whatever the client
 * uploaded; XMPP clients record voice notes as Ogg/Opus, so that is audio.
 */
function mimetypeOf(header: string, fileName: string): string {
  const base = baseMime(header);
  if (base === 'application/ogg') return 'audio/ogg';
  if (base === '' || base === 'application/octet-stream' || base === 'binary/octet-stream') {
    return mimeOfFileName(fileName) ?? 'application/octet-stream';
  }
  return header;
}

function humanBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.ceil(n / 1024)} KiB`;
  return `${n} bytes`;
}

export function fileTooLarge(size: number | undefined, max: number): XmppUserError {
  return new XmppUserError(
    'xmpp_file_too_large',
    'modify',
    'not-acceptable',
    `The file is too large to send${size !== undefined ? ` (${humanBytes(size)})` : ''}: the limit is ${humanBytes(max)}. Send a smaller file.`,
  );
}

/**
 * Whether `media.allowed_fetch_hosts` allows a URL: an entry `host` allows the scheme's default
 * port only (80 for http, 443 for https); any other port must be listed as `host:port`.
 */
function fetchAllowed(url: URL, allowedHosts: readonly string[]): boolean {
  const allowed = allowedHosts.map((h) => h.toLowerCase());
  const hostname = url.hostname.toLowerCase();
  // The URL parser drops a default port: `url.port` is empty for http://h:80/ and https://h:443/.
  if (url.port === '') {
    const standard = url.protocol === 'https:' ? '443' : '80';
    return allowed.includes(hostname) || allowed.includes(`${hostname}:${standard}`);
  }
  return allowed.includes(`${hostname}:${url.port}`);
}

/** The URL's file name (percent-decoded; left as it is when its escapes are malformed). */
function lastPathSegment(url: URL): string {
  const raw = url.pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * Downloads a file a local user shared, from an allowed host only, stopping at `maxBytes`.
 * Throws XmppUserError for what the user must fix (host not allowed, too large, gone).
 */
export async function fetchUserFile(
  url: string,
  options: {
    maxBytes: number;
    allowedHosts: readonly string[];
    dir: string;
    /** The name in `dir` (never the user's file name, which is content); default a random one. */
    name?: string;
    /** Seals the file as it is written (the at-rest key). */
    sealer?: FileSealer | undefined;
    timeoutMs?: number;
  },
): Promise<FetchedFile> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new XmppUserError('xmpp_file_url_invalid', 'modify', 'bad-request', `"${url}" is not a URL`);
  }
  if (
    (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') ||
    !fetchAllowed(parsed, options.allowedHosts)
  ) {
    throw new XmppUserError(
      'xmpp_file_host_not_allowed',
      'cancel',
      'not-allowed',
      `The bridge may not fetch files from ${parsed.host}: share the file through your server's upload service (the operator lists allowed hosts, as host:port for a port other than 80 or 443, in media.allowed_fetch_hosts).`,
    );
  }
  const res = await fetch(url, {
    redirect: 'error',
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  });
  let stream: WebReadableStream<Uint8Array>;
  let fileName: string;
  let mimetype: string;
  let file: string;
  try {
    if (res.status !== 200 || !res.body) {
      throw new XmppUserError(
        'xmpp_file_unavailable',
        'cancel',
        'item-not-found',
        `The file could not be downloaded from ${parsed.host} (HTTP ${res.status}): it was not sent.`,
      );
    }
    const announced = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(announced) && announced > options.maxBytes) {
      throw fileTooLarge(announced, options.maxBytes);
    }
    stream = res.body as WebReadableStream<Uint8Array>;
    fileName = fileNameFor('', lastPathSegment(parsed));
    mimetype = mimetypeOf(res.headers.get('content-type') ?? '', fileName);
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    file = path.join(options.dir, options.name ?? randomBytes(12).toString('hex'));
  } catch (err) {
    // Nothing reads the response: close it, or the connection stays open.
    await res.body?.cancel().catch(() => undefined);
    throw err;
  }
  let size = 0;
  const max = options.maxBytes;
  const body = Readable.fromWeb(stream);
  try {
    await pipeline(
      body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          if (size > max) throw fileTooLarge(undefined, max);
          yield chunk;
        }
      },
      options.sealer
        ? options.sealer.sealing()
        : async function* (source: AsyncIterable<Buffer>) {
            yield* source;
          },
      createWriteStream(file, { mode: 0o600 }),
    );
  } catch (err) {
    body.destroy(); // pipeline does on its errors; this cancels the response on any other
    await rm(file, { force: true });
    throw err;
  }
  return { path: file, size, mimetype, fileName, sealed: options.sealer !== undefined };
}

/** Gives a local file a URL an XMPP client can download. */
export interface FilePublisher {
  publish(file: { path: string; size: number; mimetype: string; fileName: string }): Promise<string>;
}

/** XEP-0363: a slot from the upload service, then an HTTP PUT of the file. */
export class UploadSlotPublisher implements FilePublisher {
  constructor(
    private readonly link: ComponentLink,
    private readonly service: string,
  ) {}

  async publish(file: { path: string; size: number; mimetype: string; fileName: string }): Promise<string> {
    const contentType = file.mimetype.split(';')[0]!.trim();
    const answer = await this.link.request(
      xml(
        'iq',
        { type: 'get', to: this.service },
        xml('request', {
          xmlns: NS.upload,
          filename: file.fileName,
          size: String(file.size),
          'content-type': contentType,
        }),
      ),
    );
    const slot = answer.getChild('slot', NS.upload);
    const put = slot?.getChild('put');
    const get = slot?.getChild('get');
    if (!put?.attrs.url || !get?.attrs.url) {
      throw new Error(`${this.service} answered the upload slot request without put/get URLs`);
    }
    const headers: Record<string, string> = {
      'content-type': contentType,
      'content-length': String(file.size),
    };
    for (const h of put.getChildren('header')) {
      const name = h.attrs.name ?? '';
      // XEP-0363 allows only these; anything else from the service is ignored.
      if (/^(authorization|cookie|expires)$/i.test(name)) headers[name] = h.getText().replace(/[\r\n]/g, '');
    }
    const res = await fetch(put.attrs.url, {
      method: 'PUT',
      headers,
      body: Readable.toWeb(createReadStream(file.path)) as unknown as ReadableStream<Uint8Array>,
      duplex: 'half',
      signal: AbortSignal.timeout(120_000),
    } as RequestInit);
    await res.body?.cancel();
    if (res.status !== 200 && res.status !== 201) {
      throw new Error(`the upload to ${new URL(put.attrs.url).host} failed: HTTP ${res.status}`);
    }
    return get.attrs.url;
  }
}

/** How long the bridge's own file host serves a file by default (`xmpp.served_file_lifetime_hours`). */
export const SERVED_FILE_LIFETIME_HOURS = 168;

/**
 * The bridge's own file host, when no upload service is configured: each file is kept as
 * `dir/<random token>`, sealed with the at-rest key, and served (opened on the fly) on the bridge's
 * HTTP listener at `<publicUrl>/_interop/xmpp-files/<token>/<name>`; the token is the only access
 * control, as with XEP-0363 GET URLs. A file is served for `ttlMs` after it was published, then
 * deleted (XMPP clients fetch the URL when they show the message).
 */
export class OwnFilePublisher implements FilePublisher {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly publicUrl: string,
    private readonly ttlMs = SERVED_FILE_LIFETIME_HOURS * 3600 * 1000,
    private readonly sealer?: FileSealer | undefined,
  ) {}

  /** Serves the files on `listener`, deletes those past their lifetime now and from time to time. */
  mount(listener: HttpListener): void {
    listener.routePrefix(FILE_HOST_PREFIX, (req, res) => this.serve(req, res));
    void this.sweep().catch(() => undefined);
    const every = Math.max(1000, Math.min(3_600_000, Math.floor(this.ttlMs / 4)));
    this.timer = setInterval(() => void this.sweep().catch(() => undefined), every);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  async publish(file: { path: string; size: number; mimetype: string; fileName: string }): Promise<string> {
    const token = randomBytes(24).toString('base64url');
    const name = fileNameFor(file.mimetype, file.fileName);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const target = path.join(this.dir, token);
    if (this.sealer) await this.sealer.sealCopy(file.path, target);
    else await copyFile(file.path, target);
    const base = this.publicUrl.replace(/\/+$/, '');
    return `${base}${FILE_HOST_PREFIX}${token}/${encodeURIComponent(name)}`;
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rest = (req.url ?? '').split('?')[0]!.slice(FILE_HOST_PREFIX.length);
    const [token, rawName] = rest.split('/');
    let name: string;
    try {
      name = rawName === undefined ? '' : decodeURIComponent(rawName);
    } catch {
      name = '';
    }
    if (
      (req.method !== 'GET' && req.method !== 'HEAD') ||
      !token ||
      !/^[A-Za-z0-9_-]{32}$/.test(token) ||
      name === '' ||
      name !== path.basename(name)
    ) {
      res.writeHead(404).end();
      return;
    }
    let file = path.join(this.dir, token);
    let info = await stat(file).catch(() => undefined);
    // Published before files were sealed: `<token>/<name>`, in the clear, until its lifetime ends.
    if (info?.isDirectory()) {
      file = path.join(file, name);
      info = await stat(file).catch(() => undefined);
    }
    if (!info?.isFile() || info.mtimeMs < Date.now() - this.ttlMs) {
      res.writeHead(404).end();
      return;
    }
    const sealed = this.sealer !== undefined && (await isSealedFile(file).catch(() => false));
    res.writeHead(200, {
      'content-type': mimeOfFileName(name) ?? 'application/octet-stream',
      'content-length': sealed ? plainSizeOf(info.size) : info.size,
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await pipeline(sealed ? this.sealer!.open(file) : createReadStream(file), res).catch(() => res.destroy());
  }

  /** Deletes the files past their lifetime. */
  async sweep(): Promise<void> {
    const cutoff = Date.now() - this.ttlMs;
    for (const token of await readdir(this.dir).catch(() => [] as string[])) {
      const entry = path.join(this.dir, token);
      const s = await stat(entry).catch(() => undefined);
      if (s && s.mtimeMs < cutoff) await rm(entry, { recursive: true, force: true });
    }
  }
}

/** Deletes what is older than `maxAgeMs` in `dir` (downloaded files the core no longer needs). */
export async function sweepOldFiles(dir: string, maxAgeMs: number): Promise<void> {
  const cutoff = Date.now() - maxAgeMs;
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    const s = await stat(file).catch(() => undefined);
    if (s && s.mtimeMs < cutoff) await rm(file, { recursive: true, force: true });
  }
}
