/**
 * Accounts and the directory. Native users are gatekeeper users by E.164 number (created by the
 * operator or a test); third-party accounts are `<account>@<provider>.interop` and exist only while
 * enlisted. A phone-number look-up (`usync`) answers only with users who can be reached.
 */
import { AuthFailure } from '../src/protocol/auth.js';
import type { ClientTokenClaims } from '../src/protocol/jwt.js';
import {
  formatJid,
  nativeJid,
  NATIVE_SERVER,
  providerServer,
  type DirectoryEntry,
  type IqBody,
} from '../src/protocol/stanza/index.js';
import type { Core } from './core.js';
import { NATIVE_PROVIDER_ID } from './native-auth.js';

export interface AccountIdentity {
  /** Bare JID. */
  jid: string;
  native: boolean;
}

/** The account a verified token names: native for the built-in `wa` issuer, else `<sub>@<iss>.interop`. */
export function accountOf(claims: Pick<ClientTokenClaims, 'iss' | 'sub'>): AccountIdentity {
  try {
    if (claims.iss === NATIVE_PROVIDER_ID) {
      return { jid: formatJid({ user: claims.sub, server: NATIVE_SERVER }), native: true };
    }
    return { jid: formatJid({ user: claims.sub, server: providerServer(claims.iss) }), native: false };
  } catch (err) {
    throw new AuthFailure(
      'account_invalid',
      `the token's account "${claims.sub}" of "${claims.iss}" is not a valid interop account: ${(err as Error).message}`,
    );
  }
}

/** Creates a native user (idempotent); returns its JID. */
export function createNativeUser(core: Core, phone: string): string {
  const e164 = phone.startsWith('+') ? phone : `+${phone}`;
  const jid = nativeJid(e164);
  core.store.createNative(jid, e164, core.now());
  return jid;
}

export function lookUp(core: Core, contacts: readonly string[]): IqBody {
  const entries = contacts.map((contact): DirectoryEntry => {
    const account = core.store.accountByPhone(contact);
    if (!account) return { contact, onNetwork: false, devices: [] };
    return { contact, onNetwork: true, jid: account.jid, devices: core.store.devicesWithKeys(account.jid) };
  });
  return { op: 'usync_result', entries };
}
