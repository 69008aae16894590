/**
 * One puppet's connection to the interop gateway (the reference offer's "one connection per
 * client"): connects with a fresh JWT each time, uses IK once the server key is known (cached from
 * the first XX or pinned), keeps the connection alive with pings, and reconnects with backoff and
 * jitter until stopped. It knows nothing of Signal or of what stanzas mean beyond iq/ping.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { InteropError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { AuthRejectedError, awaitAuthResult, ConnectReason, encodeClientPayload } from '../protocol/auth.js';
import { CertError } from '../protocol/cert-chain.js';
import { clientHandshake } from '../protocol/handshake/index.js';
import type { KeyPair } from '../protocol/noise/index.js';
import {
  decodeStanza,
  toBytes,
  type IqBody,
  type IqStanza,
  type Stanza,
  type SuccessStanza,
} from '../protocol/stanza/index.js';
import type { NoiseSocket } from '../protocol/transport/index.js';
import { Backoff } from '../util/backoff.js';
import { LazyMap } from '../util/lazy-map.js';
import type { ConnectionGate } from './gate.js';

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped' | 'refused';

/** Reasons after which reconnecting cannot help until something changes (the user must act). */
const TERMINAL_REASONS = new Set(['account_not_enlisted', 'payload_account_mismatch']);

export interface GatewayConnectionOptions {
  host: string;
  port: number;
  rootPublicKey: Uint8Array;
  providerId: string;
  accountId: string;
  device: number;
  noiseKey: KeyPair;
  /** Pinned or cached server static key: IK from the first connection. */
  serverStaticKey?: Uint8Array | undefined;
  /** Called when a handshake proves a (new) server static key, to cache it for IK. */
  onServerStaticKey?: (key: Uint8Array) => void;
  /** Mints the JWT for one connection attempt (bound to noiseKey's public half). */
  mintToken: () => Promise<string>;
  /** The end user's IP address, when known (passed on as the reference offer asks of proxies). */
  endUserIp?: () => string | undefined;
  /** Connect only to enlist: the gateway then accepts a not-yet-enlisted account. */
  enlisting?: boolean;
  keepaliveMs?: number;
  handshakeTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxFrameSize?: number;
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  /** Shared by all of a bridge's puppets: bounds handshakes in flight and attempts per second. */
  gate?: ConnectionGate;
  random?: () => number;
  logger?: Logger;
}

export interface GatewayConnectionEvents {
  state: [state: ConnectionState, detail?: string];
  connected: [success: SuccessStanza];
  stanza: [stanza: Stanza];
  /** An error that did not stop the connection loop (logged already); for metrics and tests. */
  problem: [error: InteropError];
}

interface Pending {
  resolve(iq: IqStanza): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class GatewayConnection extends EventEmitter<GatewayConnectionEvents> {
  private stateValue: ConnectionState = 'idle';
  private socket: NoiseSocket | undefined;
  private readonly backoff: Backoff;
  private readonly pending = new LazyMap<string, Pending>();
  private nextId = 1;
  private serverKey: Uint8Array | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private reason: ConnectReason = ConnectReason.USER_ACTIVATED;
  /** Only while waiting at the connect gate: what `stop()` aborts that wait with. */
  private abort: AbortController | undefined;

  constructor(private readonly options: GatewayConnectionOptions) {
    super();
    this.serverKey = options.serverStaticKey;
    this.backoff = new Backoff({
      initialDelayMs: options.reconnect?.initialDelayMs ?? 1000,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 60_000,
      ...(options.random ? { random: options.random } : {}),
    });
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get isConnected(): boolean {
    return this.stateValue === 'connected' && this.socket?.isOpen === true;
  }

  /** Starts the connect loop; resolves at once (watch `state` / `connected`). */
  start(): void {
    if (this.loop) return;
    if (this.stateValue === 'stopped') this.stateValue = 'idle'; // started again after stop()
    this.loop = this.run();
  }

  /** Closes the connection and ends the loop; pending requests fail. */
  async stop(): Promise<void> {
    this.setState('stopped');
    this.abort?.abort();
    this.socket?.close();
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  /** Sends a stanza now; throws `gateway_not_connected` when there is no connection (callers queue durably). */
  send(stanza: Stanza): void {
    const socket = this.socket;
    if (!socket || !this.isConnected) {
      throw new InteropError(
        'gateway_not_connected',
        'not connected to the gateway: the stanza stays queued',
      );
    }
    socket.send(toBytes(stanza));
  }

  /** Sends an iq and resolves with its result (or rejects with its error or a timeout). */
  request(body: IqBody, to?: string): Promise<IqStanza> {
    const id = `c${this.nextId++}`;
    return new Promise<IqStanza>((resolve, reject) => {
      const timeoutMs = this.options.requestTimeoutMs ?? 15_000;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new InteropError(
            'gateway_request_timeout',
            `the gateway did not answer ${body.op} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.send({ kind: 'iq', id, ...(to ? { to } : {}), body });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err as Error);
      }
    });
  }

  private setState(state: ConnectionState, detail?: string): void {
    if (this.stateValue === 'stopped' && state !== 'stopped') return;
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.emit('state', state, detail);
  }

  private get stopped(): boolean {
    return this.stateValue === 'stopped';
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let upSince: number | undefined;
      try {
        const socket = await this.connectOnce();
        upSince = Date.now();
        await this.serve(socket);
        // (serve() may have set a more precise reason, such as PING_RECONNECT.)
        if (this.reason === ConnectReason.USER_ACTIVATED) this.reason = ConnectReason.ERROR_RECONNECT;
      } catch (err) {
        const error = toInteropError(err);
        if (this.stopped) break;
        if (error instanceof AuthRejectedError && TERMINAL_REASONS.has(error.reason)) {
          this.options.logger?.warn(
            { reason: error.reason },
            'the gateway refused the account: not reconnecting',
          );
          this.setState('refused', error.reason);
          return;
        }
        this.options.logger?.warn(
          { code: error.code, err: error.message },
          error instanceof CertError
            ? 'the gateway certificate chain is not valid'
            : 'gateway connection failed',
        );
        this.emit('problem', error);
        this.reason = ConnectReason.ERROR_RECONNECT;
      } finally {
        this.failPending();
        this.socket = undefined;
      }
      if (this.stopped) break;
      // A connection that stayed up a while starts the backoff afresh.
      if (upSince !== undefined && Date.now() - upSince > 30_000) this.backoff.reset();
      const delay = this.backoff.next();
      this.setState('waiting', `reconnecting in ${delay} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    this.setState('stopped');
  }

  private async connectOnce(): Promise<NoiseSocket> {
    const release = await this.passGate();
    // 'connecting' means dialling: a connection waiting at the gate is still idle or waiting.
    this.setState('connecting');
    try {
      return await this.dialAndAuthenticate();
    } finally {
      release?.();
    }
  }

  /**
   * Waits for the connect gate, if any. The AbortController (and the listener the gate leaves on
   * its signal) lives only for the wait: a connected puppet keeps neither.
   */
  private async passGate(): Promise<(() => void) | undefined> {
    const gate = this.options.gate;
    if (gate === undefined) return undefined;
    const abort = new AbortController();
    this.abort = abort;
    try {
      return await gate.acquire(abort.signal);
    } finally {
      if (this.abort === abort) this.abort = undefined;
    }
  }

  private async dialAndAuthenticate(): Promise<NoiseSocket> {
    const o = this.options;
    const stream = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(o.port, o.host, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', (err) =>
        reject(
          new InteropError(
            'gateway_unreachable',
            `cannot reach the gateway at ${o.host}:${o.port}: ${err.message}`,
          ),
        ),
      );
      s.setNoDelay(true);
    });
    const reason = o.enlisting ? ConnectReason.ENLISTMENT : this.reason;
    try {
      const hs = await clientHandshake(stream, {
        staticKey: o.noiseKey,
        serverStaticKey: this.serverKey,
        rootPublicKey: o.rootPublicKey,
        ...(o.maxFrameSize ? { maxFrameSize: o.maxFrameSize } : {}),
        ...(o.handshakeTimeoutMs ? { timeoutMs: o.handshakeTimeoutMs } : {}),
        payload: async () =>
          encodeClientPayload({
            accountId: o.accountId,
            providerId: o.providerId,
            device: o.device,
            token: await o.mintToken(),
            connectReason: reason,
            endUserIp: o.endUserIp?.(),
            userAgent: { appName: 'interop-bridge', appVersion: '0.1.0' },
          }),
      });
      if (!this.serverKey || !Buffer.from(this.serverKey).equals(hs.serverStaticKey)) {
        this.serverKey = hs.serverStaticKey;
        o.onServerStaticKey?.(hs.serverStaticKey);
      }
      const success = await awaitAuthResult(hs.socket);
      // stop() while dialling found no socket to close: close this one, or serve() would keep it.
      if (this.stopped)
        throw new InteropError('gateway_stopped', 'the connection was stopped while connecting');
      this.socket = hs.socket;
      this.backoff.reset();
      this.reason = ConnectReason.USER_ACTIVATED;
      this.setState('connected', hs.pattern);
      this.emit('connected', success);
      return hs.socket;
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }

  /** Reads stanzas until the connection ends; pings when idle and drops a connection that stops answering. */
  private async serve(socket: NoiseSocket): Promise<void> {
    const keepaliveMs = this.options.keepaliveMs ?? 30_000;
    let lastHeard = Date.now();
    const timer = setInterval(() => {
      if (Date.now() - lastHeard < keepaliveMs) return;
      this.request({ op: 'ping' }).catch(() => {
        if (socket.isOpen) {
          this.options.logger?.warn('the gateway stopped answering pings: reconnecting');
          this.reason = ConnectReason.PING_RECONNECT;
          socket.close();
        }
      });
    }, keepaliveMs);
    timer.unref();
    try {
      for (let frame = await socket.next(); frame !== undefined; frame = await socket.next()) {
        lastHeard = Date.now();
        let stanza: Stanza;
        try {
          stanza = decodeStanza(frame);
        } catch (err) {
          // A stanza we cannot read is the gateway's bug, not a reason to drop everything else.
          this.emit('problem', toInteropError(err));
          this.options.logger?.warn({ code: toInteropError(err).code }, 'unreadable stanza from the gateway');
          continue;
        }
        if (stanza.kind === 'iq' && this.pending.has(stanza.id) && stanza.body.op !== 'ping') {
          const p = this.pending.get(stanza.id)!;
          this.pending.delete(stanza.id);
          clearTimeout(p.timer);
          if (stanza.body.op === 'error') {
            p.reject(
              new InteropError(
                'gateway_request_failed',
                `the gateway refused the request: ${stanza.body.error.code} ${stanza.body.error.text ?? ''}`.trim(),
              ),
            );
          } else {
            p.resolve(stanza);
          }
          continue;
        }
        if (stanza.kind === 'iq' && stanza.body.op === 'ping') {
          this.send({ kind: 'iq', id: stanza.id, body: { op: 'result' } });
          continue;
        }
        this.emit('stanza', stanza);
      }
    } finally {
      clearInterval(timer);
      if (!this.stopped) this.setState('waiting', 'connection closed');
    }
  }

  private failPending(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new InteropError('gateway_not_connected', 'the gateway connection closed before the answer'));
      this.pending.delete(id);
    }
  }
}

function toInteropError(err: unknown): InteropError {
  if (err instanceof InteropError) return err;
  return new InteropError('gateway_internal', err instanceof Error ? err.message : String(err), {
    cause: err,
  });
}
