/**
 * The spool of local users' files (`<data_dir>/matrix-media/`): a file of a media message is
 * downloaded through the authenticated media API before the event goes to the core, kept sealed
 * with the at-rest key (src/util/sealed-file.ts) while it waits, and removed as soon as the core
 * reports the message sent (the gateway has it, encrypted with its own media key), delivered, read
 * or failed. What a crash left behind is removed at start once older than the queue age limit.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FileSealer } from '../../src/util/sealed-file.js';
import type { RetryingMatrixClient } from './client.js';
import { decryptAttachment, type EncryptedFile } from './crypto/attachments.js';
import { MatrixAdapterError } from './errors.js';

/** A downloaded file, for the core's MediaBody. */
export interface SpooledFile {
  readonly path: string;
  readonly size: number;
  readonly contentType: string | undefined;
  /** Sealed with the at-rest key (the core opens it with the same key). */
  readonly sealed: boolean;
}

export interface MediaSpoolContext {
  /** `bridge.data_dir`: the spool is its `matrix-media/` folder. */
  readonly dataDir: string;
  /** Largest file (`media.max_bytes`). */
  readonly maxBytes: number;
  /** The bot, for downloads (with few attempts: the event is tried again later). */
  readonly client: Pick<RetryingMatrixClient, 'doRequest'>;
  /** Seals what waits in the spool; without one (tests only) files wait in the clear. */
  readonly sealer?: FileSealer | undefined;
}

export class MediaSpool {
  /**
   * Names of the files in the spool (listed from disk once, then kept up to date), so that the
   * delivery update of a text message costs no file system call.
   */
  #names: Set<string> | undefined;

  constructor(private readonly c: MediaSpoolContext) {}

  /**
   * Downloads a local user's file (an `mxc://` URI) into the spool, under a name from the event id;
   * an encrypted attachment (`encrypted`, from an encrypted room) is checked and decrypted first.
   */
  async download(
    mxc: string,
    eventId: string,
    encrypted?: EncryptedFile,
  ): Promise<SpooledFile | 'too_large'> {
    const m = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/.exec(mxc);
    // The value is not echoed: the log must not carry what a user put in an event.
    if (m === null) throw new MatrixAdapterError('matrix_bad_mxc', 'the file URL is not an mxc URI');
    const res = (await this.c.client.doRequest(
      'GET',
      `/_matrix/client/v1/media/download/${encodeURIComponent(m[1]!)}/${encodeURIComponent(m[2]!)}`,
      null,
      null,
      120_000,
      true,
      undefined,
      true,
    )) as { body: Buffer; headers: Record<string, string | undefined> };
    const received = Buffer.isBuffer(res.body) ? res.body : Buffer.from(res.body);
    if (received.length > this.c.maxBytes) return 'too_large';
    const bytes = encrypted === undefined ? received : decryptAttachment(received, encrypted);
    const file = this.#pathOf(eventId);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    this.#spooled().add(path.basename(file));
    if (this.c.sealer) await this.c.sealer.writeSealed(file, bytes);
    else await writeFile(file, bytes, { mode: 0o600 });
    bytes.fill(0);
    return {
      path: file,
      size: bytes.length,
      contentType: encrypted === undefined ? res.headers['content-type'] : undefined,
      sealed: this.c.sealer !== undefined,
    };
  }

  /** Removes the file of the event `eventId` if there is one (in the background, never throwing). */
  release(eventId: string): void {
    const spooled = this.#spooled();
    if (spooled.size === 0) return; // the common case (text): no name to hash
    const file = this.#pathOf(eventId);
    if (spooled.delete(path.basename(file))) void rm(file, { force: true }).catch(() => undefined);
  }

  /** Removes files older than `maxAgeMs` (their messages were sent or failed long ago). */
  async sweep(maxAgeMs: number): Promise<number> {
    const dir = path.join(this.c.dataDir, 'matrix-media');
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const info = await stat(path.join(dir, name)).catch(() => undefined);
      if (info && info.mtimeMs < cutoff) {
        await rm(path.join(dir, name), { force: true });
        this.#names?.delete(name);
        removed++;
      }
    }
    return removed;
  }

  #spooled(): Set<string> {
    if (this.#names === undefined) {
      try {
        this.#names = new Set(readdirSync(path.join(this.c.dataDir, 'matrix-media')));
      } catch {
        this.#names = new Set();
      }
    }
    return this.#names;
  }

  #pathOf(eventId: string): string {
    return path.join(
      this.c.dataDir,
      'matrix-media',
      createHash('sha256').update(eventId).digest('base64url').slice(0, 32),
    );
  }
}
