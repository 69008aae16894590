/**
 * A handshake recorded off the wire and replayed is refused, also after `POST /admin/restart`: the
 * emulator keeps the ids of the tokens it accepted in its database until they expire.
 */
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { awaitAuthResult, ConnectReason, encodeClientPayload } from '../../src/protocol/auth.js';
import { clientHandshake } from '../../src/protocol/handshake/index.js';
import {
  generateProviderKey,
  mintClientToken,
  publicJwks,
  type ProviderPrivateJwk,
} from '../../src/protocol/jwt.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import { GATEWAY_ID, PROVIDER_ID, xeddsaVerify } from '../support/emulator-client.js';
import { tempDir } from '../support/tmp.js';

/** A TCP relay in front of the gateway that keeps the client's first flight (what it sent before any answer). */
async function recordingRelay(target: () => number) {
  const flights: Buffer[] = [];
  const server = net.createServer((client) => {
    const chunks: Buffer[] = [];
    let answered = false;
    const upstream = net.connect(target(), '127.0.0.1');
    client.on('data', (d: Buffer) => {
      if (!answered) chunks.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!answered) flights.push(Buffer.concat(chunks));
      answered = true;
      client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    flights,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Sends recorded bytes on a fresh connection; resolves with whether the gateway closed it within `ms`. */
function replay(port: number, bytes: Buffer, ms = 3000): Promise<{ closed: boolean; answered: number }> {
  return new Promise((resolve) => {
    let answered = 0;
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.on('data', (d: Buffer) => (answered += d.length));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, answered });
    }, ms);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, answered });
    });
  });
}

describe('the emulator refuses a replayed handshake', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let providerKey: ProviderPrivateJwk;
  let rootPublicKey: Uint8Array;
  let refusals: string[];

  beforeEach(async () => {
    tmp = tempDir('emulator-replay-');
    providerKey = await generateProviderKey('EdDSA');
    tmp.file('jwks.json', JSON.stringify(publicJwks([providerKey])));
    const config = tmp.file(
      'emulator.yaml',
      [
        'gateway:',
        '  port: 0',
        `  gateway_id: ${GATEWAY_ID}`,
        'emulator:',
        '  data_dir: data',
        'media:',
        '  port: 0',
        'admin:',
        '  port: 0',
        'providers:',
        `  - id: ${PROVIDER_ID}`,
        '    jwks_file: jwks.json',
        '',
      ].join('\n'),
    );
    const loaded = loadEmulatorConfig(config);
    rootPublicKey = initKeys(loaded.paths.dataDir, {
      validityDays: 30,
      intermediateValidityDays: 365,
    }).rootPublicKey;
    refusals = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) {
          const entry = JSON.parse(line) as { msg?: string; reason?: string };
          if (entry.msg === 'client refused') refusals.push(entry.reason ?? '?');
        }
        done();
      },
    });
    running = await RunningEmulator.start({
      loaded,
      logger: createLogger({ destination, format: 'json', level: 'info' }),
      verifyXEdDSA: xeddsaVerify,
    });
  });
  afterEach(async () => {
    await running.stop();
    tmp.cleanup();
  });

  /** An IK handshake (the JWT travels in the first message) as alice, through `port`. */
  async function connectIK(port: number, staticKey = generateKeyPair()) {
    const stream = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    const hs = await clientHandshake(stream, {
      staticKey,
      serverStaticKey: running.gateway.identity.staticKey.publicKey,
      rootPublicKey,
      payload: async () =>
        encodeClientPayload({
          accountId: 'alice',
          providerId: PROVIDER_ID,
          device: 0,
          connectReason: ConnectReason.ENLISTMENT,
          token: await mintClientToken({
            privateKey: providerKey,
            kid: providerKey.kid,
            alg: 'EdDSA',
            issuer: PROVIDER_ID,
            subject: 'alice',
            audience: GATEWAY_ID,
            noiseStaticKey: staticKey.publicKey,
          }),
        }),
    });
    expect(hs.pattern).toBe('IK');
    await awaitAuthResult(hs.socket);
    return hs.socket;
  }

  const restart = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: running.admin?.port, method: 'POST', path: '/admin/restart' },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });

  it('without a restart and after POST /admin/restart alike, and the live connection stays', async () => {
    const relay = await recordingRelay(() => running.gateway.port);
    try {
      const staticKey = generateKeyPair();
      const original = await connectIK(relay.port, staticKey);
      const recorded = relay.flights[0]!;
      expect(recorded.length).toBeGreaterThan(0);

      // Replayed while the gateway runs: refused, the connection closed.
      expect(await replay(running.gateway.port, recorded)).toMatchObject({ closed: true });
      expect(refusals).toEqual(['token_replayed']);
      original.close();

      expect(await restart()).toBe(200);
      // The user connects again after the restart (a fresh token), then the recording is replayed.
      const live = await connectIK(running.gateway.port, staticKey);
      expect(await replay(running.gateway.port, recorded)).toMatchObject({ closed: true });
      expect(refusals).toEqual(['token_replayed', 'token_replayed']);
      // It did not replace the user's live connection.
      await new Promise((r) => setTimeout(r, 100));
      expect(live.isOpen).toBe(true);
      live.close();
    } finally {
      await relay.close();
    }
  });
});
