import { Writable } from 'node:stream';
import { CertError } from '../../src/protocol/cert-chain.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import { makeChain } from '../support/gateway-fixture.js';
import {
  EmulatorClient,
  enlistedClient,
  message,
  startTestEmulator,
  type TestEmulator,
} from '../support/emulator-client.js';

const BOB_PHONE = '+4915112345678';
const BOB = '4915112345678@wa.interop';
const bytes = (s: string) => new TextEncoder().encode(s);

describe('gateway emulator: faults and key rotation', () => {
  let te: TestEmulator;
  let logLines: string[];
  beforeEach(async () => {
    logLines = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString());
        done();
      },
    });
    te = await startTestEmulator({ logger: createLogger({ level: 'debug', format: 'json', destination }) });
    te.emulator.createNativeUser(BOB_PHONE);
  });
  afterEach(async () => te.close());

  it('drops the next N stanzas to an account; a dropped message is delivered again on the next connection', async () => {
    const alice = await enlistedClient(te, 'alice');
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    te.emulator.faults.dropNext(BOB, 1);
    alice.send(message('lost', BOB, { 0: bytes('a') }));
    alice.send(message('kept', BOB, { 0: bytes('b') }));
    expect((await bob.nextOf('message')).id).toBe('kept');
    bob.close();
    await bob.ended;
    const again = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    expect((await again.nextOf('message')).id).toBe('lost');
    alice.close();
    again.close();
  });

  it('delays delivery to an account and keeps the order', async () => {
    const alice = await enlistedClient(te, 'alice');
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    te.emulator.faults.delay(BOB, 50);
    alice.send(message('d1', BOB, { 0: bytes('1') }));
    alice.send(message('d2', BOB, { 0: bytes('2') }));
    await alice.nextOf('ack', (a) => a.id === 'd2');
    expect((await bob.nextOf('message')).id).toBe('d1');
    expect((await bob.nextOf('message')).id).toBe('d2');
    te.emulator.faults.delay(BOB, 0);
    alice.close();
    bob.close();
  });

  it('replays the last delivered message as a duplicate', async () => {
    const alice = await enlistedClient(te, 'alice');
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    expect(te.emulator.faults.replayLastDelivered(BOB)).toBe(false);
    alice.send(message('r1', BOB, { 0: bytes('once') }));
    const first = await bob.nextOf('message');
    expect(te.emulator.faults.replayLastDelivered(BOB)).toBe(true);
    expect(await bob.nextOf('message')).toEqual(first);
    alice.close();
    bob.close();
  });

  it('presents a foreign certificate chain to new connections, which clients refuse', async () => {
    te.emulator.faults.presentForeignCertificate();
    await expect(EmulatorClient.connect(te, { phone: BOB_PHONE })).rejects.toMatchObject({
      code: 'cert_bad_signature',
    });
    te.emulator.faults.presentCertificateChain(undefined);
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    bob.close();
  });

  it('presents an expired certificate chain when given one', async () => {
    const expired = makeChain(te.emulator.identity.staticKey, {
      root: te.root,
      leafNotAfter: Math.floor(Date.now() / 1000) - 60,
    });
    te.emulator.faults.presentCertificateChain(expired.bytes);
    const err = await EmulatorClient.connect(te, { phone: BOB_PHONE }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertError);
    expect(err).toMatchObject({ code: 'cert_expired' });
  });

  it('refuses connections while told to, then accepts them again', async () => {
    te.emulator.faults.refuseConnections(true);
    await expect(EmulatorClient.connect(te, { phone: BOB_PHONE })).rejects.toBeDefined();
    te.emulator.faults.refuseConnections(false);
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    bob.close();
  });

  it('disconnects an account on demand', async () => {
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    expect(te.emulator.faults.disconnect(BOB)).toBe(1);
    await bob.ended;
    expect(bob.isOpen).toBe(false);
  });

  it('rotates its identity without dropping open connections', async () => {
    const bob = await EmulatorClient.connect(te, { phone: BOB_PHONE });
    const staticKey = generateKeyPair();
    const chain = makeChain(staticKey, { root: te.root });
    te.emulator.setIdentity({ staticKey, certChain: chain.bytes });
    expect(await bob.iq({ op: 'ping' })).toEqual({ op: 'result' });
    const alice = await enlistedClient(te, 'alice');
    expect(await alice.iq({ op: 'ping' })).toEqual({ op: 'result' });
    bob.close();
    alice.close();
  });

  it('logs no token and no key', async () => {
    const alice = await enlistedClient(te, 'alice');
    alice.send(message('m1', BOB, { 0: bytes('x') }));
    await alice.nextOf('ack');
    alice.close();
    await alice.ended;
    const logs = logLines.join('');
    expect(logs).toContain('client connected');
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // a JWT
    expect(logs).not.toContain(Buffer.from(te.emulator.identity.staticKey.privateKey).toString('base64'));
  });
});
