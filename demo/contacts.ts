/**
 * The demo's two simulated WhatsApp users, driven here rather than by the emulator's built-in
 * behaviours so that the demo sees (and prints) everything they send and receive: the echo user
 * reads and sends back every text ("echo: ...") and every picture or file (the same bytes), the
 * other answers like a person (reads, types, then answers after a moment with the next of a few
 * answers).
 *
 * What the log shows comes from the native users' own view (what they received and sent, the
 * receipts they got and gave), never from the bridge's logs.
 */
import type { NativeMediaKind, NativeUser, ReceivedMessage } from '../emulator/native-user.js';
import type { DescribedContent } from '../src/protocol/content.js';

export type ContactBehaviour = 'echo' | 'answer';

export interface DemoContactOptions {
  user: NativeUser;
  /** E.164, as XMPP users see it (`+15550000001@wa.localhost`). */
  phone: string;
  behaviour: ContactBehaviour;
  /** How long the person takes to answer (answer behaviour). */
  delayMs: number;
  answers: readonly string[];
  /** The local user's address (alice@localhost) for an interop JID, for the log. */
  nameOf: (interopJid: string) => string;
  /** Where a log line goes (one line per message or receipt). */
  log: (line: string) => void;
}

const POLL_MS = 50;

export class DemoContact {
  /** Ids of the messages this contact sent, with what they were, for receipt lines. */
  readonly sent = new Map<string, string>();
  private readonly described = new Map<string, string>();
  private messagesSeen = 0;
  private receiptsSeen = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private nextAnswer = 0;
  private stopped = false;

  constructor(private readonly o: DemoContactOptions) {}

  get user(): NativeUser {
    return this.o.user;
  }

  start(): void {
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  /** Stops reacting; resolves once the answer in progress (if any) has been sent or dropped. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.chain;
  }

  private poll(): void {
    const { user } = this.o;
    while (this.messagesSeen < user.received.length) {
      const m = user.received[this.messagesSeen++] as ReceivedMessage;
      const what = describe(m.content);
      this.described.set(m.id, what);
      this.o.log(`${this.o.nameOf(m.from)} -> ${this.o.phone}  ${what}`);
      // Native users send their delivery receipt on arrival (as real phones do).
      this.o.log(`${this.o.nameOf(m.from)} -> ${this.o.phone}  ✓ delivered  ${short(what)}`);
      this.chain = this.chain
        .then(() => this.react(m))
        .catch((err: unknown) => {
          this.o.log(`${this.o.phone} could not answer: ${(err as Error).message}`);
        });
    }
    while (this.receiptsSeen < user.receipts.length) {
      const r = user.receipts[this.receiptsSeen++];
      if (!r || r.type === 'retry') continue;
      const what = this.sent.get(r.id) ?? `message ${r.id}`;
      const tick = r.type === 'read' ? '✓✓ read' : '✓ delivered';
      this.o.log(`${this.o.phone} -> ${this.o.nameOf(r.from)}  ${tick}  ${short(what)}`);
    }
  }

  private async react(m: ReceivedMessage): Promise<void> {
    if (this.stopped) return;
    const { user } = this.o;
    // Both read what they get (blue ticks; a Matrix client shows the contact's read receipt).
    await user.sendReceipt(m.from, [m.id], 'read', m.fromDevice);
    this.o.log(
      `${this.o.nameOf(m.from)} -> ${this.o.phone}  ✓✓ read  ${short(this.described.get(m.id) ?? '')}`,
    );
    if (this.o.behaviour === 'echo') return this.echo(m);
    await user.typing(m.from, true);
    await sleep(this.o.delayMs);
    if (this.stopped) return;
    const text =
      m.content.kind === 'image'
        ? 'What a picture!'
        : (this.o.answers[this.nextAnswer++ % this.o.answers.length] ?? 'OK');
    await this.sendText(m, text);
  }

  private async echo(m: ReceivedMessage): Promise<void> {
    const c = m.content;
    if (c.kind === 'text') return this.sendText(m, `echo: ${c.text}`);
    if (
      c.kind === 'image' ||
      c.kind === 'video' ||
      c.kind === 'audio' ||
      c.kind === 'voice' ||
      c.kind === 'document'
    ) {
      const bytes = await this.o.user.downloadMedia(m);
      if (this.stopped) return;
      const kind: NativeMediaKind = c.kind;
      const media = {
        kind,
        bytes,
        mimetype: c.media.mimetype ?? 'application/octet-stream',
        ...('caption' in c && c.caption ? { caption: `echo: ${c.caption}` } : {}),
        ...(c.kind === 'document' && c.media.fileName ? { fileName: c.media.fileName } : {}),
      };
      const id = await this.o.user.sendMedia(m.from, media, { devices: [m.fromDevice] });
      this.record(id, m.from, describeMedia(kind, media.mimetype, bytes.length, media.caption ?? ''));
    }
  }

  private async sendText(m: ReceivedMessage, text: string): Promise<void> {
    const id = await this.o.user.sendText(m.from, text, { devices: [m.fromDevice] });
    this.record(id, m.from, JSON.stringify(text));
  }

  private record(id: string, to: string, what: string): void {
    this.sent.set(id, what);
    this.o.log(`${this.o.phone} -> ${this.o.nameOf(to)}  ${what}`);
  }
}

/** A message as one log line: the text quoted, media as [kind, type, size]. */
export function describe(c: DescribedContent): string {
  switch (c.kind) {
    case 'text':
      return JSON.stringify(c.text);
    case 'image':
    case 'video':
    case 'document':
      return describeMedia(c.kind, c.media.mimetype ?? '', Number(c.media.fileLength ?? 0), c.caption);
    case 'audio':
    case 'voice':
      return describeMedia(c.kind, c.media.mimetype ?? '', Number(c.media.fileLength ?? 0), '');
    case 'reaction':
      return `reacted ${c.emoji}`;
    case 'revoke':
      return 'deleted a message';
    case 'edit':
      return 'edited a message';
    case 'location':
      return `a location (${c.place.latitude}, ${c.place.longitude}${c.place.name ? `: ${c.place.name}` : ''})`;
    case 'contact':
      return `a contact card (${c.cards.map((k) => k.displayName).join(', ')})`;
    case 'unsupported':
      return `(${c.what}, which the demo cannot show)`;
    case 'unknown':
      return `(something the demo cannot show: ${c.reason})`;
  }
}

function describeMedia(kind: string, mimetype: string, bytes: number, caption: string): string {
  const size = bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} bytes`;
  return `[${kind}, ${mimetype || 'unknown type'}, ${size}]${caption ? ` ${JSON.stringify(caption)}` : ''}`;
}

function short(what: string): string {
  return what.length <= 60 ? what : `${what.slice(0, 57)}...`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
