/**
 * The error a fenced write fails with (StoreWrites.requireLease): the lease it was made under has
 * moved on to another holder, so nothing of the unit landed.
 */
import { StoreError } from '../errors.js';

/** The SQLSTATE `interop_require_lease` (migration 009, PostgreSQL) raises with. */
export const FENCED_SQLSTATE = 'IB001';

export function fencedError(name: string, current: number | undefined, held: number): StoreError {
  return new StoreError(
    'store_fenced',
    `refused a write under the lease ${name}: it is at fence ${current ?? 'none'}, the writer holds ${held} (another process owns it now)`,
  );
}

/** A PostgreSQL error raised by the fencing check, as `store_fenced`; undefined for any other. */
export function asFenced(err: unknown): StoreError | undefined {
  if ((err as { code?: string }).code !== FENCED_SQLSTATE) return undefined;
  return new StoreError('store_fenced', `refused a write: ${(err as Error).message}`, { cause: err });
}
