/**
 * The provisioning API's questions to the XMPP side (src/provisioning): who an XMPP user is allowed
 * to be (`xmpp.allowed_domains`, `xmpp.admins`), how a contact looks to them (its address
 * `+4915112345678@<component domain>`, the roster name) and adding one, as the `add` command does.
 */
import type { LocalContact, ProvisioningHooks } from '../../src/bridge/adapter.js';
import { addContact, type CommandContext } from './commands.js';
import type { Access, UserChain } from './context.js';
import { contactJidOfPhone } from './jids.js';
import type { XmppContact } from './store.js';

export interface XmppProvisioningContext {
  readonly access: Pick<Access, 'mayUse' | 'isAdmin'>;
  readonly chain: Pick<UserChain, 'run'>;
  readonly commands: Pick<CommandContext, 'store' | 'contacts' | 'roster' | 'domain'>;
  readonly store: {
    contacts(user: string): Promise<XmppContact[]>;
    contactByRemote(user: string, remote: string): Promise<XmppContact | undefined>;
  };
}

/** A bare JID with a local part: `alice@example.org`. */
const BARE_JID = /^[^@/\s"&'<>:]+@[^@/\s]+$/;

export function xmppProvisioning(c: XmppProvisioningContext): ProvisioningHooks {
  const domain = c.commands.domain;
  const shown = (x: XmppContact): LocalContact => {
    const jid = contactJidOfPhone(x.contact, domain);
    return { remote: x.remote, phone: x.contact, name: x.name ?? x.contact, localId: jid, dm: jid };
  };
  return {
    owns: (user) => BARE_JID.test(user),
    permissionOf: (user) => (!c.access.mayUse(user) ? 'none' : c.access.isAdmin(user) ? 'admin' : 'user'),
    contact: async (user, remote) => {
      const known = await c.store.contactByRemote(user, remote);
      if (known) return shown(known);
      const phone = `+${remote.split('@')[0] ?? ''}`;
      return { remote, phone, name: phone, localId: contactJidOfPhone(phone, domain) };
    },
    contacts: async (user) => (await c.store.contacts(user)).map(shown),
    // In order with what the user's client sends (the user's chain), as the chat command is.
    startChat: (user, _remote, phone) =>
      c.chain.run(user, async () => {
        const added = await addContact(c.commands, user, phone);
        const known = await c.store.contactByRemote(user, added.remote);
        const base = known
          ? shown(known)
          : {
              remote: added.remote,
              phone: added.phone,
              name: added.phone,
              localId: added.jid,
              dm: added.jid,
            };
        return { ...base, existed: added.existed };
      }),
  };
}
