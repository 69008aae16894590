/**
 * A transaction the homeserver holds back. Synapse writes each appservice transaction to its
 * database before it sends it, and sends what is left there only from its recovery loop, which
 * runs while it considers the appservice down. Stopped between the two (a restart while it was
 * sending), it comes back with the service marked up and the transaction unsent: the events in it
 * reach the bridge only when the service is next marked down, which may be never. A user's message
 * would be held without a word.
 *
 * The bridge cannot see Synapse's table, but it sees the moments this can happen in: the watch
 * (homeserver-watch.ts) finding the homeserver away, the bridge's own calls failing (connection
 * refused, 502/503/504), a transaction request cut off before its end. From then until the watch
 * sees the homeserver answer again, every transaction is refused (503, nothing recorded): what a
 * stopping homeserver still sends stays in its table. The first transaction after it is back is
 * refused too: the homeserver marks the service down and starts its recovery loop, which the bridge
 * wakes at once by asking for a ping (`nudge`). The loop sends the oldest unsent transaction first,
 * the one held back if there is one, then the refused ones: nothing is lost and the order is kept.
 * When nothing was held back, the cost is a round trip.
 *
 * (Transaction ids do not show it: Synapse numbers them across all its appservices, so gaps are
 * ordinary.)
 */
type State = 'clear' | 'away' | 'back';

export class HeldBackTransactions {
  #state: State = 'clear';

  get suspected(): boolean {
    return this.#state !== 'clear';
  }

  /** The homeserver may have stopped in the middle of sending a transaction. */
  suspect(): void {
    this.#state = 'away';
  }

  /** The homeserver answered the watch: the next transaction comes from a homeserver that is up. */
  answered(): void {
    if (this.#state === 'away') this.#state = 'back';
  }

  /** Whether to refuse this transaction, so that the homeserver sends anything it held back first. */
  shouldRefuse(): boolean {
    if (this.#state === 'clear') return false;
    if (this.#state === 'back') this.#state = 'clear';
    return true;
  }
}
