import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { CompactSign, SignJWT } from 'jose';
import { InteropError } from '../../src/errors.js';
import {
  AUTH_FAILURE_REASONS,
  TokenError,
  generateProviderKey,
  jwksKeyResolver,
  jwksKeyResolverByIssuer,
  mintClientToken,
  publicJwks,
  verifyClientToken,
  type ClientTokenAlg,
  type MintClientTokenInput,
  type ProviderPrivateJwk,
  type TokenFailureReason,
  type VerifyClientTokenOptions,
} from '../../src/protocol/jwt.js';
import { ReplayCache, ReplayCacheFullError } from '../../src/protocol/replay-cache.js';

const NOW = 1_780_000_000;
const PROVIDER = 'example-provider';
const GATEWAY = 'gw.example';
const ACCOUNT = 'alice@example-provider';

function x25519PublicKey(): Uint8Array {
  const jwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
}

const edKey = await generateProviderKey('EdDSA', 'ed-1');
const ecKey = await generateProviderKey('ES256', 'ec-1');
const jwks = publicJwks([edKey, ecKey]);
/** Claims the provider's kid, but is not the provider's key. */
const impostorKey = await generateProviderKey('EdDSA', edKey.kid);
const clientStatic = x25519PublicKey();

function mint(overrides: Partial<MintClientTokenInput> = {}): Promise<string> {
  return mintClientToken({
    privateKey: edKey,
    kid: edKey.kid,
    alg: 'EdDSA',
    issuer: PROVIDER,
    subject: ACCOUNT,
    audience: GATEWAY,
    noiseStaticKey: clientStatic,
    now: NOW,
    ...overrides,
  });
}

function verify(
  token: unknown,
  overrides: Partial<VerifyClientTokenOptions> = {},
): ReturnType<typeof verifyClientToken> {
  return verifyClientToken(token, {
    keyResolver: jwksKeyResolver(jwks),
    issuer: PROVIDER,
    audience: GATEWAY,
    noiseStaticKey: clientStatic,
    replayCache: new ReplayCache(),
    now: NOW,
    ...overrides,
  });
}

async function reasonOf(promise: Promise<unknown>): Promise<TokenFailureReason> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof TokenError) return e.reason;
    throw e;
  }
  throw new Error('expected a TokenError, the token was accepted');
}

/** A token with the given claims and header, signed by the EdDSA provider key (for shapes mint refuses). */
function signRaw(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: edKey.kid, typ: 'JWT', ...header })
    .sign(edKey);
}

function validClaims(): Record<string, unknown> {
  return {
    iss: PROVIDER,
    sub: ACCOUNT,
    aud: GATEWAY,
    iat: NOW,
    nbf: NOW,
    exp: NOW + 300,
    jti: randomBytes(8).toString('hex'),
    cnf: { x25519: Buffer.from(clientStatic).toString('base64url') },
  };
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('client token (JWT)', () => {
  it.each<[ClientTokenAlg, ProviderPrivateJwk]>([
    ['EdDSA', edKey],
    ['ES256', ecKey],
  ])('round-trips a %s token to its claims, bound to the client static key', async (alg, key) => {
    const token = await mint({ alg, privateKey: key, kid: key.kid });
    const claims = await verify(token);
    expect(claims).toMatchObject({
      iss: PROVIDER,
      sub: ACCOUNT,
      aud: GATEWAY,
      iat: NOW,
      nbf: NOW,
      exp: NOW + 300,
      cnf: { x25519: Buffer.from(clientStatic).toString('base64url') },
    });
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('puts alg, kid and typ in the protected header', async () => {
    const [header] = (await mint()).split('.');
    expect(JSON.parse(Buffer.from(header!, 'base64url').toString())).toEqual({
      alg: 'EdDSA',
      kid: 'ed-1',
      typ: 'JWT',
    });
  });

  it('gives every minted token a different jti', async () => {
    const jtis = new Set<string>();
    for (let i = 0; i < 20; i++) jtis.add((await verify(await mint())).jti);
    expect(jtis.size).toBe(20);
  });

  it('accepts a token from a provider key built from a JWK with no kid of its own (thumbprint kid)', async () => {
    const key = await generateProviderKey('EdDSA');
    expect(key.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const token = await mint({ privateKey: key, kid: key.kid });
    await expect(verify(token, { keyResolver: jwksKeyResolver(publicJwks([key])) })).resolves.toBeDefined();
  });

  it('publishes a JWKS without any private member', () => {
    for (const key of jwks.keys) expect(Object.keys(key)).not.toContain('d');
    expect(jwks.keys.map((k) => [k.kid, k.alg, k.use, k.crv])).toEqual([
      ['ed-1', 'EdDSA', 'sig', 'Ed25519'],
      ['ec-1', 'ES256', 'sig', 'P-256'],
    ]);
  });

  it('lists every failure reason, including the gateway-side account_not_enlisted', () => {
    expect(new Set(AUTH_FAILURE_REASONS).size).toBe(AUTH_FAILURE_REASONS.length);
    expect(AUTH_FAILURE_REASONS).toContain('account_not_enlisted');
  });

  describe('rejections, one reason each', () => {
    it('token_bad_signature: signed by a key other than the one its kid names', async () => {
      const err = await verify(await mint({ privateKey: impostorKey })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TokenError);
      expect(err).toBeInstanceOf(InteropError);
      expect((err as TokenError).reason).toBe('token_bad_signature');
      expect((err as TokenError).code).toBe('token_bad_signature');
    });

    it('token_bad_signature: a kid naming an ES256 key on an EdDSA token', async () => {
      expect(await reasonOf(verify(await mint({ kid: ecKey.kid })))).toBe('token_bad_signature');
    });

    it('token_bad_signature: the payload was altered after signing', async () => {
      const [h, , s] = (await mint()).split('.');
      const forged = `${h}.${b64json({ ...validClaims(), sub: 'mallory' })}.${s}`;
      expect(await reasonOf(verify(forged))).toBe('token_bad_signature');
    });

    it('token_unknown_kid: a kid not in the JWKS', async () => {
      expect(await reasonOf(verify(await mint({ kid: 'retired-key' })))).toBe('token_unknown_kid');
    });

    it('token_unknown_kid: no kid at all', async () => {
      const token = await new SignJWT(validClaims()).setProtectedHeader({ alg: 'EdDSA' }).sign(edKey);
      expect(await reasonOf(verify(token))).toBe('token_unknown_kid');
    });

    it('token_wrong_issuer: a validly signed token naming another provider', async () => {
      expect(await reasonOf(verify(await mint({ issuer: 'other-provider' })))).toBe('token_wrong_issuer');
    });

    it('token_wrong_issuer: an issuer with no key set at a multi-provider gateway', async () => {
      const keyResolver = jwksKeyResolverByIssuer(new Map([[PROVIDER, jwks]]));
      const token = await mint({ issuer: 'unknown-provider' });
      expect(await reasonOf(verify(token, { keyResolver, issuer: [PROVIDER] }))).toBe('token_wrong_issuer');
    });

    it('token_wrong_audience: a token for another gateway', async () => {
      expect(await reasonOf(verify(await mint({ audience: 'other-gateway' })))).toBe('token_wrong_audience');
    });

    it('token_expired: expired longer ago than the clock skew', async () => {
      const token = await mint({ now: NOW - 400, ttlSeconds: 300 }); // exp = NOW - 100
      expect(await reasonOf(verify(token))).toBe('token_expired');
    });

    it('token_not_yet_valid: nbf further in the future than the clock skew', async () => {
      expect(await reasonOf(verify(await mint({ now: NOW + 61 })))).toBe('token_not_yet_valid');
    });

    it('accepts tokens expired or not yet valid by less than the clock skew', async () => {
      await expect(verify(await mint({ now: NOW - 330, ttlSeconds: 300 }))).resolves.toBeDefined(); // exp NOW-30
      await expect(verify(await mint({ now: NOW + 59 }))).resolves.toBeDefined();
    });

    it('honours a configured clock skew', async () => {
      const token = await mint({ now: NOW + 30 });
      expect(await reasonOf(verify(token, { clockSkewSeconds: 10 }))).toBe('token_not_yet_valid');
    });

    it('token_replayed: the same token presented twice', async () => {
      const replayCache = new ReplayCache();
      const token = await mint();
      await verify(token, { replayCache });
      expect(await reasonOf(verify(token, { replayCache }))).toBe('token_replayed');
    });

    it('token_key_mismatch: a token bound to another Noise static key', async () => {
      const token = await mint({ noiseStaticKey: x25519PublicKey() });
      expect(await reasonOf(verify(token))).toBe('token_key_mismatch');
    });

    it('token_lifetime_too_long: a token valid for hours', async () => {
      expect(await reasonOf(verify(await mint({ ttlSeconds: 6 * 3600 })))).toBe('token_lifetime_too_long');
    });

    it('token_alg_not_allowed: alg none', async () => {
      const token = `${b64json({ alg: 'none', kid: edKey.kid, typ: 'JWT' })}.${b64json(validClaims())}.`;
      expect(await reasonOf(verify(token))).toBe('token_alg_not_allowed');
    });

    it('token_alg_not_allowed: HS256, even keyed with the public key text', async () => {
      const secret = new TextEncoder().encode(JSON.stringify(jwks.keys[0]));
      const token = await new SignJWT(validClaims())
        .setProtectedHeader({ alg: 'HS256', kid: edKey.kid, typ: 'JWT' })
        .sign(secret);
      expect(await reasonOf(verify(token))).toBe('token_alg_not_allowed');
    });

    it.each([
      ['an empty string', ''],
      ['a non-JWT string', 'hello world'],
      ['two parts', 'abc.def'],
      ['a header that is not JSON', 'bm90IGpzb24.e30.c2ln'],
      ['a header that is a JSON array', `${b64json([1])}.e30.c2ln`],
      ['non-base64url characters', 'ab+c.de/f.g=='],
      ['an oversized token', `${'a'.repeat(9000)}.b.c`],
      ['a number instead of a string', 42],
    ])('token_malformed: %s', async (_name, token) => {
      expect(await reasonOf(verify(token))).toBe('token_malformed');
    });

    it('token_malformed: a correctly signed payload that is not JSON', async () => {
      const token = await new CompactSign(new TextEncoder().encode('not json'))
        .setProtectedHeader({ alg: 'EdDSA', kid: edKey.kid })
        .sign(edKey);
      expect(await reasonOf(verify(token))).toBe('token_malformed');
    });

    it('token_malformed: a correctly signed token without the cnf binding', async () => {
      const { cnf: _cnf, ...claims } = validClaims();
      expect(await reasonOf(verify(await signRaw(claims)))).toBe('token_malformed');
    });

    it('token_malformed: a correctly signed token without exp', async () => {
      const { exp: _exp, ...claims } = validClaims();
      expect(await reasonOf(verify(await signRaw(claims)))).toBe('token_malformed');
    });
  });

  describe('the replay cache only remembers tokens that passed everything else', () => {
    it.each<[string, Partial<MintClientTokenInput>]>([
      ['a forged signature', { privateKey: impostorKey }],
      ['a wrong audience', { audience: 'other-gateway' }],
      ['an expired token', { now: NOW - 1000 }],
      ['a key mismatch', { noiseStaticKey: x25519PublicKey() }],
    ])('leaves the cache empty after %s', async (_name, overrides) => {
      const replayCache = new ReplayCache();
      await expect(verify(await mint(overrides), { replayCache })).rejects.toThrow(TokenError);
      expect(replayCache.size).toBe(0);
    });

    it('reports a forged copy of a used token as a bad signature, not a replay', async () => {
      const replayCache = new ReplayCache();
      const token = await mint();
      const claims = await verify(token, { replayCache });
      const [h, , s] = token.split('.');
      const forged = `${h}.${b64json({ ...claims, sub: 'mallory' })}.${s}`;
      expect(await reasonOf(verify(forged, { replayCache }))).toBe('token_bad_signature');
    });

    it('answers replay_cache_full, not acceptance, when the cache is full of live tokens', async () => {
      const replayCache = new ReplayCache({ maxEntries: 1 });
      await verify(await mint(), { replayCache });
      expect(await reasonOf(verify(await mint(), { replayCache }))).toBe('replay_cache_full');
    });
  });

  it('accepts the example token of docs/PROTOCOL.md (4.2.2) with the documented key', async () => {
    const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
    expect(doc).toContain(DOCUMENTED_TOKEN);
    const claims = await verifyClientToken(DOCUMENTED_TOKEN, {
      keyResolver: jwksKeyResolver({
        keys: [
          {
            kty: 'OKP',
            crv: 'Ed25519',
            x: 'ypOsFwUYcHHWe4PH_w7-gQjo7EUwV113JoeTM9vavnw',
            kid: 'provider-key-1',
            alg: 'EdDSA',
            use: 'sig',
          },
        ],
      }),
      issuer: 'example-provider',
      audience: 'gw.example',
      noiseStaticKey: new Uint8Array(
        Buffer.from('50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d', 'hex'),
      ),
      replayCache: new ReplayCache(),
      now: 1780000010,
    });
    expect(claims.sub).toBe('alice');
  });

  it('turns any string into a TokenError, never another exception or an acceptance', async () => {
    const header = b64json({ alg: 'EdDSA', kid: edKey.kid });
    const tokenish = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join('.')),
      fc
        .tuple(fc.jsonValue(), fc.jsonValue(), fc.string())
        .map(([h, p, s]) => `${b64json(h)}.${b64json(p)}.${Buffer.from(s).toString('base64url')}`),
      fc.tuple(fc.jsonValue(), fc.string()).map(([p, s]) => `${header}.${b64json(p)}.${s}`),
    );
    await fc.assert(
      fc.asyncProperty(tokenish, async (token) => {
        await expect(verify(token)).rejects.toThrow(TokenError);
      }),
      { numRuns: 400 },
    );
  });
});

describe('replay cache', () => {
  it('reports a second use of an id as a replay until the id expires', () => {
    const cache = new ReplayCache();
    expect(cache.recordOnce('a', 100, 10)).toBe(true);
    expect(cache.recordOnce('a', 100, 50)).toBe(false);
    expect(cache.has('a', 99)).toBe(true);
    expect(cache.recordOnce('a', 200, 100)).toBe(true);
  });

  it('never holds more ids than its bound, purging expired ids to make room', () => {
    const cache = new ReplayCache({ maxEntries: 100 });
    for (let i = 0; i < 1000; i++) {
      const now = i;
      expect(cache.recordOnce(`id-${i}`, now + 50 + (i % 7), now)).toBe(true);
      expect(cache.size).toBeLessThanOrEqual(100);
    }
    expect(cache.has('id-999', 999)).toBe(true);
    expect(cache.has('id-0', 999)).toBe(false);
  });

  it('refuses a new id with a typed error rather than grow or forget a live id', () => {
    const cache = new ReplayCache({ maxEntries: 3 });
    for (const id of ['a', 'b', 'c']) cache.recordOnce(id, 100, 0);
    expect(() => cache.recordOnce('d', 100, 1)).toThrow(ReplayCacheFullError);
    expect(cache.size).toBe(3);
    expect(cache.recordOnce('a', 100, 1)).toBe(false);
  });

  it('evicts the soonest-expiring ids first once they have expired', () => {
    const cache = new ReplayCache({ maxEntries: 3 });
    cache.recordOnce('late', 300, 0);
    cache.recordOnce('soon', 100, 0);
    cache.recordOnce('mid', 200, 0);
    expect(cache.recordOnce('new', 400, 150)).toBe(true);
    expect(cache.has('soon', 150)).toBe(false);
    expect(['late', 'mid', 'new'].every((id) => cache.has(id, 150))).toBe(true);
  });

  it('purgeExpired drops exactly the expired ids', () => {
    const cache = new ReplayCache();
    for (let i = 1; i <= 10; i++) cache.recordOnce(String(i), i * 10, 0);
    expect(cache.purgeExpired(50)).toBe(5);
    expect(cache.size).toBe(5);
  });

  it('agrees with a naive model on any sequence of records', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 1, max: 30 })), {
          maxLength: 200,
        }),
        (ops) => {
          const cache = new ReplayCache({ maxEntries: 8 });
          const model = new Map<string, number>();
          ops.forEach(([idNum, ttl], now) => {
            const id = String(idNum);
            for (const [k, exp] of model) if (exp <= now) model.delete(k);
            const live = model.has(id);
            const full = !live && model.size >= 8;
            if (full) {
              expect(() => cache.recordOnce(id, now + ttl, now)).toThrow(ReplayCacheFullError);
            } else {
              expect(cache.recordOnce(id, now + ttl, now)).toBe(!live);
              if (!live) model.set(id, now + ttl);
            }
            expect(cache.size).toBeLessThanOrEqual(8);
          });
        },
      ),
    );
  });
});

const DOCUMENTED_TOKEN =
  'eyJhbGciOiJFZERTQSIsImtpZCI6InByb3ZpZGVyLWtleS0xIiwidHlwIjoiSldUIn0.' +
  'eyJpc3MiOiJleGFtcGxlLXByb3ZpZGVyIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJndy5leGFtcGxlIiwiaWF0IjoxNzgwMDAwMDAwLCJuYmYiOjE3' +
  'ODAwMDAwMDAsImV4cCI6MTc4MDAwMDMwMCwianRpIjoicTJjMG1DOG80VHExZDVoWWwzVmI5dyIsImNuZiI6eyJ4MjU1MTkiOiJVS1lVQ2JIZDBE' +
  'SmVteGEzQU9jWjZYY3NCd0FMRzlkNGJwQjhaVDBnU1YwIn19.' +
  'Jvnnd2Q_CrQz8UQAypop1WSGtIiW2Qsfx5JrSSHyZezbeFyFJVrJXIbzPqt2x-lL0gxj7ufjmFNYgo4wj6_QAA';
