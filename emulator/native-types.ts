/** What a native user receives: messages and receipts, as tests read them. */
import type { DescribedContent } from '../src/protocol/content.js';
import type { Message } from '../src/protocol/gen/interop/v1/message_pb.js';

export interface ReceivedMessage {
  /** The sender's user JID (no device). */
  readonly from: string;
  readonly fromDevice: number;
  readonly id: string;
  readonly t: number;
  readonly content: DescribedContent;
  readonly raw: Message;
}

export interface ReceivedReceipt {
  readonly from: string;
  readonly id: string;
  readonly type: 'delivery' | 'read' | 'retry';
}

export type NativeMediaKind = 'image' | 'video' | 'audio' | 'voice' | 'document';
