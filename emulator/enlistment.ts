/**
 * Opt-in and opt-out of third-party accounts (`<iq xmlns="interop">`). An account that is not
 * enlisted may connect only with connect_reason ENLISTMENT and may send only `<enlist>` and ping;
 * a valid `<enlist>` creates the account and the connection becomes a full one. `<unenlist/>`
 * removes the account with its keys and queued messages, and closes its other connections.
 */
import { EnlistmentError, verifyEnlistment } from '../src/protocol/enlistment.js';
import type { IqBody } from '../src/protocol/stanza/index.js';
import type { Connection, Core } from './core.js';

type Enlist = Extract<IqBody, { op: 'enlist' }>;

function isNative(core: Core, jid: string): boolean {
  return core.store.account(jid)?.kind === 'native';
}

export function enlist(core: Core, c: Connection, body: Enlist): IqBody {
  if (isNative(core, c.accountJid)) {
    return { op: 'error', error: { code: 400, text: 'native users are not enlisted' } };
  }
  if (!core.verifyXEdDSA) {
    return {
      op: 'error',
      error: { code: 501, text: 'this gateway cannot verify enlistment signatures (no XEdDSA verifier)' },
    };
  }
  try {
    verifyEnlistment(
      { accountJid: c.accountJid, t: body.t, identityKey: body.identityKey, signature: body.signature },
      core.verifyXEdDSA,
      core.now(),
    );
  } catch (err) {
    if (!(err instanceof EnlistmentError)) throw err;
    core.log.info({ account: c.accountJid, code: err.code }, 'enlistment refused');
    return {
      op: 'error',
      error: {
        code: err.code === 'enlistment_bad_signature' ? 401 : 400,
        text: `${err.code}: ${err.message}`,
      },
    };
  }
  core.store.enlist(c.accountJid, body.identityKey, core.now());
  core.store.registerDevice(c.accountJid, c.device);
  c.setEnlisted(true);
  core.log.info({ account: c.accountJid }, 'account enlisted');
  return { op: 'result' };
}

export function unenlist(core: Core, c: Connection): IqBody {
  if (isNative(core, c.accountJid)) {
    return { op: 'error', error: { code: 400, text: 'native users are not enlisted' } };
  }
  core.store.removeAccount(c.accountJid);
  for (const other of core.connections.of(c.accountJid)) {
    if (other === c) other.setEnlisted(false);
    else other.close('account unenlisted');
  }
  core.log.info({ account: c.accountJid }, 'account unenlisted: keys and queue dropped');
  return { op: 'result' };
}
