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
  /** A group message: the group's JID (`from` is then the sending participant). */
  readonly group?: string | undefined;
  /** A group message: the sending device's JID. */
  readonly participant?: string | undefined;
}

export interface ReceivedReceipt {
  readonly from: string;
  readonly id: string;
  readonly type: 'delivery' | 'read' | 'retry';
  /** A receipt about a group message: the group (`from` is the participant who sent the receipt). */
  readonly group?: string | undefined;
  /** A receipt about a group message: the device that sent it. */
  readonly participant?: string | undefined;
}

export type NativeMediaKind = 'image' | 'video' | 'audio' | 'voice' | 'document';
