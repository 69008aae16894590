/**
 * What the core does with an adapter's capabilities (adapter.ts, `AdapterCapabilities`): an event
 * the local network cannot show becomes a readable text, never nothing; a status signal it cannot
 * show is not sent at all. Pure functions, so each fallback is tested on its own.
 */
import type { AdapterCapabilities } from './adapter.js';
import type { ConversationEvent, DeliveryState, EphemeralEvent, MediaKind } from './events.js';

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
