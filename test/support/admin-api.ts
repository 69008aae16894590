/**
 * The emulator's admin API from tests: one JSON request over node:http, the answer's status and
 * JSON body (test/integration/emulator-groups.test.ts, emulator-profiles.test.ts).
 */
import http from 'node:http';

export interface AdminAnswer {
  status: number;
  body: Record<string, unknown>;
}

export function adminApi(
  port: number,
  method: string,
  pathname: string,
  body?: unknown,
): Promise<AdminAnswer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: pathname,
        headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          });
        });
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
