/**
 * Load for one path of the end-to-end benchmark, and what the receiving users observed.
 *
 * Every message's text names the round, the conversation and its sequence number in that
 * conversation; the send time is kept here by (conversation, sequence), taken just before the
 * sending user's client starts sending (the HTTP PUT, the XMPP stanza, the native client's
 * encryption). The receiver's observation (the homeserver storing the event in the room, the XMPP
 * client parsing the stanza, the native client decrypting the message) closes the latency. Each
 * conversation must arrive complete and in order, or the round fails.
 */
import type { PathId, World } from './world.js';

const PAD = ' lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor';

export interface LoadResult {
  messages: number;
  /** First send to last receive. */
  seconds: number;
  /** Send-to-receive times in ms, in arrival order. */
  latencies: number[];
}

/** The receiving side of one round: order and completeness per conversation, latency per message. */
class Tracker {
  readonly sentAt: number[][];
  readonly next: number[];
  readonly latencies: number[] = [];
  readonly problems: string[] = [];
  received = 0;
  lastAt = 0;
  private waiters: (() => void)[] = [];

  constructor(
    readonly tag: string,
    readonly path: PathId,
    conversations: number,
  ) {
    this.sentAt = Array.from({ length: conversations }, () => []);
    this.next = new Array<number>(conversations).fill(0);
  }

  text(conversation: number, seq: number): string {
    // About 100 bytes, as in the Signal benchmark.
    return `${this.tag} ${conversation} ${seq}${PAD}`.slice(0, 100);
  }

  receive(path: PathId, conversation: number, text: string): void {
    if (path !== this.path) return;
    const [tag, conv, seqText] = text.split(' ', 3);
    if (tag !== this.tag) return; // a warm-up message or an earlier round's
    const seq = Number(seqText);
    if (Number(conv) !== conversation) {
      this.problems.push(
        `conversation ${conversation} received message ${conv}/${seq} of another conversation`,
      );
      return;
    }
    const expected = this.next[conversation] as number;
    if (seq !== expected) {
      // A duplicate, a gap or a reordering: the guarantee the benchmark checks is broken.
      if (this.problems.length < 20)
        this.problems.push(`conversation ${conversation}: expected message ${expected}, received ${seq}`);
      if (seq < expected) return;
    }
    const now = performance.now();
    this.next[conversation] = seq + 1;
    this.received++;
    this.lastAt = now;
    const sent = this.sentAt[conversation]?.[seq];
    if (sent !== undefined) this.latencies.push(now - sent);
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves on the next receive (or after `ms`). */
  progress(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

let rounds = 0;

/** Waits until `total` messages have arrived; fails when nothing arrives for `stallMs`. */
async function drain(
  t: Tracker,
  total: number,
  stallMs: number,
  what: string,
  sendError: () => unknown,
): Promise<void> {
  let lastProgress = performance.now();
  let seen = t.received;
  while (t.received < total) {
    const err = sendError();
    if (err !== undefined) throw err instanceof Error ? err : new Error(String(err));
    await t.progress(250);
    if (t.received !== seen) {
      seen = t.received;
      lastProgress = performance.now();
    } else if (performance.now() - lastProgress > stallMs) {
      throw new Error(
        `${what}: ${total - t.received} of ${total} messages did not arrive (${t.received} did, per conversation ` +
          `${t.next.join('/')}); ${t.problems.slice(0, 3).join('; ')}`,
      );
    }
  }
  if (t.problems.length > 0) throw new Error(`${what}: order broken: ${t.problems.slice(0, 3).join('; ')}`);
}

function attach(world: World, t: Tracker): () => void {
  world.sink = (path, conversation, text) => t.receive(path, conversation, text);
  return () => {
    world.sink = () => undefined;
    world.clearReceived();
  };
}

/**
 * Messages at a steady `rate` per second for `seconds`, spread round-robin over the conversations;
 * each conversation's messages are sent one after the other (a client keeps its order), the
 * conversations in parallel.
 */
export async function paced(
  world: World,
  path: PathId,
  conversations: number,
  rate: number,
  seconds: number,
): Promise<LoadResult> {
  const t = new Tracker(`p${++rounds}`, path, conversations);
  const detach = attach(world, t);
  try {
    const total = Math.max(conversations, Math.round(rate * seconds));
    const chains: Promise<unknown>[] = new Array<Promise<unknown>>(conversations).fill(Promise.resolve());
    const seqs = new Array<number>(conversations).fill(0);
    let error: unknown;
    const start = performance.now();
    for (let k = 0; k < total; k++) {
      const due = start + (k * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const c = k % conversations;
      const seq = seqs[c]!++;
      chains[c] = (chains[c] as Promise<unknown>).then(() => {
        t.sentAt[c]![seq] = performance.now();
        return world.send(path, c, t.text(c, seq), `${t.tag}-${c}-${seq}`);
      });
      (chains[c] as Promise<unknown>).catch((err: unknown) => (error ??= err));
    }
    await drain(t, total, 20_000, `${path} at ${rate} msgs/s`, () => error);
    return { messages: total, seconds: (t.lastAt - start) / 1000, latencies: t.latencies };
  } finally {
    detach();
  }
}

/**
 * As fast as the path goes: every conversation sends its next message as soon as its client has
 * sent the previous one, with at most `window` messages of a conversation sent and not yet
 * received (so queues stay bounded and the rate is one the path sustains). No message is sent
 * after `maxSeconds`, so a slow path costs a bounded time.
 */
export async function flood(
  world: World,
  path: PathId,
  conversations: number,
  perConversation: number,
  window: number,
  maxSeconds: number,
): Promise<LoadResult> {
  const t = new Tracker(`f${++rounds}`, path, conversations);
  const detach = attach(world, t);
  try {
    let error: unknown;
    const start = performance.now();
    const deadline = start + maxSeconds * 1000;
    const sent = new Array<number>(conversations).fill(0);
    const sender = async (c: number) => {
      for (let seq = 0; seq < perConversation; seq++) {
        while (seq - (t.next[c] as number) >= window && performance.now() < deadline) await t.progress(1000);
        // A slow path gets a bounded phase: what was sent by then is drained and counted.
        if (performance.now() >= deadline) return;
        t.sentAt[c]![seq] = performance.now();
        await world.send(path, c, t.text(c, seq), `${t.tag}-${c}-${seq}`);
        sent[c] = seq + 1;
      }
    };
    await Promise.all(
      Array.from({ length: conversations }, (_, c) => sender(c).catch((err: unknown) => (error ??= err))),
    );
    const total = sent.reduce((a, b) => a + b, 0);
    await drain(t, total, 20_000, `${path} flood`, () => error);
    return { messages: total, seconds: (t.lastAt - start) / 1000, latencies: t.latencies };
  } finally {
    detach();
  }
}

export function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}
