/**
 * Enlistment and opt-out: how a local user gets a puppet at the gateway (keys, `<enlist>` with its
 * XEdDSA proof, prekeys) and how it is taken away again. Both survive a crash half-way: the
 * puppet's state (`enlisting`, `opting_out`) is stored first, and `Bridge.start` resumes them.
 */
import type { Logger } from '../observability/logger.js';
import { enlistmentStatement } from '../protocol/enlistment.js';
import { generateKeyPair } from '../protocol/noise/index.js';
import {
  createSignalIdentity,
  xeddsaSign,
  SignalSessionManager,
  type SignalBackend,
} from '../signal/index.js';
import type { Network, Puppet, Store } from '../store/repositories.js';
import { accountIdFor } from './account.js';
import type { Adapter } from './adapter.js';
import { BridgeError } from './errors.js';
import { accountJidOf, puppetConnection, type GatewaySettings, type PuppetRuntime } from './puppet.js';

const DEVICE = 0;

/** What enlistment needs of the bridge that owns the puppets' runtimes. */
export interface EnlistmentHost {
  readonly store: Store;
  readonly gateway: GatewaySettings;
  readonly log: Logger | undefined;
  /** One-time prekeys published at enlistment. */
  readonly preKeys: number;
  /** How long enlistment and opt-out wait for the gateway. */
  readonly gatewayWaitMs: number;
  signalBackend(puppetId: number): SignalBackend;
  /** The runtime of a puppet, created if missing. */
  runtimeFor(puppet: Puppet): PuppetRuntime;
  /** Forgets the runtime (and online state) of a user whose puppet is gone. */
  forget(localUser: string): void;
  /** Connects or disconnects the user's puppet as the lifecycle says. */
  applyLifecycle(localUser: string): void;
  adapterOf(network: Network): Adapter | undefined;
  /**
   * With several workers: whether this process runs the puppet, and taking it (its lease) before
   * enlisting it here; rejects when another process has it.
   */
  runsHere(puppet: Puppet): boolean;
  /** False when another process took the puppet first (it finishes the enlistment there). */
  takeOver(puppet: Puppet): Promise<boolean>;
}

export class Enlistment {
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly host: EnlistmentHost) {}

  /**
   * Creates the puppet (account id, Signal identity and prekeys, Noise key; state `enlisting`),
   * connects with connect reason ENLISTMENT, sends `<enlist>` with the XEdDSA proof, publishes its
   * prekeys, and marks it `enlisted`; then connects it for good. Re-running it after a crash
   * resumes with the keys already stored. Idempotent for an enlisted user.
   */
  enlist(network: Network, localUser: string): Promise<void> {
    // One enlistment per user at a time: a second request (a double click, two clients) waits for
    // the first instead of opening a second enlisting connection that the gateway would refuse.
    const running = this.running.get(localUser);
    if (running) return running;
    const work = this.enlistOnce(network, localUser).finally(() => this.running.delete(localUser));
    this.running.set(localUser, work);
    return work;
  }

  private async enlistOnce(network: Network, localUser: string): Promise<void> {
    const { store, gateway } = this.host;
    if (localUser.trim() === '') throw new BridgeError('bridge_bad_local_user', 'the local user is empty');
    let puppet = await store.puppets.byLocalId(localUser);
    if (puppet?.state === 'enlisted') {
      if (!this.host.runsHere(puppet)) return; // another worker runs it
      this.host.runtimeFor(puppet);
      this.host.applyLifecycle(localUser);
      return;
    }
    if (puppet?.state === 'opting_out') {
      throw new BridgeError(
        'bridge_enlist_failed',
        `${localUser} is being opted out: wait until that has finished, then enlist again`,
      );
    }
    if (!puppet) {
      const identity = createSignalIdentity();
      const noise = generateKeyPair();
      puppet = await store.puppets.create({
        localId: localUser,
        network,
        accountId: accountIdFor(network, localUser),
        deviceId: DEVICE,
        registrationId: identity.registrationId,
        identityPublic: identity.identityPublic,
        identityPrivate: identity.identityPrivate,
        noisePublic: noise.publicKey,
        noisePrivate: noise.privateKey,
      });
    }
    if (!(await this.host.takeOver(puppet))) {
      await this.enlistedElsewhere(puppet);
      return;
    }
    const accountJid = accountJidOf(puppet.accountId, gateway.providerId);
    const signal = new SignalSessionManager(this.host.signalBackend(puppet.id), { localUser: accountJid });
    const preKeys = this.host.preKeys;
    await signal.prepare();
    signal.setUp({ preKeys });

    const connection = puppetConnection(puppet, store, gateway, { enlisting: true, log: this.host.log });
    try {
      await this.connect(connection, localUser);
      const t = Math.floor(Date.now() / 1000);
      const signature = xeddsaSign(
        puppet.identityPrivate,
        enlistmentStatement(accountJid, t, puppet.identityPublic),
      );
      await connection.request({ op: 'enlist', t, identityKey: puppet.identityPublic, signature });
      const upload = signal.prekeyUpload(preKeys);
      await signal.flush();
      await connection.request({ op: 'prekey_upload', ...upload });
      signal.markPrekeysUploaded(upload.preKeys.map((k) => k.id));
    } catch (err) {
      throw err instanceof BridgeError
        ? err
        : new BridgeError(
            'bridge_enlist_failed',
            `enlisting ${localUser} at the gateway failed (${(err as Error).message}): try again; the keys are kept`,
            { cause: err },
          );
    } finally {
      await connection.stop();
    }
    await store.puppets.setState(puppet.id, 'enlisted');
    const enlisted = (await store.puppets.byId(puppet.id)) as Puppet;
    this.host.log?.info({ user: localUser, account: accountJid }, 'puppet enlisted');
    const runtime = this.host.runtimeFor(enlisted);
    runtime.notify({ kind: 'enlisted' });
    this.host.applyLifecycle(localUser);
  }

  /** Waits while another worker finishes the enlistment (several workers). */
  private async enlistedElsewhere(puppet: Puppet): Promise<void> {
    const until = Date.now() + this.host.gatewayWaitMs;
    while (Date.now() < until) {
      const now = await this.host.store.puppets.byId(puppet.id);
      if (now?.state === 'enlisted') return;
      if (!now) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new BridgeError(
      'bridge_enlist_failed',
      `enlisting ${puppet.localId} did not finish within ${this.host.gatewayWaitMs} ms in the bridge process that took it over: try again`,
    );
  }

  /** Opens the enlisting connection; rejects when the gateway refuses it or cannot be reached. */
  private connect(connection: ReturnType<typeof puppetConnection>, localUser: string): Promise<void> {
    const waitMs = this.host.gatewayWaitMs;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new BridgeError(
            'bridge_enlist_failed',
            `could not reach the gateway within ${waitMs} ms to enlist ${localUser}: check gateway.host/port and try again`,
          ),
        );
      }, waitMs);
      const onConnected = () => {
        cleanup();
        resolve();
      };
      const onState = (state: string, detail?: string) => {
        if (state !== 'refused') return;
        cleanup();
        reject(
          new BridgeError(
            'bridge_enlist_failed',
            `the gateway refused ${localUser}'s enlistment connection (${detail ?? 'no reason'})`,
          ),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        connection.off('connected', onConnected);
        connection.off('state', onState);
      };
      connection.on('connected', onConnected);
      connection.on('state', onState);
      connection.start();
    });
  }

  /**
   * Opts the user out: `<unenlist/>` at the gateway (which drops the account, its keys and its
   * queue), then deletes the puppet and everything it owns. The state `opting_out` is stored
   * first, so a crash in between finishes the opt-out at the next start.
   */
  async optOut(localUser: string): Promise<void> {
    const { store } = this.host;
    const puppet = await store.puppets.byLocalId(localUser);
    if (!puppet) return;
    await store.puppets.setState(puppet.id, 'opting_out');
    const runtime = this.host.runtimeFor({ ...puppet, state: 'opting_out' });
    runtime.outbox.stop();
    runtime.incoming.stop();
    runtime.start();
    try {
      await runtime.untilConnected(this.host.gatewayWaitMs);
      await runtime.connection.request({ op: 'unenlist' });
    } catch (err) {
      throw new BridgeError(
        'bridge_opt_out_failed',
        `opting ${localUser} out at the gateway failed (${(err as Error).message}): it will be retried at the next start, or call optOut again`,
        { cause: err },
      );
    }
    const adapter = this.host.adapterOf(puppet.network);
    await runtime.stop();
    this.host.forget(localUser);
    await store.puppets.delete(puppet.id);
    this.host.log?.info({ user: localUser }, 'puppet opted out and deleted');
    try {
      adapter?.notify(localUser, { kind: 'opted_out' });
    } catch {
      // must not throw; nothing to do if it does
    }
  }
}
