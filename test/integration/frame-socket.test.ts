import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import {
  FrameSocket,
  FrameTooLargeError,
  NoiseSocket,
  PREFACE,
  TransportError,
  encodeFrame,
  type FrameSocketOptions,
  type TransportCipher,
} from '../../src/protocol/transport/index.js';

/** AES-256-GCM as a Noise CipherState: nonce = 4 zero bytes + 8-byte big-endian counter, which
 * advances only on success. A stand-in for the real Noise layer. */
class TestAesGcmCipher implements TransportCipher {
  readonly #key: Buffer;
  #counter = 0n;

  constructor(key: Buffer) {
    this.#key = key;
  }

  encryptWithAd(ad: Buffer, plaintext: Buffer): Buffer {
    const cipher = createCipheriv('aes-256-gcm', this.#key, this.#nonce());
    cipher.setAAD(ad);
    const out = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    this.#counter++;
    return out;
  }

  decryptWithAd(ad: Buffer, ciphertext: Buffer): Buffer {
    if (ciphertext.length < 16) throw new Error('ciphertext shorter than the tag');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, this.#nonce());
    decipher.setAAD(ad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    const out = Buffer.concat([
      decipher.update(ciphertext.subarray(0, ciphertext.length - 16)),
      decipher.final(),
    ]);
    this.#counter++;
    return out;
  }

  #nonce(): Buffer {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(this.#counter, 4);
    return nonce;
  }
}

interface Accepted {
  readonly raw: net.Socket;
  readonly frames: FrameSocket;
}

interface TestServer {
  readonly port: number;
  /** The next connection the server accepts, wrapped in a server-side FrameSocket. */
  accepted(): Promise<Accepted>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const clients: net.Socket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function listen(options: Partial<FrameSocketOptions> = {}): Promise<TestServer> {
  const ready: Accepted[] = [];
  const waiting: ((accepted: Accepted) => void)[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    const accepted = { raw, frames: new FrameSocket(raw, { ...options, role: 'server' }) };
    const waiter = waiting.shift();
    if (waiter) waiter(accepted);
    else ready.push(accepted);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const testServer: TestServer = {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => {
      const next = ready.shift();
      return next ? Promise.resolve(next) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  servers.push(testServer);
  return testServer;
}

async function connectRaw(port: number): Promise<net.Socket> {
  const raw = net.connect(port, '127.0.0.1');
  clients.push(raw);
  await once(raw, 'connect');
  return raw;
}

function connectFrames(port: number, options: Partial<FrameSocketOptions> = {}): FrameSocket {
  const raw = net.connect(port, '127.0.0.1');
  clients.push(raw);
  return new FrameSocket(raw, { ...options, role: 'client' });
}

/** Resolves once the raw socket has closed, saying whether the peer ended it with a FIN. */
function closedCleanly(raw: net.Socket): Promise<boolean> {
  let ended = false;
  raw.on('end', () => (ended = true));
  raw.on('error', () => undefined);
  return once(raw, 'close').then(() => ended);
}

async function writeAwaited(raw: net.Socket, bytes: Uint8Array): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    raw.write(bytes, (error) => (error ? reject(error) : resolve())),
  );
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('FrameSocket over TCP', () => {
  it('exchanges frames after the client preface, and both sides see a clean close', async () => {
    const server = await listen();
    const client = connectFrames(server.port);
    client.sendFrame(Buffer.from('hello'));
    client.sendFrame(Buffer.alloc(0));
    client.sendFrame(Buffer.alloc(70_000, 0xab));

    const { frames } = await server.accepted();
    const first = await frames.receive();
    expect(frames.preface?.toString('hex')).toBe('49470100');
    expect(first.toString()).toBe('hello');
    expect((await frames.receive()).length).toBe(0);
    expect((await frames.receive()).equals(Buffer.alloc(70_000, 0xab))).toBe(true);

    frames.sendFrame(Buffer.from('welcome'));
    expect((await client.receive()).toString()).toBe('welcome');

    client.close();
    expect(await frames.closed).toEqual({ error: undefined, initiator: 'peer' });
    expect(await client.closed).toEqual({ error: undefined, initiator: 'local' });
    expect(await rejection(frames.receive())).toMatchObject({ code: 'transport_closed' });
    expect(() => client.sendFrame(Buffer.from('late'))).toThrow(
      expect.objectContaining({ code: 'transport_closed' }),
    );
  });

  it('reassembles frames written one byte per TCP segment', async () => {
    const server = await listen();
    const raw = await connectRaw(server.port);
    raw.setNoDelay(true);
    const payloads = [Buffer.from('a'), Buffer.alloc(0), randomBytes(300), Buffer.from('last')];
    const stream = Buffer.concat([PREFACE, ...payloads.map((p) => encodeFrame(p))]);
    const { frames } = await server.accepted();
    for (const byte of stream) await writeAwaited(raw, Buffer.from([byte]));
    raw.end();

    const received: Buffer[] = [];
    for await (const frame of frames) received.push(Buffer.from(frame));
    expect(received).toEqual(payloads);
    expect((await frames.closed).error).toBeUndefined();
  });

  it('closes a connection that opens with a bad preface, with transport_bad_preface', async () => {
    const server = await listen();
    const raw = await connectRaw(server.port);
    const rawClosed = closedCleanly(raw);
    raw.write('GET / HTTP/1.1\r\nHost: gateway\r\n\r\n');
    const { frames } = await server.accepted();

    const close = await frames.closed;
    expect(close.error?.code).toBe('transport_bad_preface');
    expect(close.initiator).toBe('local');
    expect(await rejection(frames.receive())).toBe(close.error);
    expect(await rawClosed).toBe(true);
  });

  it('closes a connection whose preface names another major version, naming it', async () => {
    const server = await listen();
    const raw = await connectRaw(server.port);
    raw.write(Buffer.from([0x49, 0x47, 2, 0]));
    const { frames } = await server.accepted();
    const close = await frames.closed;
    expect(close.error).toMatchObject({ code: 'transport_unsupported_version', major: 2, minor: 0 });
  });

  it('rejects an oversize frame from its header alone and stays up for the next connection', async () => {
    const server = await listen({ maxFrameSize: 1024 });
    const raw = await connectRaw(server.port);
    const rawClosed = closedCleanly(raw);
    raw.write(
      Buffer.concat([PREFACE, encodeFrame(Buffer.from('fine'), 1024), Buffer.from([0x00, 0x04, 0x01])]),
    );
    const { frames } = await server.accepted();

    expect((await frames.receive()).toString()).toBe('fine');
    const error = await rejection(frames.receive());
    expect(error).toBeInstanceOf(FrameTooLargeError);
    expect(error).toMatchObject({ code: 'transport_frame_too_large', announcedLength: 1025 });
    expect((await frames.closed).error).toBe(error);
    expect(await rawClosed).toBe(true);

    const next = connectFrames(server.port, { maxFrameSize: 1024 });
    next.sendFrame(Buffer.from('still here?'));
    const second = await server.accepted();
    expect((await second.frames.receive()).toString()).toBe('still here?');
  });

  it('reports a peer that disconnects mid-frame as transport_frame_truncated', async () => {
    const server = await listen();
    const raw = await connectRaw(server.port);
    raw.end(
      Buffer.concat([
        PREFACE,
        encodeFrame(Buffer.from('whole')),
        encodeFrame(Buffer.from('half a frame')).subarray(0, 7),
      ]),
    );
    const { frames } = await server.accepted();

    expect((await frames.receive()).toString()).toBe('whole');
    expect(await rejection(frames.receive())).toMatchObject({ code: 'transport_frame_truncated' });
    expect(await frames.closed).toMatchObject({
      error: { code: 'transport_frame_truncated' },
      initiator: 'peer',
    });
  });

  it('reports a client that leaves after part of the preface as transport_bad_preface', async () => {
    const server = await listen();
    const raw = await connectRaw(server.port);
    raw.end(PREFACE.subarray(0, 2));
    const { frames } = await server.accepted();
    expect((await frames.closed).error?.code).toBe('transport_bad_preface');
  });

  it('closes with transport_idle_timeout when nothing arrives in time', async () => {
    const server = await listen({ idleTimeoutMs: 50 });
    const raw = await connectRaw(server.port);
    const rawClosed = closedCleanly(raw);
    raw.write(PREFACE);
    const { frames } = await server.accepted();
    expect(await frames.closed).toMatchObject({
      error: { code: 'transport_idle_timeout' },
      initiator: 'local',
    });
    expect(await rawClosed).toBe(true);
  });

  it('reports a refused connection as transport_socket_error, without an uncaught exception', async () => {
    const server = await listen();
    const { port } = server;
    await servers.pop()!.close();
    const client = connectFrames(port);
    const pending = rejection(client.receive());
    const close = await client.closed;
    expect(close).toMatchObject({ error: { code: 'transport_socket_error' }, initiator: 'peer' });
    expect(close.error?.message).toMatch(/ECONNREFUSED/);
    expect(await pending).toBe(close.error);
  });

  it('delivers everything to a slow reader when the sender waits for drain', async () => {
    const server = await listen();
    const client = connectFrames(server.port);
    const { frames } = await server.accepted();
    const frame = Buffer.alloc(64 * 1024, 1);

    let sent = 0;
    while (client.sendFrame(frame)) sent++; // the server is not reading: the buffers fill up
    sent++;
    expect(sent).toBeLessThan(100_000);

    let received = 0;
    const reading = (async () => {
      for await (const f of frames) {
        expect(f.length).toBe(frame.length);
        received++;
      }
    })();
    await client.drain();
    for (let i = 0; i < 100; i++) {
      if (!client.sendFrame(frame)) await client.drain();
      sent++;
    }
    client.close();
    await reading;
    expect(received).toBe(sent);
  });
});

describe('NoiseSocket over TCP', () => {
  async function noisePair(): Promise<{
    client: NoiseSocket;
    server: NoiseSocket;
    clientFrames: FrameSocket;
  }> {
    const server = await listen();
    const toServer = randomBytes(32);
    const toClient = randomBytes(32);
    const clientFrames = connectFrames(server.port);
    const client = new NoiseSocket(
      clientFrames,
      new TestAesGcmCipher(toServer),
      new TestAesGcmCipher(toClient),
    );
    const { frames } = await server.accepted();
    return {
      client,
      clientFrames,
      server: new NoiseSocket(frames, new TestAesGcmCipher(toClient), new TestAesGcmCipher(toServer)),
    };
  }

  it('round-trips messages in order, including one of 200 KiB', async () => {
    const { client, server } = await noisePair();
    const big = randomBytes(200 * 1024);
    client.send(Buffer.from('first'));
    client.send(big);
    client.send(new Uint8Array([1, 2, 3]));

    expect((await server.receive()).toString()).toBe('first');
    expect((await server.receive()).equals(big)).toBe(true);
    expect([...(await server.receive())]).toEqual([1, 2, 3]);

    server.send(big);
    expect((await client.receive()).equals(big)).toBe(true);
    client.close();
    expect((await server.closed).error).toBeUndefined();
  });

  it('sends up to the frame maximum minus the tag, and refuses more', async () => {
    const { client, server } = await noisePair();
    expect(client.maxPlaintextSize).toBe(1_048_576 - 16);
    expect(() => client.send(Buffer.alloc(client.maxPlaintextSize + 1))).toThrow(
      expect.objectContaining({ code: 'transport_outgoing_frame_too_large' }),
    );
    const largest = randomBytes(client.maxPlaintextSize);
    client.send(largest);
    expect((await server.receive()).equals(largest)).toBe(true);
  });

  it('closes with transport_decrypt_failed on a corrupted ciphertext', async () => {
    const server = await listen();
    const key = randomBytes(32);
    const clientFrames = connectFrames(server.port);
    const sealed = new TestAesGcmCipher(key).encryptWithAd(Buffer.alloc(0), Buffer.from('tamper with me'));
    sealed[3]! ^= 0x01;
    clientFrames.sendFrame(sealed);
    clientFrames.sendFrame(
      new TestAesGcmCipher(key).encryptWithAd(Buffer.alloc(0), Buffer.from('never read')),
    );
    const { frames } = await server.accepted();
    const noise = new NoiseSocket(frames, new TestAesGcmCipher(randomBytes(32)), new TestAesGcmCipher(key));

    const error = await rejection(noise.receive());
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code: 'transport_decrypt_failed' });
    expect(await rejection(noise.receive())).toBe(error);
    expect(await noise.closed).toEqual({ error, initiator: 'local' });
    expect(await clientFrames.closed).toEqual({ error: undefined, initiator: 'peer' });
  });
});
