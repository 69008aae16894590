/**
 * One Synapse per test file: started before the file's first test with the bridge's registration
 * loaded (its `url` is the spec proxy's appservice side), stopped after the last. Tests share it,
 * never its users (each registration gets a unique localpart), and point the proxy at the bridge
 * they start.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { tempDir, type TempDir } from '../tmp.js';
import { freePort } from '../wait.js';
import { buildRegistration } from '../../../adapters/matrix/registration.js';
import { configSchema } from '../../../src/config/schema.js';
import { SdkUser } from './sdk-user.js';
import { SpecProxy } from './spec-proxy.js';
import { Synapse, type RegisteredUser } from './synapse.js';

export interface SuiteRegistration {
  readonly id: string;
  readonly url: string;
  readonly as_token: string;
  readonly hs_token: string;
  readonly [key: string]: unknown;
}

export class SynapseSuite {
  /** The passwords of the users `user` registered, for their logins on other devices. */
  private readonly passwords = new Map<string, string>();

  private constructor(
    readonly tmp: TempDir,
    readonly synapse: Synapse,
    readonly proxy: SpecProxy,
    /** The port the bridges of this file listen on (the proxy forwards Synapse's pushes there). */
    readonly bridgePort: number,
  ) {}

  /**
   * Starts Synapse with the registration `build(proxyUrl)` returns (the bridge's own
   * `buildRegistration`, its `url` replaced by the proxy's appservice side).
   */
  static async start(
    tokens: { asToken: string; hsToken: string },
    build: (bridgePort: number) => SuiteRegistration,
    serverName = 'example.test',
    extra?: Record<string, unknown>,
    others: readonly Record<string, unknown>[] = [],
  ): Promise<SynapseSuite> {
    const tmp = tempDir('synapse-');
    const bridgePort = await freePort();
    const registration = build(bridgePort);
    // Synapse starts after the proxy, which needs Synapse's address: the proxy learns it below.
    const proxy = await SpecProxy.start({
      upstream: 'http://127.0.0.1:1',
      asToken: tokens.asToken,
      hsToken: tokens.hsToken,
    });
    const file = path.join(tmp.dir, 'registration.yaml');
    writeFileSync(file, stringify({ ...registration, url: proxy.appserviceUrl }), { mode: 0o600 });
    const synapse = await Synapse.start({
      dir: path.join(tmp.dir, 'synapse'),
      serverName,
      appserviceFiles: [
        file,
        ...others.map((r, i) => {
          const other = path.join(tmp.dir, `registration-${i + 2}.yaml`);
          writeFileSync(other, stringify(r), { mode: 0o600 });
          return other;
        }),
      ],
      ...(extra === undefined ? {} : { extra }),
    });
    proxy.setUpstream(synapse.url);
    proxy.setBridge(`http://127.0.0.1:${bridgePort}`);
    proxy.onRestart(() => synapse.restart());
    return new SynapseSuite(tmp, synapse, proxy, bridgePort);
  }

  /**
   * Synapse with the registration the bridge generates for these tokens (`buildRegistration`;
   * `exclusive: false` makes its user namespaces shared, as a careless registration would).
   */
  static forBridge(
    tokens: { asToken: string; hsToken: string },
    options: { serverName?: string; exclusive?: boolean; extra?: Record<string, unknown> } = {},
  ): Promise<SynapseSuite> {
    const serverName = options.serverName ?? 'example.test';
    return SynapseSuite.start(
      tokens,
      (port) => {
        const r = buildRegistration(
          configSchema.parse({
            matrix: {
              enabled: true,
              server_name: serverName,
              as_token: tokens.asToken,
              hs_token: tokens.hsToken,
              listen_port: port,
            },
          }),
          tokens,
        );
        if (options.exclusive !== false) return r;
        return {
          ...r,
          namespaces: { ...r.namespaces, users: r.namespaces.users.map((u) => ({ ...u, exclusive: false })) },
        };
      },
      serverName,
      options.extra,
    );
  }

  /** A new local user (unique localpart), syncing with matrix-js-sdk through the proxy. */
  async user(
    localpart: string,
    displayname?: string,
    options: { exact?: boolean; crypto?: boolean } = {},
  ): Promise<SdkUser> {
    const registered = await this.synapse.registerUser(localpart, { exact: options.exact ?? false });
    this.passwords.set(registered.userId, registered.password);
    return SdkUser.start({
      baseUrl: this.proxy.clientUrl,
      userId: registered.userId,
      accessToken: registered.accessToken,
      deviceId: registered.deviceId,
      ...(displayname === undefined ? {} : { displayname }),
      crypto: options.crypto === true,
    });
  }

  /**
   * The user on a new device, as when they sign in to a second Element: a password login
   * (`m.login.password`) gives the new device, which syncs with its own crypto from then on.
   */
  async anotherDevice(user: Pick<SdkUser, 'userId'>, options: { crypto?: boolean } = {}): Promise<SdkUser> {
    const password = this.passwords.get(user.userId);
    if (password === undefined) throw new Error(`${user.userId} was not registered by this suite`);
    const res = await fetch(`${this.synapse.url}/_matrix/client/v3/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: user.userId },
        password,
      }),
    });
    const body = (await res.json()) as { access_token?: string; device_id?: string };
    if (!res.ok || body.access_token === undefined || body.device_id === undefined)
      throw new Error(`logging ${user.userId} in again failed: ${res.status} ${JSON.stringify(body)}`);
    return SdkUser.start({
      baseUrl: this.proxy.clientUrl,
      userId: user.userId,
      accessToken: body.access_token,
      deviceId: body.device_id,
      crypto: options.crypto === true,
    });
  }

  /** The homeserver knows this user (Synapse's admin API, as an operator would look). */
  async isRegistered(userId: string): Promise<boolean> {
    const res = await fetch(`${this.synapse.url}/_synapse/admin/v2/users/${encodeURIComponent(userId)}`, {
      headers: { authorization: `Bearer ${await this.adminToken()}` },
    });
    if (res.status === 404) return false;
    if (!res.ok) throw new Error(`admin lookup of ${userId}: ${res.status} ${await res.text()}`);
    return true;
  }

  private admin: RegisteredUser | undefined;

  private async adminToken(): Promise<string> {
    this.admin ??= await this.synapse.registerUser('admin', { admin: true });
    return this.admin.accessToken;
  }

  /** Lifts Synapse's message rate limit for the user (the admin API's ratelimit override). */
  async exemptFromRateLimits(userId: string): Promise<void> {
    const res = await fetch(
      `${this.synapse.url}/_synapse/admin/v1/users/${encodeURIComponent(userId)}/override_ratelimit`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${await this.adminToken()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ messages_per_second: 0, burst_count: 0 }),
      },
    );
    if (!res.ok) throw new Error(`ratelimit override for ${userId}: ${res.status} ${await res.text()}`);
  }

  async close(): Promise<void> {
    await this.proxy.close();
    await this.synapse.close();
    // SYNAPSE_LOG_TO=<file>: the homeserver's log is kept there (appended) before its directory goes.
    const keep = process.env['SYNAPSE_LOG_TO'];
    if (keep) appendFileSync(keep, this.synapse.log());
    this.tmp.cleanup();
  }
}
