/**
 * What the core calls: incoming events shown in the portal as the contact's ghost (`deliver`), the
 * state of the local user's messages (`updateDelivery`), the contact's typing (`showEphemeral`) and
 * notices (`notify`). A delivery is sent with a transaction id derived from the core's remote id: a
 * delivery the core may have asked for before (`mayBeRepeat`) finds the event it made, and sends
 * nothing again (`sendEventOnce`). The core maps the remote id to the event id it is given back.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type {
  ConversationEvent,
  DeliveryUpdate,
  EphemeralEvent,
  IncomingEvent,
  Mention,
  Notice,
} from '../../src/bridge/events.js';
import { formatSafetyNumber, phoneOfRemote } from '../../src/bridge/phone.js';
import type { Logger } from '../../src/observability/logger.js';
import { describeFailure, TXN_MARKER, type RetryingMatrixClient } from './client.js';
import { locationContent, mediaContent, textContent, type Content, type MatrixMention } from './content.js';
import { encryptAttachment } from './crypto/attachments.js';
import type { DoublePuppets } from './double-puppet.js';
import type { EncryptedRooms } from './encrypted-rooms.js';
import type { Ghosts } from './ghosts.js';
import type { GroupPortals } from './group-portals.js';
import { isGroupRemote, type MatrixIds } from './ids.js';
import type { InFlight } from './in-flight.js';
import type { ManagementRooms } from './management-room.js';
import type { MediaSpool } from './media-spool.js';
import type { Portals } from './portals.js';
import type { MatrixStore } from './store.js';

const TYPING_TIMEOUT_MS = 30_000;

export interface SendingContext {
  readonly ids: Pick<MatrixIds, 'ghostIdOf' | 'phoneOf' | 'displaynameOf' | 'botUserId'>;
  readonly store: Pick<MatrixStore, 'room' | 'forgetRoom' | 'portalOf'>;
  readonly ghosts: Pick<Ghosts, 'client'>;
  readonly portals: Pick<Portals, 'ensure' | 'close'>;
  readonly groups: Pick<GroupPortals, 'roomFor' | 'admit'>;
  readonly rooms: Pick<ManagementRooms, 'ensure' | 'notice'>;
  readonly bot: RetryingMatrixClient;
  readonly doublePuppets: Pick<DoublePuppets, 'client'>;
  readonly spool: Pick<MediaSpool, 'release'>;
  readonly inFlight: Pick<InFlight, 'background'>;
  readonly log: Logger;
  /** With encryption allowed: events in encrypted rooms are encrypted by their sender's device. */
  readonly encryption?: Pick<EncryptedRooms, 'seal' | 'isEncrypted'> | undefined;
}

export class Sending {
  /** Each user's last connection state in this run (bridge state notices). */
  readonly #connection = new Map<string, string>();

  constructor(private readonly c: SendingContext) {}

  /** Shows an incoming event in the portal as the ghost; resolves with the Matrix event id. */
  async deliver(event: IncomingEvent): Promise<string | undefined> {
    const { store } = this.c;
    const { localUser, remote, remoteId } = event;
    const e = event.event;
    if (e.type === 'receipt' || e.type === 'typing' || e.type === 'presence') return undefined;
    if (isGroupRemote(remote)) return this.#deliverToGroup(event);
    let ghostId: string;
    try {
      ghostId = this.c.ids.ghostIdOf(remote);
    } catch (err) {
      this.c.log.warn({ contact: remote, err: (err as Error).message }, 'incoming event not shown');
      return undefined;
    }
    let roomId = await this.c.portals.ensure(localUser, remote);
    const seed = `${localUser}\n${remote}\n${remoteId}`;
    if (event.fromSelf === true) {
      return this.#deliverOwn(event, roomId, seed);
    }
    let sent: string | undefined;
    try {
      sent = await this.#send(
        this.c.ghosts.client(ghostId),
        ghostId,
        localUser,
        roomId,
        e,
        event.timestamp,
        seed,
        event.mayBeRepeat === true,
      );
    } catch (err) {
      // The ghost is no longer in the portal (it left or was kicked or banned unseen): forget the
      // room and send in a new portal, once, instead of failing every delivery for good.
      const f = describeFailure(err);
      if (f.status !== 403 || f.errcode !== 'M_FORBIDDEN' || (await store.room(roomId))?.kind !== 'portal') {
        throw err;
      }
      this.c.log.warn({ room: roomId, contact: remote }, 'the ghost cannot send in its portal: new portal');
      await store.forgetRoom(roomId);
      await this.c.bot.leaveRoom(roomId).catch(() => undefined);
      roomId = await this.c.portals.ensure(localUser, remote);
      sent = await this.#send(
        this.c.ghosts.client(ghostId),
        ghostId,
        localUser,
        roomId,
        e,
        event.timestamp,
        `${seed}\nnew-portal`,
      );
    }
    return sent;
  }

  /**
   * A group's message, in the group's room (made when missing): by its author's ghost, or by the
   * bot naming the author when no ghost stands for them (another network's account, or someone no
   * longer in the group).
   */
  async #deliverToGroup(event: IncomingEvent): Promise<string | undefined> {
    const { localUser, remote, remoteId, author } = event;
    const roomId = await this.c.groups.roomFor(localUser, remote);
    if (roomId === undefined) {
      this.c.log.info({ group: remote }, 'a message of a group the user is not in: not shown');
      return undefined;
    }
    const seed = `${localUser}\n${remote}\n${remoteId}`;
    const repeat = event.mayBeRepeat === true;
    const byBot = () =>
      this.#send(
        this.c.bot,
        this.c.ids.botUserId,
        localUser,
        roomId,
        named(event.event, author === undefined ? 'Someone' : (phoneOfRemote(author) ?? author)),
        event.timestamp,
        seed,
        repeat,
      );
    let sent: string | undefined;
    if (event.fromSelf === true) {
      sent = await this.#deliverOwn(event, roomId, seed);
    } else if (author === undefined || phoneOfRemote(author) === undefined) {
      sent = await byBot();
    } else {
      const ghostId = this.c.ids.ghostIdOf(author);
      const byGhost = () =>
        this.#send(
          this.c.ghosts.client(ghostId),
          ghostId,
          localUser,
          roomId,
          event.event,
          event.timestamp,
          seed,
          repeat,
        );
      try {
        sent = await byGhost();
      } catch (err) {
        // The author's ghost may not send in the room: not in it (a member whose join failed, or
        // who left since), or not allowed (an announcement group, changed since it was written).
        if (!forbidden(err)) throw err;
        sent = undefined;
        if (await this.c.groups.admit(roomId, localUser, remote, author)) {
          sent = await byGhost().catch((again: unknown) => {
            if (forbidden(again)) return undefined;
            throw again;
          });
        }
        sent ??= await byBot();
      }
    }
    return sent;
  }

  /** A mention as a pill: the contact's ghost, or the local user themselves. */
  #mentioned(m: Mention, localUser: string): MatrixMention | undefined {
    if (m.self === true) return { userId: localUser, name: localUser };
    try {
      return {
        userId: this.c.ids.ghostIdOf(m.remote),
        name: this.c.ids.displaynameOf(this.c.ids.phoneOf(m.remote)),
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Sends one incoming event as `sender` (the ghost, the bot, or the user: `senderId` undefined, never
   * in an encrypted room); the txnId is a function of the remote id.
   */
  async #send(
    sender: RetryingMatrixClient,
    senderId: string | undefined,
    localUser: string,
    roomId: string,
    e: ConversationEvent,
    ts: number,
    idSeed: string,
    mayBeRepeat = false,
  ): Promise<string | undefined> {
    const ghost = sender;
    const txnId = `in.${createHash('sha256').update(idSeed).digest('base64url').slice(0, 32)}`;
    const send = async (type: string, content: Content): Promise<string> => {
      const { encryption } = this.c;
      const sealed =
        encryption !== undefined && senderId !== undefined
          ? await encryption.seal(senderId, roomId, type, content)
          : { type, content };
      // Encrypted, the event's marker (sendEventOnce) is on the encrypted content, where a resend looks.
      return ghost.sendEventOnce(roomId, sealed.type, txnId, sealed.content, { ts }, mayBeRepeat);
    };
    switch (e.type) {
      case 'message': {
        let content: Content;
        if (e.body.kind === 'text') {
          content = textContent(e.body, 'm.text', (m) => this.#mentioned(m, localUser));
        } else if (e.body.kind === 'location') {
          content = locationContent(e.body);
        } else {
          const bytes = await readFile(e.body.path);
          const encrypted =
            senderId !== undefined && (await this.c.encryption?.isEncrypted(roomId, senderId)) === true;
          if (encrypted) {
            // Encrypted room, encrypted file: the homeserver keeps only ciphertext.
            const { ciphertext, file } = encryptAttachment(bytes);
            const mxc = await ghost.uploadContent(ciphertext, 'application/octet-stream');
            const { url: _url, ...clear } = mediaContent(e.body, mxc);
            content = { ...clear, file: file(mxc) };
          } else {
            const mxc = await ghost.uploadContent(bytes, e.body.mimetype, e.body.fileName ?? undefined);
            content = mediaContent(e.body, mxc);
          }
        }
        if (e.replyTo?.localId !== undefined) {
          content['m.relates_to'] = { 'm.in_reply_to': { event_id: e.replyTo.localId } };
        }
        return send('m.room.message', content);
      }
      case 'edit': {
        const text = textContent(e.body);
        if (e.targetLocalId === undefined) return send('m.room.message', text);
        return send('m.room.message', {
          ...text,
          body: `* ${String(text['body'])}`,
          ...(typeof text['formatted_body'] === 'string'
            ? { formatted_body: `* ${text['formatted_body']}` }
            : {}),
          'm.new_content': text,
          'm.relates_to': { rel_type: 'm.replace', event_id: e.targetLocalId },
        });
      }
      case 'delete': {
        if (e.targetLocalId === undefined) return undefined;
        const res = (await ghost.doRequest(
          'PUT',
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(e.targetLocalId)}/${txnId}`,
          null,
          // Marked like every event the bridge sends: a redaction it makes as the user (double
          // puppeting) is then not taken for a new one of theirs when Synapse hands it back.
          { [TXN_MARKER]: txnId },
        )) as { event_id: string };
        return res.event_id;
      }
      case 'reaction': {
        if (e.targetLocalId === undefined || e.emoji === '') return undefined;
        return send('m.reaction', {
          'm.relates_to': { rel_type: 'm.annotation', event_id: e.targetLocalId, key: e.emoji },
        });
      }
      default:
        return undefined;
    }
  }

  /**
   * The local user's own message, sent from another of their devices: as them, through double
   * puppeting when they turned it on (their read receipt then moves to it: they have seen it), or
   * by the bot, saying whose it is.
   */
  async #deliverOwn(event: IncomingEvent, roomId: string, seed: string): Promise<string | undefined> {
    const repeat = event.mayBeRepeat === true;
    // The user's own account has no device of the bridge's: in an encrypted room the bot shows it.
    const encrypted = await this.c.encryption?.isEncrypted(roomId, this.c.ids.botUserId);
    const user = encrypted === true ? undefined : await this.c.doublePuppets.client(event.localUser);
    if (user !== undefined) {
      const sent = await this.#send(
        user,
        undefined,
        event.localUser,
        roomId,
        event.event,
        event.timestamp,
        seed,
        repeat,
      );
      if (sent !== undefined) {
        await user
          .sendReadReceipt(roomId, sent)
          .catch((err: unknown) =>
            this.c.log.debug({ err: (err as Error).message }, 'own read receipt not set'),
          );
      }
      return sent;
    }
    const e = event.event;
    const shown: ConversationEvent =
      e.type === 'message' && e.body.kind === 'text'
        ? { ...e, body: { ...e.body, text: `You, from another device: ${e.body.text}` } }
        : e;
    return this.#send(
      this.c.bot,
      this.c.ids.botUserId,
      event.localUser,
      roomId,
      shown,
      event.timestamp,
      seed,
      repeat,
    );
  }

  /** The contact's typing, shown by the ghost in the portal (if there is one). */
  showEphemeral(event: EphemeralEvent): void {
    let ghostId: string;
    try {
      ghostId = this.c.ids.ghostIdOf(event.remote);
    } catch {
      return;
    }
    if (event.event.type === 'presence') {
      // The contact's presence is the ghost's: Matrix clients show it in the portal and member list.
      const presence = event.event.available ? 'online' : 'offline';
      this.c.inFlight.background('presence', () =>
        this.c.ghosts
          .client(ghostId)
          .doRequest('PUT', `/_matrix/client/v3/presence/${encodeURIComponent(ghostId)}/status`, null, {
            presence,
          }),
      );
      return;
    }
    const typing = event.event.typing;
    this.c.inFlight.background('typing', async () => {
      const portal = await this.c.store.portalOf(event.localUser, event.remote);
      if (portal) await this.c.ghosts.client(ghostId).setTyping(portal.roomId, typing, TYPING_TIMEOUT_MS);
    });
  }

  /**
   * A failure as a notice replying to the message, a read receipt as the ghost's (in a group, the
   * reading member's); the file leaves the spool once sent. Matrix has no delivery receipts:
   * `delivered` shows nothing, in a group as in a direct portal.
   */
  updateDelivery(update: DeliveryUpdate): void {
    if (update.state !== 'queued') {
      this.c.spool.release(update.localId);
    }
    if (update.state === 'failed') {
      const reason = update.reason ?? 'the reason is unknown';
      this.c.inFlight.background('failure notice', async () => {
        const portal = await this.c.store.portalOf(update.localUser, update.remote);
        if (!portal) return;
        const to = isGroupRemote(update.remote) ? 'the group' : this.c.ids.phoneOf(update.remote);
        await this.c.rooms.notice(portal.roomId, `Not delivered to ${to}: ${reason}`, update.localId);
      });
    } else if (update.state === 'read') {
      // The reader: the contact, or in a group the member whose receipt it is (`by`: each member's
      // is their ghost's, as mautrix-whatsapp shows them). A group's receipt without a member, or
      // from a member without a ghost (another network's account), shows nothing.
      const group = isGroupRemote(update.remote);
      const reader = group ? update.by : update.remote;
      if (reader === undefined || (group && phoneOfRemote(reader) === undefined)) return;
      let ghostId: string;
      try {
        ghostId = this.c.ids.ghostIdOf(reader);
      } catch {
        return;
      }
      this.c.inFlight.background('read receipt', async () => {
        const portal = await this.c.store.portalOf(update.localUser, update.remote);
        if (portal) await this.c.ghosts.client(ghostId).sendReadReceipt(portal.roomId, update.localId);
      });
    }
  }

  /** A notice for the local user: in the portal it concerns, or in the management room. */
  notify(localUser: string, notice: Notice): void {
    const { rooms, inFlight } = this.c;
    switch (notice.kind) {
      case 'identity_changed': {
        const phone = this.c.ids.phoneOf(notice.remote);
        const text =
          `The security code of ${phone} changed (a new phone or a reinstall, or someone else). ` +
          `Safety number: ${formatSafetyNumber(notice.safetyNumber)}.` +
          (notice.blocked
            ? ` Messages to ${phone} are held until you confirm: compare the number with them, then send "confirm ${phone}" to the bridge bot.`
            : '');
        inFlight.background('identity notice', async () => {
          const portal = await this.c.store.portalOf(localUser, notice.remote);
          await rooms.notice(portal?.roomId ?? (await rooms.ensure(localUser)), text);
        });
        return;
      }
      case 'enlisted':
        inFlight.background('enlisted notice', async () =>
          rooms.notice(
            await rooms.ensure(localUser),
            'You are now connected to WhatsApp through interoperability. Send "start-chat +<number>" to talk to someone.',
          ),
        );
        return;
      case 'opted_out':
        inFlight.background('opt-out', () => this.c.portals.close(localUser));
        return;
      case 'broadcast': {
        const text = `Notice from the bridge's operator: ${notice.text}`;
        inFlight.background('broadcast notice', async () =>
          rooms.notice(await rooms.ensure(localUser), text),
        );
        return;
      }
      case 'connection': {
        // The user's bridge state, said in the management room when it changes for the worse and
        // when it is good again (not at every start: the first `connected` of a run is silent).
        const before = this.#connection.get(localUser);
        this.#connection.set(localUser, notice.state);
        let text: string | undefined;
        if (notice.state === 'refused') {
          text = `The gateway refused your connection${notice.detail ? ` (${notice.detail})` : ''}. Send "status" to check, or ask the bridge's operator.`;
        } else if (notice.state === 'disconnected') {
          text =
            'The connection to WhatsApp was lost: reconnecting. Your messages wait and go once it is back.';
        } else if (notice.state === 'connected' && (before === 'disconnected' || before === 'refused')) {
          text = 'Connected to WhatsApp again.';
        }
        if (text !== undefined) {
          const body = text;
          inFlight.background('connection notice', async () =>
            rooms.notice(await rooms.ensure(localUser), body),
          );
        }
        return;
      }
    }
  }
}

/** A homeserver's refusal to let the sender send there (`403 M_FORBIDDEN`). */
function forbidden(err: unknown): boolean {
  const f = describeFailure(err);
  return f.status === 403 && f.errcode === 'M_FORBIDDEN';
}

/** A message shown by the bot for someone else: a text says whose it is. */
function named(e: ConversationEvent, who: string): ConversationEvent {
  return e.type === 'message' && e.body.kind === 'text'
    ? { ...e, body: { ...e.body, text: `${who}: ${e.body.text}` } }
    : e;
}
