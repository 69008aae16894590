/**
 * The seam to media: the core calls a MediaHandler for images, video, audio, voice notes and files,
 * and knows nothing of media encryption, hosting or fetching (src/media does). Without a handler,
 * outgoing media fails with a reason the adapter shows, and incoming media reaches the adapter as a
 * short text saying what was not shown.
 */
import { InteropError } from '../errors.js';
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
   * adapter. Called again after a restart for a message not yet delivered. Throw a
   * MediaUnavailableError for media that can never be shown (too large, failed verification, gone):
   * the user then gets a notice in its place. Any other error leaves the message pending, to be
   * tried again.
   */
  fetchIncoming(input: {
    localUser: string;
    remote: string;
    remoteId: string;
    content: IncomingMedia;
  }): Promise<MediaBody>;

  /**
   * The core is done with a body `fetchIncoming` returned: the adapter took the message (it has
   * re-uploaded or copied the file), or refused it (the next attempt fetches it again). The file
   * can go: received plaintext does not wait on disk.
   */
  release?(body: MediaBody): Promise<void>;
}

/**
 * Incoming media that will never be shown (over the size limit, altered in transit, no longer on
 * the gateway). The core delivers a notice in its place, with `reason` in words for the user,
 * rather than holding the conversation up or dropping the message.
 */
export class MediaUnavailableError extends InteropError {
  constructor(
    code: string,
    /** Why, for the user: completes "(sent an image that could not be shown: <reason>)". */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(code, reason, options);
  }
}
