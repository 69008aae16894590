/**
 * Native users end to end: two simulated gatekeeper users with their own Signal identities talk
 * through the emulator over real TCP, and the gateway never holds their plaintext.
 */
import { createWriteStream, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { createLogger } from '../../src/observability/logger.js';
import { signalAddress } from '../../src/signal/address.js';
import { startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';

const MARKER = 'marker-7f3a-only-the-two-ends-know-this';

describe('native users through the emulator', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let logFile: string;
  const users: NativeUser[] = [];

  const user = async (phone: string) => {
    const u = await NativeUser.connect({ emulator: running.gateway, phone, rootPublicKey: root });
    users.push(u);
    return u;
  };

  beforeEach(async () => {
    tmp = tempDir();
    logFile = path.join(tmp.dir, 'emulator.log');
    const destination = createWriteStream(logFile);
    ({ running, root } = await startEmulator(tmp, {
      logger: createLogger({ level: 'trace', format: 'json', destination: destination as never }),
    }));
  });

  afterEach(async () => {
    await Promise.all(users.splice(0).map((u) => u.close()));
    await running.stop();
    tmp.cleanup();
  });

  it('exchange end-to-end encrypted text both ways, with delivery and read receipts', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    const id = await alice.sendText(bob.jid, 'hello bob');
    const got = await bob.waitForMessage((m) => m.id === id);
    expect(got).toMatchObject({ from: alice.jid, content: { kind: 'text', text: 'hello bob' } });
    await alice.waitForReceipt(id, 'delivery');
    await bob.sendReceipt(alice.jid, [id], 'read');
    await alice.waitForReceipt(id, 'read');

    const reply = await bob.sendText(alice.jid, 'hi alice', { replyTo: id });
    const answer = await alice.waitForMessage((m) => m.id === reply);
    expect(answer.content).toMatchObject({ kind: 'text', text: 'hi alice', replyTo: { id } });
  });

  it('exchange an image and a voice note, decrypted and verified by the recipient', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    const photo = Buffer.alloc(300_000, 7);
    photo.write('PNG-ish header');
    const id = await alice.sendMedia(bob.jid, {
      kind: 'image',
      bytes: photo,
      mimetype: 'image/png',
      caption: 'the sea',
    });
    const got = await bob.waitForMessage((m) => m.id === id);
    expect(got.content).toMatchObject({ kind: 'image', caption: 'the sea' });
    expect((await bob.downloadMedia(got)).equals(photo)).toBe(true);

    const voice = Buffer.from('OggS voice note bytes');
    const vid = await bob.sendMedia(alice.jid, { kind: 'voice', bytes: voice, mimetype: 'audio/ogg' });
    const heard = await alice.waitForMessage((m) => m.id === vid);
    expect(heard.content.kind).toBe('voice');
    expect((await alice.downloadMedia(heard)).equals(voice)).toBe(true);
  });

  it('delivers what was sent while the recipient was offline, complete and in order, once', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    await alice.sendText(bob.jid, 'first'); // a session exists and bob's devices are known
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'first');
    await bob.disconnect();
    for (let i = 0; i < 30; i++) await alice.sendText(bob.jid, `offline ${i}`, { devices: [0] });
    await bob.reconnect();
    await bob.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'offline 29');
    const texts = bob.received
      .map((m) => (m.content.kind === 'text' ? m.content.text : ''))
      .filter((t) => t.startsWith('offline'));
    expect(texts).toEqual(Array.from({ length: 30 }, (_, i) => `offline ${i}`));
  });

  it('recover a message the recipient could not decrypt: retry receipts, then a resend from the keys they carry', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    const first = await alice.sendText(bob.jid, 'session start');
    await bob.waitForMessage((m) => m.id === first);
    // Bob loses his session (a reinstall would): alice's next message cannot be decrypted.
    await bob.signal.deleteSession(signalAddress(alice.jid, 0));
    const id = await alice.sendText(bob.jid, 'after the loss');
    await alice.waitForReceipt(id, 'retry');
    const got = await bob.waitForMessage((m) => m.id === id);
    expect(got.content).toMatchObject({ kind: 'text', text: 'after the loss' });
  });

  it('see each other type', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    await alice.typing(bob.jid, true);
    const started = Date.now();
    while (bob.chatstates.length === 0 && Date.now() - started < 5000)
      await new Promise((r) => setTimeout(r, 10));
    expect(bob.chatstates[0]).toEqual({ from: alice.jid, composing: true });
  });

  it('keeps the plaintext out of the database, the logs and the media store', async () => {
    const alice = await user('+4915100000001');
    const bob = await user('+4915112345678');
    const id = await alice.sendText(bob.jid, MARKER);
    await bob.waitForMessage((m) => m.id === id);
    const mid = await alice.sendMedia(bob.jid, {
      kind: 'document',
      bytes: Buffer.from(MARKER.repeat(100)),
      mimetype: 'text/plain',
      fileName: 'notes.txt',
    });
    await bob.waitForMessage((m) => m.id === mid);
    await bob.disconnect();
    await alice.sendText(bob.jid, MARKER, { devices: [0] }); // sits in the offline queue
    await users.splice(0).reduce((p, u) => p.then(() => u.close()), Promise.resolve());
    await running.stop();

    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(tmp.dir);
    expect(files.some((f) => f.endsWith('.db'))).toBe(true);
    expect(files.some((f) => f.includes(`${path.sep}media${path.sep}`))).toBe(true);
    expect(statSync(logFile).size).toBeGreaterThan(0);
    const holding = files.filter((f) => !f.endsWith('emulator.yaml') && readFileSync(f).includes(MARKER));
    expect(holding).toEqual([]);
    running = await RunningEmulator.start({
      loaded: running.loaded,
      logger: createLogger({ level: 'silent' }),
    });
  });
});

describe('native users from the configuration', () => {
  it('start with the emulator and behave as configured: an echo and an answering user', async () => {
    const tmp = tempDir();
    const { running, root } = await startEmulator(tmp, {
      extraYaml: [
        'native_users:',
        '  - phone: "+4915100000001"',
        '    behaviour: echo',
        '  - phone: "+4915100000002"',
        '    behaviour: answer',
        '    answers: ["Hi there"]',
      ],
    });
    const me = await NativeUser.connect({
      emulator: running.gateway,
      phone: '+4915199999999',
      rootPublicKey: root,
    });
    try {
      const [echo, answerer] = running.natives;
      await me.sendText(echo!.jid, 'ping?');
      const echoed = await me.waitForMessage((m) => m.from === echo!.jid);
      expect(echoed.content).toMatchObject({ kind: 'text', text: 'echo: ping?' });

      const id = await me.sendText(answerer!.jid, 'how are you?');
      await me.waitForReceipt(id, 'read');
      const answer = await me.waitForMessage((m) => m.from === answerer!.jid);
      expect(answer.content).toMatchObject({ kind: 'text', text: 'Hi there' });
    } finally {
      await me.close();
      await running.stop();
      tmp.cleanup();
    }
  });
});
