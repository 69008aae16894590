/**
 * What every part of the emulator shares: the store, the live connections, the fault state, the
 * clock and the settings. Handed to the stanza handlers so each file stays one concern.
 */
import type { Logger } from '../src/observability/logger.js';
import type { XEdDSAVerify } from '../src/protocol/enlistment.js';
import type { FaultState } from './faults.js';
import type { EmulatorStore } from './store.js';

/** Issues media credentials for `<media_conn>`; implemented by the media layer. */
export interface MediaAuthority {
  issue(accountJid: string): { auth: string; ttl: number; hosts: string[] };
  /** Where a profile picture is downloaded (`<scheme>://<host>/pp/<id>`); absent: no picture service. */
  pictureUrl?(id: string): string | undefined;
}

/** One authenticated connection, as the handlers see it. */
export interface Connection {
  /** Bare account JID. */
  readonly accountJid: string;
  readonly device: number;
  /** `user:device@server`. */
  readonly deviceJid: string;
  /** Sends queued items the device has not yet been sent, in order. */
  pump(): void;
  /** Writes stanza bytes now (subject to faults). */
  sendBytes(bytes: Uint8Array): void;
  /** The last message delivered on this connection, for the replay fault. */
  readonly lastDelivered: Uint8Array | undefined;
  /** Whether the account exists (enlisted or native); false on an enlistment-only connection. */
  readonly enlisted: boolean;
  setEnlisted(enlisted: boolean): void;
  close(reason: string): void;
}

/** The live connections: at most one per (account, device). */
export class Connections {
  readonly #byDevice = new Map<string, Connection>();

  /** Registers `c`, returning the connection it replaces (the caller closes it). */
  add(c: Connection): Connection | undefined {
    const old = this.#byDevice.get(c.deviceJid);
    this.#byDevice.set(c.deviceJid, c);
    return old;
  }

  /** Forgets `c` unless a newer connection already took its place. */
  delete(c: Connection): void {
    if (this.#byDevice.get(c.deviceJid) === c) this.#byDevice.delete(c.deviceJid);
  }

  of(accountJid: string): Connection[] {
    return [...this.#byDevice.values()].filter((c) => c.accountJid === accountJid);
  }

  get(accountJid: string, device: number): Connection | undefined {
    return this.of(accountJid).find((c) => c.device === device);
  }

  all(): Connection[] {
    return [...this.#byDevice.values()];
  }
}

export interface CoreSettings {
  offlineRetentionSeconds: number;
  prekeyLowWater: number;
  /** Most one-time prekeys a device may hold on the server. */
  maxPreKeysPerDevice: number;
}

export interface Core {
  readonly store: EmulatorStore;
  readonly connections: Connections;
  readonly faults: FaultState;
  readonly settings: CoreSettings;
  readonly log: Logger;
  readonly media: MediaAuthority | undefined;
  readonly verifyXEdDSA: XEdDSAVerify | undefined;
  /** Seconds since the epoch. */
  now(): number;
}
