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

  it('remembers appservice transactions: a resent one records nothing again', async () => {
    const store = new SqliteMatrixStore(db);
    const event = { key: '$e1', roomId: '!r:example.org', kind: 'event' as const, payload: { body: 'hi' } };
    expect(await store.recordTransaction('txn1', [event])).toBe(true);
    expect(await store.recordTransaction('txn1', [event, { ...event, key: '$e2' }])).toBe(false);
    expect(await store.pendingInboundRooms()).toEqual(['!r:example.org']);
    expect((await store.pendingInboundOf('!r:example.org')).map((r) => r.key)).toEqual(['$e1']);
  });
});
