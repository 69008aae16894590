'use strict';
/*
 * matrix-bot-sdk requires @matrix-org/matrix-sdk-crypto-nodejs as soon as it is imported, and that
 * package throws at require time when its native library (downloaded by a postinstall script from
 * GitHub, not from the npm registry) is missing. interop-bridge overrides the dependency with this
 * package (see "overrides" in the project's package.json) so that:
 *  - where the real library and its native part are installed (as the optional dependency
 *    "@matrix-org/matrix-sdk-crypto-nodejs-real"), everything is the real library: encryption works;
 *  - where they are not, importing still works and every export is a stand-in that throws
 *    MatrixEncryptionUnavailableError, with what to do, the moment encryption is actually used.
 */

const REAL = '@matrix-org/matrix-sdk-crypto-nodejs-real';

class MatrixEncryptionUnavailableError extends Error {
  constructor(what, cause) {
    super(
      `Matrix end-to-end encryption is unavailable (${what} was used): the native library of ` +
        `@matrix-org/matrix-sdk-crypto-nodejs is not installed (${cause}). The bridge works in unencrypted ` +
        `rooms. To enable encryption, allow the library's download script ` +
        `(npm install-scripts approve ${REAL}, then npm rebuild ${REAL}) on a machine that can reach GitHub.`,
    );
    this.name = 'MatrixEncryptionUnavailableError';
    this.code = 'matrix_encryption_unavailable';
  }
}

function unavailableExport(name, cause) {
  const fail = () => {
    throw new MatrixEncryptionUnavailableError(name, cause);
  };
  // A function so that `new X()`, `X()` and `X.staticMethod()` all reach a trap.
  const target = function () {};
  return new Proxy(target, {
    construct: fail,
    apply: fail,
    get(_t, prop) {
      // Let module loaders and inspectors look without failing.
      if (prop === 'then' || typeof prop === 'symbol' || prop === 'prototype') return undefined;
      if (prop === 'name') return name;
      return unavailableExport(`${name}.${String(prop)}`, cause);
    },
  });
}

function unavailableModule(cause) {
  const exports = { MatrixEncryptionUnavailableError, available: false, unavailableReason: cause };
  return new Proxy(exports, {
    get(target, prop) {
      if (prop in target) return target[prop];
      if (prop === '__esModule' || prop === 'then' || prop === 'default' || typeof prop === 'symbol') {
        return undefined;
      }
      return unavailableExport(String(prop), cause);
    },
  });
}

let loaded;
try {
  const real = require(REAL);
  loaded = Object.assign(Object.create(null), real, {
    MatrixEncryptionUnavailableError,
    available: true,
    unavailableReason: undefined,
  });
} catch (error) {
  const message = error && error.message ? String(error.message).split('\n')[0] : String(error);
  loaded = unavailableModule(message);
}

module.exports = loaded;
