import type { MessageStanza, PreKey, ReceiptStanza, SignedPreKey } from './stanza/index.js';

/** At most this many retry receipts per undecryptable message (docs/PROTOCOL.md 5.3.5). */
export const MAX_RETRIES = 5;

/** What a retry receipt can carry of the receiver's keys (a prekey_upload's content fits). */
export interface RetryKeySource {
  registrationId: number;
  identityKey: Uint8Array;
  signedPreKey: SignedPreKey;
  preKeys: readonly PreKey[];
}

/**
 * The retry receipt for message `m`, the `count`th: the registration id always, and from the
 * second retry on a fresh bundle (identity, signed prekey, one one-time prekey) so the sender can
 * start a new session. `keys` is called only when needed, with how many one-time prekeys to include.
 */
export function retryReceipt(
  m: MessageStanza,
  count: number,
  keys: (preKeys: number) => RetryKeySource,
  t: number,
): ReceiptStanza {
  const k = keys(count >= 2 ? 1 : 0);
  return {
    kind: 'receipt',
    id: m.id,
    to: m.from,
    type: 'retry',
    t,
    retry: {
      count,
      id: m.id,
      t: m.t,
      registrationId: k.registrationId,
      ...(count >= 2
        ? {
            keys: {
              identityKey: k.identityKey,
              signedPreKey: k.signedPreKey,
              ...(k.preKeys[0] ? { preKey: k.preKeys[0] } : {}),
            },
          }
        : {}),
    },
  };
}
