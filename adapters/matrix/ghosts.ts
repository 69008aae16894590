/**
 * Ghosts: the Matrix users that stand for gatekeeper contacts. Each is registered through the
 * appservice API on first use (an existing account is fine), given its display name, and acts
 * through a client of its own (the as_token with `user_id`).
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import type { MatrixIds } from './ids.js';
import type { MatrixStore } from './store.js';

export interface GhostsContext {
  readonly ids: Pick<MatrixIds, 'ghostIdOf' | 'ghostDigits' | 'phoneOf' | 'displaynameOf'>;
  readonly store: Pick<MatrixStore, 'ghost' | 'putGhost' | 'markGhostRegistered'>;
  readonly core: Pick<BridgeCore, 'lookup'>;
  /** The bot, which registers the ghosts. */
  readonly bot: Pick<RetryingMatrixClient, 'doRequest'>;
  /** A new client with the as_token, not yet acting as anyone. */
  newClient(): RetryingMatrixClient;
}

export class Ghosts {
  readonly #clients = new Map<string, RetryingMatrixClient>();
  /** One registration at a time per ghost. */
  readonly #setUp = new KeyedQueue();

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
    await this.client(ghostId).doRequest(
      'PUT',
      `/_matrix/client/v3/profile/${encodeURIComponent(ghostId)}/displayname`,
      null,
      { displayname },
    );
  }
}
