import { InteropError } from '../../../src/errors.js';

/**
 * A failure of the Matrix crypto store: `matrix_crypto_store_unreadable` (sealed under another
 * at-rest key, or altered), `matrix_crypto_store_write_failed` (the bridge's database refused a
 * write: the store stops taking writes until the bridge restarts), `matrix_crypto_store_global`
 * (another IndexedDB already installed in this process).
 */
export class CryptoStoreError extends InteropError {}
