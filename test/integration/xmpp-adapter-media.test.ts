/**
 * Files through the XMPP adapter on real Prosody and ejabberd: images and voice notes both ways
 * through the server's XEP-0363 upload service (Prosody http_file_share, ejabberd
 * mod_http_upload), an over-size file refused with an error, and the bridge's own file host when no
 * upload service is configured.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { xml, type Element } from '@xmpp/xml';
import { fetchUserFile } from '../../adapters/xmpp/media.js';
import type { TestUser, XmppServerKind } from '../support/xmpp-servers.js';
import { bodyOf, contactJid, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];
const MAX_BYTES = 256 * 1024;

/** A message sharing an uploaded file, as Conversations sends it: the URL as body and as OOB. */
function share(to: string, url: string, id: string): Element {
  return xml(
    'message',
    { type: 'chat', to, id },
    xml('body', {}, url),
    xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url)),
    xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id }),
  );
}

async function download(url: string): Promise<{ bytes: Buffer; type: string | null }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return { bytes: Buffer.from(await res.arrayBuffer()), type: res.headers.get('content-type') };
}

const oobUrl = (m: Element) => m.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText();

describe.each(KINDS)('XMPP adapter media on %s', (kind) => {
  let h: XmppBridgeHarness;
  let seq = 0;
  const phone = () => `+491520000${kind === 'prosody' ? 1 : 2}${String(++seq).padStart(3, '0')}`;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { maxMediaBytes: MAX_BYTES });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  async function pair(): Promise<{
    alice: TestUser;
    bob: Awaited<ReturnType<XmppBridgeHarness['native']>>;
    bobPhone: string;
  }> {
    const alice = await h.registeredUser('alice');
    const bobPhone = phone();
    const bob = await h.native(bobPhone);
    return { alice, bob, bobPhone };
  }

  test('an image and a voice note uploaded by the XMPP user reach the native user as an image and a voice note', async () => {
    const { alice, bob, bobPhone } = await pair();
    const image = randomBytes(50_000);
    const voice = randomBytes(9_000);
    const service = h.server.uploadService!;
    const imageUrl = await alice.upload(service, image, 'view.jpg', 'image/jpeg');
    const voiceUrl = await alice.upload(service, voice, 'note.ogg', 'audio/ogg');

    await alice.client.send(share(contactJid(bobPhone), imageUrl, 'img-1'));
    await alice.client.send(share(contactJid(bobPhone), voiceUrl, 'voice-1'));
    await bob.waitForMessage(() => bob.received.length === 2, 20_000);

    const [img, ptt] = bob.received;
    expect(img!.content.kind).toBe('image');
    expect((await bob.downloadMedia(img!)).equals(image)).toBe(true);
    expect(ptt!.content.kind).toBe('voice');
    expect('media' in ptt!.content && ptt!.content.media.mimetype).toMatch(/^audio\/ogg/);
    expect((await bob.downloadMedia(ptt!)).equals(voice)).toBe(true);
  });

  test("an image and a voice note from the native user arrive as URLs on the server's upload service, with OOB", async () => {
    const { alice, bob, bobPhone } = await pair();
    await alice.client.send(
      xml('message', { type: 'chat', to: contactJid(bobPhone), id: 'hi' }, xml('body', {}, 'hi')),
    );
    const first = await bob.waitForMessage();
    const image = randomBytes(40_000);
    const voice = randomBytes(7_000);

    await bob.sendMedia(
      first.from,
      { kind: 'image', bytes: image, mimetype: 'image/jpeg', caption: 'the *view*' },
      { devices: [0] },
    );
    await bob.sendMedia(
      first.from,
      { kind: 'voice', bytes: voice, mimetype: 'audio/ogg; codecs=opus' },
      { devices: [0] },
    );
    const files = () => alice.messages.filter((m) => oobUrl(m) !== undefined);
    await alice.waitForMessages(() => files().length === 2, 20_000);

    const [img, ptt] = files();
    expect(bodyOf(img!)).toBe(oobUrl(img!));
    expect(new URL(oobUrl(img!)!).port).toBe(String(h.server.httpPort));
    const gotImage = await download(oobUrl(img!)!);
    expect(gotImage.bytes.equals(image)).toBe(true);
    expect(gotImage.type).toMatch(/^image\/jpeg/);
    const gotVoice = await download(oobUrl(ptt!)!);
    expect(gotVoice.bytes.equals(voice)).toBe(true);
    // Prosody serves the type the bridge asked the slot for; ejabberd serves by extension.
    expect(gotVoice.type).toMatch(kind === 'prosody' ? /^audio\/ogg/ : /^application\/ogg/);
    expect(oobUrl(ptt!)).toMatch(/\.ogg$/);
    // The caption follows as its own message, with its styling.
    await alice.waitForMessages((ms) => ms.some((m) => bodyOf(m) === 'the *view*'));
  });

  test('a file over media.max_bytes is refused with an error saying it is too large', async () => {
    const { alice, bobPhone } = await pair();
    const url = await alice.upload(
      h.server.uploadService!,
      randomBytes(MAX_BYTES + 1),
      'big.bin',
      'application/octet-stream',
    );

    await alice.client.send(share(contactJid(bobPhone), url, 'too-big'));
    const error = await alice.waitForStanza(
      (s) => s.name === 'message' && s.attrs.type === 'error' && s.attrs.id === 'too-big',
    );

    expect(error.attrs.from).toBe(contactJid(bobPhone));
    const e = error.getChild('error')!;
    expect(e.getChild('not-acceptable', 'urn:ietf:params:xml:ns:xmpp-stanzas')).toBeDefined();
    expect(e.getChild('text')?.getText()).toMatch(/too large .*the limit is 256 KiB/);
  });

  test('a bare host in media.allowed_fetch_hosts allows only its default port: another port must be listed as host:port', async () => {
    const alice = await h.user('alice');
    const bytes = randomBytes(2_000);
    const url = await alice.upload(h.server.uploadService!, bytes, 'doc.bin', 'application/octet-stream');
    const { hostname, port } = new URL(url);
    expect(port).not.toBe('');
    const fetchWith = (allowedHosts: string[]) =>
      fetchUserFile(url, { maxBytes: MAX_BYTES, allowedHosts, dir: path.join(h.tmp.dir, 'fetch-test') });

    await expect(fetchWith([hostname])).rejects.toMatchObject({ code: 'xmpp_file_host_not_allowed' });
    await expect(fetchWith([`${hostname}:80`, `${hostname}:443`])).rejects.toMatchObject({
      code: 'xmpp_file_host_not_allowed',
    });
    const file = await fetchWith([`${hostname}:${port}`]);
    expect((await readFile(file.path)).equals(bytes)).toBe(true);
  });

  test('a file URL whose name has a malformed percent-escape is fetched under a safe file name', async () => {
    const bytes = randomBytes(3_000);
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(bytes.length) });
      res.end(bytes);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const file = await fetchUserFile(`http://127.0.0.1:${port}/files/100%zz%E0%A4%A.jpg`, {
        maxBytes: MAX_BYTES,
        allowedHosts: [`127.0.0.1:${port}`],
        dir: path.join(h.tmp.dir, 'fetch-test'),
      });
      expect(file.fileName).toMatch(/^[\w.+-]+\.jpg$/);
      expect(file.mimetype).toMatch(/^image\/jpeg/);
      expect((await readFile(file.path)).equals(bytes)).toBe(true);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe.each(KINDS)('XMPP adapter media without an upload service on %s', (kind) => {
  let h: XmppBridgeHarness;

  beforeAll(async () => {
    h = await XmppBridgeHarness.start(kind, { uploadService: false });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test("an image from the native user is served by the bridge's own file host", async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = kind === 'prosody' ? '+4915300000101' : '+4915300000201';
    const bob = await h.native(bobPhone);
    await alice.client.send(
      xml('message', { type: 'chat', to: contactJid(bobPhone), id: 'hi' }, xml('body', {}, 'hi')),
    );
    const first = await bob.waitForMessage();
    const image = randomBytes(30_000);

    await bob.sendMedia(first.from, { kind: 'image', bytes: image, mimetype: 'image/png' }, { devices: [0] });
    const [m] = await alice
      .waitForMessages((ms) => ms.some((x) => oobUrl(x) !== undefined), 20_000)
      .then((ms) => ms.filter((x) => oobUrl(x) !== undefined));

    const url = new URL(oobUrl(m!)!);
    expect(url.pathname).toMatch(/^\/_interop\/xmpp-files\/[A-Za-z0-9_-]{32}\/[\w.+-]+\.png$/);
    const got = await download(url.toString());
    expect(got.bytes.equals(image)).toBe(true);
    expect(got.type).toBe('image/png');
  });
});
