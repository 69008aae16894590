/**
 * In-band registration (XEP-0077) as the opt-in: registering enlists the user's puppet, `<remove/>`
 * opts out. And the gateway's number translation (XEP-0100 jabber:iq:gateway): a phone number in
 * any common notation -> its contact JID.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import type { BridgeCore } from '../../../src/bridge/adapter.js';
import { normalisePhone } from '../../../src/bridge/phone.js';
import type { Access, UserChain } from '../context.js';
import { bareJid, contactJidOfPhone } from '../jids.js';
import { NS, stanzaError } from '../stanzas.js';

export interface RegistrationContext {
  readonly domain: string;
  readonly core: Pick<BridgeCore, 'enlist' | 'optOut'>;
  readonly access: Access;
  readonly chain: UserChain;
}

export class Registration {
  constructor(private readonly ctx: RegistrationContext) {}

  /** The registration form: what registering means, or that the user is registered. */
  async form({ stanza }: IqContext): Promise<Element> {
    const user = bareJid(stanza.attrs.from ?? '');
    const registered = await this.ctx.access.isRegistered(user);
    const instructions = registered
      ? 'You are registered. Send <remove/> to unregister (this deletes your interop account and its keys).'
      : `Registering opts you in to WhatsApp interoperability: the bridge creates an interop account for ${user} and your contacts appear as +<phone number>@${this.ctx.domain}. No password is needed.`;
    return xml(
      'query',
      { xmlns: NS.register },
      xml('instructions', {}, instructions),
      registered ? xml('registered') : null,
      xml('username', {}, user),
    );
  }

  /** Registers or (with `<remove/>`) unregisters, in order with the user's other stanzas. */
  async submit({ stanza, element }: IqContext): Promise<Element | boolean> {
    const { access, core } = this.ctx;
    const user = bareJid(stanza.attrs.from ?? '');
    if (!access.mayUse(user)) return stanzaError('auth', 'forbidden', access.notAllowed(user).message);
    return this.ctx.chain.run(user, async () => {
      try {
        if (element.getChild('remove')) await core.optOut(user);
        else await core.enlist(user);
        return true;
      } catch (err) {
        return stanzaError('wait', 'remote-server-timeout', (err as Error).message);
      }
    });
  }

  /** XEP-0100: what to enter. */
  prompt(): Element {
    return xml(
      'query',
      { xmlns: NS.gateway },
      xml('desc', {}, 'Enter the phone number of a WhatsApp user, in international format (+4915112345678).'),
      xml('prompt', {}, 'Phone number'),
    );
  }

  /** XEP-0100: the contact JID of the number entered. */
  translate({ element }: IqContext): Element {
    const input = element.getChild('prompt')?.getText() ?? '';
    const phone = normalisePhone(input);
    if (!phone) {
      return stanzaError(
        'modify',
        'not-acceptable',
        `"${input}" is not a phone number in international format, such as +4915112345678.`,
      );
    }
    return xml('query', { xmlns: NS.gateway }, xml('jid', {}, contactJidOfPhone(phone, this.ctx.domain)));
  }
}
