import path from 'node:path';
import { SqliteMatrixStore } from '../../adapters/matrix/index.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { tempDir } from '../support/tmp.js';

describe('SqliteMatrixStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  beforeEach(() => {
    tmp = tempDir();
    db = openDatabase(path.join(tmp.dir, 'bridge.db'), { migrations: bridgeMigrations() });
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });

  it('records each event of a transaction once: a resend adds nothing, a reused id with new events adds them', async () => {
    const store = new SqliteMatrixStore(db);
    const event = { key: '$e1', roomId: '!r:example.org', kind: 'event' as const, payload: { body: 'hi' } };
    expect(await store.recordTransaction('1', [event])).toEqual({ newTransaction: true, newEvents: 1 });
    expect(await store.recordTransaction('1', [event])).toEqual({ newTransaction: false, newEvents: 0 });
    // The homeserver restarted and numbers from 1 again: the id is known, the event is new.
    expect(await store.recordTransaction('1', [{ ...event, key: '$e2' }])).toEqual({
      newTransaction: false,
      newEvents: 1,
    });
    expect(await store.pendingInboundRooms()).toEqual(['!r:example.org']);
    expect((await store.pendingInboundOf('!r:example.org')).map((r) => r.key)).toEqual(['$e1', '$e2']);
  });
});
