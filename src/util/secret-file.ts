/**
 * A secret file (a key, a token) written whole or not at all: into a file of its own beside the
 * target (mode 0600, synced), then hard-linked into place, which fails with EEXIST when the target
 * exists; with `force`, renamed over it. Processes starting together on one data_dir (a bridge's
 * workers) therefore never read one half-written, and exactly one of them creates it.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';

/** Throws the file system's error: `EEXIST` (its `code`) when the file exists and `force` is not set. */
export function writeSecretFile(
  file: string,
  data: string | Uint8Array,
  options: { force?: boolean } = {},
): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const aside = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fd = openSync(aside, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.force) renameSync(aside, file);
    else linkSync(aside, file);
  } finally {
    rmSync(aside, { force: true });
  }
}
