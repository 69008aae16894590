/**
 * Contacts' avatars as XEP-0084 (User Avatar) on a PEP service (XEP-0163) of each contact JID, as
 * Slidge does for its contacts: the component hosts those JIDs, so it answers their pubsub
 * retrieve-items requests for the two avatar nodes itself, and tells users of a new picture with
 * the PEP event a contact's server would send (profiles.ts). The picture is the one the vCard PHOTO
 * carries (XEP-0054/0153, iq/vcard.ts), its item id the SHA-1 (hex) of its bytes.
 *
 * - `urn:xmpp:avatar:metadata`: `<item id=SHA1><metadata><info bytes id type/></metadata></item>`,
 *   or an item with an empty `<metadata/>` (no picture: what XEP-0084 publishes to stop);
 * - `urn:xmpp:avatar:data`: `<item id=SHA1><data>BASE64</data></item>`, none without a picture;
 * - an item id asked for that is not the current one: `item-not-found`.
 *
 * Only a registered user gets answers, and only about their own contacts (the store is per user).
 */
import { createHash } from 'node:crypto';
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import type { Access } from '../context.js';
import { bareJid, localPartOf, remoteOfContact } from '../jids.js';
import { stanzaError } from '../stanzas.js';
import type { XmppStore } from '../store.js';

export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
export const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const NS_AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
export const NS_AVATAR_DATA = 'urn:xmpp:avatar:data';

/** What a contact JID's disco#info adds for its PEP service (iq/disco.ts; in its caps hash too). */
export const PEP_IDENTITIES = [
  { category: 'account', type: 'registered' },
  { category: 'pubsub', type: 'pep' },
] as const;
export const PEP_FEATURES = [NS_PUBSUB, `${NS_PUBSUB}#retrieve-items`] as const;

/** A picture as the metadata node describes it. */
export interface AvatarInfo {
  /** SHA-1 (hex) of the bytes: the item id in both nodes. */
  readonly id: string;
  readonly bytes: number;
  readonly type: string;
}

/** `<metadata/>` with the picture's `<info/>`, or empty when there is none (XEP-0084: stop). */
export function avatarMetadata(info: AvatarInfo | undefined): Element {
  return xml(
    'metadata',
    { xmlns: NS_AVATAR_METADATA },
    info ? xml('info', { bytes: String(info.bytes), id: info.id, type: info.type }) : null,
  );
}

/** The metadata node's item: id = the picture's hash; none for the empty metadata. */
function metadataItem(info: AvatarInfo | undefined): Element {
  return xml('item', info ? { id: info.id } : {}, avatarMetadata(info));
}

/**
 * The PEP notification of a contact's new picture (`info`) or of its removal (undefined), from the
 * contact's bare JID to the user's bare JID, as a headline: the server gives it to every resource.
 */
export function avatarEvent(contactJid: string, user: string, info: AvatarInfo | undefined): Element {
  return xml(
    'message',
    { type: 'headline', from: contactJid, to: bareJid(user) },
    xml('event', { xmlns: NS_PUBSUB_EVENT }, xml('items', { node: NS_AVATAR_METADATA }, metadataItem(info))),
  );
}

function avatarInfoOf(bytes: Uint8Array, type: string): AvatarInfo {
  return { id: createHash('sha1').update(bytes).digest('hex'), bytes: bytes.length, type };
}

export interface AvatarContext {
  readonly domain: string;
  readonly store: Pick<XmppStore, 'contact' | 'contactPhoto'>;
  readonly access: Pick<Access, 'isRegistered'>;
}

export class Avatars {
  constructor(private readonly ctx: AvatarContext) {}

  /** `<iq type="get"><pubsub><items node="urn:xmpp:avatar:…">[<item id/>]</items></pubsub></iq>`. */
  async get({ stanza, element }: IqContext): Promise<Element> {
    const { domain, access } = this.ctx;
    const to = bareJid(stanza.attrs.to ?? domain);
    const items = element.getChild('items');
    if (!items) {
      return stanzaError('cancel', 'feature-not-implemented', 'Only the avatar nodes can be read here.');
    }
    const node = items.attrs.node as string | undefined;
    if (to === domain || remoteOfContact(to) === undefined) {
      return stanzaError('cancel', 'item-not-found', `${to} has no avatar here.`);
    }
    if (node !== NS_AVATAR_METADATA && node !== NS_AVATAR_DATA) {
      return stanzaError('cancel', 'item-not-found', 'Only the avatar nodes (XEP-0084) are kept here.');
    }
    const user = bareJid(stanza.attrs.from ?? '');
    if (!(await access.isRegistered(user))) {
      return stanzaError(
        'auth',
        'registration-required',
        `You are not registered with the bridge: send "register" to ${domain} first.`,
      );
    }
    const picture = await this.picture(user, to);
    const info = picture && avatarInfoOf(picture.bytes, picture.type);
    const wanted = items
      .getChildren('item')
      .map((i) => i.attrs.id as string | undefined)
      .filter((id): id is string => !!id);
    if (wanted.length > 0 && (!info || !wanted.includes(info.id))) {
      return stanzaError('cancel', 'item-not-found', 'No such avatar: it is not the current one.');
    }
    const answer = (...children: Element[]) =>
      xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node }, ...children));
    if (node === NS_AVATAR_METADATA) return answer(metadataItem(info));
    if (!picture || !info) return answer();
    return answer(
      xml(
        'item',
        { id: info.id },
        xml('data', { xmlns: NS_AVATAR_DATA }, Buffer.from(picture.bytes).toString('base64')),
      ),
    );
  }

  /** The contact's picture as the user has it, if any. */
  private async picture(user: string, contactJid: string) {
    const local = localPartOf(contactJid) ?? '';
    const c = await this.ctx.store.contact(user, local);
    return c?.photoHash ? this.ctx.store.contactPhoto(user, local) : undefined;
  }
}
