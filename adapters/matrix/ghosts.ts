/**
 * Ghosts: the Matrix users that stand for gatekeeper contacts. Each is registered through the
 * appservice API on first use (an existing account is fine), given its display name, and acts
 * through a client of its own (the as_token with `user_id`). A contact's profile is its ghost's:
 * the push name in the display name, the picture as the avatar (`showProfile`).
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { ContactProfile } from '../../src/bridge/events.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import type { MatrixIds } from './ids.js';
import type { MatrixStore } from './store.js';

export interface GhostsContext {
  readonly ids: Pick<MatrixIds, 'ghostIdOf' | 'ghostDigits' | 'phoneOf' | 'displaynameOf'>;
  readonly store: Pick<
    MatrixStore,
    'ghost' | 'putGhost' | 'markGhostRegistered' | 'setGhostDisplayname' | 'ghostAvatar' | 'setGhostAvatar'
  >;
  readonly core: Pick<BridgeCore, 'lookup'>;
  /** The bot, which registers the ghosts. */
  readonly bot: Pick<RetryingMatrixClient, 'doRequest'>;
  /** A new client with the as_token, not yet acting as anyone. */
  newClient(): RetryingMatrixClient;
  readonly log?: Logger | undefined;
}

const profilePath = (ghostId: string, field: string) =>
  `/_matrix/client/v3/profile/${encodeURIComponent(ghostId)}/${field}`;

export class Ghosts {
  readonly #clients = new Map<string, RetryingMatrixClient>();
  /** One registration at a time per ghost. */
  readonly #setUp = new KeyedQueue();
  /** One profile change at a time per ghost. */
  readonly #profiles = new KeyedQueue();

  constructor(private readonly c: GhostsContext) {}

  /** A client acting as the ghost (as_token with `user_id`). */
  client(ghostId: string): RetryingMatrixClient {
    let client = this.#clients.get(ghostId);
    if (!client) {
      client = this.c.newClient();
      client.impersonateUserId(ghostId);
      this.#clients.set(ghostId, client);
    }
    return client;
  }

  /** Registers the ghost of a contact (once) and gives it its display name; returns its id. */
  async ensure(remote: string): Promise<string> {
    const ghostId = this.c.ids.ghostIdOf(remote);
    if ((await this.c.store.ghost(ghostId))?.registered) return ghostId;
    await this.#setUp.run(ghostId, async () => {
      // A registration queued before this one may have done it.
      if ((await this.c.store.ghost(ghostId))?.registered) return;
      await this.c.store.putGhost(ghostId, remote);
      const displayname = this.c.ids.displaynameOf(this.c.ids.phoneOf(remote));
      await this.#register(ghostId, displayname);
      await this.c.store.markGhostRegistered(ghostId, displayname);
    });
    return ghostId;
  }

  /**
   * Shows a contact's profile on its ghost (one ghost for every local user, so the latest profile
   * read is the one shown): the push name in the display name (`matrix.ghost_displayname`), the
   * picture uploaded as the ghost and set as its avatar, removed with the picture. What was set is
   * kept, so an unchanged profile makes no request; a changed picture whose bytes did not come
   * (the core sends them only when the picture changed since it last told) is left as it was.
   */
  async showProfile(profile: ContactProfile): Promise<void> {
    const phone = phoneOfRemote(profile.remote);
    if (phone === undefined) return; // another network's account: no ghost
    const ghostId = await this.ensure(profile.remote);
    await this.#profiles.run(ghostId, async () => {
      const { store } = this.c;
      const client = this.client(ghostId);
      const displayname = this.c.ids.displaynameOf(phone, profile.name);
      if ((await store.ghost(ghostId))?.displayname !== displayname) {
        await client.doRequest('PUT', profilePath(ghostId, 'displayname'), null, { displayname });
        await store.setGhostDisplayname(ghostId, displayname);
      }
      const picture = profile.picture;
      const shown = await store.ghostAvatar(ghostId);
      if (picture?.id === shown?.pictureId) return;
      if (picture === undefined) {
        await this.#removeAvatar(client, ghostId);
        await store.setGhostAvatar(ghostId, undefined);
        return;
      }
      if (picture.bytes === undefined) {
        this.c.log?.debug({ ghost: ghostId }, 'a new picture without its bytes: the avatar stays');
        return;
      }
      const url = await client.uploadContent(Buffer.from(picture.bytes), picture.mimetype ?? 'image/jpeg');
      await client.doRequest('PUT', profilePath(ghostId, 'avatar_url'), null, { avatar_url: url });
      await store.setGhostAvatar(ghostId, { pictureId: picture.id, url });
    });
  }

  /** Removes the ghost's avatar: `DELETE` (Matrix 1.16), or an empty `avatar_url` where it is unknown. */
  async #removeAvatar(client: RetryingMatrixClient, ghostId: string): Promise<void> {
    try {
      await client.doRequest('DELETE', profilePath(ghostId, 'avatar_url'));
    } catch (err) {
      const f = describeFailure(err);
      if (f.errcode !== 'M_UNRECOGNIZED' && f.status !== 404 && f.status !== 405) throw err;
      await client.doRequest('PUT', profilePath(ghostId, 'avatar_url'), null, { avatar_url: '' });
    }
  }

  /** The contact a ghost stands for, looked up through the gateway when not known yet. */
  async remoteOf(ghostId: string, localUser: string): Promise<string | undefined> {
    const known = await this.c.store.ghost(ghostId);
    if (known) return known.jid;
    const digits = this.c.ids.ghostDigits(ghostId);
    if (digits === undefined) return undefined;
    const found = await this.c.core.lookup(localUser, `+${digits}`);
    if (!found.reachable || found.jid === undefined) return undefined;
    await this.c.store.putGhost(ghostId, found.jid);
    return found.jid;
  }

  /**
   * Answers the homeserver's user query (before an invite to a ghost it does not know): the ghost
   * is created; which contact it stands for is found when it is invited.
   */
  async queryUser(userId: string): Promise<boolean> {
    const digits = this.c.ids.ghostDigits(userId);
    if (digits === undefined) return false;
    const known = await this.c.store.ghost(userId);
    if (known) await this.ensure(known.jid);
    else await this.#register(userId, this.c.ids.displaynameOf(`+${digits}`));
    return true;
  }

  /** Registers a ghost's Matrix account (an existing one is fine) and sets its display name. */
  async #register(ghostId: string, displayname: string): Promise<void> {
    const localpart = ghostId.slice(1, ghostId.indexOf(':'));
    try {
      await this.c.bot.doRequest('POST', '/_matrix/client/v3/register', null, {
        type: 'm.login.application_service',
        username: localpart,
        inhibit_login: true,
      });
    } catch (err) {
      if (describeFailure(err).errcode !== 'M_USER_IN_USE') throw err;
    }
    await this.client(ghostId).doRequest('PUT', profilePath(ghostId, 'displayname'), null, { displayname });
  }
}
