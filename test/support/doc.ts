import { readFileSync } from 'node:fs';

/** docs/PROTOCOL.md, for tests that check its examples against the code. */
export const protocolDoc = (): string =>
  readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');

/** The hex bytes of the fenced block that starts with `start`: on each line, the leading hex tokens; the rest is annotation. */
export function documentedHex(doc: string, start: string): string {
  const block = new RegExp('```\\n(' + start + '[\\s\\S]*?)```').exec(doc);
  if (!block) throw new Error(`no fenced block starting with "${start}" in the document`);
  return (block[1] as string)
    .split('\n')
    .map((line) => {
      const bytes: string[] = [];
      for (const token of line.trim().split(/\s+/)) {
        if (!/^(?:[0-9a-f]{2})+$/.test(token)) break;
        bytes.push(token);
      }
      return bytes.join('');
    })
    .join('');
}
