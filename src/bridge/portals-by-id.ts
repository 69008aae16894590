/**
 * A puppet's portals by id, each read from the store once: for the senders and the inbox delivery,
 * which use only a portal's id and remote JID, and those never change.
 */
import type { Portal, Store } from '../store/repositories.js';
import { LazyMap } from '../util/lazy-map.js';

export async function portalById(
  known: LazyMap<number, Portal>,
  store: Pick<Store, 'portals'>,
  id: number,
): Promise<Portal | undefined> {
  const cached = known.get(id);
  if (cached) return cached;
  const portal = await store.portals.byId(id);
  if (portal) known.set(id, portal);
  return portal;
}
