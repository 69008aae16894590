/**
 * The emulator's admin HTTP API over real HTTP, against an emulator started in-process from its
 * configuration (RunningEmulator), with clients connected over real TCP to observe the faults.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ADMIN_MAX_BODY_BYTES } from '../../emulator/admin.js';
import { loadEmulatorConfig } from '../../emulator/config.js';
import type { EmulatorOptions } from '../../emulator/gateway.js';
import { initKeys, keyFiles } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { generateProviderKey, publicJwks, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import {
  EmulatorClient,
  GATEWAY_ID,
  message,
  PROVIDER_ID,
  xeddsaVerify,
  type TestEmulator,
} from '../support/emulator-client.js';
import { tempDir } from '../support/tmp.js';

const ALICE_PHONE = '+4915100000001';
const ALICE = '4915100000001@wa.interop';
const ALICE_DEVICE = '4915100000001:0@wa.interop';
const BOB_PHONE = '+4915112345678';
const BOB = '4915112345678@wa.interop';
const BOB_DEVICE = '4915112345678:0@wa.interop';
const TOKEN = 'admin-token-for-tests-0123456789';
const bytes = (s: string) => new TextEncoder().encode(s);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
  text: string;
}

interface RequestOptions {
  /** An object is sent as JSON; a string as is. */
  body?: unknown;
  headers?: Record<string, string>;
  token?: string;
}

/** One request to the admin API over node:http (so Host and Content-Length can be set freely). */
function request(port: number, method: string, pathname: string, o: RequestOptions = {}): Promise<Answer> {
  const payload =
    o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  const headers: Record<string, string> = {
    ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
    ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}),
    ...o.headers,
  };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: pathname, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
          text,
        });
      });
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

interface Harness {
  running: RunningEmulator;
  providerKey: ProviderPrivateJwk;
  dataDir: string;
  /** A view for EmulatorClient.connect that follows the gateway across restarts. */
  clients: TestEmulator;
  api: (method: string, pathname: string, o?: RequestOptions) => Promise<Answer>;
  close: () => Promise<void>;
}

async function startHarness(adminYaml: string[] = []): Promise<Harness> {
  const tmp = tempDir('emulator-admin-');
  const providerKey = await generateProviderKey('EdDSA');
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
      ...adminYaml,
      'providers:',
      `  - id: ${PROVIDER_ID}`,
      '    jwks_file: jwks.json',
      'logging:',
      '  level: silent',
      '',
    ].join('\n'),
  );
  const loaded = loadEmulatorConfig(config);
  const keys = initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 });
  const running = await RunningEmulator.start({
    loaded,
    logger: createLogger({ level: 'silent' }),
    verifyXEdDSA: xeddsaVerify,
  });
  const clients: TestEmulator = {
    get emulator() {
      return running.gateway;
    },
    root: { publicKey: keys.rootPublicKey, privateKey: new Uint8Array(32) },
    providerKey,
    databaseFile: loaded.paths.database,
    options: {} as EmulatorOptions,
    restart: async () => {
      await running.restartGateway();
    },
    close: () => running.stop(),
  };
  const adminPort = running.admin?.port ?? 0;
  return {
    running,
    providerKey,
    dataDir: loaded.paths.dataDir,
    clients,
    api: (method, pathname, o) => request(adminPort, method, pathname, o),
    close: async () => {
      await running.stop();
      tmp.cleanup();
    },
  };
}

describe('emulator admin API', () => {
  let h: Harness;
  const open: EmulatorClient[] = [];
  const connect = async (phone: string) => {
    const c = await EmulatorClient.connect(h.clients, { phone });
    open.push(c);
    return c;
  };

  beforeEach(async () => {
    h = await startHarness();
    h.running.gateway.createNativeUser(ALICE_PHONE);
    h.running.gateway.createNativeUser(BOB_PHONE);
  });
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await h.close();
  });

  describe('inspection', () => {
    it('GET /admin/stats reports counts, uptime and public key fingerprints, never a private key', async () => {
      const alice = await connect(ALICE_PHONE);
      alice.send(message('s1', BOB, { 0: bytes('ciphertext') }));
      await alice.nextOf('ack', (a) => a.id === 's1');

      const { status, body, text } = await h.api('GET', '/admin/stats');
      expect(status).toBe(200);
      expect(body).toMatchObject({
        accounts: 2,
        connections: 1,
        queued: 1,
        connectedDevices: [ALICE_DEVICE],
        gateway: { gatewayId: GATEWAY_ID, port: h.running.gateway.port },
        keys: {
          rootKey: h.running.summary().rootKey,
          rootKeyFingerprint: h.running.summary().rootKeyFingerprint,
          staticKey: h.running.summary().staticKey,
          leaf: { notAfter: h.running.summary().leafNotAfter },
        },
      });
      expect(body.uptimeSeconds).toEqual(expect.any(Number));
      const intermediate = JSON.parse(readFileSync(keyFiles(h.dataDir).intermediate, 'utf8')) as {
        privateKey: string;
      };
      expect(text).not.toContain(Buffer.from(h.running.keys.staticKey.privateKey).toString('base64'));
      expect(text).not.toContain(intermediate.privateKey);
      expect(text).not.toMatch(/private/i);
    });

    it('POST /admin/native-users creates a user (201), refuses it again (409) and a bad number (400)', async () => {
      const created = await h.api('POST', '/admin/native-users', { body: { phone: '+447700900123' } });
      expect(created.status).toBe(201);
      expect(created.body).toEqual({ jid: '447700900123@wa.interop', phone: '+447700900123' });

      const again = await h.api('POST', '/admin/native-users', { body: { phone: '+447700900123' } });
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({ error: 'admin_user_exists' });

      for (const phone of ['447700900123', '+0123456789', '+12', 'not a number']) {
        const bad = await h.api('POST', '/admin/native-users', { body: { phone } });
        expect(bad.status).toBe(400);
        expect(bad.body).toMatchObject({ error: 'admin_phone_invalid' });
        expect(bad.body.message).toContain(JSON.stringify(phone));
      }

      // The new user can connect at once.
      const user = await connect('+447700900123');
      expect(user.success.kind).toBe('success');
    });

    it('native users created with a behaviour send every content kind on request, and the echo user echoes each', async () => {
      const ECHO = '+447700900200';
      const SAM = '+447700900201';
      for (const [phone, behaviour] of [
        [ECHO, 'echo'],
        [SAM, 'silent'],
      ] as const) {
        const created = await h.api('POST', '/admin/native-users', { body: { phone, behaviour } });
        expect(created.status).toBe(201);
        expect(created.body).toMatchObject({ phone, behaviour });
      }
      const sam = h.running.native(SAM)!;
      const send = (content: Record<string, unknown>) =>
        h.api('POST', '/admin/native-users/send', { body: { from: SAM, to: ECHO, content } });

      const sent = await send({
        kind: 'location',
        latitude: 48.8584,
        longitude: 2.2945,
        name: 'Tour Eiffel',
      });
      expect(sent.status).toBe(200);
      expect(sent.body).toMatchObject({ from: '447700900201@wa.interop', to: '447700900200@wa.interop' });
      const place = await sam.waitForMessage((m) => m.content.kind === 'location');
      expect(place.content.kind === 'location' && place.content.place).toEqual({
        latitude: 48.8584,
        longitude: 2.2945,
        name: 'Tour Eiffel',
      });
      await send({ kind: 'contact', cards: [{ name: 'Jane', phone: '+4915122223333' }] });
      const card = await sam.waitForMessage((m) => m.content.kind === 'contact');
      expect(card.content.kind === 'contact' && card.content.cards[0]?.vcard).toContain('waid=4915122223333');
      const picture = Buffer.from('not really a png, but bytes all the same');
      await send({
        kind: 'image',
        data_base64: picture.toString('base64'),
        mimetype: 'image/png',
        caption: 'look',
      });
      const echoed = await sam.waitForMessage((m) => m.content.kind === 'image');
      expect(echoed.content.kind === 'image' && echoed.content.caption).toBe('echo: look');
      expect(await sam.downloadMedia(echoed)).toEqual(picture);
      await send({ kind: 'text', text: 'hi', mentions: [ECHO] });
      const text = await sam.waitForMessage((m) => m.content.kind === 'text');
      expect(text.content.kind === 'text' && text.content.text).toBe('echo: hi @447700900200');

      // Refusals name what is wrong.
      const stranger = await h.api('POST', '/admin/native-users/send', {
        body: { from: '+447700900999', to: ECHO, content: { kind: 'text', text: 'x' } },
      });
      expect(stranger.status).toBe(404);
      expect(stranger.body).toMatchObject({ error: 'admin_user_not_running' });
      const bad = await send({ kind: 'location', latitude: 123, longitude: 0 });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ error: 'admin_invalid_request' });
      expect(bad.body.message).toContain('latitude');
      const unknownKind = await send({ kind: 'hologram' });
      expect(unknownKind.status).toBe(400);
    });

    it('GET /admin/accounts lists accounts with their connected devices', async () => {
      await connect(BOB_PHONE);
      const { status, body } = await h.api('GET', '/admin/accounts');
      expect(status).toBe(200);
      expect(body.accounts).toEqual([
        expect.objectContaining({ jid: ALICE, kind: 'native', phone: ALICE_PHONE, connectedDevices: [] }),
        expect.objectContaining({
          jid: BOB,
          kind: 'native',
          phone: BOB_PHONE,
          connectedDevices: [BOB_DEVICE],
        }),
      ]);
    });

    it('GET /admin/queues lists metadata and sizes of queued items, never their ciphertext', async () => {
      const alice = await connect(ALICE_PHONE);
      const ciphertext = bytes('opaque-ciphertext-bytes-0123456789');
      alice.send(message('q1', BOB, { 0: ciphertext }));
      await alice.nextOf('ack', (a) => a.id === 'q1');

      const all = await h.api('GET', '/admin/queues');
      expect(all.status).toBe(200);
      expect(all.body).toMatchObject({
        total: 1,
        truncated: false,
        items: [
          {
            kind: 'message',
            id: 'q1',
            sender: ALICE_DEVICE,
            recipient: BOB,
            recipientDevice: 0,
            type: 'text',
            encType: 'msg',
            size: ciphertext.length,
          },
        ],
      });
      const [item] = all.body.items as Array<Record<string, unknown>>;
      expect(item?.ageSeconds).toEqual(expect.any(Number));
      expect(all.text).not.toContain(Buffer.from(ciphertext).toString('base64'));
      expect(all.text).not.toContain('opaque-ciphertext');

      const forAlice = await h.api('GET', `/admin/queues?account=${encodeURIComponent(ALICE)}`);
      expect(forAlice.body).toMatchObject({ total: 0, items: [] });
      const forBob = await h.api('GET', `/admin/queues?account=${encodeURIComponent(BOB)}`);
      expect(forBob.body).toMatchObject({ total: 1 });

      const bad = await h.api('GET', '/admin/queues?account=bob');
      expect(bad.status).toBe(400);
      expect(bad.body.message).toMatch(/^account: expected a bare account JID/);
      const unknown = await h.api('GET', '/admin/queues?acount=x');
      expect(unknown.status).toBe(400);
      expect(unknown.body.message).toBe('unknown field "acount"');
    });
  });

  describe('request errors', () => {
    it('answers malformed JSON with 400 admin_bad_json', async () => {
      const r = await h.api('POST', '/admin/faults/drop', { body: '{"account": ' });
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ error: 'admin_bad_json' });
      expect(r.body.message).toMatch(/^the request body is not valid JSON: /);
    });

    it('answers a request target that is not a path, or JSON nested too deep, with a 4xx, never a 500', async () => {
      for (const target of ['//', '//[::1', '///admin/stats']) {
        const r = await h.api('GET', target);
        expect(r.status).toBe(404);
        expect(r.body.error).toBe('admin_not_found');
      }
      // The media service too: the same target used to reject outside its handler.
      const media = await request(h.running.media.port, 'GET', '//');
      expect(media.status).toBe(404);
      expect(media.body['error']).toBe('not_found');
      const deep = await h.api('POST', '/admin/faults/drop', {
        body: `{"account": ${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
      });
      expect(deep.status).toBe(400);
      expect(deep.body).toEqual({
        error: 'admin_bad_json',
        message: 'the request body nests deeper than 128 levels',
      });
    });

    it('names unknown fields, wrong types and missing fields in one 400', async () => {
      const r = await h.api('POST', '/admin/faults/drop', { body: { account: BOB, count: '3', extra: 1 } });
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('admin_invalid_request');
      expect(r.body.message).toContain('count: expected an integer from 0 to 1000000, found "3"');
      expect(r.body.message).toContain('unknown field "extra"');

      const missing = await h.api('POST', '/admin/faults/refuse', { body: {} });
      expect(missing.body.message).toBe('refuse: expected true or false, found nothing');
      const notObject = await h.api('POST', '/admin/faults/refuse', { body: [true] });
      expect(notObject.status).toBe(400);
      expect(notObject.body.message).toBe('the request body must be a JSON object, found a list');
      const badKind = await h.api('POST', '/admin/faults/certificate', { body: { kind: 'stale' } });
      expect(badKind.body.message).toBe('kind: expected one of "foreign", "expired", "valid", found "stale"');
      const device = await h.api('POST', '/admin/faults/disconnect', { body: { account: `${BOB}:1` } });
      expect(device.status).toBe(400);
    });

    it('answers an unknown route with 404 and a wrong method with 405 naming the allowed one', async () => {
      const missing = await h.api('GET', '/admin/nothing');
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ error: 'admin_not_found' });
      const wrong = await h.api('GET', '/admin/faults/reset');
      expect(wrong.status).toBe(405);
      expect(wrong.headers.allow).toBe('POST');
      expect(wrong.body).toMatchObject({ error: 'admin_method_not_allowed' });
      const del = await h.api('DELETE', '/admin/stats');
      expect(del.status).toBe(405);
      expect(del.headers.allow).toBe('GET');
    });

    it('refuses a body that is not declared as JSON (415) or is too large (413)', async () => {
      const form = await h.api('POST', '/admin/faults/reset', {
        body: '{}',
        headers: { 'content-type': 'text/plain' },
      });
      expect(form.status).toBe(415);
      expect(form.body).toMatchObject({ error: 'admin_unsupported_media_type' });

      const body = JSON.stringify({ phone: 'x'.repeat(ADMIN_MAX_BODY_BYTES) });
      // Streamed (chunked, no length given) and declared up front: both refused.
      const streamed = await h.api('POST', '/admin/native-users', { body });
      expect(streamed.status).toBe(413);
      expect(streamed.body).toMatchObject({ error: 'admin_body_too_large' });
      const declared = await h.api('POST', '/admin/native-users', {
        body,
        headers: { 'content-length': String(Buffer.byteLength(body)) },
      });
      expect(declared.status).toBe(413);
      expect(declared.headers.connection).toBe('close');
    });

    it('serves only requests that name a loopback host when no token is configured', async () => {
      const r = await h.api('GET', '/admin/stats', { headers: { host: 'attacker.example' } });
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ error: 'admin_host_refused' });
      expect((await h.api('GET', '/admin/stats', { headers: { host: 'localhost' } })).status).toBe(200);
    });
  });

  describe('faults set through the API, as a connected client sees them', () => {
    it("disconnect closes the account's connection", async () => {
      const bob = await connect(BOB_PHONE);
      const r = await h.api('POST', '/admin/faults/disconnect', { body: { account: BOB } });
      expect(r.body).toEqual({ account: BOB, closed: 1 });
      await bob.ended;
      expect(bob.isOpen).toBe(false);
    });

    it('drop loses the next stanza to the account; it is delivered on the next connection', async () => {
      const alice = await connect(ALICE_PHONE);
      const bob = await connect(BOB_PHONE);
      const r = await h.api('POST', '/admin/faults/drop', { body: { account: BOB, count: 1 } });
      expect(r.status).toBe(200);
      alice.send(message('lost', BOB, { 0: bytes('a') }));
      await alice.nextOf('ack', (a) => a.id === 'lost');
      await bob.sync();
      expect(bob.received.filter((s) => s.kind === 'message')).toEqual([]);

      bob.close();
      await bob.ended;
      const again = await connect(BOB_PHONE);
      expect((await again.nextOf('message')).id).toBe('lost');
    });

    it('delay keeps delivering, in order, and reset clears it', async () => {
      const alice = await connect(ALICE_PHONE);
      const bob = await connect(BOB_PHONE);
      const r = await h.api('POST', '/admin/faults/delay', { body: { account: '*', ms: 20 } });
      expect(r.body).toEqual({ account: '*', ms: 20 });
      alice.send(message('d1', BOB, { 0: bytes('1') }));
      alice.send(message('d2', BOB, { 0: bytes('2') }));
      expect((await bob.nextOf('message')).id).toBe('d1');
      expect((await bob.nextOf('message')).id).toBe('d2');
      expect((await h.api('POST', '/admin/faults/reset')).status).toBe(200);
    });

    it('replay delivers the last message again, and says 409 when there is none', async () => {
      const alice = await connect(ALICE_PHONE);
      const bob = await connect(BOB_PHONE);
      const none = await h.api('POST', '/admin/faults/replay', { body: { account: BOB } });
      expect(none.status).toBe(409);
      expect(none.body).toMatchObject({ error: 'admin_nothing_to_replay' });

      alice.send(message('r1', BOB, { 0: bytes('once') }));
      const first = await bob.nextOf('message');
      const r = await h.api('POST', '/admin/faults/replay', { body: { account: BOB } });
      expect(r.body).toEqual({ account: BOB, replayed: true });
      expect(await bob.nextOf('message')).toEqual(first);
    });

    it('certificate "foreign" and "expired" make new clients refuse the gateway; "valid" restores it', async () => {
      expect((await h.api('POST', '/admin/faults/certificate', { body: { kind: 'foreign' } })).status).toBe(
        200,
      );
      await expect(connect(BOB_PHONE)).rejects.toMatchObject({ code: 'cert_bad_signature' });

      expect((await h.api('POST', '/admin/faults/certificate', { body: { kind: 'expired' } })).status).toBe(
        200,
      );
      await expect(connect(BOB_PHONE)).rejects.toMatchObject({ code: 'cert_expired' });

      expect((await h.api('POST', '/admin/faults/certificate', { body: { kind: 'valid' } })).status).toBe(
        200,
      );
      expect((await connect(BOB_PHONE)).success.kind).toBe('success');
    });

    it('refuse closes new connections until turned off; reset also ends it', async () => {
      await h.api('POST', '/admin/faults/refuse', { body: { refuse: true } });
      await expect(connect(BOB_PHONE)).rejects.toBeDefined();
      await h.api('POST', '/admin/faults/refuse', { body: { refuse: false } });
      (await connect(BOB_PHONE)).close();

      await h.api('POST', '/admin/faults/refuse', { body: { refuse: true } });
      const reset = await h.api('POST', '/admin/faults/reset', { body: {} });
      expect(reset.status).toBe(200);
      expect((await connect(ALICE_PHONE)).success.kind).toBe('success');
    });
  });

  describe('restart and keys', () => {
    it('POST /admin/restart restarts the gateway on the same port; queued messages survive', async () => {
      const port = h.running.gateway.port;
      const alice = await connect(ALICE_PHONE);
      alice.send(message('kept', BOB, { 0: bytes('queued') }));
      await alice.nextOf('ack', (a) => a.id === 'kept');

      const r = await h.api('POST', '/admin/restart');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ gateway: { port } });
      await alice.ended; // its connection was closed by the restart

      const stats = await h.api('GET', '/admin/stats');
      expect(stats.body).toMatchObject({ queued: 1, connections: 0 });
      const bob = await connect(BOB_PHONE);
      expect(await bob.nextOf('message')).toMatchObject({ id: 'kept', from: ALICE_DEVICE });
    });

    it('POST /admin/keys/rotate gives new connections a new static key under the same root', async () => {
      const before = h.running.summary();
      const r = await h.api('POST', '/admin/keys/rotate', { body: { validityDays: 7 } });
      expect(r.status).toBe(200);
      const keys = r.body.keys as Record<string, unknown>;
      expect(keys.rootKey).toBe(before.rootKey);
      expect(keys.staticKey).not.toBe(before.staticKey);
      expect(keys.staticKey).toBe(h.running.summary().staticKey);
      expect(JSON.stringify(keys)).not.toMatch(/private/i);
      expect((await connect(BOB_PHONE)).success.kind).toBe('success');

      const bad = await h.api('POST', '/admin/keys/rotate', { body: { validityDays: 0 } });
      expect(bad.status).toBe(400);
    });
  });
});

describe('emulator admin API with a bearer token', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness([`  token: ${TOKEN}`]);
  });
  afterAll(async () => h.close());

  it('answers 401 without the token or with another one, and serves the right one', async () => {
    const none = await h.api('GET', '/admin/stats');
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ error: 'admin_unauthorized' });
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const wrong = await h.api('GET', '/admin/stats', { token: `${TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.text).not.toContain(TOKEN);
    const right = await h.api('GET', '/admin/stats', { token: TOKEN });
    expect(right.status).toBe(200);
  });

  it('checks the token before anything else, and then accepts any Host name', async () => {
    expect((await h.api('GET', '/admin/nothing')).status).toBe(401);
    expect((await h.api('POST', '/admin/native-users', { body: '{' })).status).toBe(401);
    const r = await h.api('GET', '/admin/accounts', { token: TOKEN, headers: { host: 'emulator.example' } });
    expect(r.status).toBe(200);
  });

  it('shows that requests are authenticated in the startup summary, but never the token', () => {
    const summary = h.running.summary();
    expect(summary.admin).toEqual({ host: '127.0.0.1', port: h.running.admin?.port, auth: 'bearer token' });
    expect(JSON.stringify(summary)).not.toContain(TOKEN);
  });
});

describe('emulator admin configuration', () => {
  const tmp = tempDir('emulator-admin-config-');
  afterAll(() => tmp.cleanup());
  const problemsOf = (yaml: string): readonly string[] => {
    try {
      loadEmulatorConfig(tmp.file(`c${Math.random().toString(36).slice(2)}.yaml`, yaml));
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  };

  it('defaults to enabled on 127.0.0.1:29402 without a token', () => {
    const { config } = loadEmulatorConfig();
    expect(config.admin).toEqual({ enabled: true, host: '127.0.0.1', port: 29402, allow_remote: false });
  });

  it('refuses a non-loopback host unless allow_remote is set together with a token', () => {
    expect(problemsOf('admin:\n  host: 0.0.0.0\n')).toEqual([
      expect.stringMatching(
        /^admin\.host: expected a loopback address such as 127\.0\.0\.1 .*found "0\.0\.0\.0"$/,
      ),
    ]);
    expect(problemsOf('admin:\n  host: 0.0.0.0\n  allow_remote: true\n')).toEqual([
      'admin.token: expected a bearer token of at least 16 characters (required when the admin API listens on 0.0.0.0), found nothing',
    ]);
    expect(problemsOf(`admin:\n  host: 0.0.0.0\n  allow_remote: true\n  token: ${TOKEN}\n`)).toEqual([]);
    expect(problemsOf('admin:\n  host: ::1\n')).toEqual([]);
    expect(problemsOf('admin:\n  host: localhost\n')).toEqual([]);
  });

  it('never shows the token in a configuration error', () => {
    const problems = problemsOf('admin:\n  token: short-secret\n');
    expect(problems).toEqual([
      'admin.token: expected a bearer token of at least 16 characters, found a value (not shown: it is a secret)',
    ]);
    expect(problems.join('\n')).not.toContain('short-secret');
  });

  it('starts no admin API when disabled', async () => {
    const dir = path.join(tmp.dir, 'disabled');
    const config = tmp.file(
      'disabled.yaml',
      `gateway:\n  port: 0\nemulator:\n  data_dir: ${dir}\nmedia:\n  port: 0\nadmin:\n  enabled: false\nlogging:\n  level: silent\n`,
    );
    const loaded = loadEmulatorConfig(config);
    initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 });
    const running = await RunningEmulator.start({ loaded, logger: createLogger({ level: 'silent' }) });
    try {
      expect(running.admin).toBeUndefined();
      expect(running.summary().admin).toBeUndefined();
    } finally {
      await running.stop();
    }
  });
});
