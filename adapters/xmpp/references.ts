/**
 * XEP-0372 mentions a client sends (`<reference xmlns="urn:xmpp:reference:0" type="mention"
 * begin end uri="xmpp:...">`), as the core's mentions: the mentioned range of the body becomes the
 * `@<number>` token the gatekeeper's apps show as the person's name, and the person goes in
 * `mentions`. `begin` and `end` count code points of the whole body, fallbacks included; a reply's
 * fallback (XEP-0461, removed from the text here) is taken out after the ranges are replaced.
 */
import type { Element } from '@xmpp/xml';
import type { Mention } from '../../src/bridge/events.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import { NS } from './stanzas.js';

/** A range of the body's code points: [start, end). */
export interface Range {
  readonly start: number;
  readonly end: number;
}

/** The range of the body a reply's fallback covers (the quoted text), if the stanza marks one. */
export function replyFallback(el: Element): Range | undefined {
  const fb = el
    .getChildren('fallback', NS.fallback)
    .find((f) => f.attrs.for === NS.reply)
    ?.getChild('body');
  const start = Number(fb?.attrs.start);
  const end = Number(fb?.attrs.end);
  return Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end > start
    ? { start, end }
    : undefined;
}

/**
 * The body's text without the fallback, with each mention's range as the person's token, and the
 * mentions. `resolve` names the person an `xmpp:` URI's JID stands for (their remote JID), or
 * undefined (the user themselves, someone unknown: the text stays as written).
 */
export async function readMentions(
  el: Element,
  body: string,
  fallback: Range | undefined,
  resolve: (jid: string) => Promise<string | undefined>,
): Promise<{ text: string; mentions: Mention[] }> {
  const cps = [...body];
  const refs: { start: number; end: number; remote: string }[] = [];
  for (const r of el.getChildren('reference', NS.reference)) {
    const { type, uri } = r.attrs as Record<string, string | undefined>;
    const start = Number(r.attrs.begin);
    const end = Number(r.attrs.end);
    if (type !== 'mention' || !uri?.startsWith('xmpp:')) continue;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end <= start || end > cps.length)
      continue;
    if (fallback && start < fallback.end && end > fallback.start) continue; // inside the quote
    if (refs.some((o) => start < o.end && end > o.start)) continue; // overlapping another
    const remote = await resolve(decodeURIComponent(uri.slice('xmpp:'.length).split('?')[0] ?? ''));
    if (remote !== undefined && phoneOfRemote(remote) !== undefined) refs.push({ start, end, remote });
  }
  const mentions: Mention[] = [];
  const removed = fallback ? [fallback] : [];
  const edits = [
    ...refs.map((r) => ({ ...r, token: `@${r.remote.split('@')[0]}` })),
    ...removed.map((f) => ({ ...f, token: '' })),
  ];
  for (const e of edits.sort((a, b) => b.start - a.start)) cps.splice(e.start, e.end - e.start, ...e.token);
  for (const r of refs.sort((a, b) => a.start - b.start)) {
    if (!mentions.some((m) => m.remote === r.remote))
      mentions.push({ remote: r.remote, token: `@${r.remote.split('@')[0]}` });
  }
  return { text: cps.join(''), mentions };
}
