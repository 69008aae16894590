/**
 * Which devices a remote user has, and a Signal session with each: a directory look-up (usync) for
 * native users, then a prekey fetch and `processBundle` for every device without a session.
 */
import { InteropError } from '../errors.js';
import { formatJid, NATIVE_SERVER, parseJid, type PreKeyBundle } from '../protocol/stanza/index.js';
import { signalAddress, userJidOfAddress } from '../signal/address.js';
import type { PuppetContext } from './context.js';
import { UndeliverableError } from './errors.js';
import { LazyMap } from '../util/lazy-map.js';

/** How long a directory answer is trusted before asking again. */
const DEVICE_LIST_TTL_MS = 5 * 60 * 1000;

/** The address "user" part of a JID, as `signalAddress` encodes it (for per-user session queries). */
export function addressUser(userJid: string): string {
  const address = signalAddress(userJid, 0);
  return address.slice(0, address.length - 2);
}

export class RemoteDevices {
  private readonly lists = new LazyMap<string, { devices: number[]; at: number }>();

  constructor(private readonly ctx: PuppetContext) {}

  /** Forgets what is known of a user's devices (a device was missing, or its keys changed). */
  forget(remote: string): void {
    this.lists.delete(remote);
  }

  /** A device just wrote to us: it exists, whatever the cached list says. */
  saw(remote: string, device: number): void {
    const list = this.lists.get(remote);
    if (list && !list.devices.includes(device)) list.devices.push(device);
  }

  /**
   * The devices to encrypt for. Natives: from the directory (fails with a reason the user can read
   * when the number is not reachable through interop). Others (accounts of other providers, which
   * the directory does not list by number): the devices we have sessions with, else device 0.
   */
  async devicesOf(remote: string): Promise<number[]> {
    const cached = this.lists.get(remote);
    if (cached && Date.now() - cached.at < DEVICE_LIST_TTL_MS) return cached.devices;
    const { user, server } = parseJid(remote);
    let devices: number[];
    if (server === NATIVE_SERVER && user !== undefined) {
      const answer = await this.ctx.connection.request({ op: 'usync_query', contacts: [`+${user}`] });
      const entry = answer.body.op === 'usync_result' ? answer.body.entries[0] : undefined;
      if (!entry?.onNetwork) {
        throw new UndeliverableError(
          'bridge_contact_unreachable',
          `+${user} cannot be reached through interoperability (not a user, or not opted in): the message was not sent`,
        );
      }
      devices = [...entry.devices];
      if (devices.length === 0) {
        throw new UndeliverableError(
          'bridge_contact_no_devices',
          `+${user} has no device that can receive interop messages yet: the message was not sent`,
        );
      }
    } else {
      await this.ctx.signal.prepare(addressUser(remote));
      const known = this.ctx.signal
        .sessionAddresses(addressUser(remote))
        .map((a) => Number(a.slice(a.lastIndexOf('.') + 1)));
      devices = known.length > 0 ? known : [0];
    }
    this.lists.set(remote, { devices, at: Date.now() });
    return devices;
  }

  /**
   * Makes sure there is a session with each device; returns the devices that have one. Devices the
   * prekey server knows nothing about are left out (and the device list is refreshed next time).
   */
  async ensureSessions(remote: string, devices: readonly number[]): Promise<number[]> {
    await this.ctx.signal.prepare(addressUser(remote));
    const missing = devices.filter((d) => !this.ctx.signal.hasSession(signalAddress(remote, d)));
    if (missing.length > 0) {
      const jids = missing.map((device) => formatJid({ ...parseJid(remote), device }));
      const answer = await this.ctx.connection.request({ op: 'prekey_fetch', jids });
      const users = answer.body.op === 'prekey_fetch_result' ? answer.body.users : [];
      for (const entry of users) {
        if (entry.error !== undefined) {
          this.ctx.log?.info({ jid: entry.jid, code: entry.error.code }, 'no prekey bundle for a device');
          this.forget(remote);
          continue;
        }
        const device = parseJid(entry.jid).device ?? 0;
        await this.processBundle(remote, device, entry);
      }
    }
    return devices.filter((d) => this.ctx.signal.hasSession(signalAddress(remote, d)));
  }

  /** Starts a new session with one device from a bundle (fetched, or from a retry receipt). */
  async processBundle(remote: string, device: number, bundle: PreKeyBundle): Promise<void> {
    try {
      await this.ctx.signal.processBundle(signalAddress(remote, device), bundle);
    } catch (err) {
      // A bad bundle leaves this device out; the others still get the message.
      this.ctx.log?.warn(
        { remote, device, code: (err as InteropError).code },
        'unusable prekey bundle: device skipped',
      );
    }
  }

  /** Fetches one device's bundle and starts a new session from it (retry receipt without keys). */
  async rebuild(remote: string, device: number): Promise<boolean> {
    const jid = formatJid({ ...parseJid(remote), device });
    const answer = await this.ctx.connection.request({ op: 'prekey_fetch', jids: [jid] });
    const entry = answer.body.op === 'prekey_fetch_result' ? answer.body.users[0] : undefined;
    if (!entry || entry.error !== undefined) return false;
    await this.processBundle(remote, device, entry);
    await this.ctx.signal.prepare(addressUser(remote));
    return this.ctx.signal.hasSession(signalAddress(remote, device));
  }
}

export { userJidOfAddress };
