/**
 * Matrix message content <-> the core's canonical events. Text goes through format.ts (Matrix
 * HTML <-> the gatekeeper's markup); media carries its `info` both ways, voice notes per MSC3245
 * (`org.matrix.msc3245.voice` with the duration in `org.matrix.msc1767.audio`).
 */
import type { LocationBody, MediaBody, MediaKind, Mention, TextBody } from '../../src/bridge/events.js';
import { geoUri, parseGeoUri } from '../../src/bridge/geo.js';
import { extensionOf } from '../../src/util/mime.js';
import { escapeHtml, markupToMatrix, matrixToMarkup } from './format.js';

export type Content = Record<string, unknown>;

const MSGTYPE: Record<MediaKind, string> = {
  image: 'm.image',
  video: 'm.video',
  audio: 'm.audio',
  voice: 'm.audio',
  file: 'm.file',
};

const DEFAULT_NAME: Record<MediaKind, string> = {
  image: 'image',
  video: 'video',
  audio: 'audio',
  voice: 'voice message',
  file: 'file',
};

/** Whom a mention names in Matrix: a ghost or the local user, and the name a pill shows. */
export interface MatrixMention {
  readonly userId: string;
  readonly name: string;
}

/**
 * A contact's text as a Matrix message (m.text, with HTML when the markup has any). Mentions
 * (`@4915112345678` in the text) become pills: the name in `body`, a matrix.to link in the HTML,
 * and the user in `m.mentions`, so the mentioned user is notified as by any Matrix mention.
 */
export function textContent(
  body: TextBody,
  msgtype = 'm.text',
  mentionOf?: (m: Mention) => MatrixMention | undefined,
): Content {
  const m = markupToMatrix(body.text);
  const content: Content = {
    msgtype,
    body: m.body,
    ...(m.format !== undefined && m.formatted_body !== undefined
      ? { format: m.format, formatted_body: m.formatted_body }
      : {}),
  };
  const pills = mentionOf ? (body.mentions ?? []).map((x) => ({ x, to: mentionOf(x) })) : [];
  const named = pills.filter((p) => p.to !== undefined && m.body.includes(p.x.token));
  if (named.length === 0) return content;
  let plain = m.body;
  let html = m.formatted_body ?? escapeHtml(m.body).replace(/\n/g, '<br>');
  for (const { x, to } of named) {
    const token = x.token;
    plain = plain.split(token).join(to!.name);
    const link = `<a href="https://matrix.to/#/${encodeURIComponent(to!.userId)}">${escapeHtml(to!.name)}</a>`;
    html = html.split(token).join(link);
  }
  return {
    ...content,
    body: plain,
    format: 'org.matrix.custom.html',
    formatted_body: html,
    'm.mentions': { user_ids: [...new Set(named.map((p) => p.to!.userId))] },
  };
}

/** A contact's location as m.location (with the extensible-events form Element draws on a map). */
export function locationContent(place: LocationBody): Content {
  const uri = geoUri(place);
  const label = [place.name, place.address].filter(Boolean).join(', ');
  const description = label || undefined;
  const body = `${label ? `${label}: ` : 'Location: '}${uri}${place.comment ? ` (${place.comment})` : ''}`;
  return {
    msgtype: 'm.location',
    body,
    geo_uri: uri,
    'org.matrix.msc3488.location': { uri, ...(description ? { description } : {}) },
    'org.matrix.msc1767.text': body,
  };
}

/** The place of a local user's m.location message, if its geo URI is one. */
export function placeOf(content: Content): LocationBody | undefined {
  const loc = content['org.matrix.msc3488.location'];
  const uri =
    typeof content['geo_uri'] === 'string'
      ? content['geo_uri']
      : typeof loc === 'object' && loc !== null && typeof (loc as Content)['uri'] === 'string'
        ? ((loc as Content)['uri'] as string)
        : undefined;
  const place = uri === undefined ? undefined : parseGeoUri(uri);
  if (place === undefined) return undefined;
  const description =
    typeof loc === 'object' && loc !== null && typeof (loc as Content)['description'] === 'string'
      ? ((loc as Content)['description'] as string)
      : undefined;
  return { kind: 'location', ...place, ...(description ? { name: description } : {}) };
}

/** The file name a Matrix client shows for a contact's file. */
export function mediaFileName(body: MediaBody): string {
  if (body.fileName !== undefined && body.fileName !== '') return body.fileName;
  const ext = extensionOf(body.mimetype);
  return `${DEFAULT_NAME[body.media]}${ext === undefined ? '' : `.${ext}`}`;
}

/** A contact's file as a Matrix media message referring to `mxc`. */
export function mediaContent(body: MediaBody, mxc: string): Content {
  const fileName = mediaFileName(body);
  const info: Content = { mimetype: body.mimetype, size: body.size };
  if (body.width !== undefined) info['w'] = body.width;
  if (body.height !== undefined) info['h'] = body.height;
  if (body.durationSeconds !== undefined && body.media !== 'image' && body.media !== 'file') {
    info['duration'] = Math.round(body.durationSeconds * 1000);
  }
  const content: Content = { msgtype: MSGTYPE[body.media], body: fileName, url: mxc, info };
  if (body.caption !== undefined && body.caption !== '') {
    // Media captions (client-server spec): the caption is the body, the name goes to `filename`.
    const caption = markupToMatrix(body.caption);
    content['body'] = caption.body;
    content['filename'] = fileName;
    if (caption.format !== undefined && caption.formatted_body !== undefined) {
      content['format'] = caption.format;
      content['formatted_body'] = caption.formatted_body;
    }
  } else if (body.media === 'file') {
    content['filename'] = fileName;
  }
  if (body.media === 'voice') {
    content['org.matrix.msc3245.voice'] = {};
    content['org.matrix.msc1767.audio'] =
      body.durationSeconds === undefined ? {} : { duration: Math.round(body.durationSeconds * 1000) };
  }
  return content;
}

/** The text of a local user's message, reply fallback removed, as the gatekeeper's markup. */
export function markupOf(content: Content): string {
  const replying = inReplyTo(content) !== undefined;
  let body = typeof content['body'] === 'string' ? content['body'] : '';
  let html = content['formatted_body'];
  if (replying) {
    // Reply fallbacks (clients before Matrix 1.13 still send them): quoted lines and <mx-reply>.
    const lines = body.split('\n');
    if (lines[0]?.startsWith('> ')) {
      let i = 0;
      while (i < lines.length && lines[i]!.startsWith('>')) i++;
      if (lines[i] === '') i++;
      body = lines.slice(i).join('\n');
    }
    if (typeof html === 'string') html = html.replace(/<mx-reply>[\s\S]*?<\/mx-reply>/, '');
  }
  const text = matrixToMarkup({
    body,
    ...(content['format'] !== undefined ? { format: content['format'] } : {}),
    ...(html !== undefined ? { formatted_body: html } : {}),
  });
  return content['msgtype'] === 'm.emote' ? `/me ${text}` : text;
}

/** The event a message replies to, if it does. */
export function inReplyTo(content: Content): string | undefined {
  const rel = content['m.relates_to'];
  if (typeof rel !== 'object' || rel === null) return undefined;
  const r = (rel as Content)['m.in_reply_to'];
  if (typeof r !== 'object' || r === null) return undefined;
  const id = (r as Content)['event_id'];
  return typeof id === 'string' ? id : undefined;
}

/** The event an edit replaces (rel_type m.replace), if it is one. */
export function replaces(content: Content): string | undefined {
  const rel = content['m.relates_to'];
  if (typeof rel !== 'object' || rel === null) return undefined;
  const r = rel as Content;
  return r['rel_type'] === 'm.replace' && typeof r['event_id'] === 'string' ? r['event_id'] : undefined;
}

/** What a local user's media message is, for the core (before its file is downloaded). */
export function mediaKindOf(content: Content): MediaKind | undefined {
  switch (content['msgtype']) {
    case 'm.image':
      return 'image';
    case 'm.video':
      return 'video';
    case 'm.audio':
      return 'org.matrix.msc3245.voice' in content ? 'voice' : 'audio';
    case 'm.file':
      return 'file';
    default:
      return undefined;
  }
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** The MediaBody for a downloaded file of a local user's media message. */
export function mediaBodyOf(
  content: Content,
  kind: MediaKind,
  file: { path: string; size: number; contentType: string | undefined; sealed?: boolean },
): MediaBody {
  const info = (
    typeof content['info'] === 'object' && content['info'] !== null ? content['info'] : {}
  ) as Content;
  const body = typeof content['body'] === 'string' ? content['body'] : '';
  const filename = typeof content['filename'] === 'string' ? content['filename'] : undefined;
  const caption = filename !== undefined && body !== '' && body !== filename ? markupOf(content) : undefined;
  const audio = content['org.matrix.msc1767.audio'];
  const durationMs =
    num(info['duration']) ??
    (typeof audio === 'object' && audio !== null ? num((audio as Content)['duration']) : undefined);
  const mimetype =
    (typeof info['mimetype'] === 'string' ? info['mimetype'] : undefined) ??
    file.contentType ??
    'application/octet-stream';
  return {
    kind: 'media',
    media: kind,
    path: file.path,
    ...(file.sealed ? { sealed: true } : {}),
    mimetype,
    size: file.size,
    fileName: filename ?? (body !== '' ? body : undefined),
    ...(caption !== undefined ? { caption } : {}),
    ...(durationMs !== undefined && kind !== 'image' && kind !== 'file'
      ? { durationSeconds: Math.round(durationMs / 1000) }
      : {}),
    ...(num(info['w']) !== undefined ? { width: num(info['w']) } : {}),
    ...(num(info['h']) !== undefined ? { height: num(info['h']) } : {}),
  };
}
