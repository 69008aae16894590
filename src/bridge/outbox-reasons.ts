/** What the user is told when an outgoing message fails while it waits in the outbox. */

/** Why a message fails when what it waited under cannot be opened any more. */
export const LOST_KEY_REASON =
  'the bridge lost the key this message was kept under while it waited (its at-rest key file was replaced): it was not sent; send it again';

/** Why a message fails when it waited longer than the queue age limit. */
export const tooOldReason = (maxAgeMs: number): string =>
  `it could not be sent within ${describeAge(maxAgeMs)} (the interop gateway could not be reached for this account): it was not sent; send it again`;

function describeAge(ms: number): string {
  const hours = ms / 3600_000;
  if (hours >= 48 && Number.isInteger(hours / 24)) return `${hours / 24} days`;
  if (hours >= 1 && Number.isInteger(hours)) return `${hours} hour${hours === 1 ? '' : 's'}`;
  const seconds = Math.max(1, Math.round(ms / 1000));
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}
