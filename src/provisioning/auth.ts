/**
 * Who calls the provisioning API: the holder of the shared secret (`bridge.provisioning_secret_file`),
 * who acts for any permitted user named in `?user_id=` and may use the admin endpoints, or a Matrix
 * user with their own access token, checked against the homeserver's `/account/whoami` (cached for
 * a minute, as mautrix bridges do), who acts only for themselves.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ProvisioningError } from './http.js';

export type Caller = { readonly kind: 'secret' } | { readonly kind: 'matrix'; readonly userId: string };

export interface AuthOptions {
  /** The shared secret; without it only Matrix users' own tokens are taken. */
  readonly secret?: string | undefined;
  /** The homeserver's client-server API, when Matrix is enabled. */
  readonly homeserverUrl?: string | undefined;
  /** How long a checked Matrix token is trusted without asking again. Default 60 s. */
  readonly cacheMs?: number;
  /** How long the homeserver may take to answer. Default 10 s. */
  readonly timeoutMs?: number;
}

const CACHE_MAX = 10_000;
const REFUSED_CACHE_MS = 10_000;
const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class ProvisioningAuth {
  readonly #secret: Buffer | undefined;
  /** Checked tokens by hash: their user, or undefined for one the homeserver refused. */
  readonly #cache = new Map<string, { userId: string | undefined; until: number }>();

  constructor(private readonly options: AuthOptions) {
    this.#secret = options.secret !== undefined && options.secret !== '' ? digest(options.secret) : undefined;
  }

  /** The caller of a request, or a 401 (no or unknown token) / 502 (homeserver unreachable). */
  async caller(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) {
      throw new ProvisioningError(
        401,
        'M_MISSING_TOKEN',
        'no access token: send Authorization: Bearer <the shared secret or your Matrix access token>',
      );
    }
    const token = m[1]!;
    const hashed = digest(token);
    if (this.#secret !== undefined && timingSafeEqual(hashed, this.#secret)) return { kind: 'secret' };
    const userId = await this.#matrixUser(token, hashed.toString('base64'));
    return { kind: 'matrix', userId };
  }

  async #matrixUser(token: string, key: string): Promise<string> {
    const unknown = () =>
      new ProvisioningError(
        401,
        'M_UNKNOWN_TOKEN',
        'the access token is neither the shared secret nor a valid Matrix access token',
      );
    const base = this.options.homeserverUrl;
    if (base === undefined) throw unknown();
    const now = Date.now();
    const cached = this.#cache.get(key);
    if (cached && cached.until > now) {
      if (cached.userId === undefined) throw unknown();
      return cached.userId;
    }
    let res: Response;
    try {
      res = await fetch(`${base.replace(/\/$/, '')}/_matrix/client/v3/account/whoami`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new ProvisioningError(
        502,
        'M_UNKNOWN',
        `the homeserver could not be asked who the token belongs to (${(err as Error).name}): try again`,
      );
    }
    const body = (await res.json().catch(() => undefined)) as { user_id?: unknown } | undefined;
    if (res.status === 401 || res.status === 403) {
      // Remembered briefly too, so that a caller repeating a bad token does not hammer the homeserver.
      this.#remember(key, undefined, now + REFUSED_CACHE_MS);
      throw unknown();
    }
    if (!res.ok || typeof body?.user_id !== 'string') {
      throw new ProvisioningError(
        502,
        'M_UNKNOWN',
        `the homeserver answered ${res.status} to whoami: try again`,
      );
    }
    this.#remember(key, body.user_id, now + (this.options.cacheMs ?? 60_000));
    return body.user_id;
  }

  #remember(key: string, userId: string | undefined, until: number): void {
    if (this.#cache.size >= CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(key, { userId, until });
  }
}
