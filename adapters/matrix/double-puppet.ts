/**
 * Double puppeting, the way mautrix bridges do it (the appservice method): a second registration
 * (`generate-registration --double-puppet`) whose `as_token` may act as any local user
 * (`user_id` masquerading, namespace `@.*:<server>`, not exclusive, no url). With it, and once a
 * user turns it on (`double-puppet on`), what they send from their other devices on the
 * gatekeeper's side appears in Matrix as sent by them, not by a stand-in, and their read receipt
 * is set on it (they have seen their own message). Without it those messages are shown by the bot.
 */
import type { Logger } from '../../src/observability/logger.js';
import { describeFailure, type RetryingMatrixClient } from './client.js';
import type { MatrixStore } from './store.js';

export interface DoublePuppetContext {
  /** The double-puppet registration's as_token (`matrix.double_puppet_as_token`), if configured. */
  readonly token: string | undefined;
  readonly newClient: (token: string) => RetryingMatrixClient;
  readonly store: Pick<MatrixStore, 'doublePuppet' | 'setDoublePuppet'>;
  readonly log: Logger;
}

export class DoublePuppets {
  readonly #clients = new Map<string, RetryingMatrixClient>();

  constructor(private readonly c: DoublePuppetContext) {}

  /** Whether the operator configured the double-puppet registration. */
  get available(): boolean {
    return this.c.token !== undefined;
  }

  /** The client acting as `userId`, when it is available and the user turned it on. */
  async client(userId: string): Promise<RetryingMatrixClient | undefined> {
    if (this.c.token === undefined || !(await this.c.store.doublePuppet(userId))) return undefined;
    return this.#client(userId, this.c.token);
  }

  #client(userId: string, token: string): RetryingMatrixClient {
    let client = this.#clients.get(userId);
    if (client === undefined) {
      client = this.c.newClient(token);
      client.impersonateUserId(userId);
      this.#clients.set(userId, client);
    }
    return client;
  }

  /** Turns it on for the user after checking the homeserver lets the bridge act as them. */
  async enable(userId: string): Promise<string> {
    if (this.c.token === undefined) {
      return 'Double puppeting is not set up on this bridge: ask its operator (docs/MATRIX.md, "Double puppeting").';
    }
    try {
      const me = (await this.#client(userId, this.c.token).doRequest(
        'GET',
        '/_matrix/client/v3/account/whoami',
      )) as {
        user_id?: string;
      };
      if (me.user_id !== userId) throw new Error(`the homeserver answered as ${String(me.user_id)}`);
    } catch (err) {
      const f = describeFailure(err);
      this.c.log.warn({ user: userId, status: f.status, errcode: f.errcode }, 'double puppeting refused');
      return `The homeserver does not let the bridge act as you (${f.errcode ?? f.status ?? (err as Error).message}): ask the bridge's operator to install the double-puppet registration.`;
    }
    await this.c.store.setDoublePuppet(userId, true);
    return 'Double puppeting is on: what you send from your other devices on WhatsApp appears here as sent by you.';
  }

  async disable(userId: string): Promise<string> {
    await this.c.store.setDoublePuppet(userId, false);
    this.#clients.delete(userId);
    return 'Double puppeting is off: what you send from your other devices is shown by the bridge bot.';
  }
}
