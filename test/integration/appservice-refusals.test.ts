import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import { AppserviceListener } from '../../adapters/matrix/appservice.js';
import { SqliteMatrixStore } from '../../adapters/matrix/index.js';
import { bridgeMigrations } from '../../app/migrations.js';
import { createLogger } from '../../src/observability/logger.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { tempDir } from '../support/tmp.js';

const HS_TOKEN = 'hs-token-MARKER-4b1d';

/** A raw request: the path is sent byte for byte, as a homeserver (or anyone) could send it. */
function call(
  port: number,
  method: string,
  target: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: target,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('the appservice listener refuses what is the caller’s fault with a 400, never a 500', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  let listener: AppserviceListener;
  let port: number;
  let lines: Record<string, unknown>[];
  let queried: string[];

  beforeEach(async () => {
    tmp = tempDir();
    db = openDatabase(path.join(tmp.dir, 'bridge.db'), { migrations: bridgeMigrations() });
    const store = new SqliteMatrixStore(db);
    lines = [];
    queried = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const log = createLogger({ destination, format: 'json', level: 'trace' });
    listener = new AppserviceListener(
      HS_TOKEN,
      {
        recordTransaction: (txnId, events) => store.recordTransaction(txnId, events),
        afterTransaction: () => undefined,
        queryUser: async (userId) => {
          queried.push(userId);
          return false;
        },
      },
      log,
    );
    port = (await listener.listen('127.0.0.1', 0)).port;
  });
  afterEach(async () => {
    await listener.close();
    db.close();
    tmp.cleanup();
  });

  const bearer = { authorization: `Bearer ${HS_TOKEN}` };
  const warnings = () => lines.filter((l) => l['level'] === 40);
  const errors = () => lines.filter((l) => (l['level'] as number) >= 50);

  it('a path with a malformed percent escape: 400 M_UNRECOGNIZED, with the token in the header or the query, logged once without the token', async () => {
    const withHeader = await call(port, 'GET', '/_matrix/app/v1/users/%E0%A4%A', undefined, bearer);
    expect(withHeader).toEqual({
      status: 400,
      body: { errcode: 'M_UNRECOGNIZED', error: 'the path has a malformed percent escape' },
    });
    const withQuery = await call(port, 'GET', `/_matrix/app/v1/users/%E0%A4%A?access_token=${HS_TOKEN}`);
    expect(withQuery.status).toBe(400);
    expect(withQuery.body['errcode']).toBe('M_UNRECOGNIZED');
    const txn = await call(port, 'PUT', '/_matrix/app/v1/transactions/%E0%A4%A', '{"events":[]}', bearer);
    expect(txn.status).toBe(400);
    expect(txn.body['errcode']).toBe('M_UNRECOGNIZED');

    expect(queried).toEqual([]);
    expect(warnings()).toHaveLength(3);
    expect(errors()).toHaveLength(0);
    expect(warnings()[1]).toMatchObject({
      path: '/_matrix/app/v1/users/%E0%A4%A?[redacted]',
      errcode: 'M_UNRECOGNIZED',
    });
    expect(JSON.stringify(lines)).not.toContain('MARKER');
  });

  it('a transaction nested 100,000 levels deep: 400 M_BAD_JSON, nothing recorded, logged once', async () => {
    const depth = 100_000;
    const deepEvent = `{"event_id":"$deep","room_id":"!r:example.test","type":"m.room.message","content":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    const r = await call(port, 'PUT', '/_matrix/app/v1/transactions/t1', `{"events":[${deepEvent}]}`, bearer);
    expect(r).toEqual({
      status: 400,
      body: { errcode: 'M_BAD_JSON', error: 'the transaction is nested too deeply to be Matrix events' },
    });
    const arrays = await call(
      port,
      'PUT',
      '/_matrix/app/v1/transactions/t2',
      `{"events":[${'['.repeat(depth)}${']'.repeat(depth)}]}`,
      bearer,
    );
    expect(arrays.status).toBe(400);
    expect(arrays.body['errcode']).toBe('M_BAD_JSON');
    expect(db.prepare('SELECT count(*) AS n FROM matrix_inbound').get()).toEqual({ n: 0 });
    expect(warnings()).toHaveLength(2);
    expect(errors()).toHaveLength(0);
    // An ordinary transaction after them is taken.
    const ok = await call(
      port,
      'PUT',
      '/_matrix/app/v1/transactions/t3',
      '{"events":[{"event_id":"$ok","room_id":"!r:example.test","type":"m.room.message","content":{"body":"hi"}}]}',
      bearer,
    );
    expect(ok).toEqual({ status: 200, body: {} });
  });

  it('a body that is not JSON: 400 M_NOT_JSON; a deep ping body is answered, not a 500', async () => {
    const r = await call(port, 'PUT', '/_matrix/app/v1/transactions/t1', '{"events": [', bearer);
    expect(r).toEqual({ status: 400, body: { errcode: 'M_NOT_JSON', error: 'the transaction is not JSON' } });
    const ping = await call(port, 'POST', '/_matrix/app/v1/ping', '['.repeat(100_000), bearer);
    expect(ping).toEqual({ status: 200, body: {} });
    expect(errors()).toHaveLength(0);
  });

  it('a request target that is not a path ("//"): 404 M_UNRECOGNIZED, not a 500', async () => {
    for (const target of ['//', '//[::1', `///_matrix/app/v1/ping?access_token=${HS_TOKEN}`]) {
      const r = await call(port, 'POST', target, '{}', bearer);
      expect(r.status).toBe(404);
      expect(r.body['errcode']).toBe('M_UNRECOGNIZED');
    }
    expect(errors()).toHaveLength(0);
  });
});
