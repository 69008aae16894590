/**
 * The component link: one XEP-0114 stream to the XMPP server, built on @xmpp/component, with what
 * xmpp.js leaves out: an outgoing queue that survives disconnections, reconnection with exponential
 * backoff and jitter, and a delivery policy across drops.
 *
 * Delivery policy (XEP-0114 has no acks, unlike XEP-0198 on c2s): a stanza written to the socket is
 * only *in flight*. It is *confirmed* once a ping iq written after it has come back: the server
 * handles a stream in order, so by then it has taken every earlier stanza. On a drop, in-flight
 * stanzas go back to the head of the queue and are written again, with the same `id`, after the
 * reconnect. So nothing is lost, in order, at least once; a stanza the server took just before the
 * drop may arrive twice with the same id, and receivers dedupe on it (Conversations, Dino and
 * Gajim do for messages with the same id from the same sender; the bridge core does for its own
 * ids). Dropping unconfirmed stanzas instead would lose messages, which is worse.
 *
 * The ping goes to the component's own domain by default: the server routes it back to us, we
 * answer it, and the server routes the answer back. That needs no server module and no knowledge
 * of the server's domain; the same pings, on a timer, detect a dead TCP connection. The ping is
 * written in the same corked batch as the stanzas it confirms. (A headline message to ourselves,
 * whose routed arrival would be the proof with one trip instead of two, was tried and dropped: on
 * ejabberd the quicker confirmation let a message the server had routed but not yet stored count
 * as delivered, and a server restart lost it: docs/BENCHMARKS.md.)
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { component, type Component, type IqHandler, type XMPPError } from '@xmpp/component';
import { Element, xml } from '@xmpp/xml';
import { Backoff } from '../../src/util/backoff.js';
import {
  ComponentSecretRefusedError,
  ComponentStoppedError,
  ComponentStreamError,
  InvalidStanzaError,
  IqErrorResponse,
  IqTimeoutError,
  XmppServerUnreachableError,
} from './errors.js';

export const NS_PING = 'urn:xmpp:ping';

export interface ComponentLinkOptions {
  /** The server's component listener (config `xmpp.server_host`, `xmpp.server_port`). */
  host: string;
  port: number;
  /** The component's domain (`xmpp.component_domain`). */
  domain: string;
  /** The shared secret (`xmpp.secret`). */
  secret: string;
  /** Reconnect delays (the gateway's `reconnect` settings fit). */
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  /** Where confirmation and keepalive pings go; the component's own domain by default. */
  pingTo?: string;
  /** Keepalive ping period while idle, in ms (default 30 s). */
  keepaliveMs?: number;
  /** A ping unanswered for this long drops the connection (default 10 s). */
  pingTimeoutMs?: number;
  /** Connect + stream open + handshake must finish within this (default 10 s). */
  connectTimeoutMs?: number;
  random?: () => number;
}

export type LinkStatus = 'offline' | 'connecting' | 'online' | 'stopped';

export interface ComponentLinkEvents {
  /** An incoming message or presence (iq get/set go to `handleIq` handlers). */
  stanza: [stanza: Element];
  online: [];
  /** The connection dropped; a reconnect follows unless the link was stopped. */
  offline: [cause: Error | undefined];
  /** A reconnect attempt is scheduled. */
  reconnecting: [info: { attempt: number; delayMs: number; cause: Error }];
  /**
   * A reconnect was refused by the server (a changed secret, the domain still taken by our previous,
   * half-dead connection: <conflict/>). The link keeps retrying with backoff; log it. Not named
   * 'error' so that a missing listener does not crash the process.
   */
  failure: [error: Error];
  /**
   * The server's XEP-0356 (Privileged Entity) word on what the component may do: a `<message>`
   * from one of its hosts (a bare domain) with `<privilege>`, right after each connection. Not a
   * `stanza` event: nobody sent it.
   */
  privilege: [message: Element];
}

export interface SendOptions {
  /**
   * The confirmation may wait up to this long (ms) for a ping other writes need anyway (the stanza
   * itself is written at once): for stanzas whose confirmation only lets the core acknowledge
   * something the gateway would otherwise send again (delivered and read ticks).
   */
  readonly confirmWithinMs?: number;
}

interface Entry {
  element: Element;
  /** Set when written on the current connection; cleared on a drop. */
  writtenSeq: number | undefined;
  /** Its confirmation may wait this long for a ping that other writes need anyway. */
  confirmWithinMs: number | undefined;
  /** When written: the time by which its confirmation ping goes (undefined: at once). */
  confirmBy?: number | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Ping {
  id: string;
  /** Confirms every entry written up to this sequence number. */
  upTo: number;
  timer: NodeJS.Timeout;
}

const STANZAS = new Set(['message', 'presence', 'iq']);
/** XEP-0356's namespaces: urn:xmpp:privilege:2 since version 0.4, :1 before. */
const PRIVILEGE = /^urn:xmpp:privilege:[12]$/;

export class ComponentLink extends EventEmitter<ComponentLinkEvents> {
  private readonly entity: Component;
  private readonly backoff: Backoff;
  private readonly queue: Entry[] = [];
  private state: LinkStatus = 'offline';
  private seq = 0;
  private ping: Ping | undefined;
  /** The connection generation whose writer is running, if any. */
  private flushing: number | undefined;
  /** Counts connections, so that work for a dead one stops. */
  private generation = 0;
  private lastError: Error | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  /** The delayed ping for writes whose confirmation may wait (confirmWrites). */
  private lazyTimer: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];
  /** Our iq requests awaiting their result, by id. */
  private readonly requests = new Map<
    string,
    { resolve: (el: Element) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }
  >();

  constructor(private readonly options: ComponentLinkOptions) {
    super();
    this.backoff = new Backoff({
      initialDelayMs: options.reconnect?.initialDelayMs ?? 1000,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 60_000,
      ...(options.random ? { random: options.random } : {}),
    });
    this.entity = component({
      service: `xmpp://${options.host}:${options.port}`,
      domain: options.domain,
      password: options.secret,
    });
    // Our own reconnect (backoff, queue flush) replaces xmpp.js's fixed one-second retry.
    this.entity.reconnect.stop();
    this.entity.on('error', (err) => {
      this.lastError = err;
    });
    this.entity.on('stanza', (el) => this.onStanza(el));
    this.entity.on('status', (status) => {
      if (status === 'disconnect') this.onDisconnect();
    });
    // Answer pings, ours (routed back by the server) and anyone else's (unless `pingGuard` objects).
    this.entity.iqCallee.get(NS_PING, 'ping', ({ stanza }) => this.pingGuard?.(stanza) ?? true);
  }

  /**
   * Says what a ping to a JID of ours should get instead of a result (an `<error>`), or undefined
   * for a result: XEP-0410 self-pings to a room occupant the client no longer is.
   */
  pingGuard: ((stanza: Element) => Element | undefined) | undefined;

  get status(): LinkStatus {
    return this.state;
  }

  get domain(): string {
    return this.options.domain;
  }

  /** Stanzas not yet confirmed (queued or in flight). */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Connects for the first time. Rejects with `ComponentSecretRefusedError`,
   * `XmppServerUnreachableError` or `ComponentStreamError` if that first attempt fails (a daemon
   * should not start with a bad config); once online, drops are repaired by reconnecting.
   */
  async start(): Promise<void> {
    if (this.state !== 'offline') throw new Error(`component link is ${this.state}`);
    this.state = 'connecting';
    try {
      await this.attempt();
    } catch (err) {
      this.state = 'offline';
      throw err;
    }
    this.onOnline();
  }

  /**
   * Queues a stanza (built with `xml()`) and writes it when online. Gives it an `id` if it has
   * none (resends reuse it) and `from` the component domain if none. Resolves once the server has
   * confirmably taken it (see the policy above); rejects with `ComponentStoppedError` if the link
   * is stopped first. Throws `InvalidStanzaError` at once for what the server would reject.
   */
  send(element: Element, options: SendOptions = {}): Promise<void> {
    if (!(element instanceof Element) || !STANZAS.has(element.name)) {
      throw new InvalidStanzaError(
        'send() takes a message, presence or iq element built with xml() from @xmpp/xml',
      );
    }
    const from = element.attrs.from ?? this.options.domain;
    if (!this.ownsJid(from)) {
      throw new InvalidStanzaError(
        `stanza from ${from} is outside the component domain ${this.options.domain}: the server would reject it`,
      );
    }
    if (this.state === 'stopped') return Promise.reject(new ComponentStoppedError(this.options.domain));
    element.attrs.from = from;
    element.attrs.id ??= randomUUID();
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({
        element,
        writtenSeq: undefined,
        confirmWithinMs: options.confirmWithinMs,
        resolve,
        reject,
      });
    });
    // A caller that does not wait must not crash the process with an unhandled rejection.
    done.catch(() => undefined);
    void this.flush();
    return done;
  }

  /**
   * Sends an iq get/set through the queue and resolves with its result stanza; rejects with
   * `IqErrorResponse` for an error answer, `IqTimeoutError` after `timeoutMs`.
   */
  request(iq: Element, timeoutMs = 15_000): Promise<Element> {
    if (iq.name !== 'iq' || (iq.attrs.type !== 'get' && iq.attrs.type !== 'set')) {
      throw new InvalidStanzaError('request() takes an <iq type="get|set"/> element');
    }
    const id = (iq.attrs.id ??= `iq-${randomUUID()}`) as string;
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id);
        reject(new IqTimeoutError(String(iq.attrs.to), timeoutMs));
      }, timeoutMs);
      timer.unref();
      this.requests.set(id, { resolve, reject, timer });
      this.send(iq).catch((err: unknown) => {
        clearTimeout(timer);
        this.requests.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  /** Resolves when every queued stanza has been confirmed. */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Answers iq get/set requests with `xmlns`/`name` as their child. The handler returns the result
   * child, `true` for an empty result, or an `<error/>` element; unhandled requests get
   * <service-unavailable/>.
   */
  handleIq(type: 'get' | 'set', xmlns: string, name: string, handler: IqHandler): void {
    this.entity.iqCallee[type](xmlns, name, handler);
  }

  /** Closes the stream. Unconfirmed stanzas are rejected with `ComponentStoppedError`. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasOnline = this.state === 'online';
    this.state = 'stopped';
    clearTimeout(this.reconnectTimer);
    this.clearTimers();
    for (const entry of this.queue.splice(0)) entry.reject(new ComponentStoppedError(this.options.domain));
    for (const [id, r] of this.requests) {
      clearTimeout(r.timer);
      r.reject(new ComponentStoppedError(this.options.domain));
      this.requests.delete(id);
    }
    this.notifyDrained();
    if (wasOnline) {
      await this.entity.stop().catch(() => undefined);
    }
    await this.closeSocket();
    this.entity.removeAllListeners();
  }

  // --- connection ------------------------------------------------------------------------------

  /** One connect + open + handshake, with a deadline; cleans up after itself on failure. */
  private async attempt(): Promise<void> {
    const { host, port, domain } = this.options;
    this.lastError = undefined;
    let onOnline: (() => void) | undefined;
    let onError: ((err: Error) => void) | undefined;
    let onStatus: ((status: string) => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    const online = new Promise<void>((resolve, reject) => {
      onOnline = resolve;
      onError = reject;
      onStatus = (status) => {
        if (status === 'disconnect') reject(this.lastError ?? new Error('connection closed'));
      };
      timer = setTimeout(
        () => reject(new XmppServerUnreachableError(host, port, 'timed out')),
        this.options.connectTimeoutMs ?? 10_000,
      );
    });
    online.catch(() => undefined);
    this.entity.once('online', onOnline!);
    this.entity.on('error', onError!);
    this.entity.on('status', onStatus!);
    try {
      await this.entity.connect(`xmpp://${host}:${port}`);
      // xmpp.js decodes each TCP chunk on its own (`data.toString('utf8')`), which garbles a
      // multi-byte character split between two chunks (seen with emoji in long messages from
      // Prosody). A string decoder on the socket keeps split characters whole.
      this.entity.socket?.setEncoding('utf8');
      // Delivery is confirmed by a ping written after the stanzas: Nagle's algorithm would hold
      // that small ping back until the previous segment is acknowledged (tens of ms per message).
      this.entity.socket?.setNoDelay(true);
      await Promise.race([this.entity.open({ domain }), online]);
      await online;
    } catch (err) {
      await this.closeSocket();
      throw this.classify(err);
    } finally {
      clearTimeout(timer);
      this.entity.removeListener('online', onOnline!);
      this.entity.removeListener('error', onError!);
      this.entity.removeListener('status', onStatus!);
    }
  }

  private classify(err: unknown): Error {
    const { host, port, domain } = this.options;
    if (err instanceof XmppServerUnreachableError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    if (e.name === 'StreamError') {
      const { condition, text } = e as XMPPError;
      if (condition === 'not-authorized') return new ComponentSecretRefusedError(domain, text);
      return new ComponentStreamError(domain, condition, text);
    }
    const code = (e as NodeJS.ErrnoException).code;
    return new XmppServerUnreachableError(host, port, code ?? e.message, { cause: e });
  }

  /** Destroys the socket and waits for xmpp.js to finish its reset (before any new connect). */
  private async closeSocket(): Promise<void> {
    const socket = this.entity.socket;
    if (!socket) return;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.destroy();
    await closed;
    // xmpp.js resets the entity in its own 'close' listener, which runs before ours.
  }

  private onOnline(): void {
    this.generation++;
    this.state = 'online';
    this.backoff.reset();
    this.emit('online');
    this.scheduleKeepalive();
    void this.flush();
  }

  private onDisconnect(): void {
    if (this.state !== 'online') return; // attempts clean up after themselves
    this.state = 'offline';
    this.clearTimers();
    // Unconfirmed writes are sent again after the reconnect, with the same ids.
    for (const entry of this.queue) entry.writtenSeq = undefined;
    const cause = this.lastError;
    this.emit('offline', cause);
    this.scheduleReconnect(cause ?? new Error('connection closed'));
  }

  private scheduleReconnect(cause: Error): void {
    if (this.state === 'stopped') return;
    const delayMs = this.backoff.next();
    this.emit('reconnecting', { attempt: this.backoff.attempts, delayMs, cause });
    this.reconnectTimer = setTimeout(() => {
      void this.reconnect();
    }, delayMs);
  }

  private async reconnect(): Promise<void> {
    if (this.state !== 'offline') return;
    this.state = 'connecting';
    try {
      await this.attempt();
    } catch (err) {
      if (this.currentState() === 'stopped') return;
      this.state = 'offline';
      const error = err instanceof Error ? err : new Error(String(err));
      // A refused secret will not fix itself, a <conflict/> will once the server drops our old
      // connection: say so, and keep trying with backoff either way.
      if (!(error instanceof XmppServerUnreachableError)) this.emit('failure', error);
      this.scheduleReconnect(error);
      return;
    }
    if (this.currentState() !== 'connecting') {
      await this.entity.stop().catch(() => undefined); // stopped meanwhile
      return;
    }
    this.onOnline();
  }

  // --- queue -----------------------------------------------------------------------------------

  private async flush(): Promise<void> {
    // One writer per connection. A writer stuck on a write to a dead socket must not block the
    // next connection's, hence the generation rather than a plain flag.
    const generation = this.generation;
    if (this.flushing === generation) return;
    this.flushing = generation;
    try {
      for (;;) {
        if (this.state !== 'online' || this.generation !== generation) return;
        const batch = this.queue.filter((e) => e.writtenSeq === undefined);
        if (batch.length === 0) break;
        // Everything waiting, written at once: the socket corked while the stanzas are handed to it,
        // so they leave in one write (in order), not one system call each.
        const socket = this.entity.socket;
        socket?.cork();
        const sent: Promise<void>[] = [];
        const now = Date.now();
        let confirmNow = false;
        for (const entry of batch) {
          entry.writtenSeq = ++this.seq;
          entry.confirmBy = entry.confirmWithinMs === undefined ? undefined : now + entry.confirmWithinMs;
          confirmNow ||= entry.confirmWithinMs === undefined;
          sent.push(this.entity.send(entry.element));
        }
        // The ping that confirms them leaves in the same write (none in flight: else the next one,
        // once it is answered, covers these).
        if (confirmNow && !this.ping) this.sendPing(this.seq);
        socket?.uncork();
        try {
          await Promise.all(sent);
        } catch {
          return; // the drop handler puts them back
        }
      }
      this.confirmWrites();
    } finally {
      if (this.flushing === generation) this.flushing = undefined;
    }
  }

  /**
   * Sends a ping behind the writes not yet covered by one; when all of them may wait
   * (`confirmWithinMs`), a little later, so that one ping confirms many (ticks at a steady rate).
   */
  private confirmWrites(): void {
    if (this.state !== 'online' || this.ping) return;
    let last = 0;
    let wait = Infinity;
    const now = Date.now();
    for (const e of this.queue) {
      if (e.writtenSeq === undefined) continue;
      last = Math.max(last, e.writtenSeq);
      wait = Math.min(wait, (e.confirmBy ?? 0) - now);
    }
    if (last === 0) return;
    if (wait > 0) {
      this.lazyTimer ??= setTimeout(() => {
        this.lazyTimer = undefined;
        this.confirmWrites();
      }, wait);
      return;
    }
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    this.sendPing(last);
  }

  private sendPing(upTo: number): void {
    const id = `ping-${randomUUID()}`;
    const timeoutMs = this.options.pingTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      // No answer: the connection is dead even if TCP has not noticed. Drop it; we reconnect.
      this.lastError = new Error(`no answer to a ping within ${timeoutMs} ms`);
      this.entity.socket?.destroy();
    }, timeoutMs);
    this.ping = { id, upTo, timer };
    const iq = xml(
      'iq',
      { type: 'get', id, from: this.options.domain, to: this.options.pingTo ?? this.options.domain },
      xml('ping', { xmlns: NS_PING }),
    );
    this.entity.send(iq).catch(() => undefined); // a failed write is followed by the drop
  }

  private onPingAnswer(): void {
    const ping = this.ping;
    if (!ping) return;
    clearTimeout(ping.timer);
    this.ping = undefined;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.writtenSeq === undefined || head.writtenSeq > ping.upTo) break;
      this.queue.shift();
      head.resolve();
    }
    this.notifyDrained();
    this.scheduleKeepalive();
    this.confirmWrites();
    void this.flush();
  }

  private notifyDrained(): void {
    if (this.queue.length > 0) return;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private scheduleKeepalive(): void {
    clearTimeout(this.keepaliveTimer);
    this.keepaliveTimer = setTimeout(() => {
      if (this.state === 'online' && !this.ping) this.sendPing(0);
    }, this.options.keepaliveMs ?? 30_000);
    this.keepaliveTimer.unref();
  }

  private clearTimers(): void {
    clearTimeout(this.keepaliveTimer);
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    if (this.ping) clearTimeout(this.ping.timer);
    this.ping = undefined;
  }

  // --- incoming --------------------------------------------------------------------------------

  private onStanza(el: Element): void {
    if (el.name === 'iq') {
      const type = el.attrs.type;
      if ((type === 'result' || type === 'error') && this.ping && el.attrs.id === this.ping.id) {
        // An error reply also proves the round trip.
        this.onPingAnswer();
        return;
      }
      const pending =
        type === 'result' || type === 'error' ? this.requests.get(el.attrs.id as string) : undefined;
      if (pending) {
        this.requests.delete(el.attrs.id as string);
        clearTimeout(pending.timer);
        if (type === 'result') pending.resolve(el);
        else pending.reject(IqErrorResponse.of(el));
      }
      return; // get/set are answered by the iqCallee middleware
    }
    const from = String(el.attrs.from ?? '');
    const privilege = el
      .getChildElements()
      .some((c) => c.name === 'privilege' && PRIVILEGE.test(c.attrs.xmlns ?? ''));
    if (el.name === 'message' && privilege && from !== '' && !/[@/]/.test(from)) {
      this.emit('privilege', el);
      return;
    }
    this.emit('stanza', el);
  }

  /** The state as it is now: TypeScript narrows `this.state` across awaits. */
  private currentState(): LinkStatus {
    return this.state;
  }

  private ownsJid(jid: string): boolean {
    const d = this.options.domain;
    const bare = jid.split('/')[0]!;
    const host = bare.includes('@') ? bare.slice(bare.indexOf('@') + 1) : bare;
    return host === d;
  }
}
