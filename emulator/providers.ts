/**
 * The providers the emulator accepts, each with its JWKS: read from a file, or fetched from the
 * provider's JWKS URL (the bridge serves it at /_interop/jwks.json). Either source is re-read every
 * `refreshSeconds` and when a token names an unknown `kid` (at most once per `minRefetchSeconds`),
 * so a provider that rotates its signing key is accepted without restarting the emulator. A failed
 * read is logged and the last good JWKS stays in use.
 */
import { readFile } from 'node:fs/promises';
import { InteropError } from '../src/errors.js';
import type { Logger } from '../src/observability/logger.js';
import {
  jwksKeyResolver,
  type JwksLike,
  type TokenKeyResolver,
  type TokenVerificationKey,
} from '../src/protocol/jwt.js';
import type { ResolvedProvider } from './config.js';
import type { ProviderDirectory } from './gateway.js';

/** A JWKS is a few hundred bytes; this bounds what a misconfigured URL can make us read. */
export const MAX_JWKS_BYTES = 64 * 1024;
export const DEFAULT_MIN_REFETCH_SECONDS = 10;
export const DEFAULT_JWKS_FETCH_TIMEOUT_MS = 10_000;

export type JwksErrorCode = 'jwks_fetch_failed' | 'jwks_invalid' | 'jwks_unreadable';

export class JwksError extends InteropError {
  declare readonly code: JwksErrorCode;

  constructor(code: JwksErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** What the provider's state looks like, for the startup summary and the admin API. */
export interface ProviderStatus {
  id: string;
  source: string;
  kids: string[];
  /** Seconds since the epoch of the last successful load, or undefined if none yet. */
  loadedAt: number | undefined;
  lastError: string | undefined;
}

export interface ProviderRegistryOptions {
  logger: Logger;
  /** Do not re-read a provider's JWKS for an unknown kid more often than this. */
  minRefetchSeconds?: number;
  fetchTimeoutMs?: number;
  /** Schedule periodic refreshes (default true; tests turn it off and call `refresh`). */
  periodicRefresh?: boolean;
  /** Milliseconds since the epoch; injected by tests. */
  now?: () => number;
}

class ProviderEntry {
  resolver: (kid: string) => TokenVerificationKey | undefined = () => undefined;
  kids: string[] = [];
  loadedAt: number | undefined;
  lastError: string | undefined;
  lastAttemptMs = Number.NEGATIVE_INFINITY;
  inFlight: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(readonly config: ResolvedProvider) {}

  get source(): string {
    return 'file' in this.config.jwks ? this.config.jwks.file : this.config.jwks.url;
  }
}

/**
 * The emulator's provider directory (the core's `ProviderDirectory`): which providers exist and
 * the key resolver that client-token verification uses.
 */
export class ProviderRegistry implements ProviderDirectory {
  readonly #entries = new Map<string, ProviderEntry>();
  readonly #log: Logger;
  readonly #minRefetchMs: number;
  readonly #fetchTimeoutMs: number;
  readonly #now: () => number;

  /** Resolves a token's `kid` within the JWKS of the provider its (unverified) `iss` names. */
  readonly keyResolver: TokenKeyResolver = async (kid, { iss }) => {
    const entry = iss === undefined ? undefined : this.#entries.get(iss);
    if (entry === undefined) return undefined;
    const key = entry.resolver(kid);
    if (key !== undefined) return key;
    // The provider may have rotated its key since we last looked: re-read, rate-limited so a
    // stream of made-up kids cannot turn into a stream of fetches.
    if (this.#now() - entry.lastAttemptMs < this.#minRefetchMs) return undefined;
    this.#log.info({ provider: entry.config.id, kid }, 'unknown key id: re-reading the provider JWKS');
    await this.#load(entry);
    return entry.resolver(kid);
  };

  private constructor(providers: readonly ResolvedProvider[], options: ProviderRegistryOptions) {
    this.#log = options.logger;
    this.#minRefetchMs = (options.minRefetchSeconds ?? DEFAULT_MIN_REFETCH_SECONDS) * 1000;
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_JWKS_FETCH_TIMEOUT_MS;
    this.#now = options.now ?? Date.now;
    for (const p of providers) this.#entries.set(p.id, new ProviderEntry(p));
  }

  /**
   * Loads every provider's JWKS once. A provider whose JWKS cannot be loaded yet (the bridge may
   * start after the emulator) is logged and kept, with no keys until a later load succeeds.
   */
  static async create(
    providers: readonly ResolvedProvider[],
    options: ProviderRegistryOptions,
  ): Promise<ProviderRegistry> {
    const registry = new ProviderRegistry(providers, options);
    await Promise.all([...registry.#entries.values()].map((e) => registry.#load(e)));
    if (options.periodicRefresh !== false) {
      for (const entry of registry.#entries.values()) registry.#schedule(entry);
    }
    return registry;
  }

  isKnownProvider(providerId: string): boolean {
    return this.#entries.has(providerId);
  }

  providerIds(): string[] {
    return [...this.#entries.keys()];
  }

  /** The hosts the media proxy may fetch this provider's media from ("host" or "host:port"). */
  allowedMediaHosts(providerId: string): readonly string[] {
    return this.#entries.get(providerId)?.config.allowedMediaHosts ?? [];
  }

  /**
   * Whether `url` is on one of the provider's allowed media hosts. An entry with a port allows
   * that host and port only; an entry without a port allows the host on the URL's default port.
   */
  isAllowedMediaUrl(providerId: string, url: URL): boolean {
    const defaultPort = url.protocol === 'https:' ? '443' : '80';
    const host = url.hostname.toLowerCase();
    const port = url.port || defaultPort;
    return this.allowedMediaHosts(providerId).some((allowed) => {
      const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(allowed.toLowerCase());
      return m !== null && m[1] === host && (m[2] ?? defaultPort) === port;
    });
  }

  /** Re-reads one provider's JWKS (or all of them) now; failures are logged, never thrown. */
  async refresh(providerId?: string): Promise<void> {
    const entries =
      providerId === undefined
        ? [...this.#entries.values()]
        : [this.#entries.get(providerId)].filter((e): e is ProviderEntry => e !== undefined);
    await Promise.all(entries.map((e) => this.#load(e)));
  }

  status(): ProviderStatus[] {
    return [...this.#entries.values()].map((e) => ({
      id: e.config.id,
      source: e.source,
      kids: [...e.kids],
      loadedAt: e.loadedAt,
      lastError: e.lastError,
    }));
  }

  /** Stops the periodic refreshes. */
  close(): void {
    for (const e of this.#entries.values()) {
      if (e.timer) clearInterval(e.timer);
      e.timer = undefined;
    }
  }

  #schedule(entry: ProviderEntry): void {
    entry.timer = setInterval(() => void this.#load(entry), entry.config.refreshSeconds * 1000);
    entry.timer.unref();
  }

  /** One load at a time per provider: concurrent callers share it. */
  #load(entry: ProviderEntry): Promise<void> {
    entry.inFlight ??= this.#loadOnce(entry).finally(() => (entry.inFlight = undefined));
    return entry.inFlight;
  }

  async #loadOnce(entry: ProviderEntry): Promise<void> {
    entry.lastAttemptMs = this.#now();
    try {
      const jwks =
        'file' in entry.config.jwks
          ? await readJwksFile(entry.config.jwks.file)
          : await fetchJwks(entry.config.jwks.url, this.#fetchTimeoutMs);
      const kids = jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string');
      const resolve = jwksKeyResolver(jwks);
      entry.resolver = (kid) => resolve(kid, { alg: 'EdDSA', iss: entry.config.id }) as TokenVerificationKey;
      if (entry.lastError !== undefined || kids.join() !== entry.kids.join()) {
        this.#log.info({ provider: entry.config.id, source: entry.source, kids }, 'provider JWKS loaded');
      }
      entry.kids = kids;
      entry.loadedAt = Math.floor(this.#now() / 1000);
      entry.lastError = undefined;
    } catch (err) {
      entry.lastError = err instanceof Error ? err.message : String(err);
      this.#log.error(
        {
          provider: entry.config.id,
          source: entry.source,
          code: (err as InteropError).code,
          keptKids: entry.kids,
        },
        `cannot load the JWKS of provider ${entry.config.id}: ${entry.lastError}; ` +
          (entry.loadedAt === undefined
            ? 'its clients cannot authenticate until it loads'
            : 'keeping the last good JWKS'),
      );
    }
  }
}

/** Reads a JWKS file (JSON with a "keys" list). */
export async function readJwksFile(file: string): Promise<JwksLike> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new JwksError('jwks_unreadable', `cannot read the JWKS file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseJwks(text, file);
}

/**
 * Fetches a provider's JWKS: HTTP 200, JSON, at most MAX_JWKS_BYTES, within the timeout; no
 * redirects (the operator configured this URL, not another).
 */
export async function fetchJwks(url: string, timeoutMs = DEFAULT_JWKS_FETCH_TIMEOUT_MS): Promise<JwksLike> {
  let res: Response;
  try {
    res = await fetch(url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json' },
    });
  } catch (err) {
    const reason =
      err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    throw new JwksError(
      'jwks_fetch_failed',
      `cannot fetch ${url} (${reason}): check that the provider's bridge is running and its http.public_url`,
      { cause: err },
    );
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new JwksError(
      'jwks_fetch_failed',
      `${url} answered HTTP ${res.status}: expected 200 with the provider's JWKS`,
    );
  }
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_JWKS_BYTES) {
    await res.body?.cancel();
    throw new JwksError(
      'jwks_invalid',
      `${url} announces ${declared} bytes; a JWKS is at most ${MAX_JWKS_BYTES}`,
    );
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      total += chunk.byteLength;
      if (total > MAX_JWKS_BYTES) {
        throw new JwksError(
          'jwks_invalid',
          `${url} sent more than ${MAX_JWKS_BYTES} bytes; a JWKS is smaller`,
        );
      }
      chunks.push(chunk);
    }
  }
  return parseJwks(Buffer.concat(chunks).toString('utf8'), url);
}

function parseJwks(text: string, where: string): JwksLike {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JwksError('jwks_invalid', `${where} is not JSON: expected a JWKS ({"keys": [...]})`);
  }
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) {
    throw new JwksError('jwks_invalid', `${where} has no "keys" list of objects: expected a JWKS`);
  }
  return { keys: keys as JwksLike['keys'] };
}
