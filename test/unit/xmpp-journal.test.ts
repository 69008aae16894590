/**
 * The XMPP adapter's journal (adapters/xmpp/journal.ts) on SQLite: appends of one turn are one
 * write; what was not settled is replayed at the next start; a run not closed is an unclean stop,
 * whose notice names the last message taken per user and contact (no content); a clean stop leaves
 * nothing to tell; content-free rows go after the retention.
 */
import { jest } from '@jest/globals';
import path from 'node:path';
import { xml } from '@xmpp/xml';
import { bridgeMigrations } from '../../app/migrations.js';
import { SqliteXmppStore } from '../../adapters/xmpp/index.js';
import {
  crashNotice,
  JOURNAL_RETENTION_MS,
  parseStanza,
  SEALED_STANZA_PREFIX,
  StanzaJournal,
} from '../../adapters/xmpp/journal.js';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { openDatabase } from '../../src/store/database.js';
import { PayloadVault } from '../../src/util/payload-vault.js';
import type { Db } from '../../src/store/sql.js';
import { tempDir } from '../support/tmp.js';

const ALICE = 'alice@example.org';
const BOB = '+4915112345678@wa.example.org';
const CAROL = '+4915112340000@wa.example.org';

const stanza = (to: string, id: string, body: string) =>
  xml(
    'message',
    { type: 'chat', from: `${ALICE}/phone`, to, id },
    xml('body', {}, body),
    xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id }),
  ).toString();

/** The database's files (the file itself, its WAL) that hold `marker`. */
function findInFiles(dbFile: string, marker: string): string[] {
  const dir = path.dirname(dbFile);
  return readdirSync(dir)
    .filter((f) => f.startsWith(path.basename(dbFile)))
    .filter((f) => readFileSync(path.join(dir, f)).includes(marker));
}

describe('StanzaJournal', () => {
  const tmp = tempDir('xmpp-journal-');
  let file: string;
  let db: Db;
  let clock: number;
  let store: SqliteXmppStore;

  const reopen = () => {
    db.close();
    db = openDatabase(file, { migrations: bridgeMigrations() });
    store = new SqliteXmppStore(db, () => clock);
    return new StanzaJournal(store, undefined, () => clock);
  };

  beforeEach(() => {
    file = path.join(tmp.dir, `${Date.now()}-${Math.random()}.db`);
    db = openDatabase(file, { migrations: bridgeMigrations() });
    clock = Date.UTC(2026, 0, 1, 12, 0, 0);
    store = new SqliteXmppStore(db, () => clock);
  });
  afterEach(() => db.close());
  afterAll(() => tmp.cleanup());

  const append = (j: StanzaJournal, to: string, id: string, body = `text of ${id}`) =>
    j.append({ localUser: ALICE, contact: to, localId: id, stanza: stanza(to, id, body) }).written;

  test('appends of one turn are one write, durable when they resolve, and in order', async () => {
    const journal = new StanzaJournal(store, undefined, () => clock);
    await journal.open();
    const writes = jest.spyOn(store, 'writeJournal');
    const seqs = await Promise.all([
      append(journal, BOB, 'a'),
      append(journal, BOB, 'b'),
      append(journal, CAROL, 'c'),
    ]);
    expect(writes).toHaveBeenCalledTimes(1);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect((await store.journaled()).map((r) => parseStanza(r.stanza as string).attrs.id)).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  test('with the at-rest key, what waits for the core is sealed in the database file and opened for the replay', async () => {
    const vault = new PayloadVault(randomBytes(32));
    let journal = new StanzaJournal(store, undefined, () => clock, vault);
    await journal.open();
    const marker = `journal-marker-${randomBytes(6).toString('hex')}`;
    await append(journal, BOB, 'sealed-1', marker);
    await journal.flush();
    // The core is stalled: the stanza waits in the journal, sealed (not in the file, its WAL, or the row).
    expect(findInFiles(file, marker)).toEqual([]);
    const raw = db.prepare('SELECT stanza FROM xmpp_journal').get() as { stanza: string };
    expect(raw.stanza.startsWith(SEALED_STANZA_PREFIX)).toBe(true);

    // After a crash it is opened with the key and replayed whole.
    db.close();
    db = openDatabase(file, { migrations: bridgeMigrations() });
    store = new SqliteXmppStore(db, () => clock);
    journal = new StanzaJournal(store, undefined, () => clock, vault);
    const opening = await journal.open();
    expect(opening.pending).toHaveLength(1);
    expect(parseStanza(opening.pending[0]!.stanza).getChild('body')?.getText()).toBe(marker);

    // Under another key it cannot be opened: replayed as unreadable (empty), not as garbage.
    db.close();
    db = openDatabase(file, { migrations: bridgeMigrations() });
    store = new SqliteXmppStore(db, () => clock);
    journal = new StanzaJournal(store, undefined, () => clock, new PayloadVault(randomBytes(32)));
    expect((await journal.open()).pending.map((p) => p.stanza)).toEqual(['']);
  });

  test('a stanza the core took before the end of the turn is journaled without content, never serialised', async () => {
    const vault = new PayloadVault(randomBytes(32));
    const journal = new StanzaJournal(store, undefined, () => clock, vault);
    await journal.open();
    const serialise = jest.fn(() => stanza(BOB, 'quick', 'quick words'));
    const entry = journal.append({ localUser: ALICE, contact: BOB, localId: 'quick', stanza: serialise });
    journal.settle(entry); // the core's commit came first (its chain was idle)
    const slow = journal.append({
      localUser: ALICE,
      contact: BOB,
      localId: 'slow',
      stanza: stanza(BOB, 'slow', 'x'),
    });
    await Promise.all([entry.written, slow.written]);
    expect(serialise).not.toHaveBeenCalled();
    const rows = () =>
      db.prepare('SELECT local_id, stanza IS NULL AS cleared FROM xmpp_journal ORDER BY seq').all();
    expect(rows()).toEqual([
      { local_id: 'quick', cleared: 1 },
      { local_id: 'slow', cleared: 0 },
    ]);
    // The row is there for a crash notice all the same; the slow one is cleared once settled.
    journal.settle(slow);
    await journal.flush();
    expect(rows()).toEqual([
      { local_id: 'quick', cleared: 1 },
      { local_id: 'slow', cleared: 1 },
    ]);
  });

  test('a settled stanza loses its content; one not settled is replayed after a crash, with a notice', async () => {
    let journal = new StanzaJournal(store, undefined, () => clock);
    const first = await journal.open();
    expect(first.unclean).toBeUndefined();
    const a = await append(journal, BOB, 'a', 'secret words');
    clock += 1000;
    await append(journal, BOB, 'b');
    clock += 1000;
    const c = await append(journal, CAROL, 'c');
    journal.settle(a);
    journal.settle(c);
    await journal.flush();
    const raw = db.prepare('SELECT seq, stanza FROM xmpp_journal ORDER BY seq').all() as {
      stanza: string | null;
    }[];
    expect(raw.map((r) => r.stanza === null)).toEqual([true, false, true]);
    expect(JSON.stringify(raw)).not.toContain('secret words');

    // The process dies here (no close): the next start replays b and tells Alice about both contacts.
    clock += 5000;
    journal = reopen();
    const second = await journal.open();
    expect(second.unclean?.run).toBe(first.run.run);
    expect(second.pending.map((r) => parseStanza(r.stanza).attrs.id)).toEqual(['b']);
    const el = parseStanza(second.pending[0]!.stanza);
    expect(el.getChild('origin-id', 'urn:xmpp:sid:0')?.attrs.id).toBe('b');
    expect(el.getChild('body')?.getText()).toBe('text of b');
    expect(second.senders).toEqual([
      {
        localUser: ALICE,
        contact: CAROL,
        count: 1,
        lastLocalId: 'c',
        lastAt: Date.UTC(2026, 0, 1, 12, 0, 2),
      },
      { localUser: ALICE, contact: BOB, count: 2, lastLocalId: 'b', lastAt: Date.UTC(2026, 0, 1, 12, 0, 1) },
    ]);
    const notice = crashNotice('wa.example.org', second.senders[1]!, second.run.run);
    expect(notice.attrs).toMatchObject({ from: BOB, to: ALICE, type: 'chat' });
    expect(notice.getChild('body')?.getText()).toContain('up to 12:00:01 UTC');
    expect(notice.getChild('body')?.getText()).toContain('the id b)');

    // Once the notices are confirmed their rows go; the replayed one stays until settled.
    await journal.noticesGiven(second.run.run);
    expect((await store.journalSummary(second.run.run)).map((s) => s.lastLocalId)).toEqual(['b']);
  });

  test('a clean stop leaves nothing to tell and nothing to replay', async () => {
    let journal = new StanzaJournal(store, undefined, () => clock);
    await journal.open();
    journal.settle(await append(journal, BOB, 'a'));
    await journal.close();
    journal = reopen();
    const next = await journal.open();
    expect(next.unclean).toBeUndefined();
    expect(next.pending).toEqual([]);
    expect(next.senders).toEqual([]);
    expect(db.prepare('SELECT count(*) AS n FROM xmpp_journal').get()).toEqual({ n: 0 });
  });

  test('content-free rows older than the retention are pruned as the journal goes on', async () => {
    const journal = new StanzaJournal(store, undefined, () => clock);
    await journal.open();
    for (let i = 0; i < 30; i++) {
      journal.settle(await append(journal, BOB, `m${i}`));
      clock += 5_000;
    }
    await journal.flush();
    const left = db.prepare('SELECT min(received_at) AS oldest, count(*) AS n FROM xmpp_journal').get() as {
      oldest: number;
      n: number;
    };
    expect(clock - left.oldest).toBeLessThanOrEqual(JOURNAL_RETENTION_MS + 15_000);
    expect(left.n).toBeLessThan(20);
  });
});
