/**
 * The demo's two simulated WhatsApp users, driven here rather than by the emulator's built-in
 * behaviours so that the demo sees (and prints) everything they send and receive: the echo user
 * reads and sends back every text ("echo: ...") and every picture or file (the same bytes), the
 * other answers like a person (reads, types, then answers after a moment with the next of a few
 * answers).
 *
 * In a group (the answering contact makes one with the local user and the echo contact once the
 * user is connected: `makeGroup`), the answering contact reads and answers the local users'
 * messages only, never its own or the other contact's, and the echo contact stays quiet (an echo
 * there would answer the other contact's answers, and they each other's, without end).
 *
 * What the log shows comes from the native users' own view (what they received and sent, the
 * receipts they got and gave), never from the bridge's logs; group lines start with the group's
 * subject (`[Demo group] ...`), and what the two contacts say to each other in a group does not
 * cross the bridge, so it is not shown.
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
  /** Whether an interop JID is one of the demo's simulated users (not a local user of the bridge). */
  isContact: (interopJid: string) => boolean;
  /** Where a log line goes (one line per message or receipt). */
  log: (line: string) => void;
}

const POLL_MS = 50;

export class DemoContact {
  /** Ids of the messages this contact sent, with what they were, for receipt lines. */
  readonly sent = new Map<string, string>();
  /** Ids of the messages this contact sent into groups. */
  readonly sentInGroups: string[] = [];
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
      // In a group, only what a local user says crosses the bridge and is answered.
      if (m.group !== undefined && (m.from === user.jid || this.o.isContact(m.from))) continue;
      const what = describe(m.content);
      const tag = this.tag(m.group);
      this.described.set(m.id, what);
      this.o.log(`${tag}${this.o.nameOf(m.from)} -> ${this.o.phone}  ${what}`);
      // Native users send their delivery receipt on arrival (as real phones do).
      this.o.log(`${tag}${this.o.nameOf(m.from)} -> ${this.o.phone}  ✓ delivered  ${short(what)}`);
      this.after(() => this.react(m), 'answer');
    }
    while (this.receiptsSeen < user.receipts.length) {
      const r = user.receipts[this.receiptsSeen++];
      if (!r || r.type === 'retry') continue;
      if (r.group !== undefined && this.o.isContact(r.from)) continue;
      const what = this.sent.get(r.id) ?? `message ${r.id}`;
      const tick = r.type === 'read' ? '✓✓ read' : '✓ delivered';
      this.o.log(`${this.tag(r.group)}${this.o.phone} -> ${this.o.nameOf(r.from)}  ${tick}  ${short(what)}`);
    }
  }

  /**
   * Makes a group with `members` (this contact its admin) and says `hello` in it; the log says so.
   * Resolves with the group's JID, or undefined when stopped or when the gateway did not make it.
   */
  makeGroup(subject: string, members: readonly string[], hello: string): Promise<string | undefined> {
    return this.after(async () => {
      if (this.stopped) return undefined;
      const { group, failed } = await this.o.user.groups.create(subject, members);
      const added = members.filter((jid) => !failed.some((f) => f.jid === jid && f.error !== undefined));
      this.o.log(
        `[${subject}] ${this.o.phone} made the group with ${added.map(this.o.nameOf).join(' and ') || 'nobody'}`,
      );
      for (const f of failed)
        this.o.log(`[${subject}] ${this.o.nameOf(f.jid)} could not be added (error ${String(f.error)})`);
      // The group is made: a hello that fails is logged, and the group not made again.
      await this.sendText(group.jid, hello).catch((err: unknown) => {
        this.o.log(`[${subject}] ${this.o.phone} could not say hello: ${(err as Error).message}`);
      });
      return group.jid;
    }, 'make the group');
  }

  /** Runs `work` after what this contact is doing; a failure is logged, not thrown. */
  private after<T>(work: () => Promise<T>, what: string): Promise<T | undefined> {
    const done = this.chain.then(work).catch((err: unknown) => {
      this.o.log(`${this.o.phone} could not ${what}: ${(err as Error).message}`);
      return undefined;
    });
    this.chain = done.then(() => undefined);
    return done;
  }

  /** `[Demo group] ` for a group message or receipt, nothing in a 1:1 chat. */
  private tag(group: string | undefined): string {
    return group === undefined ? '' : `[${this.o.user.groups.groups.get(group)?.subject ?? group}] `;
  }

  private async react(m: ReceivedMessage): Promise<void> {
    if (this.stopped) return;
    const { user } = this.o;
    // The echo contact stays quiet in a group: its echo would loop with the other contact's answers.
    if (m.group !== undefined && this.o.behaviour === 'echo') return;
    // Both read what they get (blue ticks; a Matrix client shows the contact's read receipt).
    if (m.group !== undefined) await user.sendReceipt(m.group, [m.id], 'read');
    else await user.sendReceipt(m.from, [m.id], 'read', m.fromDevice);
    this.o.log(
      `${this.tag(m.group)}${this.o.nameOf(m.from)} -> ${this.o.phone}  ✓✓ read  ${short(this.described.get(m.id) ?? '')}`,
    );
    if (this.o.behaviour === 'echo') return this.echo(m);
    // (Typing is a 1:1 notice: the gateway carries no chat state into groups.)
    if (m.group === undefined) await user.typing(m.from, true);
    await sleep(this.o.delayMs);
    if (this.stopped) return;
    const text =
      m.content.kind === 'image'
        ? 'What a picture!'
        : (this.o.answers[this.nextAnswer++ % this.o.answers.length] ?? 'OK');
    if (m.group !== undefined) await this.sendText(m.group, text);
    else await this.sendText(m.from, text, m.fromDevice);
  }

  private async echo(m: ReceivedMessage): Promise<void> {
    const c = m.content;
    if (c.kind === 'text') return this.sendText(m.from, `echo: ${c.text}`, m.fromDevice);
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

  /** A text to a chat partner's device, or into a group (`to` a group JID, no device). */
  private async sendText(to: string, text: string, device?: number): Promise<void> {
    const { user } = this.o;
    if (device === undefined) {
      const id = await user.send(to, { kind: 'text', text });
      this.sentInGroups.push(id);
      this.record(id, to, JSON.stringify(text));
      return;
    }
    const id = await user.sendText(to, text, { devices: [device] });
    this.record(id, to, JSON.stringify(text));
  }

  /** Logs a message sent; into a group, as reaching the group's local users (what crosses the bridge). */
  private record(id: string, to: string, what: string): void {
    this.sent.set(id, what);
    const group = this.o.user.groups.groups.get(to);
    const readers = group?.participants
      .map((p) => p.jid)
      .filter((jid) => jid !== this.o.user.jid && !this.o.isContact(jid));
    const toWhom =
      readers === undefined ? this.o.nameOf(to) : readers.map(this.o.nameOf).join(', ') || 'nobody';
    this.o.log(`${this.tag(group ? to : undefined)}${this.o.phone} -> ${toWhom}  ${what}`);
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
