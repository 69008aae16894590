/**
 * The seam to media: the core calls a MediaHandler for images, video, audio, voice notes and files,
 * and knows nothing of media encryption, hosting or fetching (src/media does). Without a handler,
 * outgoing media fails with a reason the adapter shows, and incoming media reaches the adapter as a
 * short text saying what was not shown.
 */
import type { Message } from '../protocol/gen/interop/v1/message_pb.js';
import type { DescribedContent } from '../protocol/content.js';
import type { MediaType } from '../protocol/stanza/index.js';
import type { MediaBody } from './events.js';

export type IncomingMedia = Extract<
  DescribedContent,
  { kind: 'image' | 'video' | 'audio' | 'voice' | 'document' }
>;

export interface MediaHandler {
  /**
   * Encrypts and hosts an outgoing file; returns the content to send (an image, video, audio or
   * document message, without reply context: the core adds it) and the `<enc mediatype>`. Called
   * again for a resend after a restart, so it should be idempotent per `outboxId`. Throw an
   * UndeliverableError for a file that can never be sent (too large, unreadable).
   */
  prepareOutgoing(input: {
    localUser: string;
    remote: string;
    outboxId: string;
    body: MediaBody;
  }): Promise<{ content: Message; mediaType: MediaType }>;

  /**
   * Downloads, verifies and decrypts incoming media to a local file; returns its body for the
   * adapter. Called again after a restart for a message not yet delivered.
   */
  fetchIncoming(input: {
    localUser: string;
    remote: string;
    remoteId: string;
    content: IncomingMedia;
  }): Promise<MediaBody>;
}
