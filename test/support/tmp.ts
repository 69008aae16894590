import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'interop-bridge-'): {
  dir: string;
  /** Writes `contents` (when given) with `mode` (default: the umask's); returns the path. */
  file: (name: string, contents?: string, mode?: number) => string;
  cleanup: () => void;
} {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return {
    dir,
    file(name, contents, mode) {
      const p = path.join(dir, name);
      if (contents !== undefined) writeFileSync(p, contents, mode === undefined ? {} : { mode });
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
export type TempDir = ReturnType<typeof tempDir>;
