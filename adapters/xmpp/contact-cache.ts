/**
 * The contacts looked up by remote or by JID, kept by the store: every message to or from XMPP
 * reads the contact its JID is made from, or that its JID names (two or three times per message:
 * the delivery, the receipts, the presence, the user's message), and contacts change rarely. Every write to the contacts empties the cache, and a
 * read that overlapped a write is not kept, so what it answers is what the table holds. The
 * adapter's tables are written by the one process that runs the adapters.
 */
import type { XmppContact } from './store.js';

/** Past this many contacts kept, the cache starts again empty. */
const MAX_ENTRIES = 4096;

export class ContactCache {
  /** By `r` + user + remote, and by `c` + user + contact (the JID's local part). */
  #entries = new Map<string, XmppContact | null>();
  /** Moves on with every write: a read begun before one does not keep its answer. */
  #generation = 0;

  byRemote(
    localUser: string,
    remote: string,
    load: () => Promise<XmppContact | undefined> | XmppContact | undefined,
  ): Promise<XmppContact | undefined> {
    return this.#get(`r${localUser}\n${remote}`, load);
  }

  byContact(
    localUser: string,
    contact: string,
    load: () => Promise<XmppContact | undefined> | XmppContact | undefined,
  ): Promise<XmppContact | undefined> {
    return this.#get(`c${localUser}\n${contact}`, load);
  }

  async #get(
    key: string,
    load: () => Promise<XmppContact | undefined> | XmppContact | undefined,
  ): Promise<XmppContact | undefined> {
    const kept = this.#entries.get(key);
    if (kept !== undefined) return kept ?? undefined;
    const generation = this.#generation;
    const found = await load();
    if (generation === this.#generation) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.clear();
      this.#entries.set(key, found ?? null);
    }
    return found;
  }

  /** After any write to the contacts (made, renamed, subscribed, forgotten). */
  changed(): void {
    this.#generation++;
    this.#entries.clear();
  }
}
