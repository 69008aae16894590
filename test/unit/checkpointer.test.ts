import { statSync } from 'node:fs';
import path from 'node:path';
import { WalCheckpointer } from '../../src/store/checkpointer.js';
import { openDatabase } from '../../src/store/database.js';
import { tempDir, type TempDir } from '../support/tmp.js';

describe('the WAL checkpointed from a thread of its own', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it("copies the log back while the bridge's connection writes, which never checkpoints below the backstop", async () => {
    const file = path.join(tmp.dir, 'bridge.db');
    const db = openDatabase(file);
    const checkpointer = await WalCheckpointer.start(file, { intervalMs: 2 });
    try {
      db.exec('CREATE TABLE filler (n INTEGER PRIMARY KEY, b BLOB)');
      const insert = db.prepare('INSERT INTO filler (b) VALUES (?)');
      // 3,000 commits of a page each: without the thread the log would be checkpointed by three of
      // these commits; with it, the log is copied back and restarted from its start meanwhile.
      for (let i = 0; i < 3000; i++) {
        insert.run(Buffer.alloc(3000, i % 251));
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setTimeout(r, 50));
      const stats = await checkpointer.stop();
      expect(stats.checkpoints).toBeGreaterThan(0);
      expect(stats.frames).toBeGreaterThan(1000);
      // The log was restarted rather than grown to hold all 3,000 commits (about 12 MiB).
      expect(statSync(`${file}-wal`).size).toBeLessThan(8 * 1024 * 1024);
    } finally {
      await checkpointer.stop();
      db.close();
    }
  });

  it('refuses with the reason when its thread cannot open the database, leaving the connection as it was', async () => {
    const file = path.join(tmp.dir, 'bridge.db');
    const db = openDatabase(file);
    try {
      await expect(WalCheckpointer.start(path.join(tmp.dir, 'missing.db'))).rejects.toThrow(
        /the WAL checkpoint thread could not open .*missing\.db/,
      );
    } finally {
      db.close();
    }
  });
});
