import { InteropError } from '../../src/errors.js';

/** A failure of the Matrix adapter: startup checks, the appservice listener, client calls. */
export class MatrixAdapterError extends InteropError {}
