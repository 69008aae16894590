/**
 * Crash safety on the XMPP side. XEP-0114 has no acknowledgement: a stanza the server wrote into the
 * component socket is gone if the bridge dies before it has a durable record of it, and the server
 * believes it delivered. So:
 *
 * - every message a user sends to a contact is journaled as it is parsed (before it waits on the
 *   user's chain of work), the appends of one socket read folded into one transaction; once the core
 *   has it, its content is cleared (those settles ride along with the next write);
 * - at start, what was journaled but not handed to the core is replayed, in order, before anything
 *   new (the core's outbox is idempotent on the local id, so a replay of something it already had
 *   is a no-op);
 * - each start records a run that a clean stop closes. A start that finds the last run open knows
 *   the bridge did not stop cleanly, and tells every user who was sending in the seconds before
 *   (from each contact concerned): up to which message the bridge had taken theirs, and that what
 *   they sent after it without a delivery receipt did not go. The rows that say so (ids and times,
 *   no content) are kept a minute.
 */
import { xml, Parser, type Element } from '@xmpp/xml';
import type { Logger } from '../../src/observability/logger.js';
import { derivedId, xmlSafe } from './stanzas.js';
import type { JournalAppend, JournaledStanza, JournalSummary, XmppRun, XmppStore } from './store.js';

/** Content-free rows (ids, times) are kept this long: what the crash notice is made from. */
export const JOURNAL_RETENTION_MS = 60_000;
/** After an unclean stop, users whose last message came this close to the last one of all are told. */
export const NOTICE_WINDOW_MS = 30_000;
/** Settles (content cleared) wait at most this long for a write to ride along with. */
const SETTLE_DELAY_MS = 50;
/** How often a prune mark is taken (and so how often old rows go). */
const MARK_EVERY_MS = 5_000;

interface PendingAppend {
  readonly entry: JournalAppend;
  resolve(seq: number): void;
  reject(err: Error): void;
}

/** What `open` found: the stanzas to replay, and whether (and what) to tell users after a crash. */
export interface JournalOpening {
  readonly run: XmppRun;
  /** The run before, when it did not stop cleanly. */
  readonly unclean: XmppRun | undefined;
  readonly pending: JournaledStanza[];
  /** After an unclean stop: per user and contact, what they had sent just before it. */
  readonly senders: JournalSummary[];
}

export class StanzaJournal {
  private run: number | undefined;
  private appends: PendingAppend[] = [];
  private settles: number[] = [];
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  /** (first seq, time) of each MARK_EVERY_MS: rows below a mark older than the retention go. */
  private marks: { seq: number; at: number }[] = [];

  constructor(
    private readonly store: XmppStore,
    private readonly log: Logger | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts a run; resolves with what to replay and, after an unclean stop, whom to tell. */
  async open(): Promise<JournalOpening> {
    const { run, previous } = await this.store.beginRun();
    this.run = run.run;
    const unclean = previous && previous.stoppedAt === undefined ? previous : undefined;
    const pending = await this.store.journaled();
    let senders: JournalSummary[] = [];
    if (unclean) {
      const all = await this.store.journalSummary(run.run);
      const last = Math.max(0, ...all.map((s) => s.lastAt));
      senders = all.filter((s) => s.lastAt >= last - NOTICE_WINDOW_MS);
    }
    return { run, unclean, pending, senders };
  }

  /**
   * Journals a stanza; resolves with its seq once it is durable. Appends made in one turn (one
   * socket read) are written in one transaction, at the end of that turn.
   */
  append(entry: Omit<JournalAppend, 'receivedAt'>): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.appends.push({ entry: { ...entry, receivedAt: this.now() }, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(() => void this.flush());
      }
    });
  }

  /** The core has the stanza: its content goes with the next write. */
  settle(seq: number): void {
    this.settles.push(seq);
    if (this.timer === undefined && !this.scheduled) {
      this.timer = setTimeout(() => void this.flush(), SETTLE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Writes what is waiting (appends, settles, the prune due). */
  flush(): Promise<unknown> {
    this.scheduled = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    const appends = this.appends;
    const settle = this.settles;
    this.appends = [];
    this.settles = [];
    if (appends.length === 0 && settle.length === 0) return this.writing;
    const run = this.run;
    if (run === undefined) {
      const err = new Error('the XMPP journal is not open');
      for (const a of appends) a.reject(err);
      return this.writing;
    }
    const at = this.now();
    const write = {
      run,
      append: appends.map((a) => a.entry),
      settle,
      pruneBelow: this.pruneBelow(at),
    };
    this.writing = this.writing.then(async () => {
      try {
        const seqs = await this.store.writeJournal(write);
        const first = seqs[0];
        const lastMark = this.marks[this.marks.length - 1];
        if (first !== undefined && (!lastMark || at - lastMark.at >= MARK_EVERY_MS)) {
          this.marks.push({ seq: first, at });
        }
        appends.forEach((a, i) => a.resolve(seqs[i] ?? 0));
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'XMPP journal write failed');
        for (const a of appends) a.reject(err as Error);
      }
    });
    return this.writing;
  }

  /**
   * Flushes and, for a clean stop, closes the run (the content-free rows go). `clean: false` leaves
   * it open, as a crash would: the next start tells the users again (notices not yet given).
   */
  async close({ clean }: { clean: boolean } = { clean: true }): Promise<void> {
    await this.flush();
    if (clean && this.run !== undefined) await this.store.endRun(this.run);
    this.run = undefined;
  }

  /** The notices of an unclean stop were given: the rows they were made from go. */
  async noticesGiven(run: number): Promise<void> {
    await this.store.forgetJournal(run);
  }

  private pruneBelow(at: number): number | undefined {
    let below: number | undefined;
    while (this.marks.length > 1 && (this.marks[1] as { at: number }).at <= at - JOURNAL_RETENTION_MS) {
      this.marks.shift();
      below = this.marks[0]?.seq;
    }
    return below;
  }
}

/** A journaled stanza back as an element. */
export function parseStanza(text: string): Element {
  const parser = new Parser();
  let found: Element | undefined;
  let failure: Error | undefined;
  parser.on('element', (el: Element) => (found ??= el));
  parser.on('error', (err: Error) => (failure = err));
  parser.write(`<journal>${text}</journal>`);
  if (!found) throw failure ?? new Error('no stanza in the journal row');
  found.parent = null;
  return found;
}

const clock = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

/** What a user who was sending to a contact when the bridge died is told, from that contact. */
export function crashNotice(domain: string, s: JournalSummary, run: number): Element {
  const time = clock(s.lastAt);
  const text =
    `⚠ The bridge restarted after an unexpected stop. It had taken your messages to this contact up ` +
    `to ${time} UTC (the last one had the id ${s.lastLocalId}): they go through as usual. Anything ` +
    `you sent here after ${time} UTC that shows no delivery receipt was lost in the crash: please ` +
    `send it again.`;
  return xml(
    'message',
    {
      type: 'chat',
      from: s.contact.endsWith(`@${domain}`) ? s.contact : domain,
      to: s.localUser,
      id: derivedId('crash', String(run), s.localUser, s.contact),
    },
    xml('body', {}, xmlSafe(text)),
  );
}
