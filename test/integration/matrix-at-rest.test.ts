/**
 * Plaintext only in flight on Matrix, on a real Synapse: marker texts and a marker file (its bytes,
 * its name and its caption) both ways between a Matrix user and a native user, and none of them
 * left, after a stop, in the bridge's database, its WAL, the Matrix media spool, the received
 * media or the bridge's log at trace level. The same while the homeserver refuses delivery and the
 * puppet is offline: the waiting content is sealed (the spooled file too), and delivered afterwards.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/logger.js';
import { isSealedFile } from '../../src/util/sealed-file.js';
import { findMarkers } from '../support/at-rest.js';
import type { NativeUser } from '../../emulator/native-user.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { MatrixHarness, ghostOf, until, useSynapse } from './matrix-harness.js';

const BOB = '+4915100008001';
const GHOST = ghostOf(BOB);
const marker = (what: string) => `MARKER-${what}-${randomBytes(8).toString('hex')}`;

const synapse = useSynapse();
let h: MatrixHarness;
let alice: SdkUser;
let bob: NativeUser;
let portal: string;
const logged: string[] = [];

beforeEach(async () => {
  logged.length = 0;
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(chunk.toString('utf8'));
      done();
    },
  });
  h = await MatrixHarness.start({
    synapse: synapse(),
    logger: createLogger({ destination, format: 'json', level: 'trace' }),
  });
  alice = await h.user('alice', 'Alice');
  bob = await h.native(BOB);
  const management = await h.login(alice);
  portal = await h.startChat(alice, management, BOB);
});

afterEach(async () => {
  await h.close();
  h.assertNoViolations();
});

const spoolDir = () => path.join(h.tmp.dir, 'matrix-media');
const spooled = (): string[] => {
  try {
    return readdirSync(spoolDir());
  } catch {
    return [];
  }
};

/** The bridge's files and its log (written out beside them). */
function places(): string[] {
  const log = h.tmp.file('bridge.log');
  writeFileSync(log, logged.join(''));
  const db = h.tmp.file('bridge.db');
  return [db, `${db}-wal`, spoolDir(), path.join(h.tmp.dir, 'media-received'), log];
}

/** A file whose bytes, name and caption are markers. */
function markerFile(what: string): { bytes: Buffer; name: string; caption: string; content: string } {
  const content = marker(`${what}-bytes`);
  return {
    content,
    bytes: Buffer.from(`${content}\n`.repeat(40)),
    name: `${marker(`${what}-name`)}.txt`,
    caption: marker(`${what}-caption`),
  };
}

const markersOf = (f: ReturnType<typeof markerFile>) => [f.content, f.name.replace(/\.txt$/, ''), f.caption];

test('texts and files both ways leave no marker in the database, WAL, spool, received media or log', async () => {
  const outText = marker('mx-out');
  const outFile = markerFile('mx-out-file');
  const inText = marker('mx-in');
  const inFile = markerFile('mx-in-file');

  await alice.sendText(portal, outText);
  await alice.sendMedia(portal, 'm.file', {
    bytes: outFile.bytes,
    mimetype: 'text/plain',
    filename: outFile.name,
    caption: outFile.caption,
  });
  await bob.waitForMessage(() => bob.received.length === 2, 20_000);
  const [text, doc] = bob.received;
  expect(text?.content.kind === 'text' && text.content.text).toBe(outText);
  expect(doc?.content.kind === 'document' && doc.content.media.fileName).toBe(outFile.name);
  expect((await bob.downloadMedia(doc!)).equals(outFile.bytes)).toBe(true);
  // The spooled file goes once the gateway has the message.
  await until(() => spooled().length === 0, 'the spool emptied');

  const jid = await h.jidOf(alice);
  const ids = [
    await bob.sendText(jid, inText, { devices: [0] }),
    await bob.sendMedia(
      jid,
      {
        kind: 'document',
        bytes: inFile.bytes,
        mimetype: 'text/plain',
        fileName: inFile.name,
        caption: inFile.caption,
      },
      { devices: [0] },
    ),
  ];
  for (const id of ids) await bob.waitForReceipt(id, 'delivery');
  const got = (await alice.readMessages(portal)).filter((e) => e.sender === GHOST);
  expect(got.map((e) => e.content['body'])).toEqual([inText, inFile.caption]);
  const file = await alice.download(String(got[1]!.content['url']));
  expect(file.bytes.equals(inFile.bytes)).toBe(true);

  await h.stopBridge();
  const all = [outText, ...markersOf(outFile), inText, ...markersOf(inFile)];
  expect(logged.join('')).toContain('"level":20'); // the log ran below info (at trace)
  expect(findMarkers(places(), all)).toEqual([]);
  await h.startBridge();
});

test('while the homeserver refuses delivery and the puppet is offline, what waits is sealed; it is delivered afterwards', async () => {
  const jid = await h.jidOf(alice);
  await bob.sendText(jid, 'hello', { devices: [0] });
  await until(
    async () => (await alice.readMessages(portal)).some((e) => e.sender === GHOST),
    'a first message in the portal',
  );

  // Incoming: Synapse refuses every send for now; the message waits in the inbox.
  h.proxy.failNext(100_000, 503, { operationId: 'sendMessage' });
  const inText = marker('mx-waiting-in');
  const inFile = markerFile('mx-waiting-in-file');
  await bob.sendText(jid, inText, { devices: [0] });
  await bob.sendMedia(
    jid,
    {
      kind: 'document',
      bytes: inFile.bytes,
      mimetype: 'text/plain',
      fileName: inFile.name,
      caption: inFile.caption,
    },
    { devices: [0] },
  );
  await until(async () => (await h.store.inbox.countPending()) === 2, 'both incoming messages waiting');

  // Outgoing: the puppet is offline; the text and the file wait in the outbox and the spool.
  await h.bridge.puppet(alice.userId)?.disconnect();
  const outText = marker('mx-waiting-out');
  const outFile = markerFile('mx-waiting-out-file');
  await alice.sendText(portal, outText);
  await alice.sendMedia(portal, 'm.file', {
    bytes: outFile.bytes,
    mimetype: 'text/plain',
    filename: outFile.name,
    caption: outFile.caption,
  });
  await until(async () => (await h.store.outbox.countQueued()) === 2, 'both outgoing messages queued');
  expect(spooled()).toHaveLength(1);
  expect(await isSealedFile(path.join(spoolDir(), spooled()[0]!))).toBe(true);

  await h.stopBridge();
  const all = [inText, ...markersOf(inFile), outText, ...markersOf(outFile)];
  expect(findMarkers(places(), all)).toEqual([]);
  expect(spooled()).toHaveLength(1);

  h.proxy.faults.clear();
  await h.startBridge();
  await bob.waitForMessage(() => bob.received.length === 2, 30_000);
  expect(bob.received.map((m) => m.content.kind)).toEqual(['text', 'document']);
  expect((await bob.downloadMedia(bob.received[1]!)).equals(outFile.bytes)).toBe(true);
  await until(
    async () => (await alice.readMessages(portal)).filter((e) => e.sender === GHOST).length === 3,
    'the waiting messages in the portal',
    30_000,
  );
  const got = (await alice.readMessages(portal)).filter((e) => e.sender === GHOST);
  expect(got.map((e) => e.content['body'])).toEqual(['hello', inText, inFile.caption]);
  await until(() => spooled().length === 0, 'the spool emptied');

  await h.stopBridge();
  expect(findMarkers(places(), all)).toEqual([]);
  await h.startBridge();
});
