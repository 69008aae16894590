/** The core as the adapter's parts hold it from the start (they are made before `attach`). */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import { MatrixAdapterError } from './errors.js';

/** The core as the parts hold it from the start: each call goes to the core attached by then. */
export function lateCore(core: () => BridgeCore): BridgeCore {
  return {
    submit: (event) => core().submit(event),
    setOnline: (localUser, online) => core().setOnline(localUser, online),
    enlist: (localUser) => core().enlist(localUser),
    optOut: (localUser) => core().optOut(localUser),
    lookup: (localUser, phone) => core().lookup(localUser, phone),
    safetyNumber: (localUser, remote) => core().safetyNumber(localUser, remote),
    confirmIdentity: (localUser, remote) => core().confirmIdentity(localUser, remote),
    status: (localUser) => core().status(localUser),
    isEnlisted: (localUser) => core().isEnlisted(localUser),
    enlistedUsers: () => core().enlistedUsers(),
    puppets: (localUser) => core().puppets(localUser),
    reconnect: (localUser) => core().reconnect(localUser),
    broadcast: (text) => core().broadcast(text),
    createGroup: async (localUser, subject, members) => {
      const c = core();
      if (c.createGroup === undefined) throw unsupported('groups');
      return c.createGroup(localUser, subject, members);
    },
    changeGroup: async (localUser, group, request) => {
      const c = core();
      if (c.changeGroup === undefined) throw unsupported('groups');
      return c.changeGroup(localUser, group, request);
    },
    group: (localUser, group) => core().group?.(localUser, group) ?? Promise.resolve(undefined),
    groups: (localUser) => core().groups?.(localUser) ?? Promise.resolve([]),
    retryDeliveries: (localUser) => core().retryDeliveries?.(localUser) ?? Promise.resolve(),
  };
}

function unsupported(what: string): MatrixAdapterError {
  return new MatrixAdapterError('matrix_core_unsupported', `the bridge core does not offer ${what}`);
}
