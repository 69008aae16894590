/**
 * Looking for message content left on disk: a marker text as UTF-8, hex or base64 (at each of the
 * three alignments base64 can put it in) in files and folders.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** The byte strings that betray `marker`: UTF-8, hex (both cases) and base64 at every alignment. */
export function markerNeedles(marker: string): Buffer[] {
  const bytes = Buffer.from(marker, 'utf8');
  const needles = [
    bytes,
    Buffer.from(bytes.toString('hex')),
    Buffer.from(bytes.toString('hex').toUpperCase()),
  ];
  for (let pad = 0; pad < 3; pad++) {
    const b64 = Buffer.concat([Buffer.alloc(pad), bytes]).toString('base64');
    // Skip the characters that mix in the padding, and the last ones, which mix in what follows.
    const skip = [0, 2, 3][pad] as number;
    needles.push(Buffer.from(b64.slice(skip, skip + 16)));
  }
  return needles;
}

/** Every regular file under `dir` (or `dir` itself when it is a file). */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (!statSync(dir).isDirectory()) return [dir];
  return readdirSync(dir).flatMap((name) => filesUnder(path.join(dir, name)));
}

/** Where (file and form) any of the markers is found in the given files or folders, or their names. */
export function findMarkers(places: readonly string[], markers: readonly string[]): string[] {
  const found: string[] = [];
  const files = places.flatMap(filesUnder);
  for (const file of files) {
    // File names are content too (a user's file name).
    for (const marker of markers) {
      if (path.basename(file).includes(marker)) found.push(`${marker} as the name of ${file}`);
    }
    const content = readFileSync(file);
    for (const marker of markers) {
      markerNeedles(marker).forEach((needle, i) => {
        if (content.includes(needle)) {
          found.push(
            `${marker} in ${path.basename(file)} (${['utf8', 'hex', 'HEX', 'base64/0', 'base64/1', 'base64/2'][i]})`,
          );
        }
      });
    }
  }
  return found;
}
