/**
 * Plaintext only in flight on XMPP, with the real adapter on a real Prosody: marker texts and a
 * marker file (bytes, name, caption) both ways, and none of them left in the bridge's database,
 * its WAL, its received media, the adapter's downloads and served files, or the trace-level log
 * after the stop; the same with the puppet offline, the waiting message sealed and delivered once
 * it is back. The bridge serves received files itself here (no upload service for the bridge), so
 * its file host's folder is covered, and a served file is gone after its lifetime.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { xml, type Element } from '@xmpp/xml';
import { FILE_HOST_PREFIX, OwnFilePublisher } from '../../adapters/xmpp/media.js';
import { createLogger } from '../../src/observability/logger.js';
import { wireIdFor } from '../../src/bridge/account.js';
import { HttpListener } from '../../src/util/http-listener.js';
import { FileSealer, isSealedFile } from '../../src/util/sealed-file.js';
import { findMarkers } from '../support/at-rest.js';
import { tempDir } from '../support/tmp.js';
import { chat, contactJid, nativeTexts, until, XmppBridgeHarness } from '../support/xmpp-bridge.js';

const marker = (what: string) => `MARKER-${what}-${randomBytes(8).toString('hex')}`;

const oobUrl = (m: Element) => m.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText();

describe('XMPP: plaintext only in flight (Prosody)', () => {
  let h: XmppBridgeHarness;
  const logged: string[] = [];
  const files = () => {
    const db = path.join(h.tmp.dir, 'bridge.db');
    const log = path.join(h.tmp.dir, 'bridge.log');
    writeFileSync(log, logged.join(''));
    // data/: the adapter's xmpp-downloads/ and xmpp-files/.
    return [db, `${db}-wal`, path.join(h.tmp.dir, 'media-received'), path.join(h.tmp.dir, 'data'), log];
  };

  beforeAll(async () => {
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(chunk.toString('utf8'));
        done();
      },
    });
    h = await XmppBridgeHarness.start('prosody', {
      uploadService: false,
      logger: createLogger({ destination, format: 'json', level: 'trace' }),
    });
  }, 60_000);

  afterAll(async () => {
    await h.stop();
  });

  test('markers sent both ways are gone from the database, its WAL and the received media once delivered', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = '+4915100007001';
    const bob = await h.native(bobPhone);
    const out = marker('xmpp-out');
    const inText = marker('xmpp-in');

    await alice.client.send(chat(contactJid(bobPhone), out, 'm-out'));
    const got = await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === out);
    await alice.waitForStanza((s) => s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === 'm-out');
    const id = await bob.sendText(got.from, inText, { devices: [0] });
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('body')?.getText() === inText);
    await bob.waitForReceipt(id, 'delivery');

    await h.stopBridge();
    expect(findMarkers(files(), [out, inText])).toEqual([]);
    await h.startBridge();
  });

  test('a marker file both ways (bytes, name, caption) leaves no marker in the downloads, the served files or the log', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = '+4915100007003';
    const bob = await h.native(bobPhone);
    const content = (what: string) => marker(`${what}-bytes`);
    const outBytes = content('xmpp-out-file');
    const outName = marker('xmpp-out-name');
    const outCaption = marker('xmpp-out-caption');
    const inBytes = content('xmpp-in-file');
    const inName = marker('xmpp-in-name');
    const inCaption = marker('xmpp-in-caption');
    const outFile = Buffer.from(`${outBytes}\n`.repeat(40));
    const inFile = Buffer.from(`${inBytes}\n`.repeat(40));

    const url = await alice.upload(h.server.uploadService!, outFile, `${outName}.txt`, 'text/plain');
    await alice.client.send(
      xml(
        'message',
        { type: 'chat', to: contactJid(bobPhone), id: 'f-out' },
        xml('body', {}, url),
        xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url), xml('desc', {}, outCaption)),
        xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id: 'f-out' }),
      ),
    );
    const got = await bob.waitForMessage((m) => m.content.kind === 'document', 20_000);
    expect(got.content.kind === 'document' && got.content.media.fileName).toBe(`${outName}.txt`);
    expect(got.content.kind === 'document' && got.content.caption).toBe(outCaption);
    expect((await bob.downloadMedia(got)).equals(outFile)).toBe(true);
    // The download goes once the gateway has the message.
    const downloads = path.join(h.tmp.dir, 'data', 'xmpp-downloads');
    await until(() => readdirSync(downloads).length === 0, 'the download removed once sent');

    const id = await bob.sendMedia(
      got.from,
      {
        kind: 'document',
        bytes: inFile,
        mimetype: 'text/plain',
        fileName: `${inName}.txt`,
        caption: inCaption,
      },
      { devices: [0] },
    );
    const [shared] = await alice
      .waitForMessages((ms) => ms.some((x) => oobUrl(x) !== undefined), 20_000)
      .then((ms) => ms.filter((x) => oobUrl(x) !== undefined));
    await alice.waitForStanza((s) => s.name === 'message' && s.getChild('body')?.getText() === inCaption);
    await bob.waitForReceipt(id, 'delivery');
    const served = await fetch(oobUrl(shared!)!);
    expect(Buffer.from(await served.arrayBuffer()).equals(inFile)).toBe(true);
    // Kept sealed for its lifetime.
    const hosted = path.join(h.tmp.dir, 'data', 'xmpp-files');
    expect(readdirSync(hosted).length).toBeGreaterThan(0);
    for (const name of readdirSync(hosted)) expect(await isSealedFile(path.join(hosted, name))).toBe(true);

    await h.stopBridge();
    expect(logged.join('')).toContain('media hosted'); // the log (at trace) was written
    expect(findMarkers(files(), [outBytes, outName, outCaption, inBytes, inName, inCaption])).toEqual([]);
    await h.startBridge();
  });

  test('a message waiting for an offline puppet is sealed on disk and goes once the puppet is back', async () => {
    const alice = await h.registeredUser('alice');
    const bobPhone = '+4915100007002';
    const bob = await h.native(bobPhone);
    await alice.client.send(chat(contactJid(bobPhone), 'hello', 'w-1'));
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'hello');

    // The puppet goes offline: what Alice sends now waits in the outbox.
    await h.bridge.puppet(alice.jid)?.disconnect();
    const waiting = marker('xmpp-waiting');
    await alice.client.send(chat(contactJid(bobPhone), waiting, 'w-2'));
    // That message itself queued (the one before may be queued again, its ack lost with the link).
    const puppet = await h.store.puppets.byLocalId(alice.jid);
    const waitingId = wireIdFor(puppet!.accountId, 'w-2');
    await until(
      async () => (await h.store.outbox.get(waitingId))?.state === 'queued',
      'the message queued in the outbox',
    );
    await h.stopBridge();
    expect(findMarkers(files(), [waiting])).toEqual([]);

    await h.startBridge();
    await until(() => nativeTexts(bob).includes(waiting), 'the waiting message delivered');
    await until(async () => (await h.bridgeQueued(alice.jid)) === 0, 'the outbox emptied');
  });
});

describe("the bridge's own file host", () => {
  const tmp = tempDir('interop-bridge-files-');
  afterAll(() => tmp.cleanup());

  test('serves a file sealed on disk, opened, until its lifetime ends; then 404 and deleted', async () => {
    const http = new HttpListener(createLogger({ level: 'silent' }));
    const { port } = await http.listen('127.0.0.1', 0);
    const dir = path.join(tmp.dir, 'xmpp-files');
    const publisher = new OwnFilePublisher(
      dir,
      `http://127.0.0.1:${port}`,
      4000,
      new FileSealer(randomBytes(32)),
    );
    publisher.mount(http);
    try {
      const plain = path.join(tmp.dir, 'received');
      const bytes = Buffer.from(`${marker('served')}\n`.repeat(100));
      writeFileSync(plain, bytes);
      const url = await publisher.publish({
        path: plain,
        size: bytes.length,
        mimetype: 'text/plain',
        fileName: 'a.txt',
      });
      expect(new URL(url).pathname.startsWith(FILE_HOST_PREFIX)).toBe(true);
      const [token] = readdirSync(dir);
      expect(await isSealedFile(path.join(dir, token!))).toBe(true);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe(String(bytes.length));
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
      // Past its lifetime: refused at once, and deleted by the next sweep (a quarter of it).
      await new Promise((r) => setTimeout(r, 4200));
      expect((await fetch(url)).status).toBe(404);
      await until(() => !existsSync(path.join(dir, token!)), 'the file deleted', 5000);
    } finally {
      publisher.close();
      await http.close();
    }
  });
});
