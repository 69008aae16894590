/**
 * Names the core derives: a puppet's interop account id from its local user, and the stable wire
 * ids of outgoing messages and receipts.
 */
import { createHash } from 'node:crypto';
import type { Network } from '../store/repositories.js';

const sha256hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** The readable part of an account id: at most this many characters. */
const READABLE_MAX = 48;

/**
 * The interop account id of a local user: `<readable>=<hash>`, where `readable` is the local user
 * lower-cased, with every character outside `[a-z0-9._-]` replaced by `_`, leading characters
 * other than `[a-z0-9]` removed and cut to 48 characters (`@Alice:example.org` -> `alice_example.org`),
 * and `hash` the first 16 hex digits of SHA-256(`<network>\n<localUser>`).
 *
 * Stable (a pure function of the user), valid under the JID rules (`[a-z0-9][a-z0-9._=-]{0,127}`),
 * readable in logs and the gateway's admin view, and unique: two users whose readable parts agree
 * (`@Alice:x` and `@alice:x` on a server that allows both) still differ in the hash, which covers
 * the exact original. `=` appears nowhere else, so the hash is always the part after the last `=`.
 */
export function accountIdFor(network: Network, localUser: string): string {
  const readable = localUser
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '_')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, READABLE_MAX);
  const hash = sha256hex(`${network}\n${localUser}`).slice(0, 16);
  return readable === '' ? hash : `${readable}=${hash}`;
}

/**
 * The wire id of an outgoing event: 20 upper-case hex digits of SHA-256 over the puppet's account
 * and the adapter's local id. Derived, not random, so a resubmission of the same local event (after a
 * crash of the adapter or the bridge) lands on the same outbox row and the same gateway dedupe key.
 */
export function wireIdFor(accountId: string, localId: string): string {
  return sha256hex(`message\n${accountId}\n${localId}`).slice(0, 20).toUpperCase();
}

/** The outbox id of a receipt we send: one per (kind, receipted message), so it is queued once. */
export function receiptOutboxId(
  accountId: string,
  receipt: 'delivery' | 'read',
  remote: string,
  messageId: string,
): string {
  return `R${sha256hex(`receipt\n${accountId}\n${receipt}\n${remote}\n${messageId}`).slice(0, 19).toUpperCase()}`;
}
