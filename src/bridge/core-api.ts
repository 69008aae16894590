/**
 * The `BridgeCore` an adapter gets from `Bridge.attach`: the core's methods bound to the adapter's
 * network, each run in the process that owns the user's puppet where it needs the puppet.
 */
import { toUserJid } from '../protocol/stanza/index.js';
import type { GroupInfo } from '../protocol/stanza/index.js';
import type { Network, Store } from '../store/repositories.js';
import type { BridgeCore, PuppetReport, PuppetStatus } from './adapter.js';
import type { OutgoingEvent } from './events.js';
import type { PuppetRuntime } from './puppet.js';
import { enlistedUsers } from './admin.js';
import { accountJidOf } from './puppet.js';
import { snapshotOf } from './groups.js';
import type { GroupSnapshot } from './events.js';

/** What the bound core calls on the Bridge (core.ts). */
export interface CoreInternals {
  submit(network: Network, event: OutgoingEvent): Promise<void>;
  setOnline(localUser: string, online: boolean): void;
  enlist(network: Network, localUser: string): Promise<void>;
  optOutAnywhere(localUser: string): Promise<void>;
  lookup(localUser: string, phone: string): Promise<{ reachable: boolean; jid?: string }>;
  status(localUser: string): Promise<PuppetStatus>;
  puppetReports(localUser?: string): Promise<PuppetReport[]>;
  reconnect(localUser: string): Promise<boolean>;
  broadcast(text: string): Promise<number>;
  retryDeliveries(localUser: string): Promise<void>;
  waitUntilConnected(runtime: PuppetRuntime): Promise<void>;
  /** Runs `here` on the puppet's runtime in the process that owns it. */
  onOwner<T>(
    localUser: string,
    op: string,
    args: readonly unknown[],
    here: (runtime: PuppetRuntime) => Promise<T>,
  ): Promise<T>;
}

export function coreApi(
  bridge: CoreInternals,
  network: Network,
  store: Store,
  providerId: string,
): BridgeCore {
  /** The user's groups as the store has them (no gateway request: the puppet keeps them current). */
  const groupsOf = async (localUser: string, group?: string): Promise<GroupSnapshot[]> => {
    const puppet = await store.puppets.byLocalId(localUser);
    if (!puppet) return [];
    const rows = group
      ? [await store.groups.get(puppet.id, group)].filter((g) => g?.active === true)
      : await store.groups.listForPuppet(puppet.id);
    const self = accountJidOf(puppet.accountId, providerId);
    return rows.map((g) => snapshotOf(JSON.parse(g!.info) as GroupInfo, self));
  };
  return {
    submit: (event) => bridge.submit(network, event),
    setOnline: (localUser, online) => bridge.setOnline(localUser, online),
    enlist: (localUser) => bridge.enlist(network, localUser),
    optOut: (localUser) => bridge.optOutAnywhere(localUser),
    lookup: (localUser, phone) => bridge.lookup(localUser, phone),
    safetyNumber: (localUser, remote) =>
      bridge.onOwner(localUser, 'safetyNumber', [remote], (runtime) =>
        runtime.safetyNumber(toUserJid(remote), () => bridge.waitUntilConnected(runtime)),
      ),
    confirmIdentity: async (localUser, remote) => {
      await bridge.onOwner(localUser, 'confirmIdentity', [remote], (runtime) =>
        runtime.confirmIdentity(toUserJid(remote)),
      );
    },
    status: (localUser) => bridge.status(localUser),
    isEnlisted: async (localUser) => {
      const p = await store.puppets.byLocalId(localUser);
      return p !== undefined && p.state === 'enlisted' && p.network === network;
    },
    enlistedUsers: () => enlistedUsers(store, network),
    puppets: (localUser) => bridge.puppetReports(localUser),
    reconnect: (localUser) => bridge.reconnect(localUser),
    broadcast: (text) => bridge.broadcast(text),
    // Group requests need the puppet's connection: right after opting in it may still be coming up.
    createGroup: (localUser, subject, members) =>
      bridge.onOwner(localUser, 'createGroup', [subject, members], async (r) => {
        await bridge.waitUntilConnected(r);
        return r.groups.create(subject, members);
      }),
    changeGroup: (localUser, group, request) =>
      bridge.onOwner(localUser, 'changeGroup', [group, request], async (r) => {
        await bridge.waitUntilConnected(r);
        return r.groups.change(group, request);
      }),
    group: async (localUser, group) => (await groupsOf(localUser, group))[0],
    groups: (localUser) => groupsOf(localUser),
    retryDeliveries: (localUser) => bridge.retryDeliveries(localUser),
  };
}
