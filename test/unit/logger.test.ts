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
});
