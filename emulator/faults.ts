/**
 * Misbehaviour on demand, so the bridge's defences can be tested: lost stanzas, slow delivery,
 * duplicate delivery, a gateway presenting a certificate chain the bridge must refuse, a gateway
 * refusing connections. Scripted from tests (and the admin API) through `emulator.faults`.
 *
 * Faults act on what the gateway *sends* to an account (every stanza after `<success>`: deliveries,
 * acks, iq answers, notifications), and on new connections. They never touch stored state: a dropped
 * message is still queued and is delivered again on the recipient's next connection, as after a loss
 * in transit.
 */

/** Delay and drop settings for one account ('*' for every account). */
interface AccountFaults {
  drop: number;
  delayMs: number;
}

export interface FaultControls {
  /** The next `count` stanzas the gateway sends to `accountJid` (a bare JID, any device) are silently lost. */
  dropNext(accountJid: string, count: number): void;
  /** Every stanza to `accountJid` (or to everyone with '*') leaves `ms` later, order kept; 0 clears. */
  delay(accountJid: string | '*', ms: number): void;
  /** Sends the last message delivered to `accountJid` again (as a duplicate delivery). False if there is none or it is offline. */
  replayLastDelivered(accountJid: string): boolean;
  /** New connections present this certificate chain instead of the real one (undefined: the real one again). */
  presentCertificateChain(chain: Uint8Array | undefined): void;
  /** New connections present a valid-looking chain for the current key, signed by a root nobody pinned. */
  presentForeignCertificate(): void;
  /** New TCP connections are closed at once, before any byte is read. */
  refuseConnections(refuse: boolean): void;
  /** Closes every connection of `accountJid` now; returns how many. */
  disconnect(accountJid: string): number;
  /** Back to normal behaviour. */
  reset(): void;
}

/** What the gateway asks of the fault state on its hot paths. */
export class FaultState {
  readonly #accounts = new Map<string, AccountFaults>();
  certChainOverride: Uint8Array | undefined;
  refusing = false;

  #get(jid: string): AccountFaults {
    let f = this.#accounts.get(jid);
    if (!f) this.#accounts.set(jid, (f = { drop: 0, delayMs: 0 }));
    return f;
  }

  setDrop(jid: string, count: number): void {
    if (!Number.isSafeInteger(count) || count < 0)
      throw new RangeError(`drop count must be >= 0, got ${count}`);
    this.#get(jid).drop = count;
  }

  setDelay(jid: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`delay must be >= 0 ms, got ${ms}`);
    this.#get(jid).delayMs = ms;
  }

  /** Whether the next stanza to this account is to be lost (and counts it). */
  takeDrop(jid: string): boolean {
    const f = this.#accounts.get(jid);
    if (!f || f.drop === 0) return false;
    f.drop -= 1;
    return true;
  }

  delayFor(jid: string): number {
    return Math.max(this.#accounts.get(jid)?.delayMs ?? 0, this.#accounts.get('*')?.delayMs ?? 0);
  }

  reset(): void {
    this.#accounts.clear();
    this.certChainOverride = undefined;
    this.refusing = false;
  }
}
