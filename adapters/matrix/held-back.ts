/**
 * A transaction the homeserver holds back. Synapse writes each appservice transaction to its
 * database before it sends it, and sends what is left there only from its recovery loop, which
 * runs while it considers the appservice down. Stopped between the two (a restart at the wrong
 * moment), it comes back with the service marked up and the transaction unsent: the events in it
 * reach the bridge only when the service is next marked down, which may be never. A user's message
 * would be held without a word.
 *
 * The bridge cannot see Synapse's table, but it sees the moments this can happen in: a transaction
 * request cut off before its end (Synapse went away while sending), or a homeserver that stopped
 * answering (connection refused, 502/503/504) while the bridge called it. After either, the next
 * transaction is refused (503, nothing recorded): Synapse marks the service down and starts its
 * recovery loop, which the bridge wakes at once by asking for a ping (`nudge`). The loop sends the
 * oldest unsent transaction first, the one held back if there is one, then the refused one again:
 * nothing is lost and the order is kept. When nothing was held back, the cost is one round trip.
 *
 * (Transaction ids do not show it: Synapse numbers them across all its appservices, so gaps are
 * ordinary.) Each time the homeserver goes away costs at most one refusal, however long it stays
 * away: the suspicion is one flag, cleared by the refusal.
 */
export class HeldBackTransactions {
  #suspect = false;

  get suspected(): boolean {
    return this.#suspect;
  }

  /** The homeserver may have stopped in the middle of sending a transaction. */
  suspect(): void {
    this.#suspect = true;
  }

  /** Whether to refuse this transaction, so that the homeserver sends anything it held back first. */
  shouldRefuse(): boolean {
    const refuse = this.#suspect;
    this.#suspect = false;
    return refuse;
  }
}
