import { readdirSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import {
  LocalUser,
  MatrixCallError,
  SchemaValidator,
  StandInHomeserver,
  testRegistration,
  type TransactionBody,
} from '../support/homeserver/index.js';
import { SpecFiles, isObject, matrixSpecDir } from '../support/homeserver/spec-files.js';

/** The application service side, scripted: records what the homeserver pushes, answers as told. */
class ScriptedAppservice {
  readonly received: { method: string; path: string; authorization: string | undefined; body: unknown }[] =
    [];
  /** Statuses for the next answers (then 200). */
  readonly answers: number[] = [];
  private server!: Server;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        this.received.push({
          method: req.method ?? '',
          path: req.url ?? '',
          authorization: req.headers.authorization,
          body: text === '' ? undefined : (JSON.parse(text) as unknown),
        });
        const status = this.answers.shift() ?? 200;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status === 200 ? '{}' : JSON.stringify({ errcode: 'M_UNKNOWN', error: 'scripted failure' }));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  transactions(): { txnId: string; body: TransactionBody }[] {
    return this.received
      .filter((r) => r.path.startsWith('/_matrix/app/v1/transactions/'))
      .map((r) => ({ txnId: decodeURIComponent(r.path.split('/').pop()!), body: r.body as TransactionBody }));
  }

  events(): Record<string, unknown>[] {
    const seen = new Set<string>();
    return this.transactions()
      .filter((t) => !seen.has(t.txnId) && seen.add(t.txnId))
      .flatMap((t) => t.body.events as Record<string, unknown>[]);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const AS_TOKEN = 'as_token_for_tests';
const GHOST = '@wa_4915112345678:example.test';

let hs: StandInHomeserver;
let appservice: ScriptedAppservice;
let alice: LocalUser;

/** A client-server call with the appservice's token, optionally masquerading as `userId`. */
async function asCall(
  method: string,
  p: string,
  body?: unknown,
  userId?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const url = new URL(`${hs.url}${p}`);
  if (userId !== undefined) url.searchParams.set('user_id', userId);
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${AS_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const enc = encodeURIComponent;

async function registerGhost(localpart = 'wa_4915112345678'): Promise<void> {
  const r = await asCall('POST', '/_matrix/client/v3/register', {
    type: 'm.login.application_service',
    username: localpart,
    inhibit_login: true,
  });
  expect(r).toEqual({ status: 200, json: { user_id: `@${localpart}:example.test` } });
}

/** Alice's DM with the ghost, the ghost joined (through the appservice). */
async function directRoomWithGhost(): Promise<string> {
  await registerGhost();
  const roomId = await alice.createDirectRoom(GHOST);
  const join = await asCall('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, GHOST);
  expect(join.status).toBe(200);
  return roomId;
}

beforeEach(async () => {
  appservice = new ScriptedAppservice();
  const url = await appservice.start();
  hs = await StandInHomeserver.start({ registration: testRegistration({ url }) });
  alice = LocalUser.create(hs, 'alice', 'Alice');
});

afterEach(async () => {
  await hs.close();
  await appservice.close();
});

describe('the validator', () => {
  test('accepts every event example of the specification against its own schema', () => {
    const files = new SpecFiles(matrixSpecDir());
    const validator = new SchemaValidator(files);
    // Examples use `$ref` to inherit fields from a base example; siblings override.
    const expand = (v: unknown, file: string): unknown => {
      if (Array.isArray(v)) return v.map((x) => expand(x, file));
      if (!isObject(v)) return v;
      const base = typeof v['$ref'] === 'string' ? files.resolve(v['$ref'], file) : undefined;
      const out = base === undefined ? {} : { ...(expand(base.value, base.file) as Record<string, unknown>) };
      for (const [k, x] of Object.entries(v)) if (k !== '$ref') out[k] = expand(x, file);
      return out;
    };
    const dir = path.join(files.root, 'event-schemas/examples');
    const checked: string[] = [];
    const problems: string[] = [];
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.yaml'))) {
      const schema = path.join(files.root, 'event-schemas/schema', name);
      if (!existsSync(schema)) continue;
      const example = expand(files.load(path.join(dir, name)), path.join(dir, name));
      checked.push(name);
      for (const p of validator.validate(files.node(schema), example, name))
        problems.push(`${p.path} ${p.message}`);
    }
    expect(checked.length).toBeGreaterThan(70);
    expect(problems).toEqual([]);
  });

  test('rejects a wrong body type in a request with the path of the offending field', async () => {
    const err = await alice.createRoom({ invite: '@wa_1:example.test' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, errcode: 'M_BAD_JSON' });
    expect(hs.takeViolations()).toEqual([
      expect.objectContaining({
        where: 'request',
        path: 'body.invite',
        message: 'must be array, got string',
      }),
    ]);
  });

  test('rejects an event missing a required field, naming the field', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    const err = await alice
      .sendEvent(roomId, 'm.room.message', { msgtype: 'm.text' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, errcode: 'M_BAD_JSON' });
    expect(hs.takeViolations()).toEqual([
      expect.objectContaining({
        where: 'event',
        path: 'event.content.body',
        message: 'is required but missing',
      }),
    ]);
    expect(hs.room(roomId)!.timeline.filter((e) => e.type === 'm.room.message')).toEqual([]);
  });

  test('checks a msgtype the spec does not define against the generic message schema (body required)', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    await expect(
      alice.sendEvent(roomId, 'm.room.message', { msgtype: 'org.example.poll' }),
    ).rejects.toMatchObject({
      errcode: 'M_BAD_JSON',
    });
    expect(hs.takeViolations().map((v) => v.path)).toEqual(['event.content.body']);
    await alice.sendEvent(roomId, 'm.room.message', { msgtype: 'org.example.poll', body: 'Poll: lunch?' });
  });

  test('checks each msgtype against its own schema: an m.image whose info.size is text is refused', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    const content = {
      msgtype: 'm.image',
      body: 'cat.png',
      url: 'mxc://example.test/abc',
      info: { size: 'big' },
    };
    await expect(alice.sendEvent(roomId, 'm.room.message', content)).rejects.toMatchObject({
      errcode: 'M_BAD_JSON',
    });
    expect(hs.takeViolations()).toEqual([
      expect.objectContaining({ path: 'event.content.info.size', message: 'must be integer, got string' }),
    ]);
  });

  test('treats event types the spec does not define (m.bridge) as opaque, checking only the envelope', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    await alice.setState(roomId, 'm.bridge', 'interop-bridge://whatsapp/123', {
      bridgebot: '@interopbot:example.test',
    });
    expect(hs.violations).toEqual([]);
  });

  test('rejects a query parameter of the wrong kind and one the endpoint does not define', async () => {
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    await expect(
      alice.call('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=sideways`),
    ).rejects.toMatchObject({
      status: 400,
      errcode: 'M_INVALID_PARAM',
    });
    await expect(
      alice.call('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state?limit=3`),
    ).rejects.toMatchObject({
      status: 400,
    });
    expect(hs.takeViolations().map((v) => v.path)).toEqual(['query parameter dir', 'query parameter limit']);
  });

  test('reports a path that is not in the client-server API, and one the stand-in does not serve', async () => {
    await expect(alice.call('GET', '/_matrix/client/v3/no_such_thing')).rejects.toMatchObject({
      status: 404,
      errcode: 'M_UNRECOGNIZED',
    });
    await expect(alice.call('GET', '/_matrix/client/v3/capabilities')).rejects.toMatchObject({
      errcode: 'M_UNRECOGNIZED',
    });
    expect(hs.takeViolations().map((v) => v.where)).toEqual(['request', 'unimplemented']);
  });

  test('close() is not where violations hide: assertNoViolations lists each with its field', async () => {
    await alice.createRoom({ invite: 3 }).catch(() => undefined);
    expect(() => hs.assertNoViolations()).toThrow(/body\.invite must be array, got integer/);
    hs.takeViolations();
  });
});

describe('a conversation through the appservice', () => {
  test('delivers the invite of a ghost to the appservice, and the ghost joins, speaks, and is read', async () => {
    await registerGhost();
    const roomId = await alice.createDirectRoom(GHOST);
    await hs.transactionsIdle();
    const invite = appservice.events().find((e) => e['type'] === 'm.room.member' && e['state_key'] === GHOST);
    expect(invite).toMatchObject({
      room_id: roomId,
      sender: alice.userId,
      content: { membership: 'invite', is_direct: true },
    });

    expect((await asCall('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, GHOST)).status).toBe(
      200,
    );
    const sent = await asCall(
      'PUT',
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t1`,
      { msgtype: 'm.text', body: 'hello', format: 'org.matrix.custom.html', formatted_body: '<b>hello</b>' },
      GHOST,
    );
    expect(sent.status).toBe(200);

    const timeline = await alice.readMessages(roomId);
    expect(timeline.map((e) => [e.sender, e.content['body']])).toEqual([[GHOST, 'hello']]);

    await alice.sendText(roomId, 'hi ghost');
    await alice.sendReceipt(roomId, String(sent.json['event_id']));
    await alice.setTyping(roomId, true);
    await hs.transactionsIdle();
    const bodies = appservice.transactions().map((t) => t.body);
    expect(
      bodies.flatMap((b) => b.events).map((e) => (e as { content: { body?: string } }).content.body),
    ).toContain('hi ghost');
    const ephemeral = bodies.flatMap((b) => b.ephemeral ?? []);
    expect(ephemeral).toEqual(
      expect.arrayContaining([
        {
          type: 'm.receipt',
          room_id: roomId,
          content: {
            [String(sent.json['event_id'])]: { 'm.read': { [alice.userId]: { ts: expect.any(Number) } } },
          },
        },
        { type: 'm.typing', room_id: roomId, content: { user_ids: [alice.userId] } },
      ]),
    );
    for (const b of bodies) expect(b['de.sorunome.msc2409.ephemeral']).toEqual(b.ephemeral);
    expect(appservice.received.every((r) => r.authorization === 'Bearer hs_token_for_tests')).toBe(true);
    hs.assertNoViolations();
  });

  test('sends a message event only once for a repeated transaction ID', async () => {
    const roomId = await directRoomWithGhost();
    const p = `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/same-txn`;
    const first = await asCall('PUT', p, { msgtype: 'm.text', body: 'once' }, GHOST);
    const again = await asCall('PUT', p, { msgtype: 'm.text', body: 'once' }, GHOST);
    expect(again.json['event_id']).toBe(first.json['event_id']);
    expect((await alice.readMessages(roomId)).map((e) => e.content['body'])).toEqual(['once']);
    hs.assertNoViolations();
  });

  test('creates a room with initial state, power level override and invites, in the spec order', async () => {
    await registerGhost();
    const r = await asCall(
      'POST',
      '/_matrix/client/v3/createRoom',
      {
        preset: 'private_chat',
        is_direct: true,
        invite: [alice.userId],
        name: 'Portal',
        initial_state: [{ type: 'm.bridge', state_key: 'wa', content: { protocol: { id: 'whatsapp' } } }],
        power_level_content_override: { users: { [GHOST]: 100, '@interopbot:example.test': 100 } },
      },
      GHOST,
    );
    expect(r.status).toBe(200);
    const room = hs.room(String(r.json['room_id']))!;
    expect(room.timeline.map((e) => e.type)).toEqual([
      'm.room.create',
      'm.room.member',
      'm.room.power_levels',
      'm.room.join_rules',
      'm.room.history_visibility',
      'm.room.guest_access',
      'm.bridge',
      'm.room.name',
      'm.room.member',
    ]);
    expect(room.membership(alice.userId)).toBe('invite');
    await alice.join(room.roomId);
    expect(room.membership(alice.userId)).toBe('join');
    hs.assertNoViolations();
  });

  test('enforces power levels on state changes and marks a room encrypted', async () => {
    const roomId = await directRoomWithGhost();
    const p = `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.power_levels/`;
    // In a trusted private chat the invitee gets the creator's level; take a plain private room instead.
    const plain = await alice.createRoom({ preset: 'private_chat', invite: [GHOST] });
    await asCall('POST', `/_matrix/client/v3/rooms/${enc(plain)}/join`, {}, GHOST);
    const rename = await asCall(
      'PUT',
      `/_matrix/client/v3/rooms/${enc(plain)}/state/m.room.name/`,
      { name: 'x' },
      GHOST,
    );
    expect(rename).toMatchObject({ status: 403, json: { errcode: 'M_FORBIDDEN' } });
    await alice.setState(plain, 'm.room.name', '', { name: 'Renamed' });
    expect(hs.room(plain)!.stateEvent('m.room.name', '')?.content).toEqual({ name: 'Renamed' });

    expect((await asCall('GET', p, undefined, GHOST)).json['users']).toMatchObject({ [GHOST]: 100 });
    await alice.enableEncryption(roomId);
    expect(hs.room(roomId)!.encrypted).toBe(true);
    const state = await asCall(
      'GET',
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.encryption/`,
      undefined,
      GHOST,
    );
    expect(state.json).toEqual({ algorithm: 'm.megolm.v1.aes-sha2' });
    hs.assertNoViolations();
  });

  test('refuses to let a user who is not invited join a private room', async () => {
    await registerGhost();
    const roomId = await alice.createRoom({ preset: 'private_chat' });
    const r = await asCall('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, GHOST);
    expect(r).toMatchObject({ status: 403, json: { errcode: 'M_FORBIDDEN' } });
    hs.assertNoViolations();
  });
});

describe('transactions to the appservice', () => {
  test('resend the same txnId until the appservice answers 200, then move to the next', async () => {
    appservice.answers.push(500, 503);
    const roomId = await directRoomWithGhost();
    await hs.transactionsIdle();
    await alice.sendText(roomId, 'after the outage');
    await hs.transactionsIdle();
    const ids = appservice.transactions().map((t) => t.txnId);
    expect(ids.slice(0, 3)).toEqual(['1', '1', '1']);
    expect(new Set(ids.slice(3))).not.toContain('1');
    expect(appservice.transactions()[0]!.body).toEqual(appservice.transactions()[2]!.body);
    const delivered = appservice.events();
    expect(delivered.map((e) => e['type'])).toEqual([
      'm.room.member', // the ghost's invite
      'm.room.member', // the ghost's join
      'm.room.message',
    ]);
    hs.assertNoViolations();
  });

  test('resend a transaction whose answer was lost, and can deliver one twice after success', async () => {
    hs.loseTransactionResponses(1);
    hs.duplicateNextTransaction();
    await registerGhost();
    await alice.createDirectRoom(GHOST);
    await hs.transactionsIdle();
    const ids = appservice.transactions().map((t) => t.txnId);
    expect(ids.slice(0, 3)).toEqual(['1', '1', '1']);
    expect(hs.transactions.map((a) => a.fault ?? 'normal').slice(0, 3)).toEqual([
      'ignored_response',
      'normal',
      'duplicate',
    ]);
    hs.assertNoViolations();
  });

  test('keep events in order across a failure: nothing queued meanwhile overtakes the failing transaction', async () => {
    appservice.answers.push(500);
    const roomId = await directRoomWithGhost();
    for (const n of [1, 2, 3, 4, 5]) await alice.sendText(roomId, `m${n}`);
    await hs.transactionsIdle();
    const bodies = appservice
      .events()
      .filter((e) => e['type'] === 'm.room.message')
      .map((e) => (e['content'] as { body: string }).body);
    expect(bodies).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    hs.assertNoViolations();
  });

  test('answer an appservice ping by pinging the appservice with the hs_token', async () => {
    const r = await asCall('POST', '/_matrix/client/v1/appservice/interop-bridge/ping', {
      transaction_id: 'p1',
    });
    expect(r).toEqual({ status: 200, json: { duration_ms: expect.any(Number) } });
    expect(appservice.received.at(-1)).toMatchObject({
      method: 'POST',
      path: '/_matrix/app/v1/ping',
      authorization: 'Bearer hs_token_for_tests',
      body: { transaction_id: 'p1' },
    });
    appservice.answers.push(401);
    const failed = await asCall('POST', '/_matrix/client/v1/appservice/interop-bridge/ping', {});
    expect(failed).toMatchObject({ status: 502, json: { errcode: 'M_BAD_STATUS', status: 401 } });
    hs.assertNoViolations();
  });
});

test('checks the answers of the appservice to direct calls against the application service API', async () => {
  appservice.answers.push(403);
  const r = await hs.callAppservice('PUT', '/_matrix/app/v1/transactions/probe', { events: [] }, 'wrong');
  expect(r).toMatchObject({ status: 403, body: { errcode: 'M_UNKNOWN' } });
  expect(appservice.received.at(-1)?.authorization).toBe('Bearer wrong');
  hs.assertNoViolations();
  await expect(hs.callAppservice('GET', '/_matrix/app/v1/nowhere')).rejects.toThrow(/not an endpoint/);
});

describe('authentication and namespaces', () => {
  test('refuse masquerading outside the namespaces, and as a ghost not yet registered', async () => {
    const asAlice = await asCall('GET', '/_matrix/client/v3/account/whoami', undefined, alice.userId);
    expect(asAlice).toMatchObject({ status: 403, json: { errcode: 'M_FORBIDDEN' } });
    const unregistered = await asCall('GET', '/_matrix/client/v3/account/whoami', undefined, GHOST);
    expect(unregistered).toMatchObject({ status: 403, json: { errcode: 'M_FORBIDDEN' } });
    await registerGhost();
    expect(await asCall('GET', '/_matrix/client/v3/account/whoami', undefined, GHOST)).toMatchObject({
      status: 200,
      json: { user_id: GHOST },
    });
    expect((await asCall('GET', '/_matrix/client/v3/account/whoami')).json['user_id']).toBe(
      '@interopbot:example.test',
    );
    hs.assertNoViolations();
  });

  test('enforce exclusivity: the appservice cannot register outside its namespace, nor others inside it', async () => {
    const outside = await asCall('POST', '/_matrix/client/v3/register', {
      type: 'm.login.application_service',
      username: 'bob',
    });
    expect(outside).toMatchObject({ status: 400, json: { errcode: 'M_EXCLUSIVE' } });
    const bot = await asCall('POST', '/_matrix/client/v3/register', {
      type: 'm.login.application_service',
      username: 'interopbot',
    });
    expect(bot).toMatchObject({ status: 400, json: { errcode: 'M_USER_IN_USE' } });
    const res = await fetch(`${hs.url}/_matrix/client/v3/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'wa_4915112345678', password: 'x', auth: { type: 'm.login.dummy' } }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ errcode: 'M_EXCLUSIVE' });
    hs.assertNoViolations();
  });

  test('answer a missing token with M_MISSING_TOKEN and a wrong one with M_UNKNOWN_TOKEN', async () => {
    const none = await fetch(`${hs.url}/_matrix/client/v3/account/whoami`);
    expect([none.status, ((await none.json()) as { errcode: string }).errcode]).toEqual([
      401,
      'M_MISSING_TOKEN',
    ]);
    const wrong = await fetch(`${hs.url}/_matrix/client/v3/account/whoami`, {
      headers: { authorization: 'Bearer nope' },
    });
    expect([wrong.status, ((await wrong.json()) as { errcode: string }).errcode]).toEqual([
      401,
      'M_UNKNOWN_TOKEN',
    ]);
    hs.assertNoViolations();
  });
});

describe('media', () => {
  test('round-trips an upload through the authenticated download endpoint, and refuses it without a token', async () => {
    await registerGhost();
    const bytes = Buffer.from('\x89PNG fake image bytes');
    const up = await fetch(`${hs.url}/_matrix/media/v3/upload?filename=cat.png&user_id=${enc(GHOST)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${AS_TOKEN}`, 'content-type': 'image/png' },
      body: bytes,
    });
    const { content_uri } = (await up.json()) as { content_uri: string };
    expect(content_uri).toMatch(/^mxc:\/\/example\.test\/[\w-]+$/);
    const got = await alice.download(content_uri);
    expect(got.bytes.equals(bytes)).toBe(true);
    expect(got.contentType).toBe('image/png');
    expect(got.disposition).toBe("inline; filename*=utf-8''cat.png");

    const anonymous = await fetch(`${hs.url}/_matrix/client/v1/media/download/${content_uri.slice(6)}`);
    expect(anonymous.status).toBe(401);
    expect(
      (
        await fetch(`${hs.url}/_matrix/client/v1/media/config`, {
          headers: { authorization: `Bearer ${alice.accessToken}` },
        })
      ).status,
    ).toBe(200);
    hs.assertNoViolations();
  });

  test('a user sends an image as Element does: upload, then m.image with its info', async () => {
    const roomId = await directRoomWithGhost();
    await alice.sendMedia(roomId, 'm.image', {
      bytes: Buffer.from('image'),
      mimetype: 'image/jpeg',
      filename: 'photo.jpg',
      info: { w: 4, h: 3 },
    });
    const [image] = await alice.readMessages(roomId);
    expect(image!.content).toMatchObject({
      msgtype: 'm.image',
      body: 'photo.jpg',
      info: { mimetype: 'image/jpeg', size: 5, w: 4, h: 3 },
    });
    hs.assertNoViolations();
  });
});

describe('faults', () => {
  test('answers the next request of a kind with 429 M_LIMIT_EXCEEDED and retry_after_ms, then serves it', async () => {
    const roomId = await directRoomWithGhost();
    hs.rateLimitNext(1, 1500, { operationId: 'sendMessage' });
    const p = `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/r1`;
    const limited = await asCall('PUT', p, { msgtype: 'm.text', body: 'x' }, GHOST);
    expect(limited).toEqual({
      status: 429,
      json: { errcode: 'M_LIMIT_EXCEEDED', error: expect.any(String), retry_after_ms: 1500 },
    });
    expect((await asCall('PUT', p, { msgtype: 'm.text', body: 'x' }, GHOST)).status).toBe(200);
    expect(
      hs.requests.filter((r) => r.operationId === 'sendMessage').map((r) => r.fault ?? r.status),
    ).toEqual(['rate_limit', 200]);
    hs.assertNoViolations();
  });

  test('answers with a server error, or drops the connection, for the planned number of requests', async () => {
    hs.failNext(1, 502, { operationId: 'getTokenOwner' });
    hs.dropNext(1, { operationId: 'getTokenOwner' });
    expect((await asCall('GET', '/_matrix/client/v3/account/whoami')).status).toBe(502);
    await expect(asCall('GET', '/_matrix/client/v3/account/whoami')).rejects.toThrow();
    expect((await asCall('GET', '/_matrix/client/v3/account/whoami')).status).toBe(200);
    expect(hs.faults.pending()).toBe(0);
    hs.assertNoViolations();
  });
});

test('a simulated user who is not allowed gets a MatrixCallError with the errcode', async () => {
  const bob = LocalUser.create(hs, 'bob');
  const roomId = await alice.createRoom({ preset: 'private_chat' });
  const err = await bob.sendText(roomId, 'let me in').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MatrixCallError);
  expect(err).toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' });
  hs.assertNoViolations();
});
