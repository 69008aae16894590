/**
 * Where each local user can be reached: the full JIDs of their available resources (from presence),
 * the one they last wrote from, and the one each outgoing message came from. An error must go to a
 * full JID: servers drop errors addressed to a bare JID.
 */

/** Available resources tracked per user (a client cannot have more in any real use). */
const RESOURCES_KEPT = 32;
/** Full JIDs remembered per outgoing message, for its error reply. */
const SENDERS_KEPT = 2048;

export class UserResources {
  private readonly available = new Map<string, Set<string>>();
  private readonly lastSeen = new Map<string, string>();
  /** By `${user}\n${localId}`. */
  private readonly senders = new Map<string, string>();

  /**
   * Records a resource coming online or going away (a bare JID going away: all of them, as the
   * server answers a probe for a user who is offline). Returns whether the user was online before
   * and is now.
   */
  set(user: string, full: string, available: boolean): { wasOnline: boolean; online: boolean } {
    let set = this.available.get(user);
    const wasOnline = (set?.size ?? 0) > 0;
    if (available) {
      if (!set) this.available.set(user, (set = new Set()));
      if (!set.has(full) && set.size >= RESOURCES_KEPT) {
        const oldest = set.values().next().value;
        if (oldest !== undefined) set.delete(oldest);
      }
      set.add(full);
    } else {
      set?.delete(full);
      if (full === user) set?.clear();
      if (set?.size === 0) this.available.delete(user);
    }
    return { wasOnline, online: (set?.size ?? 0) > 0 };
  }

  /** The user's available resources (full JIDs), oldest first. */
  of(user: string): string[] {
    return [...(this.available.get(user) ?? [])];
  }

  /** Forgets the user's available resources (on unregistration). */
  clear(user: string): void {
    this.available.delete(user);
  }

  /** The user just wrote from `full`. */
  seen(user: string, full: string): void {
    this.lastSeen.set(user, full);
  }

  /** The full JID the user last wrote from. */
  lastSeenOf(user: string): string | undefined {
    return this.lastSeen.get(user);
  }

  /** Remembers which resource sent the message `localId`, for its error reply. */
  rememberSender(user: string, localId: string, full: string): void {
    this.senders.set(`${user}\n${localId}`, full);
    if (this.senders.size > SENDERS_KEPT) {
      const first = this.senders.keys().next().value;
      if (first !== undefined) this.senders.delete(first);
    }
  }

  /**
   * Where to send an error about the message `localId`: the resource that sent it, else one that is
   * available, else the one the user last wrote from, else the bare JID.
   */
  errorAddressOf(user: string, localId: string): string {
    return this.senders.get(`${user}\n${localId}`) ?? this.of(user)[0] ?? this.lastSeen.get(user) ?? user;
  }
}
