/**
 * Service discovery (XEP-0030) for the component JID (a gateway, XEP-0100, with its ad-hoc command
 * list) and for every contact JID (a phone client, and an account with a PEP service for its avatar,
 * XEP-0163/0084: iq/avatar.ts), the matching caps hashes (XEP-0115), and the software version
 * (XEP-0092). Pings (XEP-0199) are answered by the component link itself.
 */
import type { IqContext } from '@xmpp/component';
import { xml, type Element } from '@xmpp/xml';
import { VERSION } from '../../../src/version.js';
import { ADMIN_ADHOC, COMMANDS } from '../commands.js';
import type { Access } from '../context.js';
import type { CapsVersions } from '../context.js';
import { bareJid } from '../jids.js';
import type { Rooms } from '../rooms.js';
import { capsVer, NS, stanzaError } from '../stanzas.js';
import { PEP_FEATURES, PEP_IDENTITIES } from './avatar.js';

interface Identity {
  readonly category: string;
  readonly type: string;
  readonly name?: string;
}

const IDENTITY_GATEWAY = { category: 'gateway', type: 'whatsapp' } as const;
/**
 * A contact's bare JID stands for both its phone (the client features, which its presence's caps
 * announce) and its account, whose PEP service holds its avatar (as Slidge's contacts answer).
 */
const CONTACT_IDENTITIES: readonly Identity[] = [{ category: 'client', type: 'phone' }, ...PEP_IDENTITIES];

const GATEWAY_FEATURES = [
  NS.discoInfo,
  NS.discoItems,
  NS.register,
  NS.gateway,
  NS.commands,
  NS.ping,
  NS.vcard,
  NS.version,
] as const;

const CONTACT_FEATURES = [
  NS.discoInfo,
  NS.caps,
  NS.ping,
  NS.vcard,
  NS.receipts,
  NS.markers,
  NS.chatstates,
  NS.oob,
  NS.correct,
  NS.retract,
  NS.reactions,
  NS.reply,
  ...PEP_FEATURES,
] as const;

/** The caps hashes of what `Disco` answers, for a gateway named `name`. */
export function capsVersions(name: string): CapsVersions {
  return {
    gateway: capsVer([{ ...IDENTITY_GATEWAY, name }], GATEWAY_FEATURES),
    contact: capsVer(CONTACT_IDENTITIES, CONTACT_FEATURES),
  };
}

export interface DiscoContext {
  readonly domain: string;
  /** The gateway's name (`xmpp.name`). */
  readonly name: string;
  /** Admins (`xmpp.admins`) also see the admin commands. */
  readonly access: Pick<Access, 'isAdmin'>;
  /** Groups' rooms answer as conferences (rooms.ts). */
  readonly rooms: Pick<Rooms, 'isRoom' | 'info'>;
}

export class Disco {
  constructor(private readonly ctx: DiscoContext) {}

  /** disco#info of the gateway, its command list and commands, a group's room, or a contact. */
  async info({ stanza, element }: IqContext): Promise<Element> {
    const { domain, name } = this.ctx;
    const to = bareJid(stanza.attrs.to ?? domain);
    const node = element.attrs.node;
    if (to !== domain && this.ctx.rooms.isRoom(to)) {
      const room = await this.ctx.rooms.info(bareJid(stanza.attrs.from ?? ''), to);
      if (!room) return stanzaError('cancel', 'item-not-found', 'No such group, or you are not in it.');
      return xml('query', { xmlns: NS.discoInfo }, ...room);
    }
    if (to !== domain) {
      // No name: one caps hash serves every contact (the name is in the roster and vCard).
      return infoQuery(node, CONTACT_IDENTITIES, CONTACT_FEATURES);
    }
    if (node === NS.commands) {
      return infoQuery(node, [{ category: 'automation', type: 'command-list', name: 'Commands' }], []);
    }
    if (node && (COMMANDS.some((c) => c.node === node) || ADMIN_ADHOC.some((c) => c.node === node))) {
      return infoQuery(
        node,
        [{ category: 'automation', type: 'command-node', name: node }],
        [NS.commands, NS.dataForms],
      );
    }
    return infoQuery(node, [{ ...IDENTITY_GATEWAY, name }], GATEWAY_FEATURES);
  }

  /** disco#items: the ad-hoc commands of the gateway (XEP-0050), nothing else. */
  items({ stanza, element }: IqContext): Element {
    const { domain } = this.ctx;
    const to = bareJid(stanza.attrs.to ?? domain);
    const node = element.attrs.node;
    if (to === domain && node === NS.commands) {
      return xml(
        'query',
        { xmlns: NS.discoItems, node },
        ...COMMANDS.filter((c) => c.adhoc).map((c) =>
          xml('item', { jid: domain, node: c.node, name: c.title }),
        ),
        ...(this.ctx.access.isAdmin(bareJid(stanza.attrs.from ?? ''))
          ? ADMIN_ADHOC.map((c) => xml('item', { jid: domain, node: c.node, name: c.title }))
          : []),
      );
    }
    return xml('query', { xmlns: NS.discoItems, ...(node ? { node } : {}) });
  }

  /** XEP-0092. */
  version(): Element {
    return xml(
      'query',
      { xmlns: NS.version },
      xml('name', {}, 'interop-bridge'),
      xml('version', {}, VERSION),
    );
  }
}

function infoQuery(
  node: string | undefined,
  identities: readonly Identity[],
  features: readonly string[],
): Element {
  return xml(
    'query',
    { xmlns: NS.discoInfo, ...(node ? { node } : {}) },
    ...identities.map((identity) => xml('identity', { ...identity })),
    ...features.map((f) => xml('feature', { var: f })),
  );
}
