/** What a native user is made with, and what it receives: messages and receipts, as tests read them. */
import type { Logger } from '../src/observability/logger.js';
import type { DescribedContent } from '../src/protocol/content.js';
import type { Message } from '../src/protocol/gen/interop/v1/message_pb.js';
import type { Emulator } from './gateway.js';

/** An enlisted third-party account that a test connects another device of (a companion). */
export interface CompanionAccount {
  /** The account's JID (`<account id>@<provider>.interop`). */
  readonly jid: string;
  readonly providerId: string;
  /** The provider's token for this account, bound to the device's Noise static key. */
  readonly mintToken: (noiseStaticKey: Uint8Array) => Promise<string>;
}

export interface NativeUserOptions {
  emulator: Emulator;
  /** E.164, with or without "+" (ignored with `account`). */
  phone: string;
  /**
   * Connect as another device of this enlisted third-party account instead of as a native user:
   * the user's other device on the gatekeeper's side, whose messages reach the account's other
   * devices (the bridge's puppet) as `DeviceSentMessage` copies (`sendFromThisDevice`).
   */
  account?: CompanionAccount;
  /** Where the gateway's certificate chain must lead; the emulator's root key. */
  rootPublicKey: Uint8Array;
  device?: number;
  /** Send a delivery receipt for every message received (as real clients do). Default true. */
  autoDeliveryReceipts?: boolean;
  /** One-time prekeys to publish. Default 20. */
  preKeys?: number;
  maxMediaBytes?: number;
  logger?: Logger;
}

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
  /** The sender's push name when the gateway stored the message (its `notify`), if it has one. */
  readonly notify?: string | undefined;
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
