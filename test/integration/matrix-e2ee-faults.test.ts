/**
 * What an encrypted portal survives besides restarts and crashes of the bridge (those are in
 * matrix-e2ee.test.ts and matrix-e2ee-crash.test.ts): the user signing in on a new device, and
 * Synapse restarting in the middle of the conversation. On a real Synapse, the user's clients are
 * matrix-js-sdk with Rust crypto, as Element; each test ends with every event the user's client
 * holds decrypted.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import type { NativeUser } from '../../emulator/native-user.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { MatrixHarness, bodyOf, ghostOf, until, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);

const synapse = useSynapse();
let h: MatrixHarness;
let alice: SdkUser;
let bob: NativeUser;
let portal: string;
/** The user's other clients a test starts (stopped after it). */
const devices: SdkUser[] = [];

beforeEach(async () => {
  h = await MatrixHarness.start({ synapse: synapse(), encryption: { allow: true, default: true } });
  alice = await h.user('alice', 'Alice', { crypto: true });
  const management = await h.login(alice);
  bob = await h.native(BOB);
  portal = await h.startChat(alice, management, BOB);
}, 60_000);

afterEach(async () => {
  try {
    if (alice !== undefined) await expectEverythingDecrypted(alice);
  } finally {
    for (const d of devices.splice(0)) d.stop();
    await h.close();
  }
  h.assertNoViolations();
});

const isText = (text: string) => (e: ClientEvent) =>
  e.sender === GHOST && e.type === 'm.room.message' && bodyOf(e) === text;
const toBob = (text: string) =>
  bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === text, 20_000);
const bobTexts = () => bob.received.flatMap((m) => (m.content.kind === 'text' ? [m.content.text] : []));
/** What the ghost said in the portal, decrypted by the user's client, oldest first. */
const ghostTexts = async (user: SdkUser) =>
  (await user.decryptedMessages(portal))
    .filter((e) => e.sender === GHOST && e.type === 'm.room.message')
    .map(bodyOf);

/** A message each way, each read by the other side. */
async function exchange(tag: string): Promise<void> {
  const fromBob = `bob-${tag}`;
  await bob.sendText(await h.jidOf(alice), fromBob, { devices: [0] });
  await alice.waitFor(portal, isText(fromBob));
  const fromAlice = `alice-${tag}`;
  await alice.sendText(portal, fromAlice);
  await toBob(fromAlice);
}

/** No event in any room of the user's client is one it could not decrypt (0 undecryptable). */
async function expectEverythingDecrypted(user: SdkUser, since = 0): Promise<void> {
  const failed = (await user.undecryptableAnywhere()).filter((e) => e.getTs() >= since);
  expect(failed.map((e) => `${e.getId()} from ${e.getSender()}: ${e.decryptionFailureReason}`)).toEqual([]);
}

/** Every event Synapse stored for the room (its SQLite file). */
function storedEvents(roomId: string): string[] {
  const db = new Database(path.join(h.synapse!.synapse.dir, 'homeserver.db'), {
    readonly: true,
    fileMustExist: true,
  });
  try {
    return (
      db.prepare('SELECT json FROM event_json WHERE room_id = ?').all(roomId) as { json: string }[]
    ).map((r) => r.json);
  } finally {
    db.close();
  }
}

/** The user's devices that have published their keys. */
async function devicesWithKeys(user: SdkUser): Promise<string[]> {
  const r = await user.call<{ device_keys?: Record<string, Record<string, unknown>> }>(
    'POST',
    '/_matrix/client/v3/keys/query',
    { device_keys: { [user.userId]: [] } },
  );
  return Object.keys(r.device_keys?.[user.userId] ?? {});
}

/** `promise`, or a failure naming `what` after `ms` (a client's waits have no end of their own). */
function within<T>(promise: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('a new device of the user reads what the bridge sends once it signed in, and what it sends reaches the contact', async () => {
  await exchange('before');
  const signedIn = Date.now();
  const seen = h.proxy.transactions.length;
  const phone = await synapse().anotherDevice(alice, { crypto: true });
  devices.push(phone);
  // Once its keys are on the homeserver, the homeserver tells the bridge's devices in a
  // transaction (MSC3202 device lists), as it tells clients in their syncs.
  await until(async () => (await devicesWithKeys(alice)).includes(phone.client.getDeviceId()!), 'its keys');
  await h.transactionsIdle();
  expect(h.proxy.transactions.slice(seen).some((t) => t.deviceListsChanged.includes(alice.userId))).toBe(
    true,
  );

  for (const text of ['bob-after-1', 'bob-after-2']) {
    await bob.sendText(await h.jidOf(alice), text, { devices: [0] });
    await within(phone.waitFor(portal, isText(text)), `the new device to read ${text}`);
    await alice.waitFor(portal, isText(text));
  }
  await phone.sendText(portal, 'from my new device');
  await toBob('from my new device');
  await alice.waitFor(portal, (e) => e.type === 'm.room.message' && bodyOf(e) === 'from my new device');

  // What came before the new device is not its to read (no key backup); nothing after is lost.
  await expectEverythingDecrypted(phone, signedIn);
  expect(await ghostTexts(phone)).toEqual(expect.arrayContaining(['bob-after-1', 'bob-after-2']));
}, 90_000);

test('a restart of Synapse in the middle of an encrypted conversation costs no message either way', async () => {
  await exchange('before');
  await h.transactionsIdle();
  const jid = await h.jidOf(alice);
  const restarting = synapse().synapse.restart();
  // Bob goes on writing while the homeserver is away: the ghost's device encrypts, and the sends
  // are retried until it is back.
  const during = ['bob-while-away-1', 'bob-while-away-2'];
  for (const text of during) await bob.sendText(jid, text, { devices: [0] });
  await restarting;
  await alice.sendText(portal, 'alice-back');
  await toBob('alice-back');
  for (const text of during) await alice.waitFor(portal, isText(text));
  await exchange('after');

  await until(async () => (await ghostTexts(alice)).length >= 4, 'every message of Bob’s');
  expect(await ghostTexts(alice)).toEqual(['bob-before', ...during, 'bob-after']);
  expect(bobTexts()).toEqual(['alice-before', 'alice-back', 'alice-after']);
  // What Synapse wrote down across its restart holds none of them in the clear.
  const stored = storedEvents(portal).join('\n');
  for (const text of [...during, 'bob-before', 'bob-after', 'alice-back']) expect(stored).not.toContain(text);
}, 90_000);
