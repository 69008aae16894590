/**
 * After a crash, on real Prosody and ejabberd (adapters/xmpp/journal.ts): a stanza the bridge had
 * journaled but not yet handed to the core is sent once at the restart; one it had already handed
 * on is not sent twice; the user who was sending is told, by the contact concerned, up to which
 * message theirs were taken; a resend with the same id is taken once. The crash is the database as
 * a SIGKILL leaves it: the run not closed, a journal row with its content.
 */
import type { XmppServerKind } from '../support/xmpp-servers.js';
import { chat, contactJid, nativeTexts, until, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];

describe.each(KINDS)('XMPP adapter after a crash on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind);
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('replays what was journaled once, tells the sender, and takes a resend with the same id once', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = kind === 'prosody' ? '+4915600000111' : '+4915600000211';
    const bob = await h.native(bobPhone);
    const contact = contactJid(bobPhone);
    await alice.client.send(chat(contact, 'hello', 'c0'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'hello');
    await h.stopBridge();

    // As a SIGKILL leaves it: the run still open, "hello" journaled again (as if its settle had not
    // been written) and "journaled only" journaled but never handed to the core.
    const db = h.openDb();
    try {
      const { run } = db.prepare('SELECT max(run) AS run FROM xmpp_runs').get() as { run: number };
      db.prepare('UPDATE xmpp_runs SET stopped_at = NULL WHERE run = ?').run(run);
      const journal = db.prepare(
        `INSERT INTO xmpp_journal (run, local_user, contact, local_id, stanza, received_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      );
      const full = `${alice.jid}/test`;
      const stanza = (body: string, id: string) => {
        const el = chat(contact, body, id);
        el.attrs.from = full;
        return el.toString();
      };
      journal.run(run, alice.jid, contact, 'c0', stanza('hello', 'c0'), Date.now() - 2000);
      journal.run(run, alice.jid, contact, 'c1', stanza('journaled only', 'c1'), Date.now() - 1000);
    } finally {
      db.close();
    }

    await h.startBridge();
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'journaled only', 20_000);
    const notice = await alice.waitForStanza(
      (s) => s.name === 'message' && /unexpected stop/.test(s.getChild('body')?.getText() ?? ''),
      20_000,
    );
    expect(notice.attrs.from).toBe(contact);
    expect(notice.getChild('body')?.getText()).toMatch(/the last one had the id c1\)/);
    expect(notice.getChild('body')?.getText()).not.toContain('journaled only');

    // Alice resends c1 (same id) and writes on: c1 is not sent twice.
    await alice.client.send(chat(contact, 'journaled only', 'c1'));
    await alice.client.send(chat(contact, 'after', 'c2'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'after', 20_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(nativeTexts(bob)).toEqual(['hello', 'journaled only', 'after']);
    // Everything is handed on: no content left in the journal.
    await until(() => {
      const check = h.openDb();
      try {
        return (
          (
            check.prepare('SELECT count(*) AS n FROM xmpp_journal WHERE stanza IS NOT NULL').get() as {
              n: number;
            }
          ).n === 0
        );
      } finally {
        check.close();
      }
    }, 'the journal to be settled');
  });
});
