/**
 * Contacts' profiles (the core's `ProfileAdapter` calls): a contact's push name becomes its nick in
 * presence (XEP-0172) and its vCard name, its about text the vCard DESC, its picture the vCard PHOTO
 * with the picture's hash in every presence of the contact (XEP-0153), so clients show it as the
 * avatar and fetch it again when it changes; a new or removed picture is also announced as the
 * contact's XEP-0084 avatar metadata (a PEP event, iq/avatar.ts answers the fetches), which
 * Conversations and Gajim prefer. Kept in the adapter's store for the vCard and avatar answers.
 */
import { createHash } from 'node:crypto';
import type { ContactProfile } from '../../src/bridge/events.js';
import { phoneOfRemote } from '../../src/bridge/phone.js';
import type { Contacts } from './contacts.js';
import type { CapsVersions, Outbound } from './context.js';
import { avatarEvent } from './iq/avatar.js';
import { contactJidOfPhone } from './jids.js';
import { contactPresence } from './stanzas.js';
import type { Rooms } from './rooms.js';
import type { XmppStore } from './store.js';

export interface ProfilesContext {
  readonly domain: string;
  readonly store: Pick<XmppStore, 'ensureContact' | 'setProfile'>;
  readonly out: Outbound;
  readonly contacts: Pick<Contacts, 'lastPresence'>;
  readonly caps: CapsVersions;
  /** Rooms where the contact's nick follows their name. */
  readonly rooms?: Pick<Rooms, 'renamed'> | undefined;
}

export class ContactProfiles {
  constructor(private readonly ctx: ProfilesContext) {}

  /** Keeps the contact's profile and, when the name or picture changed, tells the user's clients. */
  async update(localUser: string, profile: ContactProfile): Promise<void> {
    const phone = phoneOfRemote(profile.remote);
    if (phone === undefined) return; // another provider's account: its JID is all there is
    const { store, out, domain } = this.ctx;
    const before = await store.ensureContact(localUser, phone, profile.remote);
    const name = profile.name ?? null;
    const about = profile.about ?? null;
    const picture = profile.picture;
    // New bytes: a new picture (a kept one comes without them).
    const fresh =
      picture?.bytes !== undefined
        ? {
            hash: createHash('sha1').update(picture.bytes).digest('hex'),
            bytes: picture.bytes,
            type: picture.mimetype ?? 'image/jpeg',
          }
        : undefined;
    const photo =
      picture === undefined
        ? undefined
        : fresh
          ? { id: picture.id, ...fresh }
          : { id: picture.id, hash: before.photoHash ?? '' };
    const photoHash = photo?.hash || null;
    if (name === before.name && about === before.about && photoHash === before.photoHash) return;
    await store.setProfile(localUser, phone, { name, about, ...(photo ? { photo } : {}) });
    if (name !== before.name) this.ctx.rooms?.renamed(localUser, profile.remote);
    if (!before.subTo || (name === before.name && photoHash === before.photoHash)) return;
    const available = this.ctx.contacts.lastPresence(localUser, profile.remote) ?? true;
    const jid = contactJidOfPhone(phone, domain);
    await out.send(contactPresence(jid, localUser, available, this.ctx.caps.contact, { name, photoHash }));
    if (photoHash === before.photoHash) return;
    const info = fresh && { id: fresh.hash, bytes: fresh.bytes.length, type: fresh.type };
    await out.send(avatarEvent(jid, localUser, info));
  }
}
