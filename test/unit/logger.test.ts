import { Writable } from 'node:stream';
import { componentLogger, createLogger } from '../../src/observability/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return {
    lines,
    destination: destination as unknown as NodeJS.WritableStream & { write(s: string): boolean },
  };
}

describe('logger', () => {
  it('writes JSON lines tagged with the component', () => {
    const { lines, destination } = capture();
    componentLogger(createLogger({ destination, format: 'json' }), 'gateway').info(
      { puppet: 3 },
      'connected',
    );
    expect(JSON.parse(lines[0]!)).toMatchObject({
      component: 'gateway',
      puppet: 3,
      msg: 'connected',
      level: 30,
    });
  });

  it('never writes keys, tokens or secrets, however deeply they are nested', () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination, format: 'json' });
    log.info(
      {
        token: 'eyJ.secret.jwt',
        as_token: 'as-secret',
        config: { matrix: { hs_token: 'hs-secret' } },
        puppet: { identityPrivate: 'id-secret', noisePrivate: 'noise-secret' },
        jwk: { kty: 'OKP', d: 'private-scalar' },
      },
      'state',
    );
    const text = lines.join('');
    for (const secret of [
      'eyJ.secret.jwt',
      'as-secret',
      'hs-secret',
      'id-secret',
      'noise-secret',
      'private-scalar',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(JSON.parse(text).jwk).toEqual({ kty: 'OKP', d: '[redacted]' });
  });

  it('never writes a URL query, a Bearer credential or a JWT, in fields, errors or the message line', () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination, format: 'json' });
    const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJNQVJLRVIifQ.c2lnbmF0dXJlTUFSS0VS';
    const err = Object.assign(
      new Error(`GET http://hs.test/_matrix/app/v1/users/x?access_token=MARKER-1 failed`),
      {
        code: 'ECONNRESET',
        options: { headers: { Authorization: 'Bearer MARKER-2' }, uri: 'http://u:MARKER-3@hs.test/' },
      },
    );
    log.error(
      { err, path: '/_matrix/app/v1/ping?access_token=MARKER-4', url: 'https://x.test/a?sig=MARKER-5' },
      'request failed',
    );
    log.warn(`refused: Authorization: Bearer MARKER-6, token ${jwt}, as_token=MARKER-7`);
    log.info(
      {
        req: {
          method: 'GET',
          url: '/x?access_token=MARKER-8',
          headers: { authorization: 'Bearer MARKER-9' },
        },
      },
      'req',
    );
    const text = lines.join('');
    expect(text).not.toContain('MARKER');
    const first = JSON.parse(lines[0]!);
    expect(first.err).toMatchObject({ type: 'Error', code: 'ECONNRESET' });
    expect(first.err.message).toBe('GET http://hs.test/_matrix/app/v1/users/x?[redacted] failed');
    expect(first.path).toBe('/_matrix/app/v1/ping?[redacted]');
  });
});
