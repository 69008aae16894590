/**
 * The bridge's MediaHandler: outgoing files are encrypted and hosted by the MediaHost (the gateway's
 * proxy fetches them from the bridge's HTTP listener); incoming media is downloaded from the
 * gateway's media service with the puppet's own `<media_conn>` credential, verified (MAC and both
 * hashes) and decrypted by fetchMedia, and handed to the adapter as a file under the data directory.
 *
 * Media that can never be shown (over `media.max_bytes`, altered on the way, gone from the gateway)
 * becomes a MediaUnavailableError, which the core turns into a notice for the user; a download that
 * fails for a passing reason is tried again with the inbox's backoff, a few times, and then also
 * becomes a notice rather than holding the conversation up for ever.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { create, isFieldSet } from '@bufbuild/protobuf';
import {
  AudioMessageSchema,
  DocumentMessageSchema,
  ImageMessageSchema,
  MessageSchema,
  VideoMessageSchema,
  type Message,
} from '../protocol/gen/interop/v1/message_pb.js';
import type { MediaType as StanzaMediaType } from '../protocol/stanza/index.js';
import { MediaError, type MediaType } from '../media/crypto.js';
import { fetchMedia, MediaFetchError, type MediaConn } from '../media/fetch.js';
import type { HostedMedia, MediaHost } from '../media/host.js';
import type { Logger } from '../observability/logger.js';
import { SealedFileError, type FileSealer } from '../util/sealed-file.js';
import { UndeliverableError } from './errors.js';
import type { MediaBody, MediaKind } from './events.js';
import { MediaUnavailableError, type IncomingMedia, type MediaHandler } from './media.js';

/** A `<media_conn>` answer: the gateway's media hosts and the puppet's bearer credential. */
export interface MediaConnGrant {
  readonly auth: string;
  /** Seconds the credential is valid. */
  readonly ttl: number;
  readonly hosts: readonly string[];
}

export interface BridgeMediaHandlerOptions {
  /** Hosts outgoing files (mounted on the bridge's HTTP listener). */
  host: MediaHost;
  /** Asks the gateway for the puppet's `<media_conn>` (Bridge.mediaConn). */
  mediaConn: (localUser: string) => Promise<MediaConnGrant>;
  /** Where verified incoming plaintexts are written (created with mode 0700). */
  receivedDir: string;
  /** Largest plaintext, both ways (`media.max_bytes`). */
  maxBytes: number;
  /** For one whole download. Default 60 s (fetchMedia's). */
  fetchTimeoutMs?: number;
  /** Failed downloads (network, timeout, gateway error) before the user gets a notice. Default 5. */
  maxAttempts?: number;
  /** Received files older than this are deleted (the adapter has re-uploaded them). Default 1 day. */
  retentionSeconds?: number;
  /** Opens outgoing files an adapter spooled sealed (`MediaBody.sealed`) with the at-rest key. */
  sealer?: FileSealer;
  logger?: Logger;
}

/** Files at most this many prepared outgoing contents are remembered for a repeated call. */
const PREPARED_CACHE = 256;
/** A `<media_conn>` credential is asked for again this long before it expires. */
const CONN_MARGIN_MS = 30_000;
const SPOOL = '.spool';
const SWEEP_MS = 3_600_000;

const CRYPTO_TYPE: Record<MediaKind, MediaType> = {
  image: 'image',
  video: 'video',
  audio: 'audio',
  voice: 'audio',
  file: 'document',
};

/** `<enc mediatype>`: voice notes are `ptt`. */
const ENC_TYPE: Record<MediaKind, StanzaMediaType> = {
  image: 'image',
  video: 'video',
  audio: 'audio',
  voice: 'ptt',
  file: 'document',
};

/** When the sender named no mimetype. */
const DEFAULT_MIMETYPE: Record<IncomingMedia['kind'], string> = {
  image: 'image/jpeg',
  video: 'video/mp4',
  audio: 'audio/mpeg',
  voice: 'audio/ogg; codecs=opus',
  document: 'application/octet-stream',
};

const EXTENSION: Readonly<Record<string, string>> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'video/mp4': 'mp4',
  'video/webm': 'webm',
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'application/pdf': 'pdf',
};

export class BridgeMediaHandler implements MediaHandler {
  readonly #o: BridgeMediaHandlerOptions;
  readonly #conns = new Map<string, { grant: MediaConnGrant; expiresAt: number }>();
  readonly #prepared = new Map<string, Promise<{ content: Message; mediaType: StanzaMediaType }>>();
  /** Failed download attempts per message; in memory (a restart gives a message new chances). */
  readonly #attempts = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  private constructor(options: BridgeMediaHandlerOptions) {
    this.#o = options;
  }

  /** Creates the received-files directory, drops spools of a previous run, deletes old files. */
  static async open(options: BridgeMediaHandlerOptions): Promise<BridgeMediaHandler> {
    const handler = new BridgeMediaHandler(options);
    const spool = path.join(options.receivedDir, SPOOL);
    await rm(spool, { recursive: true, force: true });
    await mkdir(spool, { recursive: true, mode: 0o700 });
    await chmod(options.receivedDir, 0o700);
    // Left by a run that stopped during a delivery: a pending message fetches its file again.
    await handler.sweep(Number.POSITIVE_INFINITY);
    handler.#timer = setInterval(() => {
      handler
        .sweep()
        .catch((err: unknown) =>
          options.logger?.warn({ err: (err as Error).message }, 'received media sweep failed'),
        );
    }, SWEEP_MS);
    handler.#timer.unref();
    return handler;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  // --- outgoing ----------------------------------------------------------------------------------

  prepareOutgoing(input: {
    localUser: string;
    remote: string;
    outboxId: string;
    body: MediaBody;
  }): Promise<{ content: Message; mediaType: StanzaMediaType }> {
    const known = this.#prepared.get(input.outboxId);
    if (known) return known;
    const prepared = this.#prepare(input.body);
    this.#prepared.set(input.outboxId, prepared);
    prepared.catch(() => this.#prepared.delete(input.outboxId));
    if (this.#prepared.size > PREPARED_CACHE) {
      const oldest = this.#prepared.keys().next();
      if (!oldest.done) this.#prepared.delete(oldest.value);
    }
    return prepared;
  }

  async #prepare(body: MediaBody): Promise<{ content: Message; mediaType: StanzaMediaType }> {
    let hosted: HostedMedia;
    try {
      const source = body.sealed ? this.#openSealed(body.path) : body.path;
      hosted = await this.#o.host.host(source, CRYPTO_TYPE[body.media]);
    } catch (err) {
      throw outgoingFailure(err, body, this.#o.maxBytes);
    }
    return { content: mediaContent(body, hosted), mediaType: ENC_TYPE[body.media] };
  }

  #openSealed(file: string): Readable {
    if (!this.#o.sealer) {
      throw new SealedFileError(
        'sealed_file_unreadable',
        'the bridge has no at-rest key to open a sealed file',
      );
    }
    return this.#o.sealer.open(file);
  }

  // --- incoming ----------------------------------------------------------------------------------

  async fetchIncoming(input: {
    localUser: string;
    remote: string;
    remoteId: string;
    content: IncomingMedia;
  }): Promise<MediaBody> {
    const { content: c, localUser } = input;
    const m = c.media;
    const fileLength = announcedLength(c);
    if (fileLength !== undefined && fileLength > BigInt(this.#o.maxBytes)) {
      throw new MediaUnavailableError(
        'bridge_media_too_large',
        `it is ${size(fileLength)}, and this bridge takes files up to ${size(this.#o.maxBytes)}`,
      );
    }
    const key = `${localUser}\n${input.remote}\n${input.remoteId}`;
    const media = {
      type: CRYPTO_TYPE[c.kind === 'document' ? 'file' : c.kind],
      url: m.url,
      directPath: m.directPath,
      mediaKey: m.mediaKey,
      fileEncSha256: m.fileEncSha256,
      fileSha256: m.fileSha256,
      ...(fileLength !== undefined ? { fileLength } : {}),
    };
    let verified;
    for (let refreshed = false; ; refreshed = true) {
      const conn = await this.#conn(localUser, refreshed);
      try {
        verified = await fetchMedia(media, {
          conn,
          maxBytes: this.#o.maxBytes,
          spoolDir: path.join(this.#o.receivedDir, SPOOL),
          ...(this.#o.fetchTimeoutMs !== undefined ? { timeoutMs: this.#o.fetchTimeoutMs } : {}),
        });
        break;
      } catch (err) {
        if (err instanceof MediaFetchError && err.code === 'media_fetch_auth_invalid' && !refreshed) {
          continue; // the credential expired or the gateway restarted: once more with a fresh one
        }
        throw this.#incomingFailure(err, key, input.remoteId);
      }
    }
    this.#attempts.delete(key);
    const file = path.join(this.#o.receivedDir, `${fileIdOf(key)}${extensionOf(c, m.mimetype)}`);
    try {
      await rename(verified.path, file);
    } finally {
      await verified.dispose();
    }
    const fileName = c.kind === 'document' ? c.media.fileName || c.media.title : '';
    const caption = 'caption' in c ? c.caption : '';
    const seconds = c.kind === 'document' || c.kind === 'image' ? 0 : c.media.seconds;
    const dims = c.kind === 'image' || c.kind === 'video' ? c.media : undefined;
    return {
      kind: 'media',
      media: c.kind === 'document' ? 'file' : c.kind,
      path: file,
      mimetype: m.mimetype || DEFAULT_MIMETYPE[c.kind],
      size: verified.fileLength,
      ...(fileName ? { fileName } : {}),
      ...(caption ? { caption } : {}),
      ...(seconds ? { durationSeconds: seconds } : {}),
      ...(dims?.width ? { width: dims.width } : {}),
      ...(dims?.height ? { height: dims.height } : {}),
    };
  }

  /** The puppet's media credential, asked for once per `ttl` (again when `fresh`). */
  async #conn(localUser: string, fresh: boolean): Promise<MediaConn> {
    const cached = this.#conns.get(localUser);
    if (!fresh && cached && Date.now() < cached.expiresAt) return toConn(cached.grant);
    const grant = await this.#o.mediaConn(localUser);
    this.#conns.set(localUser, { grant, expiresAt: Date.now() + grant.ttl * 1000 - CONN_MARGIN_MS });
    return toConn(grant);
  }

  /**
   * What to make of a failed download: never showable -> MediaUnavailableError (a notice); a passing
   * failure -> the error itself (the message stays pending) until `maxAttempts`, then a notice too.
   */
  #incomingFailure(err: unknown, key: string, remoteId: string): Error {
    const code = (err as { code?: string }).code;
    this.#o.logger?.info({ id: remoteId, code, err: (err as Error).message }, 'incoming media not fetched');
    if (err instanceof MediaError) {
      if (code === 'media_too_large') {
        return new MediaUnavailableError(
          'bridge_media_too_large',
          `it is larger than this bridge takes (${size(this.#o.maxBytes)})`,
          { cause: err },
        );
      }
      return new MediaUnavailableError(
        'bridge_media_rejected',
        'it failed its integrity check (it was altered or damaged on the way), so it was discarded',
        { cause: err },
      );
    }
    if (err instanceof MediaFetchError) {
      switch (err.code) {
        case 'media_fetch_not_found':
          return new MediaUnavailableError(
            'bridge_media_gone',
            'it is no longer on the gateway (it expired or was never uploaded); ask for it again',
            { cause: err },
          );
        case 'media_fetch_no_source':
        case 'media_fetch_host_not_allowed':
        case 'media_fetch_redirect_refused':
          return new MediaUnavailableError(
            'bridge_media_no_source',
            "the message does not say where on the gateway's media service to download it",
            { cause: err },
          );
        default: {
          const attempts = (this.#attempts.get(key) ?? 0) + 1;
          this.#attempts.set(key, attempts);
          if (attempts < (this.#o.maxAttempts ?? 5)) return err;
          this.#attempts.delete(key);
          return new MediaUnavailableError(
            'bridge_media_download_failed',
            `it could not be downloaded after ${attempts} attempts (${err.message})`,
            { cause: err },
          );
        }
      }
    }
    return err as Error; // not connected, a request timeout: tried again when the inbox retries
  }

  /** Deletes a received file once the core is done with it (see MediaHandler.release). */
  async release(body: MediaBody): Promise<void> {
    const file = path.resolve(body.path);
    if (path.dirname(file) !== path.resolve(this.#o.receivedDir)) return; // not one of ours
    await rm(file, { force: true }).catch((err: unknown) =>
      this.#o.logger?.warn({ err: (err as Error).message }, 'received media not deleted'),
    );
  }

  /**
   * Deletes received files older than the retention (by default a day; what `release` missed, a
   * crash in the middle of a delivery); at start-up, all of them (`ageMs` infinite).
   */
  async sweep(ageMs?: number): Promise<number> {
    const limit = Date.now() - (ageMs ?? (this.#o.retentionSeconds ?? 86_400) * 1000);
    let removed = 0;
    for (const name of await readdir(this.#o.receivedDir)) {
      if (name === SPOOL) continue;
      const file = path.join(this.#o.receivedDir, name);
      const info = await stat(file).catch(() => undefined);
      if (info && info.mtimeMs < limit) {
        await rm(file, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }
}

/** The media message for a hosted file. */
function mediaContent(body: MediaBody, hosted: HostedMedia): Message {
  const common = {
    url: hosted.url,
    directPath: hosted.directPath,
    mimetype: body.mimetype,
    mediaKey: hosted.mediaKey,
    fileSha256: hosted.fileSha256,
    fileEncSha256: hosted.fileEncSha256,
    fileLength: BigInt(hosted.fileLength),
    mediaKeyTimestamp: BigInt(Math.floor(Date.now() / 1000)),
  };
  const caption = body.caption ? { caption: body.caption } : {};
  const dims = {
    ...(body.width ? { width: body.width } : {}),
    ...(body.height ? { height: body.height } : {}),
  };
  const seconds = body.durationSeconds ? { seconds: Math.round(body.durationSeconds) } : {};
  switch (body.media) {
    case 'image':
      return create(MessageSchema, {
        imageMessage: create(ImageMessageSchema, { ...common, ...caption, ...dims }),
      });
    case 'video':
      return create(MessageSchema, {
        videoMessage: create(VideoMessageSchema, { ...common, ...caption, ...dims, ...seconds }),
      });
    case 'audio':
    case 'voice':
      return create(MessageSchema, {
        audioMessage: create(AudioMessageSchema, { ...common, ...seconds, ptt: body.media === 'voice' }),
      });
    case 'file': {
      const name = body.fileName ?? path.basename(body.path);
      return create(MessageSchema, {
        documentMessage: create(DocumentMessageSchema, {
          ...common,
          ...caption,
          fileName: name,
          title: name,
        }),
      });
    }
  }
}

/** Why an outgoing file cannot be sent, for the user; or the error itself when it may pass. */
function outgoingFailure(err: unknown, body: MediaBody, maxBytes: number): Error {
  const code = (err as { code?: string }).code;
  if (err instanceof MediaError && code === 'media_too_large') {
    return new UndeliverableError(
      'bridge_media_too_large',
      `the file is ${size(body.size)}, and this bridge sends files up to ${size(maxBytes)}: it was not sent`,
    );
  }
  if (err instanceof SealedFileError) {
    return new UndeliverableError(
      'bridge_media_unreadable',
      'the bridge could not open the file it kept sealed (the at-rest key changed, or the file was damaged): it was not sent; send it again',
    );
  }
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR' || code === 'EPERM') {
    return new UndeliverableError(
      'bridge_media_unreadable',
      `the bridge could not read the file (${code}): it was not sent; send it again`,
    );
  }
  return err as Error;
}

/** The plaintext length the message announces, when it sets one. */
/** The file size the sender announced, when it did. */
export function announcedLength(c: IncomingMedia): bigint | undefined {
  switch (c.kind) {
    case 'image':
      return isFieldSet(c.media, ImageMessageSchema.field.fileLength) ? c.media.fileLength : undefined;
    case 'video':
      return isFieldSet(c.media, VideoMessageSchema.field.fileLength) ? c.media.fileLength : undefined;
    case 'audio':
    case 'voice':
      return isFieldSet(c.media, AudioMessageSchema.field.fileLength) ? c.media.fileLength : undefined;
    case 'document':
      return isFieldSet(c.media, DocumentMessageSchema.field.fileLength) ? c.media.fileLength : undefined;
  }
}

function toConn(grant: MediaConnGrant): MediaConn {
  return { auth: grant.auth, hosts: grant.hosts };
}

/** One file per message, named by a hash: no sender-chosen name reaches the file system. */
function fileIdOf(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 32);
}

function extensionOf(c: IncomingMedia, mimetype: string): string {
  const fromName = c.kind === 'document' ? /\.([A-Za-z0-9]{1,8})$/.exec(c.media.fileName)?.[1] : undefined;
  const ext = fromName?.toLowerCase() ?? EXTENSION[mimetype.split(';')[0]?.trim().toLowerCase() ?? ''];
  return ext ? `.${ext}` : '';
}

function size(bytes: number | bigint): string {
  const n = Number(bytes);
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} bytes`;
}
