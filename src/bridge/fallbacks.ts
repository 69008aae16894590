/**
 * What the core does with an adapter's capabilities (adapter.ts, `AdapterCapabilities`): an event
 * the local network cannot show becomes a readable text, never nothing; a status signal it cannot
 * show is not sent at all. Pure functions, so each fallback is tested on its own.
 */
import type { AdapterCapabilities } from './adapter.js';
import type { ReceivedCard } from '../protocol/content.js';
import type { ConversationEvent, DeliveryState, EphemeralEvent, LocationBody, MediaKind } from './events.js';
import { geoUri } from './geo.js';

const MEDIA_NAME: Record<MediaKind, string> = {
  image: 'an image',
  video: 'a video',
  audio: 'an audio file',
  voice: 'a voice message',
  file: 'a file',
};

const text = (t: string, replyTo?: { id: string; localId?: string | undefined }): ConversationEvent => ({
  type: 'message',
  body: { kind: 'text', text: t },
  ...(replyTo ? { replyTo } : {}),
});

/** `1536` -> `1.5 KB`, `3_500_000` -> `3.3 MB`. */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1).replace(/\.0$/, '')} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, '')} MB`;
}

/**
 * The notice shown in place of a file the network cannot take: its kind, name and size, and the
 * caption. `why` says why it is not shown.
 */
export function mediaNotice(
  media: MediaKind,
  detail: { fileName?: string | undefined; size?: number | undefined; caption?: string | undefined },
  why: string,
): string {
  const name = detail.fileName ? ` "${detail.fileName}"` : '';
  const size = detail.size !== undefined ? ` (${humanSize(detail.size)})` : '';
  const caption = detail.caption ? `: ${detail.caption}` : '';
  return `(sent ${MEDIA_NAME[media]}${name}${size}, ${why}${caption})`;
}

/** The fields of a vCard (RFC 6350, and 2426 as phones write it) a card shows: name, numbers, addresses. */
export function readVCard(vcard: string): { name?: string; phones: string[]; emails: string[] } {
  // Unfold continuation lines first (a line break followed by a space or a tab).
  const lines = vcard.replace(/\r?\n[ \t]/g, '').split(/\r?\n/);
  const card: { name?: string; phones: string[]; emails: string[] } = { phones: [], emails: [] };
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    // `item1.TEL;type=CELL;waid=4915112345678` -> `TEL`
    const property = line.slice(0, colon).split(';')[0]!.split('.').pop()!.toUpperCase();
    const value = line
      .slice(colon + 1)
      .replace(/\\([,;\\])/g, '$1')
      .trim();
    if (value === '') continue;
    if (property === 'FN' && card.name === undefined) card.name = value;
    else if (property === 'TEL') card.phones.push(value.replace(/^tel:/i, ''));
    else if (property === 'EMAIL') card.emails.push(value);
  }
  return card;
}

/** Contact cards as text: each card's name, then its numbers and addresses. */
export function cardsText(cards: readonly ReceivedCard[]): string {
  return cards
    .map((c) => {
      const v = readVCard(c.vcard);
      const name = c.displayName || v.name || 'a contact';
      const details = [...v.phones, ...v.emails];
      return `👤 ${name}${details.length > 0 ? `: ${details.join(', ')}` : ''}`;
    })
    .join('\n');
}

/** A location as text: its name and address, then its geo URI. */
export function locationText(place: LocationBody): string {
  const label = [place.name, place.address].filter(Boolean).join(', ');
  const comment = place.comment ? ` (${place.comment})` : '';
  return `📍 ${label ? `${label}: ` : ''}${geoUri(place)}${comment}`;
}

/**
 * The event as the adapter with `caps` can show it. Content the network lacks becomes text that
 * says what happened; a reference to an earlier message is kept as a reply where replies exist.
 */
export function fitToCapabilities(event: ConversationEvent, caps: AdapterCapabilities): ConversationEvent {
  const refersTo = (target: string, targetLocalId: string | undefined) =>
    caps.replies ? { id: target, localId: targetLocalId } : undefined;
  switch (event.type) {
    case 'message': {
      let e = event;
      if (e.body.kind === 'location' && !caps.locations) {
        e = { ...e, body: { kind: 'text', text: locationText(e.body) } };
      }
      if (e.body.kind === 'media') {
        const b = e.body;
        if (!caps.media) {
          e = { ...e, body: { kind: 'text', text: mediaNotice(b.media, b, 'which this chat cannot show') } };
        } else if (b.size > caps.maxMediaBytes) {
          const why = `larger than this chat takes (${humanSize(caps.maxMediaBytes)})`;
          e = { ...e, body: { kind: 'text', text: mediaNotice(b.media, b, why) } };
        }
      }
      if (!caps.replies && e.replyTo) {
        const { replyTo: _dropped, ...rest } = e;
        return rest;
      }
      return e;
    }
    case 'edit':
      if (caps.edits) return event;
      return text(`✎ ${event.body.text}`, refersTo(event.target, event.targetLocalId));
    case 'delete':
      if (caps.deletes) return event;
      return text('(deleted a message)', refersTo(event.target, event.targetLocalId));
    case 'reaction':
      if (caps.reactions) return event;
      return text(
        event.emoji === '' ? '(took back a reaction)' : `(reacted ${event.emoji})`,
        refersTo(event.target, event.targetLocalId),
      );
    default:
      return event;
  }
}

/** Whether an incoming media file of `size` bytes is one the adapter would refuse (no download then). */
export function mediaUnshowable(caps: AdapterCapabilities, size: number | undefined): string | undefined {
  if (!caps.media) return 'which this chat cannot show';
  if (size !== undefined && size > caps.maxMediaBytes) {
    return `larger than this chat takes (${humanSize(caps.maxMediaBytes)})`;
  }
  return undefined;
}

/** Whether the adapter shows this delivery state (failures always; ticks only with read receipts). */
export function showsDelivery(caps: AdapterCapabilities, state: DeliveryState): boolean {
  return caps.readReceipts || state === 'failed' || state === 'queued' || state === 'sent';
}

/** Whether the adapter shows this typing or presence event. */
export function showsEphemeral(caps: AdapterCapabilities, event: EphemeralEvent['event']): boolean {
  return event.type === 'typing' ? caps.typing : caps.presence;
}
