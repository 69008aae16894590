/**
 * Signal addresses are "<user>.<device>" with no dot in the user part, while JIDs have dots
 * (`4915112345678@wa.interop`). This reversible encoding maps a user JID to an address user.
 */
export function signalAddress(userJid: string, device: number): string {
  return `${userJid.replace(/%/g, '%25').replace(/\./g, '%2E')}.${device}`;
}

/** The user JID of an address user part made by `signalAddress`. */
export function userJidOfAddress(address: string): string {
  const user = address.slice(0, address.lastIndexOf('.'));
  return user.replace(/%2E/g, '.').replace(/%25/g, '%');
}
