/**
 * Translation between canonical events and message contents (the protobuf inside Signal), with the
 * message map turning local ids into wire ids and back.
 */
import type { DescribedContent } from '../protocol/content.js';
import {
  contextInfo,
  editContent,
  locationContent,
  reactionContent,
  revokeContent,
  textContent,
  type TargetKey,
} from '../protocol/content.js';
import type { Message } from '../protocol/gen/interop/v1/message_pb.js';
import type { MediaType } from '../protocol/stanza/index.js';
import type { Portal, Store } from '../store/repositories.js';
import { UndeliverableError } from './errors.js';
import type { ConversationEvent, MediaBody, Mention, OutgoingEvent } from './events.js';
import type { AdapterCapabilities } from './adapter.js';
import { cardsText, mediaNotice, mediaUnshowable } from './fallbacks.js';
import { MediaUnavailableError, type IncomingMedia, type MediaHandler } from './media.js';
import { announcedLength } from './media-handler.js';

export interface BuiltContent {
  readonly content: Message;
  readonly type: 'text' | 'media';
  readonly mediaType?: MediaType | undefined;
}

/** The wire id and author of a message named by its local id (or taken as a wire id if unmapped). */
async function target(store: Store, portal: Portal, accountJid: string, localId: string): Promise<TargetKey> {
  const m = await store.messages.byLocal(portal.id, localId);
  const id = m?.remoteId ?? localId;
  const sender = m?.sender ?? portal.remoteJid;
  return {
    remoteJid: portal.remoteJid,
    fromMe: sender === accountJid,
    id,
    ...(sender === accountJid ? {} : { participant: sender }),
  };
}

/** The content to send for an outgoing event (message, edit, delete, reaction). */
export async function buildContent(input: {
  store: Store;
  portal: Portal;
  accountJid: string;
  outboxId: string;
  event: OutgoingEvent;
  media: MediaHandler | undefined;
}): Promise<BuiltContent> {
  const { store, portal, accountJid, event } = input;
  const e = event.event;
  switch (e.type) {
    case 'message': {
      const quoted = e.replyTo ? await target(store, portal, accountJid, e.replyTo.id) : undefined;
      const replyTo = quoted
        ? { id: quoted.id, ...(quoted.participant ? { participant: quoted.participant } : {}) }
        : undefined;
      if (e.body.kind === 'text') {
        const mentions = e.body.mentions?.map((m) => m.remote);
        return { content: textContent(e.body.text, { replyTo, mentions }), type: 'text' };
      }
      if (e.body.kind === 'location') {
        return { content: locationContent(e.body, { replyTo }), type: 'text' };
      }
      if (!input.media) {
        throw new UndeliverableError(
          'bridge_media_unsupported',
          'this bridge cannot send files yet: the message was not sent',
        );
      }
      const prepared = await input.media.prepareOutgoing({
        localUser: event.localUser,
        remote: event.remote,
        outboxId: input.outboxId,
        body: e.body,
      });
      if (replyTo) attachReply(prepared.content, replyTo);
      return { content: prepared.content, type: 'media', mediaType: prepared.mediaType };
    }
    case 'edit':
      return {
        content: editContent(
          await target(store, portal, accountJid, e.target),
          textContent(e.body.text),
          BigInt(Date.now()),
        ),
        type: 'text',
      };
    case 'delete':
      return { content: revokeContent(await target(store, portal, accountJid, e.target)), type: 'text' };
    case 'reaction':
      return {
        content: reactionContent(
          await target(store, portal, accountJid, e.target),
          e.emoji,
          BigInt(Date.now()),
        ),
        type: 'text',
      };
    default:
      throw new UndeliverableError('bridge_not_a_message', `a ${e.type} event is not sent as a message`);
  }
}

function attachReply(content: Message, replyTo: { id: string; participant?: string }): void {
  const media =
    content.imageMessage ?? content.videoMessage ?? content.audioMessage ?? content.documentMessage;
  if (media) media.contextInfo = contextInfo(replyTo);
}

const MEDIA_LABEL: Record<IncomingMedia['kind'], string> = {
  image: 'an image',
  video: 'a video',
  audio: 'an audio file',
  voice: 'a voice note',
  document: 'a file',
};

const MEDIA_KIND: Record<IncomingMedia['kind'], MediaBody['media']> = {
  image: 'image',
  video: 'video',
  audio: 'audio',
  voice: 'voice',
  document: 'file',
};

/** What the local user sees in place of a content the bridge does not carry. */
export function unshowableText(what: string): string {
  return `(sent ${what}, which this bridge cannot show: ask them to send it another way)`;
}

/** The mentions of a text, as the core tells the adapter: the local user's own address is `self`. */
function mentionsOf(jids: readonly string[] | undefined, accountJid: string): { mentions?: Mention[] } {
  const mentions: Mention[] = [];
  for (const remote of jids ?? []) {
    const user = remote.split('@')[0]?.split(':')[0] ?? '';
    if (user === '' || mentions.some((m) => m.remote === remote)) continue;
    mentions.push({ remote, token: `@${user}`, ...(remote === accountJid ? { self: true } : {}) });
  }
  return mentions.length > 0 ? { mentions } : {};
}

/**
 * The canonical event of an incoming content, or undefined only for a content that must not be
 * shown at all (a sender key alone, with nothing for the user). Every content the bridge does not
 * carry becomes a notice that names it, so the sender's "delivered" means the user saw something.
 */
export async function incomingEvent(input: {
  store: Store;
  portal: Portal;
  /** The puppet's own address at the gateway: a mention of it is a mention of the local user. */
  accountJid: string;
  localUser: string;
  remoteId: string;
  described: DescribedContent;
  media: MediaHandler | undefined;
  /** What the adapter shows: a file it cannot take is not downloaded, a notice names it. */
  capabilities: AdapterCapabilities;
}): Promise<ConversationEvent | undefined> {
  const { store, portal, described: c } = input;
  const localOf = async (remoteId: string) => (await store.messages.byRemote(portal.id, remoteId))?.localId;
  const replyTo =
    'replyTo' in c && c.replyTo
      ? { replyTo: { id: c.replyTo.id, localId: await localOf(c.replyTo.id) } }
      : {};
  switch (c.kind) {
    case 'text':
      return {
        type: 'message',
        body: { kind: 'text', text: c.text, ...mentionsOf(c.mentions, input.accountJid) },
        ...replyTo,
      };
    case 'location':
      return { type: 'message', body: { kind: 'location', ...c.place }, ...replyTo };
    case 'contact':
      return { type: 'message', body: { kind: 'text', text: cardsText(c.cards) }, ...replyTo };
    case 'unsupported':
      return { type: 'message', body: { kind: 'text', text: unshowableText(c.what) } };
    case 'image':
    case 'video':
    case 'audio':
    case 'voice':
    case 'document': {
      const caption = 'caption' in c && c.caption ? `: ${c.caption}` : '';
      const announced = announcedLength(c);
      const unshowable = mediaUnshowable(
        input.capabilities,
        announced === undefined ? undefined : Number(announced),
      );
      if (unshowable !== undefined) {
        const fileName = c.kind === 'document' ? c.media.fileName || c.media.title : undefined;
        return {
          type: 'message',
          body: {
            kind: 'text',
            text: mediaNotice(
              MEDIA_KIND[c.kind],
              {
                fileName,
                size: announced === undefined ? undefined : Number(announced),
                caption: 'caption' in c ? c.caption : undefined,
              },
              unshowable,
            ),
          },
          ...replyTo,
        };
      }
      if (input.media) {
        try {
          const body = await input.media.fetchIncoming({
            localUser: input.localUser,
            remote: portal.remoteJid,
            remoteId: input.remoteId,
            content: c,
          });
          return { type: 'message', body: { ...body, media: MEDIA_KIND[c.kind] }, ...replyTo };
        } catch (err) {
          if (!(err instanceof MediaUnavailableError)) throw err;
          // Never showable: a notice in its place, so the user knows something was sent.
          return {
            type: 'message',
            body: {
              kind: 'text',
              text: `(sent ${MEDIA_LABEL[c.kind]} that could not be shown: ${err.reason}${caption})`,
            },
            ...replyTo,
          };
        }
      }
      return {
        type: 'message',
        body: {
          kind: 'text',
          text: `(sent ${MEDIA_LABEL[c.kind]}, which this bridge cannot show yet${caption})`,
        },
        ...replyTo,
      };
    }
    case 'reaction':
      return {
        type: 'reaction',
        target: c.target.id,
        targetLocalId: await localOf(c.target.id),
        emoji: c.emoji,
      };
    case 'revoke':
      return { type: 'delete', target: c.target.id, targetLocalId: await localOf(c.target.id) };
    case 'edit': {
      const r = c.replacement;
      const text =
        r.conversation ||
        r.extendedTextMessage?.text ||
        r.imageMessage?.caption ||
        r.videoMessage?.caption ||
        r.documentMessage?.caption;
      const targetLocalId = await localOf(c.target.id);
      if (!text) {
        // An edit the bridge cannot read: said as a reply to the message it changed.
        return {
          type: 'message',
          body: { kind: 'text', text: unshowableText('an edit of a message') },
          replyTo: { id: c.target.id, localId: targetLocalId },
        };
      }
      return { type: 'edit', target: c.target.id, targetLocalId, body: { kind: 'text', text } };
    }
    case 'unknown':
      return c.reason === 'a sender key alone, with no content'
        ? undefined
        : { type: 'message', body: { kind: 'text', text: unshowableText('a message') } };
  }
}
