/**
 * Where a puppet's sender keys live: one serialized record (sender-key-record.ts) per group
 * distribution and sender device. Synchronous like `SignalBackend` (store.ts), with the same two
 * asynchronous places a networked database needs: `prepare` before reading, `flush` before
 * anything made from the state leaves. The operations of sender-keys.ts call both themselves.
 */
import { SignalError } from './errors.js';
import { LazyMap } from '../util/lazy-map.js';

/** A sender device, as libsignal's ProtocolAddress: a name (a Signal address's user part) and a device id. */
export interface SenderKeyAddress {
  readonly name: string;
  readonly deviceId: number;
}

export interface SenderKeyBackend {
  /**
   * Makes every record of `distributionId` (a lower-case UUID) readable by the synchronous methods.
   * A networked backend loads them here; the memory and SQLite backends resolve at once.
   */
  prepare(distributionId: string): Promise<void>;
  /** Resolves once every write made so far is durable. */
  flush(): Promise<void>;
  /** The stored record, or undefined. Callers must not mutate it. */
  getSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | undefined;
  putSenderKey(distributionId: string, sender: SenderKeyAddress, record: Uint8Array): void;
  deleteSenderKey(distributionId: string, sender: SenderKeyAddress): void;
}

/** Checks a sender address (a caller bug otherwise): a non-empty name, a uint32 device id. */
export function checkSenderAddress(sender: SenderKeyAddress): SenderKeyAddress {
  const ok =
    typeof sender.name === 'string' &&
    sender.name.length > 0 &&
    Number.isInteger(sender.deviceId) &&
    sender.deviceId >= 0 &&
    sender.deviceId <= 0xffffffff;
  if (!ok) {
    throw new SignalError(
      'signal_bad_address',
      `a sender key address is a non-empty name and a device id (uint32), got ${JSON.stringify(sender)}`,
    );
  }
  return sender;
}

/** One key per record in a Map (NUL cannot occur in a UUID, and separates name from device). */
export const senderKeyId = (distributionId: string, sender: SenderKeyAddress): string =>
  `${distributionId}\u0000${sender.name}\u0000${sender.deviceId}`;

/** Everything in memory (tests, benchmarks). */
export class MemorySenderKeyBackend implements SenderKeyBackend {
  private readonly records = new LazyMap<string, Uint8Array>();

  prepare(): Promise<void> {
    return Promise.resolve();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  getSenderKey(distributionId: string, sender: SenderKeyAddress): Uint8Array | undefined {
    return this.records.get(senderKeyId(distributionId, sender));
  }
  putSenderKey(distributionId: string, sender: SenderKeyAddress, record: Uint8Array): void {
    this.records.set(senderKeyId(distributionId, sender), record);
  }
  deleteSenderKey(distributionId: string, sender: SenderKeyAddress): void {
    this.records.delete(senderKeyId(distributionId, sender));
  }
}
