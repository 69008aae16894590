/**
 * Crash safety on the XMPP side. XEP-0114 has no acknowledgement: a stanza the server wrote into the
 * component socket is gone if the bridge dies before it has a durable record of it, and the server
 * believes it delivered. So:
 *
 * - every message a user sends to a contact is journaled as it is parsed (before it waits on the
 *   user's chain of work): the appends of one socket read are written in one transaction at the end
 *   of that turn of the event loop, before the next read. A stanza the core has already taken by
 *   then (its own commit came first, as it does when the user's chain was idle) is journaled
 *   without its content: nothing to seal, serialise or clear. One the core does not have yet is
 *   journaled sealed with the at-rest key (src/util/payload-vault.ts), and its content is cleared
 *   once the core has it (those settles ride along with the next write);
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
import type { PayloadVault } from '../../src/util/payload-vault.js';
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

/** What a user sent, as the journal is given it: the stanza is serialised only if it must be kept. */
export interface JournalRequest {
  readonly localUser: string;
  readonly contact: string;
  readonly localId: string;
  /** The stanza as received (serialised), or how to serialise it. */
  readonly stanza: string | (() => string);
}

/** One journaled stanza, from its append to its settle. */
export class JournalEntry {
  /** Its row, once written. */
  seq: number | undefined;
  /** The core has it (its content need not be kept). */
  settled = false;
  /** Resolves with the row once it is durable; rejects if the write failed (logged). */
  readonly written: Promise<number>;
  /** @internal */
  resolve!: (seq: number) => void;
  /** @internal */
  reject!: (err: Error) => void;

  constructor(
    readonly request: JournalRequest,
    readonly receivedAt: number,
  ) {
    this.written = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.written.catch(() => undefined); // the journal logs a failed write; the message still goes
  }
}

/**
 * A sealed stanza as the `stanza` column (TEXT, on SQLite and PostgreSQL alike) holds it: this prefix
 * and the sealed bytes in base64. A stanza itself starts with `<`.
 */
export const SEALED_STANZA_PREFIX = 'sealed1:';

/** What a sealed stanza is bound to (its row's user and message), so it cannot be moved to another. */
export const journalRowId = (localUser: string, localId: string): string =>
  `xmpp_journal:${localUser}:${localId}`;

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
  private appends: JournalEntry[] = [];
  private settles: number[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  /** (first seq, time) of each MARK_EVERY_MS: rows below a mark older than the retention go. */
  private marks: { seq: number; at: number }[] = [];

  /**
   * `vault` seals what is journaled with content (the daemon always passes one; tests may not, and
   * then the stanza is kept as it is).
   */
  constructor(
    private readonly store: XmppStore,
    private readonly log: Logger | undefined,
    private readonly now: () => number = Date.now,
    private readonly vault?: PayloadVault | undefined,
  ) {}

  /** Starts a run; resolves with what to replay and, after an unclean stop, whom to tell. */
  async open(): Promise<JournalOpening> {
    const { run, previous } = await this.store.beginRun();
    this.run = run.run;
    const unclean = previous && previous.stoppedAt === undefined ? previous : undefined;
    const pending = (await this.store.journaled()).map((row): JournaledStanza => {
      let stanza = '';
      try {
        stanza = this.contentOf(row.localUser, row.localId, row.stanza);
      } catch (err) {
        // Sealed under another key: replayed as unreadable (logged and settled by the replay).
        this.log?.warn({ err: (err as Error).message, seq: row.seq }, 'journaled stanza cannot be opened');
      }
      return { seq: row.seq, localUser: row.localUser, localId: row.localId, stanza };
    });
    let senders: JournalSummary[] = [];
    if (unclean) {
      const all = await this.store.journalSummary(run.run);
      const last = Math.max(0, ...all.map((s) => s.lastAt));
      senders = all.filter((s) => s.lastAt >= last - NOTICE_WINDOW_MS);
    }
    return { run, unclean, pending, senders };
  }

  /**
   * Journals a stanza. The appends made in one turn of the event loop (one socket read) are written
   * in one transaction at the end of that turn; `written` resolves once the row is durable.
   */
  append(request: JournalRequest): JournalEntry {
    const entry = new JournalEntry(request, this.now());
    this.appends.push(entry);
    // After the turn's microtasks (the core's own commit, when the user's chain was idle), before
    // the next socket read.
    this.scheduled ??= setImmediate(() => void this.flush());
    return entry;
  }

  /**
   * The core has the stanza (an entry, or a replayed row's seq): its content is not kept. Before
   * the entry is written this costs nothing (it is written without content); after, the content
   * goes with the next write.
   */
  settle(entry: JournalEntry | number): void {
    let seq: number;
    if (typeof entry === 'number') {
      seq = entry;
    } else {
      if (entry.settled) return;
      entry.settled = true;
      if (entry.seq === undefined) return; // written content-free, or settled once written
      seq = entry.seq;
    }
    this.settles.push(seq);
    if (this.timer === undefined && this.scheduled === undefined) {
      this.timer = setTimeout(() => void this.flush(), SETTLE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Writes what is waiting (appends, settles, the prune due). */
  flush(): Promise<unknown> {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
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
    this.writing = this.writing.then(async () => {
      // Decided as the write is made: what the core took meanwhile is written without content.
      const kept: boolean[] = [];
      try {
        const append = appends.map((a): JournalAppend => {
          kept.push(!a.settled);
          return {
            localUser: a.request.localUser,
            contact: a.request.contact,
            localId: a.request.localId,
            receivedAt: a.receivedAt,
            stanza: a.settled ? null : this.sealed(a.request),
          };
        });
        const seqs = await this.store.writeJournal({ run, append, settle, pruneBelow: this.pruneBelow(at) });
        const first = seqs[0];
        const lastMark = this.marks[this.marks.length - 1];
        if (first !== undefined && (!lastMark || at - lastMark.at >= MARK_EVERY_MS)) {
          this.marks.push({ seq: first, at });
        }
        appends.forEach((a, i) => {
          const seq = seqs[i] ?? 0;
          a.seq = seq;
          // Settled while its write was under way: its content goes with the next write.
          if (kept[i] && a.settled) {
            a.settled = false;
            this.settle(a);
          }
          a.resolve(seq);
        });
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

  private sealed(request: JournalRequest): string {
    const text = typeof request.stanza === 'string' ? request.stanza : request.stanza();
    if (!this.vault) return text;
    const sealed = this.vault.seal(
      journalRowId(request.localUser, request.localId),
      Buffer.from(text, 'utf8'),
    );
    return (
      SEALED_STANZA_PREFIX +
      Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength).toString('base64')
    );
  }

  /** A stored stanza's text: opened when sealed (throws when it cannot be), as it is when plain. */
  private contentOf(localUser: string, localId: string, stored: string): string {
    if (!stored.startsWith(SEALED_STANZA_PREFIX)) return stored; // from before sealing, or without a key
    if (!this.vault) throw new Error('the stanza is sealed and the bridge has no at-rest key');
    const sealed = Buffer.from(stored.slice(SEALED_STANZA_PREFIX.length), 'base64');
    return Buffer.from(this.vault.open(journalRowId(localUser, localId), sealed)).toString('utf8');
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
