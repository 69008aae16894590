/**
 * JSON from a client, parsed with its nesting bounded first. JSON.parse itself copes with deep
 * nesting, but what comes after (JSON.stringify into a store, a recursive walk) overflows the stack
 * and turns a client's mistake into a 500 that its sender retries for ever. The bound is checked by
 * one linear scan of the text, before anything is built.
 */

/** Deeper than any event or request the bridge and the emulator take (Matrix events nest a few levels). */
export const MAX_JSON_DEPTH = 128;

export type ParsedJson = { ok: true; value: unknown } | { ok: false; reason: 'not_json' | 'too_deep' };

export function parseJsonBounded(text: string, maxDepth: number = MAX_JSON_DEPTH): ParsedJson {
  if (jsonDepthExceeds(text, maxDepth)) return { ok: false, reason: 'too_deep' };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'not_json' };
  }
}

/** Whether brackets outside strings nest deeper than `maxDepth` (the text need not be valid JSON). */
export function jsonDepthExceeds(text: string, maxDepth: number): boolean {
  // Fewer opening brackets than the bound cannot nest deeper (every ordinary request): counted by
  // the string search, far cheaper than the scan below.
  if (openersAtMost(text, 0x7b, maxDepth) + openersAtMost(text, 0x5b, maxDepth) <= maxDepth) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** How many times `code` occurs in `text`, counting no further than `limit + 1`. */
function openersAtMost(text: string, code: number, limit: number): number {
  const c = String.fromCharCode(code);
  let n = 0;
  for (let i = text.indexOf(c); i !== -1 && n <= limit; i = text.indexOf(c, i + 1)) n++;
  return n;
}
