/**
 * The homeserver misbehaving and restarting, and the bridge restarting mid-conversation, on
 * Synapse: real restarts of Synapse, and what a real server cannot be made to show on demand (429,
 * 5xx, dropped connections, lost answers) injected by the validating proxy in front of it. No
 * message is lost, none is doubled.
 */
import { request } from 'node:http';
import type { NativeUser } from '../../emulator/native-user.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import {
  BOT,
  HS_TOKEN,
  MatrixHarness,
  bodyOf,
  ghostOf,
  replyTarget,
  until,
  useSynapse,
} from './matrix-harness.js';

const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);

let h: MatrixHarness;
let alice: SdkUser;
const synapse = useSynapse();
let bob: NativeUser;
let portal: string;

beforeEach(async () => {
  h = await MatrixHarness.start({ synapse: synapse() });
  alice = await h.user('alice', 'Alice');
  const management = await h.login(alice);
  bob = await h.native(BOB);
  portal = await h.startChat(alice, management, BOB);
});

afterEach(async () => {
  await h.close();
  h.assertNoViolations();
});

/** The ghost's messages in the portal, as Alice reads them. */
const ghostTexts = async () =>
  (await alice.readMessages(portal)).filter((e) => e.sender === GHOST).map(bodyOf);

const bobTexts = () => bob.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));

/** Waits until Synapse has nothing more for the bridge, and a little longer, for anything late to show. */
const settle = async () => {
  await h.transactionsIdle();
  await new Promise((r) => setTimeout(r, 300));
};

/** A call of the bridge's appservice endpoints as the homeserver makes them (with its hs_token). */
async function callAppservice(
  method: 'GET' | 'PUT' | 'POST',
  path: string,
  body?: unknown,
  token: string | null = HS_TOKEN,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${h.config.matrix.listen_port}${path}`, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as unknown };
}

test('rate limits, 5xx answers and dropped connections cost no message and duplicate none', async () => {
  h.proxy.rateLimitNext(2, 30, { operationId: 'sendMessage' });
  h.proxy.failNext(2, 502, { operationId: 'sendMessage' });
  h.proxy.dropNext(2, { operationId: 'sendMessage' });
  h.proxy.failNext(1, 503, { operationId: 'uploadContent' });
  h.proxy.rateLimitNext(1, 30, { operationId: 'getContentAuthed' });
  const sent = ['one', 'two', 'three', 'four', 'five'];
  for (const t of sent) await bob.sendText(await h.jidOf(alice), t, { devices: [0] });
  await bob.sendMedia(
    await h.jidOf(alice),
    { kind: 'image', bytes: Buffer.alloc(2000, 7), mimetype: 'image/png' },
    { devices: [0] },
  );
  await until(async () => (await ghostTexts()).length === 6, 'six messages from the ghost');
  await alice.sendMedia(portal, 'm.file', {
    bytes: Buffer.alloc(3000, 9),
    mimetype: 'text/plain',
    filename: 'a.txt',
  });
  await bob.waitForMessage((m) => m.content.kind === 'document');
  await settle();

  expect(await ghostTexts()).toEqual([...sent, 'image.png']);
  expect(h.proxy.faults.pending()).toBe(0);
  const faulted = h.proxy.requests.filter((r) => r.fault !== undefined).map((r) => r.fault);
  expect(faulted.sort()).toEqual([
    'drop',
    'drop',
    'rate_limit',
    'rate_limit',
    'rate_limit',
    'status',
    'status',
    'status',
  ]);
  expect(bob.received.filter((m) => m.content.kind === 'document')).toHaveLength(1);
});

test('transactions Synapse resends after a lost answer or a failed connection are bridged once', async () => {
  h.proxy.loseTransactionResponses(1);
  h.proxy.failTransactionConnections(1);
  for (const t of ['a', 'b', 'c', 'd']) await alice.sendText(portal, t);
  // The transaction whose answer was lost reaches the bridge twice: the second time from Synapse's
  // recovery, which can come after the bridge has found the later messages itself (catch-up.ts).
  const resent = () => {
    const ids = h.proxy.transactions.filter((t) => t.bridgeStatus === 200).map((t) => t.txnId);
    return new Set(ids).size < ids.length;
  };
  await until(
    () => bobTexts().length >= 4 && resent(),
    'four messages at Bob, and the lost answer resent',
    30_000,
  );
  await settle();

  expect(bobTexts()).toEqual(['a', 'b', 'c', 'd']);
}, 60_000);

test('after a Synapse restart that numbers transactions from 1 again, new events are all bridged', async () => {
  // Synapse (on SQLite) counts from 1 after a restart when nothing is left unsent: restarted once
  // first, so the ids this bridge sees before the second restart are the ones it will see again.
  await h.transactionsIdle();
  await synapse().synapse.restart();
  for (const t of ['before 1', 'before 2']) await alice.sendText(portal, t);
  await until(() => bobTexts().length >= 2, 'the first messages at Bob');
  await h.transactionsIdle();
  await synapse().synapse.restart();
  for (const t of ['after 1', 'after 2', 'after 3']) await alice.sendText(portal, t);
  await until(() => bobTexts().length >= 5, 'the messages after the restart at Bob');
  await settle();
  expect(bobTexts()).toEqual(['before 1', 'before 2', 'after 1', 'after 2', 'after 3']);
  const ids = h.proxy.transactions.map((t) => t.txnId);
  expect(new Set(ids).size).toBeLessThan(ids.length); // Synapse used ids again
});

test('a transaction Synapse held back when it died is bridged, and in order', async () => {
  // Synapse writes a transaction down before it sends it, and sends what is left over only while
  // it considers the appservice down. Killed while sending, it comes back with the service up and
  // the transaction unsent: unless the bridge makes it recover, the message in it never arrives.
  await alice.sendText(portal, 'first');
  await until(() => bobTexts().length >= 1, 'the first message at Bob');
  await h.transactionsIdle();
  const held = h.proxy.holdNextTransaction();
  await alice.sendText(portal, 'held back');
  const { eventIds } = await held;
  await synapse().synapse.kill();
  await synapse().synapse.relaunch();
  await alice.sendText(portal, 'after the restart');
  await until(() => bobTexts().length >= 3, 'every message at Bob');
  await settle();
  expect(bobTexts()).toEqual(['first', 'held back', 'after the restart']);
  // The held transaction reached the bridge from Synapse's recovery, after the bridge refused what
  // came while Synapse was away and the first transaction after it came back; each refused one
  // came again and was taken.
  const refused = h.proxy.transactions.filter((t) => t.bridgeStatus === 503);
  expect(refused.length).toBeGreaterThan(0);
  for (const r of refused) {
    expect(h.proxy.transactions.some((t) => t.txnId === r.txnId && t.bridgeStatus === 200)).toBe(true);
  }
  expect(h.proxy.transactions.some((t) => t.bridgeStatus === 200 && t.eventIds.includes(eventIds[0]!))).toBe(
    true,
  );
}, 60_000);

test('transactions Synapse never sends after its recovery (its race) cost no message, and the order is kept', async () => {
  // Synapse's recovery can leave one transaction unsent: one written while it has the bridge marked
  // down, in the instant the recovery ends (synapse/appservice/scheduler.py). The proxy stands in
  // for that race, which a real Synapse shows only by chance: Synapse hears 200, the bridge nothing.
  const carries = (text: string) => (events: readonly Record<string, unknown>[]) =>
    events.some((e) => (e['content'] as { body?: unknown } | undefined)?.body === text);
  await alice.sendText(portal, 'first');
  await until(() => bobTexts().length >= 1, 'the first message at Bob');
  await h.stopBridge();
  await alice.sendText(portal, 'while the bridge was down');
  // Synapse's default rate limit holds the user's third quick message back for seconds: the window
  // stays open long enough for it (a stranded transaction is made as the recovery ends, at once).
  await h.startBridge({}, { catchUpWindowMs: 15_000 });
  h.proxy.swallowTransaction(carries('lost in the race'));
  h.proxy.swallowTransaction(carries('alone'));
  await alice.sendText(portal, 'lost in the race');
  await alice.sendText(portal, 'next');
  // Nothing follows this one: the bridge finds it when it reads every portal back.
  await alice.sendText(portal, 'alone');
  await until(() => bobTexts().length >= 5, 'every message at Bob', 30_000).catch((err: Error) => {
    throw new Error(`${err.message}: Bob has ${JSON.stringify(bobTexts())}`);
  });
  await settle();
  expect(bobTexts()).toEqual(['first', 'while the bridge was down', 'lost in the race', 'next', 'alone']);
  // Neither reached the bridge from Synapse.
  for (const text of ['lost in the race', 'alone']) {
    const txns = h.proxy.transactions.filter((t) => carries(text)(t.events));
    expect(txns.map((t) => [t.bridgeStatus, t.toldSynapse])).toEqual([[0, 200]]);
  }
}, 60_000);

test('a startup ping the homeserver reports failed although it reached the bridge does not stop the bridge', async () => {
  await h.stopBridge();
  h.proxy.failNextPingsAfterDelivery(3); // every attempt of the startup check
  await h.startBridge();
  await alice.sendText(portal, 'after the restart');
  await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'after the restart');
});

test('a message Synapse stored but did not answer before it restarted appears once', async () => {
  h.proxy.restartAfterNextSends(1);
  await bob.sendText(await h.jidOf(alice), 'only once', { devices: [0] });
  await until(async () => (await ghostTexts()).includes('only once'), 'the message in the portal');
  await bob.sendText(await h.jidOf(alice), 'and the next', { devices: [0] });
  await until(async () => (await ghostTexts()).includes('and the next'), 'the next message in the portal');
  await settle();
  expect((await ghostTexts()).filter((t) => t === 'only once')).toHaveLength(1);
  expect(h.proxy.requests.some((r) => r.operationId === 'sendMessage' && r.fault === 'drop')).toBe(true);
});

test('the appservice endpoints check the hs_token and answer user queries, room queries and pings', async () => {
  const txn = { events: [] };
  expect(await callAppservice('PUT', '/_matrix/app/v1/transactions/x1', txn, null)).toEqual({
    status: 401,
    body: expect.objectContaining({ errcode: 'M_UNAUTHORIZED' }),
  });
  expect(await callAppservice('PUT', '/_matrix/app/v1/transactions/x1', txn, 'wrong')).toEqual({
    status: 403,
    body: expect.objectContaining({ errcode: 'M_FORBIDDEN' }),
  });
  const ghost = ghostOf('+4917611112222');
  expect(await callAppservice('GET', `/_matrix/app/v1/users/${encodeURIComponent(ghost)}`)).toEqual({
    status: 200,
    body: {},
  });
  expect(await synapse().isRegistered(ghost)).toBe(true);
  expect(
    await callAppservice('GET', `/_matrix/app/v1/users/${encodeURIComponent('@someone:example.test')}`),
  ).toMatchObject({ status: 404, body: { errcode: 'M_NOT_FOUND' } });
  expect(
    await callAppservice('GET', `/_matrix/app/v1/rooms/${encodeURIComponent('#wa:example.test')}`),
  ).toMatchObject({ status: 404 });
  expect(await callAppservice('POST', '/_matrix/app/v1/ping', { transaction_id: 'p1' })).toEqual({
    status: 200,
    body: {},
  });
});

test('a transaction with a missing or wrong hs_token is refused before its body is read', async () => {
  const port = h.config.matrix.listen_port;
  for (const [auth, status] of [
    [undefined, 401],
    ['Bearer wrong', 403],
  ] as const) {
    // The body is never finished: the answer must come without waiting for it.
    const answer = await new Promise<number>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port,
        method: 'PUT',
        path: '/_matrix/app/v1/transactions/big',
        headers: {
          'content-type': 'application/json',
          'content-length': String(31 * 1024 * 1024),
          ...(auth === undefined ? {} : { authorization: auth }),
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      req.write(Buffer.alloc(64 * 1024, 0x20));
    });
    expect(answer).toBe(status);
  }
  expect(await h.adapter.store.pendingInboundRooms()).toEqual([]);
});

test('a user query registers a ghost only for an id that can be a phone number', async () => {
  for (const digits of ['123', '0491511234567', '1234567890123456789', '49151x2345678']) {
    const ghost = `@wa_${digits}:example.test`;
    expect(await callAppservice('GET', `/_matrix/app/v1/users/${encodeURIComponent(ghost)}`)).toMatchObject({
      status: 404,
      body: { errcode: 'M_NOT_FOUND' },
    });
    expect(await synapse().isRegistered(ghost)).toBe(false);
  }
  const ghost = ghostOf('+4917611112222');
  expect(await callAppservice('GET', `/_matrix/app/v1/users/${encodeURIComponent(ghost)}`)).toEqual({
    status: 200,
    body: {},
  });
});

test('an event that fails is answered with a notice and holds up neither its transaction nor the room', async () => {
  const broken = await alice.sendEvent(portal, 'm.room.message', {
    msgtype: 'm.image',
    body: 'gone.png',
    url: `mxc://example.test/doesnotexistdoesnotexist`,
    info: { mimetype: 'image/png', size: 10 },
  });
  await alice.sendText(portal, 'after the broken one');

  const notice = await alice.waitFor(portal, (e) => e.sender === BOT && replyTarget(e) === broken);
  expect(bodyOf(notice)).toMatch(/^This message could not be bridged: /);
  await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'after the broken one');
  // Every transaction was answered 200 at the first attempt: the failure stayed with its event.
  expect(h.proxy.transactions.map((t) => t.bridgeStatus)).toEqual(h.proxy.transactions.map(() => 200));
  const ids = h.proxy.transactions.map((t) => t.txnId);
  expect(new Set(ids).size).toBe(ids.length);
  expect(bob.received).toHaveLength(1);
});

test('an outage longer than the client retries holds the room’s events and bridges them later, in order', async () => {
  // 3 failures: more than one event attempt's 2 download attempts; the event is tried again later.
  h.proxy.failNext(3, 502, { operationId: 'getContentAuthed' });
  await alice.sendMedia(portal, 'm.file', {
    bytes: Buffer.alloc(500, 1),
    mimetype: 'text/plain',
    filename: 'first.txt',
  });
  await alice.sendText(portal, 'second');
  await until(() => bob.received.length === 2, 'both messages at Bob');

  expect(bob.received.map((m) => m.content.kind)).toEqual(['document', 'text']);
  expect(h.proxy.faults.pending()).toBe(0);
  // Retried, not given up on: no notice in the room.
  expect(
    (await alice.readMessages(portal)).some(
      (e) => e.sender === BOT && /could not be bridged/.test(bodyOf(e)),
    ),
  ).toBe(false);
});

test('an incoming message the homeserver refuses for longer than the client retries is delivered later, once', async () => {
  h.proxy.failNext(9, 503, { operationId: 'sendMessage' });
  const id = await bob.sendText(await h.jidOf(alice), 'patience', { devices: [0] });
  await until(async () => (await ghostTexts()).length === 1, 'the message in the portal');
  // Acknowledged to the sender only once it was on the homeserver.
  await bob.waitForReceipt(id, 'delivery');
  await settle();
  expect(await ghostTexts()).toEqual(['patience']);
});

test('a second delivery of the same incoming message returns the same event and sends nothing', async () => {
  const event = {
    remoteId: 'ABCDEF0123456789',
    localUser: alice.userId,
    remote: bob.jid,
    timestamp: Date.now(),
    event: { type: 'message' as const, body: { kind: 'text' as const, text: 'only once' } },
  };
  const first = await h.adapter.deliver(event);
  const second = await h.adapter.deliver(event);
  expect(second).toBe(first);
  expect(await ghostTexts()).toEqual(['only once']);
});

test('a restart of the bridge in the middle of a conversation loses nothing and doubles nothing', async () => {
  await bob.sendText(await h.jidOf(alice), 'before', { devices: [0] });
  await alice.sendText(portal, 'before too');
  await until(async () => (await ghostTexts()).length === 1 && bobTexts().length === 1, 'the first exchange');

  const aliceJid = await h.jidOf(alice);
  await h.stopBridge();
  // While the bridge is down: Bob's messages wait at the gateway, Alice's in the homeserver's
  // transaction queue (resent until the bridge answers).
  await bob.sendText(aliceJid, 'while you were away', { devices: [0] });
  await bob.sendText(aliceJid, 'and this', { devices: [0] });
  await alice.sendText(portal, 'are you there?');
  await alice.sendText(portal, 'hello?');
  await new Promise((r) => setTimeout(r, 200));
  await h.startBridge();

  await until(
    async () => (await ghostTexts()).length === 3 && bobTexts().length === 3,
    'everything after the restart',
  );
  await settle();
  expect(await ghostTexts()).toEqual(['before', 'while you were away', 'and this']);
  expect(bobTexts()).toEqual(['before too', 'are you there?', 'hello?']);
});

describe('startup checks say exactly what is wrong', () => {
  /** Starts the bridge as it should (the suite's afterEach stops it again, even mid-dial). */
  const restarted = () => h.startBridge();

  beforeEach(async () => {
    await h.stopBridge();
  });

  test('a homeserver that cannot be reached', async () => {
    await expect(h.startBridge({ homeserver_url: 'http://127.0.0.1:1' })).rejects.toMatchObject({
      code: 'matrix_homeserver_unreachable',
      message: expect.stringMatching(
        /cannot reach the homeserver at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\): check matrix\.homeserver_url/,
      ),
    });
    await restarted();
  });

  test('an as_token the homeserver does not know', async () => {
    await expect(h.startBridge({ as_token: 'not-the-registered-token' })).rejects.toMatchObject({
      code: 'matrix_as_token_rejected',
      message: expect.stringMatching(
        /does not accept matrix\.as_token \(401 M_UNKNOWN_TOKEN\): install the registration file/,
      ),
    });
    await restarted();
  });

  test('a bot localpart that is not the registration’s', async () => {
    await expect(h.startBridge({ bot_localpart: 'somebot' })).rejects.toMatchObject({
      code: 'matrix_bot_mismatch',
    });
    await restarted();
  });

  test('an hs_token that differs from the registration’s fails the appservice ping', async () => {
    await expect(h.startBridge({ hs_token: 'another-hs-token' })).rejects.toMatchObject({
      code: 'matrix_ping_failed',
      message: expect.stringMatching(
        /M_BAD_STATUS.*hs_token in the homeserver's registration and matrix\.hs_token differ/,
      ),
    });
    await restarted();
  });
});
