/**
 * What administrators ask of the core (the `puppets`, `show` and `broadcast` commands of both
 * networks, and the provisioning API): reports on every puppet, and a notice to every user.
 */
import type { Logger } from '../observability/logger.js';
import type { Network, Puppet, Store } from '../store/repositories.js';
import type { Adapter, PuppetReport } from './adapter.js';
import { accountJidOf } from './puppet.js';

export interface AdminDeps {
  readonly store: Store;
  readonly providerId: string;
  readonly log: Logger | undefined;
  adapterOf(network: Network): Adapter | undefined;
  /** The puppet's connection state and last problem, from the process that runs it. */
  connectionOf(puppet: Puppet): Promise<{ state: string; lastError?: PuppetReport['lastError'] }>;
}

/** Every puppet (or `localUser`'s) with its connection, queue and last error, by local user. */
export async function puppetReports(d: AdminDeps, localUser?: string): Promise<PuppetReport[]> {
  const { store } = d;
  const puppets =
    localUser === undefined
      ? await store.puppets.list()
      : [await store.puppets.byLocalId(localUser)].filter((p): p is Puppet => p !== undefined);
  const reports: PuppetReport[] = [];
  for (const p of puppets) {
    const connection = await d.connectionOf(p);
    reports.push({
      localUser: p.localId,
      network: p.network,
      state: p.state,
      enlisted: p.state === 'enlisted',
      connection: connection.state,
      queued: await store.outbox.countQueued(p.id),
      inboxPending: await store.inbox.countPending(p.id),
      address: accountJidOf(p.accountId, d.providerId),
      lastError: connection.lastError,
    });
  }
  return reports.sort((a, b) => a.localUser.localeCompare(b.localUser));
}

/** A `broadcast` notice to every enlisted user, through their network's adapter. */
export async function broadcast(d: AdminDeps, text: string): Promise<number> {
  let n = 0;
  for (const p of await d.store.puppets.list()) {
    if (p.state !== 'enlisted') continue;
    const adapter = d.adapterOf(p.network);
    if (!adapter) continue;
    try {
      adapter.notify(p.localId, { kind: 'broadcast', text });
      n++;
    } catch (err) {
      d.log?.warn({ user: p.localId, err: (err as Error).message }, 'broadcast not shown');
    }
  }
  d.log?.info({ users: n }, 'broadcast sent by an administrator');
  return n;
}

/** The enlisted local users of one network. */
export async function enlistedUsers(store: Store, network: Network): Promise<string[]> {
  return (await store.puppets.list())
    .filter((p) => p.network === network && p.state === 'enlisted')
    .map((p) => p.localId);
}
