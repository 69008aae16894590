/**
 * Images, videos, voice messages (MSC3245) and files both ways between a Matrix user and a native
 * user, through Synapse's authenticated media endpoints (matrix-js-sdk as the Matrix user).
 */
import { randomBytes } from 'node:crypto';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { BOT, MatrixHarness, bodyOf, ghostOf, replyTarget, until, useSynapse } from './matrix-harness.js';

const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);

let h: MatrixHarness;
let alice: SdkUser;
const synapse = useSynapse();
let management: string;

beforeEach(async () => {
  h = await MatrixHarness.start({ synapse: synapse() });
  alice = await h.user('alice', 'Alice');
  management = await h.login(alice);
});

afterEach(async () => {
  await h.close();
  h.assertNoViolations();
});

test('an image, a video, a voice message and a file from Matrix reach the native user byte for byte', async () => {
  const bob = await h.native(BOB);
  const portal = await h.startChat(alice, management, BOB);
  const image = randomBytes(40_000);
  const video = randomBytes(90_000);
  const voice = randomBytes(9_000);
  const file = randomBytes(20_000);
  await alice.sendMedia(portal, 'm.image', {
    bytes: image,
    mimetype: 'image/png',
    filename: 'view.png',
    caption: 'the view',
    info: { w: 640, h: 480 },
  });
  await alice.sendMedia(portal, 'm.video', {
    bytes: video,
    mimetype: 'video/mp4',
    filename: 'clip.mp4',
    info: { duration: 4000 },
  });
  await alice.sendMedia(portal, 'm.audio', {
    bytes: voice,
    mimetype: 'audio/ogg',
    filename: 'Voice message.ogg',
    info: { duration: 3000 },
    extraContent: { 'org.matrix.msc3245.voice': {}, 'org.matrix.msc1767.audio': { duration: 3000 } },
  });
  await alice.sendMedia(portal, 'm.file', {
    bytes: file,
    mimetype: 'application/pdf',
    filename: 'Report.pdf',
    caption: 'as promised',
  });
  await bob.waitForMessage(() => bob.received.length === 4, 20_000);

  expect(bob.received.map((m) => m.content.kind)).toEqual(['image', 'video', 'voice', 'document']);
  const bytes = await Promise.all(bob.received.map((m) => bob.downloadMedia(m)));
  expect(bytes.map((b, i) => b.equals([image, video, voice, file][i]!))).toEqual([true, true, true, true]);
  const [img, , vc, doc] = bob.received.map((m) => m.content);
  expect(img?.kind === 'image' && img.caption).toBe('the view');
  expect(img?.kind === 'image' && img.media.mimetype).toBe('image/png');
  expect(vc?.kind === 'voice' && vc.media.ptt).toBe(true);
  expect(doc?.kind === 'document' && doc.media.fileName).toBe('Report.pdf');
  expect(doc?.kind === 'document' && doc.caption).toBe('as promised');
  // Downloaded through the authenticated media API.
  expect(
    h.proxy.requests.filter((r) => r.viaAppservice && r.operationId === 'getContentAuthed'),
  ).toHaveLength(4);
});

test('an image, a video, a voice note and a document from a native user appear as Matrix media with their info', async () => {
  const bob = await h.native(BOB);
  const portal = await h.startChat(alice, management, BOB);
  const samples = [
    { kind: 'image' as const, bytes: randomBytes(30_000), mimetype: 'image/jpeg', caption: 'sunset' },
    { kind: 'video' as const, bytes: randomBytes(60_000), mimetype: 'video/mp4' },
    { kind: 'voice' as const, bytes: randomBytes(7_000), mimetype: 'audio/ogg; codecs=opus' },
    {
      kind: 'document' as const,
      bytes: randomBytes(15_000),
      mimetype: 'application/pdf',
      fileName: 'Plan.pdf',
      caption: 'the plan',
    },
  ];
  for (const s of samples) await bob.sendMedia(await h.jidOf(alice), s, { devices: [0] });
  await until(
    async () => (await alice.readMessages(portal)).filter((e) => e.sender === GHOST).length === 4,
    'the four media messages',
  );

  const got = (await alice.readMessages(portal)).filter((e) => e.sender === GHOST);
  expect(got.map((e) => e.content['msgtype'])).toEqual(['m.image', 'm.video', 'm.audio', 'm.file']);
  for (const [i, e] of got.entries()) {
    const s = samples[i]!;
    const info = e.content['info'] as Record<string, unknown>;
    expect(info['mimetype']).toBe(s.mimetype);
    expect(info['size']).toBe(s.bytes.length);
    const downloaded = await alice.download(String(e.content['url']));
    expect(downloaded.bytes.equals(s.bytes)).toBe(true);
  }
  expect(bodyOf(got[0]!)).toBe('sunset');
  expect(got[0]!.content['filename']).toBe('image.jpg');
  expect(got[2]!.content['org.matrix.msc3245.voice']).toEqual({});
  expect(got[3]!.content['filename']).toBe('Plan.pdf');
  expect(bodyOf(got[3]!)).toBe('the plan');
});

test('a file announced too large or missing gets a notice at once, and a download is tried twice per attempt', async () => {
  const bob = await h.native(BOB);
  const portal = await h.startChat(alice, management, BOB);
  const downloads = () =>
    h.proxy.requests.filter((r) => r.viaAppservice && r.operationId === 'getContentAuthed').length;
  const noticeFor = (id: string) => alice.waitFor(portal, (e) => e.sender === BOT && replyTarget(e) === id);

  // Announced larger than the limit: refused before any download.
  const big = await alice.sendMedia(portal, 'm.file', {
    bytes: Buffer.alloc(100, 1),
    mimetype: 'text/plain',
    filename: 'big.txt',
    info: { size: 64 * 1024 * 1024 },
  });
  expect(bodyOf(await noticeFor(big))).toMatch(/larger than this bridge's limit/);
  expect(downloads()).toBe(0);

  // Missing (404): final after one event attempt.
  const missing = await alice.sendEvent(portal, 'm.room.message', {
    msgtype: 'm.file',
    body: 'gone.txt',
    url: 'mxc://example.test/doesnotexistdoesnotexist',
    info: { mimetype: 'text/plain', size: 10 },
  });
  expect(bodyOf(await noticeFor(missing))).toMatch(/could not be bridged/);
  expect(await h.adapter.store.inboundState(missing)).toMatchObject({ state: 'failed', attempts: 1 });
  expect(downloads()).toBe(1);

  // A failing download: two tries in the first event attempt, then the event is tried again.
  h.proxy.failNext(3, 502, { operationId: 'getContentAuthed' });
  const flaky = await alice.sendMedia(portal, 'm.file', {
    bytes: Buffer.alloc(300, 2),
    mimetype: 'text/plain',
    filename: 'flaky.txt',
  });
  await until(
    async () => ((await h.adapter.store.inboundState(flaky))?.attempts ?? 0) >= 1,
    'the first event attempt',
  );
  expect(downloads()).toBe(3);
  await bob.waitForMessage((m) => m.content.kind === 'document');
  expect(downloads()).toBe(5);
  expect(bob.received).toHaveLength(1);
});
