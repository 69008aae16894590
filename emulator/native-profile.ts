/**
 * A native user's profile (docs/PROTOCOL.md 5.8), as the gatekeeper's apps behave: it sets its
 * push name, about text and picture, reads others' profiles, downloads their pictures from the
 * gateway's media service with its media auth, and records the `profile` and `picture`
 * notifications it receives (acked, and waited for by tests like group notifications).
 */
import { InteropError } from '../src/errors.js';
import type {
  IqBody,
  PictureNotificationStanza,
  ProfileEntry,
  ProfileNotificationStanza,
  Stanza,
} from '../src/protocol/stanza/index.js';
import type { MediaConn } from './native-media.js';
import { deliver, waitFor, type Waiter } from './native-waiters.js';

/** What the profile needs of the native user it belongs to. */
export interface ProfileOwner {
  /** Sends a request; resolves with the answer's body, rejects on an error answer. */
  request(body: IqBody, to?: string): Promise<IqBody>;
  send(stanza: Stanza): void;
  /** Fresh media credentials (`<media_conn>`). */
  mediaConn(): Promise<MediaConn>;
}

/** A profile request the gateway refused: `status` is its error code (404, 406, 413, ...). */
export class NativeProfileError extends InteropError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('native_profile_refused', message);
  }
}

/** A profile or picture notification as the user received it. */
export interface ProfileEventRecord {
  /** Whose profile changed: a user, or a group (picture only). */
  readonly from: string;
  readonly type: 'profile' | 'picture';
  readonly event: ProfileNotificationStanza['body'] | PictureNotificationStanza['body'];
  /** A group picture: who changed it, and the group's version after the change. */
  readonly participant?: string | undefined;
  readonly version?: number | undefined;
  readonly t: number;
}

export class NativeProfile {
  /** Every profile and picture notification received, in order. */
  readonly events: ProfileEventRecord[] = [];
  readonly #waiters: Waiter<ProfileEventRecord>[] = [];

  constructor(private readonly owner: ProfileOwner) {}

  /** Sets the push name its contacts see (1 to 25 characters). */
  async setName(name: string): Promise<void> {
    await this.#ask({ op: 'push_name_set', name });
  }

  /** Sets the about text ('' removes it). */
  async setAbout(about: string): Promise<void> {
    await this.#ask({ op: 'status_set', status: about });
  }

  /** Sets its picture, or the picture of `group` (a JPEG); resolves with the new picture id. */
  async setPicture(jpeg: Uint8Array, group?: string): Promise<string> {
    const answer = await this.#ask({ op: 'picture_set', image: jpeg, ...(group ? { target: group } : {}) });
    if (answer.op !== 'picture_result') throw unexpected(answer);
    return answer.id;
  }

  /** Removes its picture, or the picture of `group`. */
  async removePicture(group?: string): Promise<void> {
    await this.#ask({ op: 'picture_remove', ...(group ? { target: group } : {}) });
  }

  /** What the gateway shows of these users: one entry per JID (an `error` for an unknown one). */
  async getProfiles(jids: readonly string[]): Promise<readonly ProfileEntry[]> {
    const answer = await this.#ask({ op: 'profile_get', jids });
    if (answer.op !== 'profile_result') throw unexpected(answer);
    return answer.users;
  }

  /**
   * The current picture of a user or group, downloaded from the media service with this user's
   * media auth; undefined when there is none (404).
   */
  async getPicture(jid: string): Promise<{ id: string; bytes: Buffer } | undefined> {
    let answer: IqBody;
    try {
      answer = await this.#ask({ op: 'picture_get', target: jid });
    } catch (err) {
      if (err instanceof NativeProfileError && err.status === 404) return undefined;
      throw err;
    }
    if (answer.op !== 'picture_result') throw unexpected(answer);
    const { auth } = await this.owner.mediaConn();
    const res = await fetch(answer.url, { headers: { authorization: `Bearer ${auth}` } });
    if (res.status === 404) return undefined;
    if (res.status !== 200) {
      throw new NativeProfileError(
        res.status,
        `downloading the picture ${answer.id} failed: HTTP ${res.status}`,
      );
    }
    return { id: answer.id, bytes: Buffer.from(await res.arrayBuffer()) };
  }

  /** The next profile or picture notification matching `match` (already received ones count). */
  waitForEvent(match: (e: ProfileEventRecord) => boolean, timeoutMs = 10_000): Promise<ProfileEventRecord> {
    return waitFor(this.events, this.#waiters, match, timeoutMs, 'profile notification');
  }

  /** Takes (acks and records) a profile or picture notification; false for anything else. */
  handles(stanza: Stanza): boolean {
    if (stanza.kind !== 'notification' || (stanza.type !== 'profile' && stanza.type !== 'picture')) {
      return false;
    }
    this.owner.send({ kind: 'ack', class: 'notification', id: stanza.id });
    deliver(this.events, this.#waiters, {
      from: stanza.from,
      type: stanza.type,
      event: stanza.body,
      t: stanza.t,
      ...(stanza.type === 'picture' && stanza.participant ? { participant: stanza.participant } : {}),
      ...(stanza.type === 'picture' && stanza.version !== undefined ? { version: stanza.version } : {}),
    });
    return true;
  }

  async #ask(body: IqBody): Promise<IqBody> {
    return this.owner.request(body).catch((err: unknown) => {
      // GatewayConnection reports an iq error as "refused the request: <code> <text>".
      const message = (err as Error).message;
      throw new NativeProfileError(Number(/refused the request: (\d{3})/.exec(message)?.[1] ?? 500), message);
    });
  }
}

function unexpected(answer: IqBody): InteropError {
  return new InteropError('native_unexpected_answer', `the gateway answered with ${answer.op}`);
}
