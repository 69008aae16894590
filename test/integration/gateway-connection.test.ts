import { AuthFailure } from '../../src/protocol/auth.js';
import { GatewayConnection, type ConnectionState } from '../../src/gateway/connection.js';
import { mintClientToken } from '../../src/protocol/jwt.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import { decodeStanza, toBytes } from '../../src/protocol/stanza/index.js';
import type { NoiseSocket } from '../../src/protocol/transport/index.js';
import { GATEWAY, makeChain, PROVIDER, startGateway, type Fixture } from '../support/gateway-fixture.js';

/** A gateway that answers pings and `prekey_count`, like the real one, unless told to stay silent. */
function answering(silent: () => boolean) {
  return async (socket: NoiseSocket) => {
    for await (const frame of socket) {
      const stanza = decodeStanza(frame);
      if (silent() || stanza.kind !== 'iq') continue;
      const body =
        stanza.body.op === 'prekey_count'
          ? { op: 'prekey_count_result' as const, count: 7 }
          : { op: 'result' as const };
      socket.send(toBytes({ kind: 'iq', id: stanza.id, body }));
    }
  };
}

const open: GatewayConnection[] = [];

function connection(fx: Fixture, extra: Partial<ConstructorParameters<typeof GatewayConnection>[0]> = {}) {
  const noiseKey = generateKeyPair();
  const states: ConnectionState[] = [];
  const learnedKeys: Uint8Array[] = [];
  const conn = new GatewayConnection({
    host: '127.0.0.1',
    port: fx.port,
    rootPublicKey: fx.root.publicKey,
    providerId: PROVIDER,
    accountId: 'alice',
    device: 1,
    noiseKey,
    mintToken: () =>
      mintClientToken({
        privateKey: fx.providerKey,
        kid: fx.providerKey.kid,
        alg: 'EdDSA',
        issuer: PROVIDER,
        subject: 'alice',
        audience: GATEWAY,
        noiseStaticKey: noiseKey.publicKey,
      }),
    onServerStaticKey: (k) => learnedKeys.push(k),
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    ...extra,
  });
  conn.on('state', (s) => states.push(s));
  open.push(conn);
  return { conn, states, learnedKeys };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('a puppet connection to the gateway', () => {
  let fx: Fixture;
  let silent = false;
  beforeEach(async () => {
    silent = false;
    fx = await startGateway({ onClient: answering(() => silent) });
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.stop()));
    await fx.close();
  });

  it('connects with XX, caches the server key, and reconnects with IK after the gateway drops it', async () => {
    const { conn, states, learnedKeys } = connection(fx);
    conn.start();
    await until(() => conn.isConnected);
    expect(learnedKeys).toEqual([fx.serverStatic.publicKey]);
    fx.dropAll();
    await until(() => fx.accepted.length === 2 && conn.isConnected);
    expect(fx.accepted.map((a) => a.pattern)).toEqual(['XX', 'IK']);
    // The second connection says why it reconnected.
    expect(fx.accepted[1]!.payload.connectReason).toBe(3); // ERROR_RECONNECT
    expect(states).toEqual(expect.arrayContaining(['connecting', 'connected', 'waiting']));
    await conn.stop();
    expect(conn.state).toBe('stopped');
  });

  it("passes on the end user's IP address as a proxy connection, when it is known", async () => {
    const { conn } = connection(fx, { endUserIp: () => '198.51.100.7' });
    conn.start();
    await until(() => conn.isConnected);
    expect(fx.accepted[0]!.payload.endUserIp).toBe('198.51.100.7');
    expect(fx.accepted[0]!.payload.connectType).toBe(200); // CONNECT_TYPE_PROXY
    await conn.stop();
  });

  it('answers requests with the gateway result', async () => {
    const { conn } = connection(fx);
    conn.start();
    await until(() => conn.isConnected);
    const answer = await conn.request({ op: 'prekey_count' });
    expect(answer.body).toEqual({ op: 'prekey_count_result', count: 7 });
    await conn.stop();
  });

  it('drops a connection whose gateway stops answering pings, and reconnects', async () => {
    const { conn } = connection(fx, { keepaliveMs: 50, requestTimeoutMs: 100 });
    conn.start();
    await until(() => conn.isConnected);
    silent = true;
    await until(() => fx.accepted.length === 2, 5000);
    expect(fx.accepted[1]!.payload.connectReason).toBe(5); // PING_RECONNECT
    await conn.stop();
  });

  it('stops retrying when the gateway says the account has not opted in', async () => {
    await fx.close();
    fx = await startGateway({
      check: () => {
        throw new AuthFailure('account_not_enlisted', 'not enlisted');
      },
    });
    const { conn } = connection(fx);
    const refused = new Promise<string | undefined>((resolve) =>
      conn.on('state', (s, detail) => s === 'refused' && resolve(detail)),
    );
    conn.start();
    expect(await refused).toBe('account_not_enlisted');
    await new Promise((r) => setTimeout(r, 150));
    expect(fx.serverErrors).toHaveLength(1); // no second attempt
    await conn.stop();
  });

  it('keeps retrying with backoff while the gateway certificate is invalid, and connects once it is fixed', async () => {
    const good = makeChain(fx.serverStatic, { root: fx.root }).bytes;
    fx.setChain(makeChain(fx.serverStatic).bytes); // signed by another root
    const { conn } = connection(fx);
    const problems: string[] = [];
    conn.on('problem', (e) => problems.push(e.code));
    conn.start();
    await until(() => problems.length >= 2);
    expect(problems.every((c) => c === 'cert_bad_signature')).toBe(true);
    expect(fx.accepted).toEqual([]);
    fx.setChain(good);
    await until(() => conn.isConnected);
    await conn.stop();
  });

  it('refuses to send while disconnected, so callers keep the stanza queued', async () => {
    const { conn } = connection(fx);
    expect(() => conn.send({ kind: 'presence', type: 'available' })).toThrow(/not connected/);
  });
});
