/** What the parts of one puppet's runtime share (outbox sender, incoming handler, sessions). */
import type { GatewayConnection } from '../gateway/connection.js';
import type { Logger } from '../observability/logger.js';
import type { BridgeMetrics } from '../observability/metrics.js';
import type { SignalSessionManager } from '../signal/index.js';
import type { PayloadVault } from '../store/at-rest.js';
import type { Puppet, Store } from '../store/repositories.js';
import type { Adapter } from './adapter.js';
import type { MediaHandler } from './media.js';
import type { SessionWriteGate } from './session-gate.js';

export interface PuppetContext {
  readonly puppet: Puppet;
  /** `<account>@<provider>.interop`. */
  readonly accountJid: string;
  readonly store: Store;
  readonly signal: SignalSessionManager;
  /** The Signal backend under `signal`: decryption and the inbox row commit together through it. */
  readonly sessionGate: SessionWriteGate;
  readonly connection: GatewayConnection;
  /** The adapter of the puppet's network, if one is attached. */
  adapter(): Adapter | undefined;
  readonly media: MediaHandler | undefined;
  readonly log: Logger | undefined;
  readonly metrics: BridgeMetrics | undefined;
  /** Seconds since the epoch. */
  nowSeconds(): number;
  /**
   * Seals the content that waits in the outbox and inbox with the operator's at-rest key, bound to
   * its row (src/store/at-rest.ts); none in tests and tools that run without a key.
   */
  readonly vault: PayloadVault | undefined;
  /** An outgoing message still queued after this long (ms) fails with a notice. */
  readonly queueMaxAgeMs: number;
}
