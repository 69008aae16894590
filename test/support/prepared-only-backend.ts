/**
 * A Signal backend that behaves as one over a networked database must be used: nothing is
 * readable until `prepare` (which takes a real turn of the event loop, as a round trip would) made
 * it so, and `flush` is the only moment writes become durable. It wraps a real backend and refuses
 * any read the core makes without preparing first, so a test run through it shows that the core's
 * callers are ready for an asynchronous Signal store.
 */
import { InteropError } from '../../src/errors.js';
import type { SignalBackend } from '../../src/signal/index.js';

export class NotPreparedError extends InteropError {}

const OWN = '(own keys)';

export class PreparedOnlySignalBackend implements SignalBackend {
  private readonly prepared = new Set<string>();
  /** Reads refused, for the test to assert there were none (the core may catch the error). */
  readonly refused: string[] = [];
  flushes = 0;

  constructor(private readonly inner: SignalBackend) {}

  async prepare(user?: string): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.prepared.add(OWN);
    if (user !== undefined) this.prepared.add(user);
  }

  async flush(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.flushes++;
  }

  private need(key: string): void {
    if (this.prepared.has(key)) return;
    this.refused.push(key);
    throw new NotPreparedError('signal_not_prepared', `read of ${key} without prepare()`);
  }

  /** An address ("user.device"), or a user alone where the caller looks a user up. */
  private needAddress(address: string): void {
    const dot = address.lastIndexOf('.');
    this.need(dot < 0 ? address : address.slice(0, dot));
  }

  localIdentity: SignalBackend['localIdentity'] = () => (this.need(OWN), this.inner.localIdentity());
  loadSession: SignalBackend['loadSession'] = (a) => (this.needAddress(a), this.inner.loadSession(a));
  saveSession: SignalBackend['saveSession'] = (a, r) => this.inner.saveSession(a, r);
  deleteSession: SignalBackend['deleteSession'] = (a) => this.inner.deleteSession(a);
  sessionAddresses: SignalBackend['sessionAddresses'] = (u) => (this.need(u), this.inner.sessionAddresses(u));
  preKey: SignalBackend['preKey'] = (id) => (this.need(OWN), this.inner.preKey(id));
  putPreKeys: SignalBackend['putPreKeys'] = (keys) => this.inner.putPreKeys(keys);
  removePreKey: SignalBackend['removePreKey'] = (id) => this.inner.removePreKey(id);
  preKeysNotUploaded: SignalBackend['preKeysNotUploaded'] = (n) => (
    this.need(OWN),
    this.inner.preKeysNotUploaded(n)
  );
  markPreKeysUploaded: SignalBackend['markPreKeysUploaded'] = (ids) => this.inner.markPreKeysUploaded(ids);
  allocatePreKeyIds: SignalBackend['allocatePreKeyIds'] = (n) => (
    this.need(OWN),
    this.inner.allocatePreKeyIds(n)
  );
  preKeyCount: SignalBackend['preKeyCount'] = () => (this.need(OWN), this.inner.preKeyCount());
  allocateSignedPreKeyId: SignalBackend['allocateSignedPreKeyId'] = () => (
    this.need(OWN),
    this.inner.allocateSignedPreKeyId()
  );
  signedPreKey: SignalBackend['signedPreKey'] = (id) => (this.need(OWN), this.inner.signedPreKey(id));
  signedPreKeys: SignalBackend['signedPreKeys'] = () => (this.need(OWN), this.inner.signedPreKeys());
  putSignedPreKey: SignalBackend['putSignedPreKey'] = (k) => this.inner.putSignedPreKey(k);
  removeSignedPreKey: SignalBackend['removeSignedPreKey'] = (id) => this.inner.removeSignedPreKey(id);
  remoteIdentity: SignalBackend['remoteIdentity'] = (a) => (
    this.needAddress(a),
    this.inner.remoteIdentity(a)
  );
  putRemoteIdentity: SignalBackend['putRemoteIdentity'] = (i) => this.inner.putRemoteIdentity(i);
  atomically: SignalBackend['atomically'] = (work) => this.inner.atomically(work);
}
