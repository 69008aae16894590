/**
 * A native user's media: a file encrypted with a fresh media key and uploaded to the gateway's media
 * service, and a received media message downloaded (through the gateway's proxy for media a
 * third-party provider hosts), verified and decrypted.
 */
import { Readable, Writable } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { InteropError } from '../src/errors.js';
import { decryptMedia, encryptMedia, type MediaType as MediaCryptoType } from '../src/media/crypto.js';
import {
  AudioMessageSchema,
  DocumentMessageSchema,
  ImageMessageSchema,
  MessageSchema,
  VideoMessageSchema,
  type Message,
} from '../src/protocol/gen/interop/v1/message_pb.js';
import { parseJid, providerOf } from '../src/protocol/stanza/index.js';
import type { NativeMediaKind, ReceivedMessage } from './native-types.js';

export interface NativeMedia {
  kind: NativeMediaKind;
  bytes: Uint8Array;
  mimetype: string;
  caption?: string;
  fileName?: string;
}

/** The gateway's media service for this user: its host and the upload/download credential. */
export interface MediaConn {
  readonly auth: string;
  readonly host: string;
}

/** Encrypts and uploads the file; resolves with the media message to send. */
export async function uploadMedia(media: NativeMedia, conn: MediaConn): Promise<Message> {
  const cryptoType: MediaCryptoType =
    media.kind === 'voice' ? 'audio' : media.kind === 'document' ? 'document' : media.kind;
  const chunks: Buffer[] = [];
  const info = await encryptMedia(
    Readable.from([media.bytes]),
    new Writable({
      write(chunk: Buffer, _e, done) {
        chunks.push(chunk);
        done();
      },
    }),
    cryptoType,
  );
  const blob = Buffer.concat(chunks);
  const hash = Buffer.from(info.fileEncSha256).toString('base64url');
  const res = await fetch(`http://${conn.host}/media/${hash}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${conn.auth}`, 'content-type': 'application/octet-stream' },
    body: blob,
  });
  if (res.status !== 201)
    throw new InteropError('native_upload_failed', `media upload failed: HTTP ${res.status}`);
  const { url, direct_path: directPath } = (await res.json()) as { url: string; direct_path: string };
  const common = {
    url,
    directPath,
    mimetype: media.mimetype,
    fileSha256: info.fileSha256,
    fileEncSha256: info.fileEncSha256,
    fileLength: BigInt(info.fileLength),
    mediaKey: info.mediaKey,
  };
  const content =
    media.kind === 'image'
      ? create(MessageSchema, {
          imageMessage: create(ImageMessageSchema, { ...common, caption: media.caption }),
        })
      : media.kind === 'video'
        ? create(MessageSchema, {
            videoMessage: create(VideoMessageSchema, { ...common, caption: media.caption }),
          })
        : media.kind === 'document'
          ? create(MessageSchema, {
              documentMessage: create(DocumentMessageSchema, {
                ...common,
                fileName: media.fileName,
                caption: media.caption,
              }),
            })
          : create(MessageSchema, {
              audioMessage: create(AudioMessageSchema, { ...common, ptt: media.kind === 'voice' }),
            });
  return content;
}

/** Downloads, verifies and decrypts a received media message; resolves with the plaintext. */
export async function downloadMedia(
  message: ReceivedMessage,
  conn: MediaConn,
  maxBytes: number,
): Promise<Buffer> {
  const c = message.content;
  if (!('media' in c)) throw new InteropError('native_not_media', 'this message carries no media');
  const m = c.media;
  const type: MediaCryptoType =
    c.kind === 'voice' ? 'audio' : c.kind === 'document' ? 'document' : (c.kind as MediaCryptoType);
  if (!m.url || !m.mediaKey || !m.fileEncSha256 || !m.fileSha256) {
    throw new InteropError('native_media_incomplete', 'the media message lacks its url, key or hashes');
  }
  // Media on the gateway's own service is downloaded there; media a third-party provider hosts is
  // fetched through the gateway's proxy (PROTOCOL.md section 7), which checks the provider's
  // allowed hosts and fileEncSha256: a gatekeeper client never fetches a provider's URL itself.
  const sender = providerOf(parseJid(message.from).server);
  const onGateway = new URL(m.url).host.toLowerCase() === conn.host.toLowerCase();
  const source =
    onGateway || sender === undefined
      ? m.url
      : `http://${conn.host}/proxy?${new URLSearchParams({
          provider: sender,
          url: m.url,
          file_enc_sha256: Buffer.from(m.fileEncSha256).toString('base64url'),
        }).toString()}`;
  const res = await fetch(source, { headers: { authorization: `Bearer ${conn.auth}` } });
  if (res.status !== 200 || !res.body)
    throw new InteropError('native_download_failed', `download failed: HTTP ${res.status}`);
  const verified = await decryptMedia(
    Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
    {
      type,
      mediaKey: m.mediaKey,
      fileEncSha256: m.fileEncSha256,
      fileSha256: m.fileSha256,
      ...(m.fileLength !== undefined ? { fileLength: m.fileLength } : {}),
    },
    { maxBytes },
  );
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of verified.open()) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  } finally {
    await verified.dispose();
  }
}
