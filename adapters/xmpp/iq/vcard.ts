/**
 * vCards (XEP-0054) of the gateway (its name) and of contacts (their name, number, about text and
 * picture: PHOTO, whose hash contacts' presences carry, XEP-0153), which clients show in contact
 * details and as avatars.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import { bareJid, localPartOf, phoneOfContact } from '../jids.js';
import { NS, xmlSafe } from '../stanzas.js';
import type { XmppStore } from '../store.js';

export interface VcardContext {
  readonly domain: string;
  /** The gateway's name (`xmpp.name`). */
  readonly name: string;
  readonly store: Pick<XmppStore, 'contact' | 'contactPhoto'>;
}

export class Vcards {
  constructor(private readonly ctx: VcardContext) {}

  async get({ stanza }: IqContext): Promise<Element> {
    const { domain, store } = this.ctx;
    const to = bareJid(stanza.attrs.to ?? domain);
    if (to === domain) return xml('vCard', { xmlns: NS.vcard }, xml('FN', {}, xmlSafe(this.ctx.name)));
    const user = bareJid(stanza.attrs.from ?? '');
    const local = localPartOf(to) ?? '';
    const c = await store.contact(user, local);
    const phone = phoneOfContact(to);
    const name = c?.name ?? phone ?? local;
    const photo = c?.photoHash ? await store.contactPhoto(user, local) : undefined;
    return xml(
      'vCard',
      { xmlns: NS.vcard },
      xml('FN', {}, xmlSafe(name)),
      xml('NICKNAME', {}, xmlSafe(name)),
      phone ? xml('TEL', {}, xml('CELL'), xml('NUMBER', {}, phone)) : null,
      c?.about ? xml('DESC', {}, xmlSafe(c.about)) : null,
      photo
        ? xml(
            'PHOTO',
            {},
            xml('TYPE', {}, photo.type),
            xml('BINVAL', {}, Buffer.from(photo.bytes).toString('base64')),
          )
        : null,
    );
  }
}
