import fc from 'fast-check';
import { AuthFailure, AuthRejectedError } from '../../src/protocol/auth.js';
import { CertError, createRootKey } from '../../src/protocol/cert-chain.js';
import { InteropError } from '../../src/errors.js';
import { clientHandshake, serverHandshake } from '../../src/protocol/handshake/index.js';
import { mintClientToken, generateProviderKey } from '../../src/protocol/jwt.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import { PREFACE } from '../../src/protocol/transport/index.js';
import {
  connect,
  connectClient,
  GATEWAY,
  makeChain,
  PROVIDER,
  startGateway,
  type Fixture,
} from '../support/gateway-fixture.js';
import net from 'node:net';

const now = () => Math.floor(Date.now() / 1000);

describe('gateway handshake over TCP', () => {
  let fx: Fixture;
  beforeEach(async () => (fx = await startGateway()));
  afterEach(async () => fx.close());

  it('completes XX on first contact, authenticates with the JWT, and carries encrypted frames both ways', async () => {
    const client = await connectClient(fx, { account: 'alice' });
    expect(client.pattern).toBe('XX');
    expect(client.serverStaticKey).toEqual(fx.serverStatic.publicKey);
    expect(client.success).toMatchObject({ kind: 'success', account: 'alice', device: 1 });
    client.socket.send(Buffer.from('hello gateway'));
    expect((await client.socket.receive()).toString()).toBe('hello gateway');
    const big = Buffer.alloc(200 * 1024, 7);
    client.socket.send(big);
    expect(await client.socket.receive()).toEqual(big);
    expect(fx.accepted[0]).toMatchObject({ account: 'alice', device: 1 });
    client.socket.close();
  });

  it('uses one-round-trip IK when the server key is known', async () => {
    const client = await connectClient(fx, { serverStaticKey: fx.serverStatic.publicKey });
    expect(client.pattern).toBe('IK');
    client.socket.send(Buffer.from('ik'));
    expect((await client.socket.receive()).toString()).toBe('ik');
    client.socket.close();
  });

  it('falls back to XXfallback when the pinned server key is stale, and learns the new one', async () => {
    const stale = fx.serverStatic.publicKey;
    fx.rotateStatic();
    const client = await connectClient(fx, { serverStaticKey: stale });
    expect(client.pattern).toBe('XXfallback');
    expect(client.serverStaticKey).toEqual(fx.serverStatic.publicKey);
    client.socket.send(Buffer.from('after fallback'));
    expect((await client.socket.receive()).toString()).toBe('after fallback');
    client.socket.close();
  });

  describe('refuses a gateway whose certificate chain does not hold, before sending the token', () => {
    const cases: [string, (f: Fixture) => Uint8Array, string][] = [
      [
        'expired leaf',
        (f) => makeChain(f.serverStatic, { root: f.root, leafNotAfter: now() - 60 }).bytes,
        'cert_expired',
      ],
      [
        'leaf not yet valid',
        (f) => makeChain(f.serverStatic, { root: f.root, leafNotBefore: now() + 3600 }).bytes,
        'cert_not_yet_valid',
      ],
      ['chain from another root', (f) => makeChain(f.serverStatic).bytes, 'cert_bad_signature'],
      [
        'leaf for another key',
        (f) => makeChain(f.serverStatic, { root: f.root, leafKey: generateKeyPair().publicKey }).bytes,
        'cert_key_mismatch',
      ],
      [
        'leaf naming another issuer',
        (f) => makeChain(f.serverStatic, { root: f.root, issuerSerial: 9 }).bytes,
        'cert_wrong_issuer',
      ],
    ];
    it.each(cases)('%s', async (_name, chain, code) => {
      fx.setChain(chain(fx));
      const error = await connectClient(fx).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CertError);
      expect((error as CertError).code).toBe(code);
      await waitFor(() => fx.serverErrors.length === 1);
      expect(fx.accepted).toEqual([]); // the server never saw a client payload
    });
  });

  describe('refuses a client token, each reason its own', () => {
    it.each([
      ['expired', { now: now() - 3600, ttlSeconds: 300 }, 'token_expired'],
      ['not yet valid', { now: now() + 3600 }, 'token_not_yet_valid'],
      ['wrong audience', { audience: 'other.gateway' }, 'token_wrong_audience'],
      ['wrong issuer', { issuer: 'evil.example' }, 'token_wrong_issuer'],
      ['unknown kid', { kid: 'no-such-kid' }, 'token_unknown_kid'],
      ['bound to another Noise key', { noiseStaticKey: generateKeyPair().publicKey }, 'token_key_mismatch'],
      ['lifetime of hours', { ttlSeconds: 6 * 3600 }, 'token_lifetime_too_long'],
    ] as const)('%s', async (_name, overrides, reason) => {
      const error = await connectClient(fx, { token: overrides }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AuthRejectedError);
      expect((error as AuthRejectedError).reason).toBe(reason);
    });

    it('bad signature', async () => {
      const forger = await generateProviderKey('EdDSA', fx.providerKey.kid);
      const error = await connectClient(fx, { token: { privateKey: forger } }).catch((e: unknown) => e);
      expect((error as AuthRejectedError).reason).toBe('token_bad_signature');
    });

    it('replayed token', async () => {
      const staticKey = generateKeyPair();
      const token = await mintClientToken({
        privateKey: fx.providerKey,
        kid: fx.providerKey.kid,
        alg: 'EdDSA',
        issuer: PROVIDER,
        subject: 'alice',
        audience: GATEWAY,
        noiseStaticKey: staticKey.publicKey,
      });
      const first = await connectClient(fx, { staticKey, fixedToken: token });
      first.socket.close();
      const error = await connectClient(fx, { staticKey, fixedToken: token }).catch((e: unknown) => e);
      expect((error as AuthRejectedError).reason).toBe('token_replayed');
    });

    it('account that has not opted in', async () => {
      await fx.close();
      fx = await startGateway({
        check: (c) => {
          if (c.account !== 'alice')
            throw new AuthFailure('account_not_enlisted', `${c.account} has not opted in`);
        },
      });
      const error = await connectClient(fx, { account: 'mallory' }).catch((e: unknown) => e);
      expect((error as AuthRejectedError).reason).toBe('account_not_enlisted');
      expect((await connectClient(fx, { account: 'alice' })).success.account).toBe('alice');
    });
  });

  it('gives up on a client that never finishes the handshake', async () => {
    await fx.close();
    fx = await startGateway({ timeoutMs: 200 });
    const silent = await connect(fx.port);
    silent.write(PREFACE);
    await waitFor(() => fx.serverErrors.length === 1);
    expect((fx.serverErrors[0] as InteropError).code).toBe('handshake_timeout');
    silent.destroy();
  });

  it('answers random bytes after the preface with a typed error, and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), async (junk) => {
        const before = fx.serverErrors.length;
        const socket = await connect(fx.port);
        const header = Buffer.from([0, junk.length >> 8, junk.length & 0xff]);
        socket.end(Buffer.concat([PREFACE, header, junk]));
        await waitFor(() => fx.serverErrors.length > before);
        const err = fx.serverErrors[fx.serverErrors.length - 1];
        expect(err).toBeInstanceOf(InteropError);
        socket.destroy();
      }),
      { numRuns: 40 },
    );
    const client = await connectClient(fx);
    expect(client.success.account).toBe('alice');
    client.socket.close();
  });

  it('a client fed random server replies fails with a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.boolean(), async (junk, ik) => {
        const server = net.createServer((conn) => {
          conn.once('data', () =>
            conn.end(Buffer.concat([Buffer.from([0, junk.length >> 8, junk.length & 0xff]), junk])),
          );
        });
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
        const port = (server.address() as net.AddressInfo).port;
        const stream = await connect(port);
        const error = await clientHandshake(stream, {
          staticKey: generateKeyPair(),
          rootPublicKey: createRootKey().publicKey,
          serverStaticKey: ik ? generateKeyPair().publicKey : undefined,
          payload: () => new Uint8Array([1]),
          timeoutMs: 2000,
        }).catch((e: unknown) => e);
        stream.destroy();
        await new Promise((r) => server.close(r));
        expect(error).toBeInstanceOf(InteropError);
      }),
      { numRuns: 30 },
    );
  });

  it('serverHandshake rejects a peer that closes straight after the preface', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const socket = await connect((server.address() as net.AddressInfo).port);
    socket.end(PREFACE);
    const conn = await accepted;
    const error = await serverHandshake(conn, {
      staticKey: generateKeyPair(),
      certChain: new Uint8Array(),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InteropError);
    await new Promise((r) => server.close(r));
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
