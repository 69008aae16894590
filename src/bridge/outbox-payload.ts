/** What the outbox stores for each entry, apart from the messages' own events. */
/** The outbox `kind` of a receipt we send; the others are the event types (message, edit, ...). */
export const RECEIPT_KIND = 'receipt';

/** The payload of a receipt entry. */
export interface ReceiptPayload {
  readonly receipt: 'delivery' | 'read';
  /** The receipted message's wire id. */
  readonly messageId: string;
  /** Its sender: the device JID for a delivery receipt, the user JID for a read receipt. */
  readonly to: string;
  /** A group message's: `to` is the group, this its sender (device JID, or user JID when read). */
  readonly participant?: string | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const encodePayload = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
export const decodePayload = <T>(bytes: Uint8Array): T => JSON.parse(decoder.decode(bytes)) as T;
