/**
 * Occupants' nicks in a group's room, as Slidge names them: each member's push name where the
 * user's view has one, their number otherwise, unique within the room (a second "Anna", or a name
 * equal to the nick the user joined with, becomes "Anna (+4915112345678)"). Kept per room and user
 * once worked out, so a message costs no look-up; worked out again when the members or a member's
 * name change (`Rooms.renamed` then tells the user's clients, XEP-0045 status 303).
 */
import type { GroupSnapshot } from '../../src/bridge/events.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';

/** A member's number (or, for another provider's account, its user part): the nick without a name. */
export const plainNickOf = (m: { remote: string; phone?: string | undefined }): string =>
  m.phone ?? m.remote.split('@')[0] ?? m.remote;

export class RoomNicks {
  /** By `room`, then user (bare JID): each member's nick, by remote. */
  private readonly tables = new Map<string, Map<string, Map<string, string>>>();

  constructor(private readonly nameOf: (user: string, remote: string) => Promise<string | undefined>) {}

  /** Works the nicks out afresh (the members, or a name, changed) and keeps them. */
  async compute(
    room: string,
    user: string,
    snapshot: GroupSnapshot,
    own: string,
  ): Promise<Map<string, string>> {
    const others = snapshot.members.filter((m) => !m.self);
    const names = await Promise.all(others.map(async (m) => (await this.nameOf(user, m.remote))?.trim()));
    const wanted = others.map((m, i) => names[i] || plainNickOf(m));
    const counts = new Map<string, number>([[own, 1]]);
    for (const w of wanted) counts.set(w, (counts.get(w) ?? 0) + 1);
    const table = new Map<string, string>();
    others.forEach((m, i) => {
      const w = wanted[i]!;
      table.set(m.remote, counts.get(w)! > 1 && w !== plainNickOf(m) ? `${w} (${plainNickOf(m)})` : w);
    });
    let byUser = this.tables.get(room);
    if (!byUser) this.tables.set(room, (byUser = new Map()));
    byUser.set(user, table);
    return table;
  }

  /** The nicks last worked out for the user's view of the room, if any. */
  known(room: string, user: string): ReadonlyMap<string, string> | undefined {
    return this.tables.get(room)?.get(user);
  }

  /**
   * A member's nick: as last worked out, else (a member not seen yet) worked out now from the
   * group's state, which `snapshot` reads only then (a message of a known member reads nothing).
   */
  async of(
    room: string,
    user: string,
    snapshot: () => Promise<GroupSnapshot | undefined>,
    remote: string,
    own: string,
  ): Promise<string> {
    const known = this.known(room, user)?.get(remote);
    if (known !== undefined) return known;
    const group = await snapshot();
    if (group?.members.some((m) => m.remote === remote)) {
      const nick = (await this.compute(room, user, group, own)).get(remote);
      if (nick !== undefined) return nick;
    }
    return plainNickOf({ remote, phone: phoneOfRemote(remote) });
  }

  /** The user left the room: nothing to keep. */
  forget(room: string, user: string): void {
    this.tables.get(room)?.delete(user);
    if (this.tables.get(room)?.size === 0) this.tables.delete(room);
  }

  /** The rooms (and their nick tables) where the user sees `remote`. */
  *roomsWith(user: string, remote: string): Iterable<[room: string, nick: string]> {
    for (const [room, byUser] of this.tables) {
      const nick = byUser.get(user)?.get(remote);
      if (nick !== undefined) yield [room, nick];
    }
  }
}
