/**
 * The files XMPP users share, between their download and the core's sending
 * (`<data_dir>/xmpp-downloads/`): written sealed with the at-rest key as they arrive, named after
 * the message (never after the user's file name, which is content), and removed as soon as the core
 * reports the message sent (the gateway has it, encrypted with its own media key), delivered, read
 * or failed. What a crash left behind is swept once older than the retention.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DeliveryUpdate } from '../../src/bridge/events.js';
import type { FileSealer } from '../../src/util/sealed-file.js';
import { fetchUserFile, sweepOldFiles, type FetchedFile } from './media.js';

export interface DownloadsOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly allowedHosts: readonly string[];
  readonly sealer?: FileSealer | undefined;
}

export class Downloads {
  /** Names of the files in the folder, so that a text's delivery updates cost no file system call. */
  readonly #names = new Set<string>();

  constructor(private readonly o: DownloadsOptions) {}

  /** Creates the folder, removes files older than `retentionMs`, and learns what is left. */
  async prepare(retentionMs: number): Promise<void> {
    await mkdir(this.o.dir, { recursive: true, mode: 0o700 });
    await this.sweep(retentionMs);
  }

  async sweep(retentionMs: number): Promise<void> {
    await sweepOldFiles(this.o.dir, retentionMs);
    this.#names.clear();
    for (const name of await readdir(this.o.dir).catch(() => [] as string[])) this.#names.add(name);
  }

  /** Downloads the file a user shared with the message `localId` (see fetchUserFile for refusals). */
  async fetch(url: string, localUser: string, localId: string): Promise<FetchedFile> {
    const name = nameOf(localUser, localId);
    this.#names.add(name);
    return fetchUserFile(url, {
      maxBytes: this.o.maxBytes,
      allowedHosts: this.o.allowedHosts,
      dir: this.o.dir,
      name,
      sealer: this.o.sealer,
    });
  }

  /** Removes the message's file once the core no longer needs it (in the background, never throwing). */
  updateDelivery(update: Pick<DeliveryUpdate, 'localUser' | 'localId' | 'state'>): void {
    if (update.state === 'queued') return;
    const name = nameOf(update.localUser, update.localId);
    if (this.#names.delete(name))
      void rm(path.join(this.o.dir, name), { force: true }).catch(() => undefined);
  }
}

const nameOf = (localUser: string, localId: string): string =>
  createHash('sha256').update(`${localUser}\n${localId}`).digest('base64url').slice(0, 32);
