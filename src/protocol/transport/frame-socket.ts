/**
 * Frames over a byte stream: a client writes the preface and then frames; a server first checks
 * the preface, then reads frames. Knows nothing of encryption or of what frames contain.
 *
 * It never logs: any reason to close (a protocol violation, a socket error, a timeout) closes the
 * connection and is reported to the owner through `closed`, `receive()` and iteration, carrying
 * a TransportError whose code the owner logs.
 */
import type { Duplex } from 'node:stream';
import { TransportError } from './errors.js';
import { DEFAULT_MAX_FRAME_SIZE, FrameDecoder, checkMaxFrameSize, encodeFrameHeader } from './frame-codec.js';
import { PREFACE, checkPreface, truncatedPreface } from './preface.js';

export type FrameSocketRole = 'client' | 'server';

export interface FrameSocketOptions {
  /** A client sends the preface at once; a server requires it before the first frame. */
  readonly role: FrameSocketRole;
  /** Largest frame payload accepted (and sent); default 1 MiB. Both sides must agree. */
  readonly maxFrameSize?: number;
  /** Close with `transport_idle_timeout` when nothing arrives for this long; 0 (default) never.
   * Change it later with setIdleTimeout (a short handshake deadline, then a keepalive-sized one). */
  readonly idleTimeoutMs?: number;
  /** How long a closing connection waits for the peer to close its side before it is destroyed. */
  readonly closeTimeoutMs?: number;
  /** Unread received bytes at which reading pauses until the owner catches up (TCP backpressure). */
  readonly receiveHighWaterMark?: number;
}

/** How a connection ended. */
export interface TransportClose {
  /** Why, when the connection did not end cleanly: undefined after close() or a peer close at a
   * frame boundary. */
  readonly error: TransportError | undefined;
  /** Who ended it: `local` for close(), abort(), a protocol violation or a timeout. */
  readonly initiator: 'local' | 'peer';
}

export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
const MIN_RECEIVE_HIGH_WATER_MARK = 64 * 1024;

type State = 'open' | 'closing' | 'closed';

interface Reader {
  resolve(frame: Buffer | undefined): void;
  reject(error: TransportError): void;
}

interface Waiter {
  resolve(): void;
  reject(error: TransportError): void;
}

export class FrameSocket implements AsyncIterable<Buffer> {
  readonly role: FrameSocketRole;
  readonly maxFrameSize: number;
  /** Resolves (never rejects) once the underlying stream has closed. */
  readonly closed: Promise<TransportClose>;

  readonly #stream: Duplex;
  readonly #decoder: FrameDecoder;
  readonly #closeTimeoutMs: number;
  readonly #receiveHighWaterMark: number;
  #resolveClosed!: (close: TransportClose) => void;

  #state: State = 'open';
  #closeError: TransportError | undefined;
  #initiator: 'local' | 'peer' | undefined;

  #preface: Buffer | undefined;
  #partialPreface: Buffer | undefined;

  // Received frames not yet taken by the owner, and owners waiting for one.
  #queue: Buffer[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  /**
   * Readers waiting for a frame, oldest first: the first in a field, any later ones in a list made
   * when needed. An idle connection always has one reader waiting, and a list would keep a
   * 17-slot backing store for it.
   */
  #reader: Reader | undefined;
  #laterReaders: Reader[] | undefined;
  /** Set once no more frames will be queued; `error` is given after the queued frames. */
  #inboxEnd: { error: TransportError | undefined } | undefined;
  #paused = false;

  #drainWaiters: Waiter[] = [];
  #idleTimeoutMs = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(stream: Duplex, options: FrameSocketOptions) {
    this.role = options.role;
    this.maxFrameSize = checkMaxFrameSize(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE);
    this.#decoder = new FrameDecoder({ maxFrameSize: this.maxFrameSize });
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.#receiveHighWaterMark =
      options.receiveHighWaterMark ?? Math.max(this.maxFrameSize, MIN_RECEIVE_HIGH_WATER_MARK);
    this.#stream = stream;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));

    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('error', this.#onError);
    stream.on('close', this.#onClose);
    stream.on('drain', this.#onDrain);

    if (this.role === 'client') {
      this.#preface = PREFACE;
      stream.write(PREFACE);
    }
    this.setIdleTimeout(options.idleTimeoutMs ?? 0);
  }

  /** The connection's 4 preface bytes: sent (client) or received and accepted (server); the Noise
   * prologue. Undefined on a server until the preface has arrived, which is always before the
   * first frame. */
  get preface(): Buffer | undefined {
    return this.#preface;
  }

  /** True until close(), abort(), a violation, an error or the peer's close. */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /**
   * Sends one frame. Returns false when the stream's write buffer is full: await drain() before
   * sending more. Throws `transport_outgoing_frame_too_large` (caller bug) or `transport_closed`.
   */
  sendFrame(payload: Uint8Array): boolean {
    if (this.#state !== 'open') throw this.#notOpenError('send');
    const header = encodeFrameHeader(payload.length, this.maxFrameSize);
    // Corked until the current burst of work ends (the next tick: after the callbacks and promise
    // reactions running now), so header and payload, and every other frame sent meanwhile (the
    // acks and receipts of a read that carried many messages), leave in one write, without
    // copying the payloads.
    if (!this.#corked) {
      this.#corked = true;
      this.#stream.cork();
      process.nextTick(this.#uncork);
    }
    this.#stream.write(header);
    return this.#stream.write(payload);
  }

  #corked = false;
  readonly #uncork = (): void => {
    this.#corked = false;
    this.#stream.uncork();
  };

  /** Resolves when the write buffer has room again (at once if it has); rejects with
   * `transport_closed` if the connection closes first. */
  drain(): Promise<void> {
    if (this.#state !== 'open') return Promise.reject(this.#notOpenError('send'));
    if (!this.#stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  /**
   * The next frame, in arrival order. Frames received before the connection ended are delivered
   * before the end is reported. Rejects with the reason the connection closed, or with
   * `transport_closed` when it closed cleanly.
   */
  async receive(): Promise<Buffer> {
    const frame = await this.#next();
    if (frame === undefined) throw this.#notOpenError('receive');
    return frame;
  }

  /**
   * The next frame in order, or undefined once the connection closed cleanly; rejects with the
   * reason otherwise. What the iterator below does, without an async generator's objects and
   * promise hops per frame (a connection's reading loop waits in it for its whole life).
   */
  next(): Promise<Buffer | undefined> {
    return this.#next();
  }

  /** Iterates frames in order; ends quietly on a clean close, throws the reason otherwise. Leaving
   * the loop early does not close the connection. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      const frame = await this.#next();
      if (frame === undefined) return;
      yield frame;
    }
  }

  /** Sets (or, with 0, clears) the idle timeout: close with `transport_idle_timeout` when nothing
   * is received for `ms`. Time spent paused because the owner is not reading does not count. */
  setIdleTimeout(ms: number): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#idleTimeoutMs = ms;
    if (ms > 0 && this.#state === 'open') {
      this.#idleTimer = setTimeout(this.#onIdle, ms);
      this.#idleTimer.unref();
    }
  }

  /** Closes cleanly: already-sent frames are flushed, unread frames are dropped, and the
   * connection ends with no error. */
  close(): void {
    if (this.#state !== 'open') return;
    this.#initiator = 'local';
    this.#endInbox(undefined, true);
    this.#shutdown();
  }

  /** Closes because a layer above found the peer at fault (e.g. `transport_decrypt_failed`): the
   * error becomes the close reason, and unread frames are dropped. */
  abort(error: TransportError): void {
    this.#fail(error, 'local', true);
  }

  #onData = (chunk: Buffer | string): void => {
    if (this.#state !== 'open') return; // closing: discard what still arrives
    this.#idleTimer?.refresh();
    let bytes: Buffer | undefined = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    try {
      if (this.#preface === undefined) {
        bytes = this.#readPreface(bytes);
        if (bytes === undefined) return;
      }
      this.#decoder.feed(bytes, this.#enqueue);
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      this.#fail(error, 'local', false);
    }
  };

  /** Accumulates the server's view of the preface; returns the bytes after it once complete. */
  #readPreface(bytes: Buffer): Buffer | undefined {
    const received = this.#partialPreface ? Buffer.concat([this.#partialPreface, bytes]) : bytes;
    if (checkPreface(received) === undefined) {
      this.#partialPreface = Buffer.from(received);
      return undefined;
    }
    this.#preface = Buffer.from(received.subarray(0, PREFACE.length));
    this.#partialPreface = undefined;
    return received.subarray(PREFACE.length);
  }

  #enqueue = (frame: Buffer): void => {
    const reader = this.#reader;
    if (reader) {
      this.#reader = this.#laterReaders?.shift();
      reader.resolve(frame);
      return;
    }
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    if (!this.#paused && this.#queuedBytes >= this.#receiveHighWaterMark) {
      this.#paused = true;
      this.#stream.pause();
    }
  };

  #next(): Promise<Buffer | undefined> {
    if (this.#queueHead < this.#queue.length) {
      const frame = this.#queue[this.#queueHead]!;
      this.#queueHead++;
      if (this.#queueHead === this.#queue.length) {
        this.#queue = [];
        this.#queueHead = 0;
      } else if (this.#queueHead >= 1024) {
        this.#queue = this.#queue.slice(this.#queueHead);
        this.#queueHead = 0;
      }
      this.#queuedBytes -= frame.length;
      if (this.#paused && this.#queuedBytes <= this.#receiveHighWaterMark / 2) this.#resume();
      return Promise.resolve(frame);
    }
    if (this.#inboxEnd) {
      const { error } = this.#inboxEnd;
      return error ? Promise.reject(error) : Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => {
      if (this.#reader === undefined) this.#reader = { resolve, reject };
      else (this.#laterReaders ??= []).push({ resolve, reject });
    });
  }

  /** No more frames will be queued. Readers waiting now (the queue is then empty) learn it at once;
   * later ones after the queued frames. */
  #endInbox(error: TransportError | undefined, dropQueued: boolean): void {
    if (this.#inboxEnd) return;
    this.#inboxEnd = { error };
    if (dropQueued) {
      this.#queue = [];
      this.#queueHead = 0;
      this.#queuedBytes = 0;
    }
    const readers = this.#reader ? [this.#reader, ...(this.#laterReaders ?? [])] : [];
    this.#reader = undefined;
    this.#laterReaders = undefined;
    for (const reader of readers) {
      if (error) reader.reject(error);
      else reader.resolve(undefined);
    }
  }

  #fail(error: TransportError, initiator: 'local' | 'peer', dropQueued: boolean): void {
    if (this.#state !== 'open') return; // the first reason wins
    this.#closeError = error;
    this.#initiator = initiator;
    this.#endInbox(error, dropQueued);
    this.#shutdown();
  }

  /** Stops sending and delivering, sends our FIN after what is already written, and keeps reading
   * (discarding) until the peer closes too, so the peer is not reset before it has read our last
   * frames. Destroys the stream if the peer takes longer than the close timeout. */
  #shutdown(): void {
    this.#state = 'closing';
    this.setIdleTimeout(0);
    this.#rejectDrainWaiters();
    if (this.#paused) this.#resume();
    if (!this.#stream.destroyed && !this.#stream.writableEnded) this.#stream.end();
    this.#closeTimer = setTimeout(() => this.#stream.destroy(), this.#closeTimeoutMs);
    this.#closeTimer.unref();
  }

  #resume(): void {
    this.#paused = false;
    this.#stream.resume();
    this.#idleTimer?.refresh();
  }

  /** What an end of stream right now means: nothing wrong at a frame boundary, else truncation. */
  #endOfStreamError(): TransportError | undefined {
    if (this.#preface === undefined) {
      return this.#partialPreface ? truncatedPreface(this.#partialPreface) : undefined;
    }
    try {
      this.#decoder.end();
      return undefined;
    } catch (error) {
      if (error instanceof TransportError) return error;
      throw error;
    }
  }

  #onEnd = (): void => {
    if (this.#state !== 'open') return; // the peer's answer to our FIN
    const error = this.#endOfStreamError();
    this.#closeError = error;
    this.#initiator = 'peer';
    this.#endInbox(error, false);
    this.#shutdown();
  };

  #onError = (cause: Error): void => {
    this.#fail(
      new TransportError(
        'transport_socket_error',
        `connection failed: ${cause.message}; reconnect (with backoff) and resend what was not acknowledged`,
        { cause },
      ),
      'peer',
      false,
    );
  };

  #onClose = (): void => {
    if (this.#state === 'open') {
      // Destroyed underneath us without an end-of-stream: judge what was left half-read.
      const error = this.#endOfStreamError();
      this.#closeError = error;
      this.#initiator = 'peer';
      this.#endInbox(error, false);
    }
    this.#state = 'closed';
    this.setIdleTimeout(0);
    clearTimeout(this.#closeTimer);
    this.#rejectDrainWaiters();
    this.#resolveClosed({ error: this.#closeError, initiator: this.#initiator ?? 'peer' });
  };

  #onDrain = (): void => {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  };

  #onIdle = (): void => {
    if (this.#paused) {
      this.#idleTimer?.refresh(); // we are not reading; the peer is not idle
      return;
    }
    this.#fail(
      new TransportError(
        'transport_idle_timeout',
        `nothing received for ${this.#idleTimeoutMs} ms: closing; the peer is gone or stalled, reconnect`,
      ),
      'local',
      false,
    );
  };

  #rejectDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.reject(this.#notOpenError('send'));
  }

  #notOpenError(action: 'send' | 'receive'): TransportError {
    const reason = this.#closeError ? ` (${this.#closeError.code})` : '';
    const by = this.#initiator === 'peer' ? ' by the peer' : '';
    return new TransportError(
      'transport_closed',
      `cannot ${action}: the connection was closed${by}${reason}; open a new connection`,
      { cause: this.#closeError },
    );
  }
}
