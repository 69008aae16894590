/**
 * What a local user's inbound events do: messages, edits, replies, files, reactions and redactions
 * in a portal become canonical events for the core; read receipts mark the contact's messages read;
 * typing is passed on live. Matrix presence is not followed: a user's first activity counts.
 */
import type { BridgeCore } from '../../src/bridge/adapter.js';
import type { Mention, OutgoingEvent } from '../../src/bridge/events.js';
import { remoteOfPhone } from '../../src/bridge/phone.js';
import { InteropError } from '../../src/errors.js';
import type { Logger } from '../../src/observability/logger.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';
import { TXN_MARKER } from './client.js';
import { inReplyTo, markupOf, mediaBodyOf, mediaKindOf, placeOf, replaces, type Content } from './content.js';
import type { MatrixIds } from './ids.js';
import type { InFlight } from './in-flight.js';
import type { ManagementRooms } from './management-room.js';
import { encryptedFileOf } from './crypto/attachments.js';
import type { MediaSpool } from './media-spool.js';
import type { MatrixRoom, MatrixStore } from './store.js';

/** An inbound room event from a user (not the bridge's own) in a room the bridge manages. */
export interface RoomEvent {
  readonly room: MatrixRoom;
  readonly type: string;
  readonly sender: string;
  readonly eventId: string;
  readonly content: Content;
  /** The whole event (a redaction names its target outside `content` before room version 11). */
  readonly raw: Content;
}

export interface HandlersContext {
  readonly core: Pick<BridgeCore, 'submit' | 'setOnline'>;
  readonly store: Pick<MatrixStore, 'room' | 'putReaction' | 'reaction'>;
  readonly rooms: Pick<ManagementRooms, 'notice'>;
  readonly ids: Pick<MatrixIds, 'isOurs' | 'permissionOf' | 'ghostDigits'>;
  readonly spool: Pick<MediaSpool, 'download'>;
  readonly inFlight: Pick<InFlight, 'track'>;
  /** Largest file (`media.max_bytes`). */
  readonly maxMediaBytes: number;
  readonly log: Logger;
}

export class InboundHandlers {
  /** Whether the local user was last seen typing, per portal. */
  readonly #typing = new Map<string, boolean>();
  /** Typing, handled in order per room. */
  readonly #typingQueue = new KeyedQueue();
  readonly #active = new Set<string>();

  constructor(private readonly c: HandlersContext) {}

  /**
   * A local user counts as online from their first activity in a bridged room in this run, which
   * starts the puppet under the `presence` lifecycle (many homeservers turn Matrix presence off).
   */
  seenActive(userId: string): void {
    if (this.#active.has(userId)) return;
    this.#active.add(userId);
    this.c.core.setOnline(userId, true);
  }

  /** A message, reaction or redaction in a portal: the core gets it if it came from its local user. */
  async portalEvent(e: RoomEvent): Promise<void> {
    const { room } = e;
    if (room.kind !== 'portal' || e.sender !== room.localUser || room.remoteJid === null) return;
    // Sent by the bridge itself as the user (double puppeting): already on the other side.
    if (e.content[TXN_MARKER] !== undefined) return;
    const outgoing = await this.#outgoing(e);
    if (outgoing === undefined) return;
    try {
      await this.c.core.submit({
        localId: e.eventId,
        localUser: room.localUser,
        remote: room.remoteJid,
        event: outgoing,
      });
    } catch (err) {
      if (err instanceof InteropError && err.code === 'bridge_not_enlisted') {
        await this.c.rooms.notice(
          room.roomId,
          'Not sent: you have not opted in to interoperability. Send "login" to the bridge bot first.',
          e.eventId,
        );
        return;
      }
      throw err;
    }
  }

  /** The canonical event for a local user's event in a portal, if it is one the bridge carries. */
  async #outgoing({
    room,
    eventId,
    type,
    raw,
    content,
  }: RoomEvent): Promise<OutgoingEvent['event'] | undefined> {
    if (type === 'm.room.redaction') {
      const target = typeof raw['redacts'] === 'string' ? raw['redacts'] : content['redacts'];
      if (typeof target !== 'string') return undefined;
      // Redacting one's own reaction takes it back: an empty reaction to the same message.
      const reaction = await this.c.store.reaction(target);
      if (reaction !== undefined) return { type: 'reaction', target: reaction.target, emoji: '' };
      return { type: 'delete', target };
    }
    if (type === 'm.reaction') {
      const rel = content['m.relates_to'] as Content | undefined;
      if (
        rel?.['rel_type'] !== 'm.annotation' ||
        typeof rel['event_id'] !== 'string' ||
        typeof rel['key'] !== 'string'
      ) {
        return undefined;
      }
      await this.c.store.putReaction(room.roomId, eventId, rel['event_id'], rel['key']);
      return { type: 'reaction', target: rel['event_id'], emoji: rel['key'] };
    }
    if (type !== 'm.room.message') return undefined;
    const edited = replaces(content);
    if (edited !== undefined) {
      const next = content['m.new_content'];
      if (typeof next !== 'object' || next === null) return undefined;
      return { type: 'edit', target: edited, body: { kind: 'text', text: markupOf(next as Content) } };
    }
    const replyTo = inReplyTo(content);
    const reply = replyTo === undefined ? {} : { replyTo: { id: replyTo } };
    if (content['msgtype'] === 'm.location') {
      const place = placeOf(content);
      if (place !== undefined) return { type: 'message', body: place, ...reply };
      // Not a place the gatekeeper can show: its text (the body says where) goes instead.
    }
    const kind = mediaKindOf(content);
    if (kind !== undefined) {
      // In an encrypted room the file is encrypted too: `file` carries its URI and key.
      const encrypted = encryptedFileOf(content['file']);
      const url = encrypted?.url ?? content['url'];
      if (typeof url !== 'string') {
        await this.c.rooms.notice(
          room.roomId,
          'Not sent: encrypted or missing files cannot be bridged.',
          eventId,
        );
        return undefined;
      }
      const max = this.c.maxMediaBytes;
      const info = content['info'];
      const announced = typeof info === 'object' && info !== null ? (info as Content)['size'] : undefined;
      const file =
        typeof announced === 'number' && announced > max
          ? 'too_large'
          : await this.c.spool.download(url, eventId, encrypted);
      if (file === 'too_large') {
        await this.c.rooms.notice(
          room.roomId,
          `Not sent: the file is larger than this bridge's limit of ${Math.round(max / 1024)} KB.`,
          eventId,
        );
        return undefined;
      }
      return { type: 'message', body: mediaBodyOf(content, kind, file), ...reply };
    }
    if (typeof content['body'] !== 'string') return undefined;
    const { text, mentions } = this.#mentionsOut(content);
    return {
      type: 'message',
      body: { kind: 'text', text, ...(mentions.length > 0 ? { mentions } : {}) },
      ...reply,
    };
  }

  /**
   * Pills of ghosts in a local user's message become the gatekeeper's mentions: the pill's link in
   * the HTML is replaced by `@<number's digits>` before the HTML is read, and the contact is named
   * in `mentions`. Other pills stay what they were (their name, as text).
   */
  #mentionsOut(content: Content): { text: string; mentions: Mention[] } {
    const html = content['formatted_body'];
    const mentions: Mention[] = [];
    if (
      content['format'] !== 'org.matrix.custom.html' ||
      typeof html !== 'string' ||
      !html.includes('matrix.to')
    ) {
      return { text: markupOf(content), mentions };
    }
    const rewritten = html.replace(
      /<a\s+href="https:\/\/matrix\.to\/#\/([^"?]+)[^"]*"\s*>[\s\S]*?<\/a>/gi,
      (pill, encoded: string) => {
        let userId: string;
        try {
          userId = decodeURIComponent(encoded);
        } catch {
          return pill;
        }
        const digits = this.c.ids.ghostDigits(userId);
        if (digits === undefined) return pill;
        const remote = remoteOfPhone(`+${digits}`);
        if (!mentions.some((m) => m.remote === remote)) mentions.push({ remote, token: `@${digits}` });
        return `@${digits}`;
      },
    );
    return { text: markupOf({ ...content, formatted_body: rewritten }), mentions };
  }

  /** A local user's read receipt in a portal: the contact's messages up to it are read. */
  async receipt(p: Content): Promise<void> {
    const roomId = String(p['room_id']);
    const userId = String(p['user_id']);
    const eventId = String(p['event_id']);
    const room = await this.c.store.room(roomId);
    if (room?.kind !== 'portal' || room.remoteJid === null || userId !== room.localUser) return;
    // The core sends a read receipt for each of the contact's messages up to this event not read
    // before (none when the event is not a bridged message). A user who opted out sends none.
    try {
      await this.c.core.submit({
        localId: `receipt:${eventId}`,
        localUser: room.localUser,
        remote: room.remoteJid,
        event: { type: 'receipt', receipt: 'read', targets: [eventId] },
      });
    } catch (err) {
      if (!(err instanceof InteropError && err.code === 'bridge_not_enlisted')) throw err;
    }
  }

  /**
   * Matrix presence (`m.presence` ephemeral events, pushed by homeservers that have presence on):
   * the user's puppet follows it, online or unavailable counting as there. Where presence is off,
   * nothing comes and a user's first activity counts (`seenActive`).
   */
  presence(events: readonly Record<string, unknown>[]): void {
    for (const e of events) {
      const sender = e['sender'];
      const content = e['content'];
      if (typeof sender !== 'string' || typeof content !== 'object' || content === null) continue;
      const state = (content as Content)['presence'];
      if (state !== 'online' && state !== 'unavailable' && state !== 'offline') continue;
      if (this.c.ids.isOurs(sender) || this.c.ids.permissionOf(sender) === 'none') continue;
      const online = state !== 'offline';
      if (online) this.#active.add(sender);
      else this.#active.delete(sender);
      this.c.core.setOnline(sender, online);
    }
  }

  /** Typing from a transaction (`m.typing` ephemeral events): live only, sent when it changes. */
  typing(events: readonly Record<string, unknown>[]): void {
    for (const e of events) {
      const roomId = e['room_id'];
      const content = e['content'];
      if (typeof roomId !== 'string' || typeof content !== 'object' || content === null) continue;
      const ids = (content as Content)['user_ids'];
      void this.c.inFlight.track(
        this.#typingQueue
          .run(roomId, () => this.#typingIn(roomId, ids))
          .catch((err: unknown) => this.c.log.debug({ err: (err as Error).message }, 'typing not sent')),
      );
    }
  }

  async #typingIn(roomId: string, ids: unknown): Promise<void> {
    const room = await this.c.store.room(roomId);
    if (room?.kind !== 'portal' || room.remoteJid === null) return;
    const typing = Array.isArray(ids) && ids.includes(room.localUser);
    if ((this.#typing.get(roomId) ?? false) === typing) return;
    this.#typing.set(roomId, typing);
    this.c.core
      .submit({
        localId: `typing:${roomId}:${Date.now()}`,
        localUser: room.localUser,
        remote: room.remoteJid,
        event: { type: 'typing', typing },
      })
      .catch((err: unknown) => this.c.log.debug({ err: (err as Error).message }, 'typing not sent'));
  }
}
