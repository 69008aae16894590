/**
 * Writing stanza values as attributes and text, checking first what the decoder on the other side
 * would refuse: a bug shows up at the sender as `stanza_unencodable`. Shared by encode.ts and the
 * feature files (group.ts, profile.ts).
 */
import { xml, type Element } from '@xmpp/xml';

import { StanzaUnencodableError } from './errors.js';
import type { ErrorInfo } from './types.js';
import { isUint, toBase64 } from './values.js';
import { TOKEN } from './vocabulary.js';

export function fail(field: string, message: string): never {
  throw new StanzaUnencodableError(field, `cannot encode ${field}: ${message}`);
}

export function bytes(value: Uint8Array, size: number, field: string): string {
  if (value.byteLength !== size) fail(field, `must be ${size} bytes, got ${value.byteLength}`);
  return toBase64(value);
}

export function uint(value: number, max: number, field: string): string {
  if (!isUint(value, max)) fail(field, `must be an integer from 0 to ${max}, got ${value}`);
  return String(value);
}

export function optUint(value: number | undefined, max: number, field: string): string | undefined {
  return value === undefined ? undefined : uint(value, max, field);
}

export function nonEmpty(value: string, field: string): string {
  if (value.length === 0) fail(field, 'must not be empty');
  return value;
}

export function optNonEmpty(value: string | undefined, field: string): string | undefined {
  return value === undefined ? undefined : nonEmpty(value, field);
}

export function timestamp(value: number, field: string): string {
  return uint(value, Number.MAX_SAFE_INTEGER, field);
}

/** Stanzas between users name the other side: `to` when sending, `from` when the gateway delivers. */
export function peer(s: { readonly to?: string | undefined; readonly from?: string | undefined }): {
  to?: string;
  from?: string;
} {
  if (s.to === undefined && s.from === undefined)
    fail('to', 'name the peer in to (sending) or from (delivering)');
  return { to: optNonEmpty(s.to, 'to'), from: optNonEmpty(s.from, 'from') };
}

export function errorElement(error: ErrorInfo, field: string): Element {
  return xml('error', { code: uint(error.code, 999, `${field}.code`), text: error.text });
}

export function token(value: string, field: string): string {
  if (!TOKEN.test(value)) fail(field, `"${value}" is not 1 to 64 of A-Z a-z 0-9 _ -`);
  return value;
}

export function optToken(value: string | undefined, field: string): string | undefined {
  return value === undefined ? undefined : token(value, field);
}

/** `<name jid=.../>` for each JID: at least one, no two alike. */
export function jidList(name: string, jids: readonly string[], field: string): Element[] {
  if (jids.length === 0) fail(field, 'name at least one JID');
  const seen = new Set<string>();
  return jids.map((jid, i) => {
    if (seen.has(jid)) fail(`${field}[${i}]`, `"${jid}" appears twice`);
    seen.add(jid);
    return xml(name, { jid: nonEmpty(jid, `${field}[${i}]`) });
  });
}
