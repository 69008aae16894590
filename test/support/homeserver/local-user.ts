import type { ClientEvent } from './room.js';
import type { StandInHomeserver } from './server.js';

/** A failed call of a simulated user: the homeserver's status and Matrix error. */
export class MatrixCallError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string | undefined,
    readonly body: unknown,
    what: string,
  ) {
    super(`${what} failed with ${status} ${errcode ?? ''}: ${JSON.stringify(body)}`);
  }
}

/** What a user attaches with a media message (m.image, m.video, m.audio, m.file). */
export interface MediaToSend {
  readonly bytes: Buffer;
  readonly mimetype: string;
  readonly filename: string;
  /** Extra `info` fields: w, h, duration, thumbnail_url... (`mimetype` and `size` are filled in). */
  readonly info?: Record<string, unknown>;
  /** Extra content fields, e.g. `org.matrix.msc3245.voice: {}` and `org.matrix.msc1767.audio`. */
  readonly extraContent?: Record<string, unknown>;
  /** A caption: sent as `body` with `filename` set (client-server spec, media captions). */
  readonly caption?: string;
}

/** An m.room.message with text, with HTML when `html` is given (format org.matrix.custom.html). */
export function textMessage(body: string, html?: string, msgtype = 'm.text'): Record<string, unknown> {
  const content: Record<string, unknown> = { msgtype, body };
  if (html !== undefined) Object.assign(content, { format: 'org.matrix.custom.html', formatted_body: html });
  return content;
}

/** An m.room.message for uploaded media, as a client sends it (a caption as `body` with `filename`). */
export function mediaMessage(msgtype: string, media: MediaToSend, url: string): Record<string, unknown> {
  const content: Record<string, unknown> = {
    msgtype,
    body: media.caption ?? media.filename,
    url,
    info: { mimetype: media.mimetype, size: media.bytes.length, ...media.info },
    ...media.extraContent,
  };
  if (media.caption !== undefined) content['filename'] = media.filename;
  return content;
}

/**
 * A local Matrix user as a client like Element acts: every action is a real client-server request,
 * validated by the stand-in like the bridge's, with the user's own access token.
 */
export class LocalUser {
  private txn = 0;

  constructor(
    readonly hs: StandInHomeserver,
    readonly userId: string,
    readonly accessToken: string,
  ) {}

  /** Registers `@<localpart>:<server>` on the stand-in and returns the user. */
  static create(hs: StandInHomeserver, localpart: string, displayname?: string): LocalUser {
    const { userId, accessToken } = hs.registerLocalUser(localpart, displayname);
    return new LocalUser(hs, userId, accessToken);
  }

  /** One client-server call; throws MatrixCallError on a non-2xx answer. */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const res = await fetch(`${this.hs.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.accessToken}`,
        ...(body === undefined ? {} : { 'content-type': contentType }),
      },
      ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    const parsed = text === '' ? {} : (JSON.parse(text) as unknown);
    if (!res.ok) {
      const errcode = (parsed as { errcode?: string }).errcode;
      throw new MatrixCallError(res.status, errcode, parsed, `${this.userId}: ${method} ${path}`);
    }
    return parsed as T;
  }

  private nextTxn(): string {
    return `${this.userId.slice(1, 6)}-${++this.txn}`;
  }

  /** A direct chat, as Element starts one: trusted private chat, is_direct, the other user invited. */
  async createDirectRoom(invitee: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await this.call<{ room_id: string }>('POST', '/_matrix/client/v3/createRoom', {
      preset: 'trusted_private_chat',
      is_direct: true,
      invite: [invitee],
      ...extra,
    });
    return r.room_id;
  }

  async createRoom(body: Record<string, unknown>): Promise<string> {
    return (await this.call<{ room_id: string }>('POST', '/_matrix/client/v3/createRoom', body)).room_id;
  }

  async join(roomId: string): Promise<void> {
    await this.call('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
  }

  async leave(roomId: string): Promise<void> {
    await this.call('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.call('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: userId });
  }

  /** Rooms this user is invited to and has not answered. */
  invites(): string[] {
    return [...this.hs.rooms.values()]
      .filter((r) => r.membership(this.userId) === 'invite')
      .map((r) => r.roomId);
  }

  /** Sends any room event; returns its event ID. */
  async sendEvent(roomId: string, type: string, content: Record<string, unknown>): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(this.nextTxn())}`;
    return (await this.call<{ event_id: string }>('PUT', path, content)).event_id;
  }

  /** A text message, with HTML when `html` is given (format org.matrix.custom.html). */
  sendText(roomId: string, body: string, html?: string, msgtype = 'm.text'): Promise<string> {
    return this.sendEvent(roomId, 'm.room.message', textMessage(body, html, msgtype));
  }

  async setState(
    roomId: string,
    type: string,
    stateKey: string,
    content: Record<string, unknown>,
  ): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`;
    return (await this.call<{ event_id: string }>('PUT', path, content)).event_id;
  }

  /** Turns on Matrix end-to-end encryption for the room (m.room.encryption state). */
  enableEncryption(roomId: string): Promise<string> {
    return this.setState(roomId, 'm.room.encryption', '', { algorithm: 'm.megolm.v1.aes-sha2' });
  }

  async upload(bytes: Buffer, contentType: string, filename?: string): Promise<string> {
    const q = filename === undefined ? '' : `?filename=${enc(filename)}`;
    return (
      await this.call<{ content_uri: string }>('POST', `/_matrix/media/v3/upload${q}`, bytes, contentType)
    ).content_uri;
  }

  /** Uploads the media, then sends the message referring to it, as a client does. */
  async sendMedia(
    roomId: string,
    msgtype: 'm.image' | 'm.video' | 'm.audio' | 'm.file',
    media: MediaToSend,
  ): Promise<string> {
    const url = await this.upload(media.bytes, media.mimetype, media.filename);
    const content = mediaMessage(msgtype, media, url);
    return this.sendEvent(roomId, 'm.room.message', content);
  }

  /** Downloads through the authenticated media endpoint. */
  async download(
    mxc: string,
  ): Promise<{ bytes: Buffer; contentType: string | null; disposition: string | null }> {
    const m = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc);
    if (m === null) throw new Error(`not an mxc URI: ${mxc}`);
    const res = await fetch(`${this.hs.url}/_matrix/client/v1/media/download/${m[1]}/${m[2]}`, {
      headers: { authorization: `Bearer ${this.accessToken}` },
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    if (!res.ok) throw new MatrixCallError(res.status, undefined, bytes.toString(), `download ${mxc}`);
    return {
      bytes,
      contentType: res.headers.get('content-type'),
      disposition: res.headers.get('content-disposition'),
    };
  }

  async sendReceipt(
    roomId: string,
    eventId: string,
    type: 'm.read' | 'm.read.private' = 'm.read',
  ): Promise<void> {
    await this.call('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/${type}/${enc(eventId)}`, {});
  }

  async setTyping(roomId: string, typing: boolean, timeoutMs = 30_000): Promise<void> {
    await this.call(
      'PUT',
      `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(this.userId)}`,
      typing ? { typing, timeout: timeoutMs } : { typing },
    );
  }

  async redact(roomId: string, eventId: string, reason?: string): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(eventId)}/${enc(this.nextTxn())}`;
    return (await this.call<{ event_id: string }>('PUT', path, reason === undefined ? {} : { reason }))
      .event_id;
  }

  /** The room's timeline as this user reads it: GET /messages backwards, returned oldest first. */
  async messages(roomId: string, limit = 100): Promise<ClientEvent[]> {
    const r = await this.call<{ chunk: ClientEvent[] }>(
      'GET',
      `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=${limit}`,
    );
    return r.chunk.reverse();
  }

  /** Just the messages (m.room.message) of the room, oldest first: what the user sees in the timeline. */
  async readMessages(roomId: string): Promise<ClientEvent[]> {
    return (await this.messages(roomId)).filter((e) => e.type === 'm.room.message');
  }

  /** Resolves with the first event in the room (already there or to come) that satisfies the predicate. */
  waitFor(roomId: string, predicate: (e: ClientEvent) => boolean): Promise<ClientEvent> {
    return this.hs.waitForEvent((e) => e.room_id === roomId && predicate(e));
  }

  /** Resolves with the first room this user is invited to that satisfies the predicate (now or later). */
  async waitForInvite(predicate: (e: ClientEvent) => boolean = () => true): Promise<string> {
    const e = await this.hs.waitForEvent(
      (ev) =>
        ev.type === 'm.room.member' &&
        ev.state_key === this.userId &&
        ev.content['membership'] === 'invite' &&
        predicate(ev),
    );
    return e.room_id;
  }
}

const enc = encodeURIComponent;
