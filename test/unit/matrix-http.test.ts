import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MatrixError } from 'matrix-bot-sdk';

import { jsonCall, plainQuery, queryString } from '../../adapters/matrix/http.js';

describe("the Matrix adapter's JSON calls (adapters/matrix/http.ts)", () => {
  let server: http.Server;
  let base: string;
  const seen: { method: string; url: string; auth?: string; type?: string; body: string }[] = [];
  let answer: { status: number; body: string } = { status: 200, body: '{}' };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
          ...(req.headers['content-type'] ? { type: req.headers['content-type'] } : {}),
          body: Buffer.concat(chunks).toString(),
        });
        if (req.url?.startsWith('/silent')) return; // never answers
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen.length = 0;
    answer = { status: 200, body: '{}' };
  });

  it('encodes a query as the SDK does: arrays repeated, undefined left out, null empty, RFC 3986 escapes', () => {
    expect(queryString(null)).toBe('');
    expect(queryString({ gone: undefined })).toBe('');
    expect(
      queryString({ user_id: '@a b:example.org', dir: 'b', limit: 50, on: true, n: null, t: ['x', 'y'] }),
    ).toBe('?user_id=%40a%20b%3Aexample.org&dir=b&limit=50&on=true&n=&t=x&t=y');
    expect([plainQuery({ a: 1, b: ['x'] }), plainQuery({ nested: { a: 1 } }), plainQuery(null)]).toEqual([
      true,
      false,
      true,
    ]);
  });

  it('sends JSON with the token and the query, and resolves with the JSON answer', async () => {
    answer = { status: 200, body: '{"event_id":"$e"}' };
    const got = await jsonCall({
      method: 'PUT',
      baseUrl: `${base}/prefix/`,
      path: '/_matrix/client/v3/rooms/!r/send/m.room.message/t1',
      query: { user_id: '@g:example.org' },
      body: { msgtype: 'm.text', body: 'hi' },
      accessToken: 'as-token',
      timeoutMs: 5_000,
    });
    expect(got).toEqual({ event_id: '$e' });
    expect(seen).toEqual([
      {
        method: 'PUT',
        url: '/prefix/_matrix/client/v3/rooms/!r/send/m.room.message/t1?user_id=%40g%3Aexample.org',
        auth: 'Bearer as-token',
        type: 'application/json',
        body: '{"msgtype":"m.text","body":"hi"}',
      },
    ]);
  });

  it('rejects an answer with an errcode as a MatrixError (status, code, retry delay)', async () => {
    answer = { status: 429, body: '{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":250}' };
    const err = await jsonCall({ method: 'GET', baseUrl: base, path: '/x', timeoutMs: 5_000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MatrixError);
    expect([
      (err as MatrixError).statusCode,
      (err as MatrixError).errcode,
      (err as MatrixError).retryAfterMs,
    ]).toEqual([429, 'M_LIMIT_EXCEEDED', 250]);
  });

  it('rejects another non-2xx answer with its status and body, and a silent server after the timeout', async () => {
    answer = { status: 502, body: 'bad gateway' };
    const err = await jsonCall({ method: 'GET', baseUrl: base, path: '/x', timeoutMs: 5_000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ statusCode: 502, body: 'bad gateway' });
    const late = await jsonCall({ method: 'GET', baseUrl: base, path: '/silent', timeoutMs: 100 }).catch(
      (e: unknown) => e,
    );
    expect((late as Error).message).toBe('no answer within 100 ms');
    expect(late).not.toHaveProperty('statusCode');
  });
});
