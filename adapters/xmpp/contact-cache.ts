/**
 * The contacts looked up by remote, kept by the store: every message to or from XMPP reads the
 * contact its JID is made from (two or three times per message: the delivery, the receipts, the
 * presence), and contacts change rarely. Every write to the contacts empties the cache, and a
 * read that overlapped a write is not kept, so what it answers is what the table holds. The
 * adapter's tables are written by the one process that runs the adapters.
 */
import type { XmppContact } from './store.js';

/** Past this many users' contacts, the cache starts again empty. */
const MAX_ENTRIES = 4096;

export class ContactCache {
  #byRemote = new Map<string, XmppContact | null>();
  /** Moves on with every write: a read begun before one does not keep its answer. */
  #generation = 0;

  async byRemote(
    localUser: string,
    remote: string,
    load: () => Promise<XmppContact | undefined> | XmppContact | undefined,
  ): Promise<XmppContact | undefined> {
    const key = `${localUser}\n${remote}`;
    const kept = this.#byRemote.get(key);
    if (kept !== undefined) return kept ?? undefined;
    const generation = this.#generation;
    const found = await load();
    if (generation === this.#generation) {
      if (this.#byRemote.size >= MAX_ENTRIES) this.#byRemote.clear();
      this.#byRemote.set(key, found ?? null);
    }
    return found;
  }

  /** After any write to the contacts (made, renamed, subscribed, forgotten). */
  changed(): void {
    this.#generation++;
    this.#byRemote.clear();
  }
}
