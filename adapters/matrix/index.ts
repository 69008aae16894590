/**
 * The Matrix adapter's entry points for the wiring in app/: the factory (no I/O: `start()` checks
 * the homeserver and listens), its store on either backend, and the homeserver checks for `doctor`.
 *
 *   const matrix = createMatrixAdapter({ config, logger, dataDir }, openMatrixStore(database));
 *   bridge.attach(matrix);
 *   await matrix.start();
 */
import type { AdapterContext, AdapterFactory } from '../../src/bridge/adapter.js';
import type { AdapterDatabase } from '../../src/store/sql.js';
import { MatrixAdapter, type MatrixAdapterOptions } from './adapter.js';
import { PostgresMatrixStore } from './postgres-store.js';
import { SqliteMatrixStore } from './sqlite-store.js';
import type { MatrixStore } from './store.js';

export { MatrixAdapter, type MatrixAdapterOptions } from './adapter.js';
export { MatrixAdapterError } from './errors.js';
export type { MatrixStore } from './store.js';
export { matrixMigrations } from './rows.js';
export { SqliteMatrixStore } from './sqlite-store.js';
export { PostgresMatrixStore } from './postgres-store.js';
export { checkHomeserver, type HomeserverCheck } from './homeserver-checks.js';
export { withRetry, RetryingMatrixClient } from './client.js';
export type { RetryPolicy } from './client.js';

/**
 * Makes the Matrix adapter from the context and its store. Throws `matrix_no_tokens` when the
 * config lacks the tokens; does no I/O. `options` are for tests and tools.
 */
export const createMatrixAdapter = ((
  context: AdapterContext,
  store: MatrixStore,
  options: MatrixAdapterOptions = {},
): MatrixAdapter => new MatrixAdapter(context, store, options)) satisfies AdapterFactory<
  MatrixStore,
  MatrixAdapter
>;

/** The Matrix adapter's store on the bridge's database, whichever backend it is. */
export const openMatrixStore = (on: AdapterDatabase, now?: () => number): MatrixStore =>
  on.kind === 'sqlite' ? new SqliteMatrixStore(on.db, now) : new PostgresMatrixStore(on.pg, now);
