import { Duplex, PassThrough } from 'node:stream';
import { FrameSocket, PREFACE, TransportError, encodeFrame } from '../../src/protocol/transport/index.js';

/** Two in-memory streams wired back to back: what one writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const aToB = new PassThrough();
  const bToA = new PassThrough();
  const pair: [Duplex, Duplex] = [
    Duplex.from({ readable: bToA, writable: aToB }),
    Duplex.from({ readable: aToB, writable: bToA }),
  ];
  // Destroying one end aborts the PassThroughs the other end shares: the test peers ignore that.
  pair[1].on('error', () => undefined);
  return pair;
}

/** A server FrameSocket on `stream`, and the `peer` end a test writes raw bytes into. */
function serverWithPeer(): { server: FrameSocket; stream: Duplex; peer: Duplex } {
  const [stream, peer] = duplexPair();
  return { server: new FrameSocket(stream, { role: 'server', closeTimeoutMs: 50 }), stream, peer };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('FrameSocket over any Duplex', () => {
  it('sends the preface before the first frame as a client', async () => {
    const [stream, peer] = duplexPair();
    const client = new FrameSocket(stream, { role: 'client' });
    client.sendFrame(Buffer.from('hi'));
    client.close();
    const written = Buffer.concat((await peer.toArray()) as Buffer[]);
    expect(written.toString('hex')).toBe('49470100' + '000002' + '6869');
  });

  it('reports a stream error as transport_socket_error to a waiting reader', async () => {
    const { server, stream, peer } = serverWithPeer();
    peer.write(PREFACE);
    const pending = server.receive();
    stream.destroy(new Error('read ECONNRESET'));

    const error = await rejection(pending);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({
      code: 'transport_socket_error',
      message: expect.stringMatching(/ECONNRESET/),
    });
    expect(await server.closed).toEqual({ error, initiator: 'peer' });
  });

  it('refuses to send a frame over the maximum and stays open', () => {
    const [stream] = duplexPair();
    const client = new FrameSocket(stream, { role: 'client', maxFrameSize: 8 });
    expect(() => client.sendFrame(Buffer.alloc(9))).toThrow(
      expect.objectContaining({ code: 'transport_outgoing_frame_too_large' }),
    );
    expect(client.isOpen).toBe(true);
  });

  it('drops unread frames on abort() and reports the given reason', async () => {
    const { server, peer } = serverWithPeer();
    peer.write(Buffer.concat([PREFACE, encodeFrame(Buffer.from('one')), encodeFrame(Buffer.from('two'))]));
    expect((await server.receive()).toString()).toBe('one');

    const reason = new TransportError('transport_decrypt_failed', 'test');
    server.abort(reason);
    expect(await rejection(server.receive())).toBe(reason);
    peer.end();
    expect(await server.closed).toEqual({ error: reason, initiator: 'local' });
  });

  it('ends iteration quietly on close(), after which drain() rejects', async () => {
    const { server, peer } = serverWithPeer();
    peer.write(Buffer.concat([PREFACE, encodeFrame(Buffer.from('one'))]));
    const received: string[] = [];
    const reading = (async () => {
      for await (const frame of server) {
        received.push(frame.toString());
        server.close();
      }
    })();
    await reading;
    expect(received).toEqual(['one']);
    expect(await rejection(server.drain())).toMatchObject({ code: 'transport_closed' });
    peer.end();
    expect(await server.closed).toEqual({ error: undefined, initiator: 'local' });
  });

  it('delivers frames that arrived before a violation, then the violation', async () => {
    const { server, peer } = serverWithPeer();
    peer.write(Buffer.concat([PREFACE, encodeFrame(Buffer.from('ok')), Buffer.from([0xff, 0xff, 0xff])]));
    const received: string[] = [];
    const error = await rejection(
      (async () => {
        for await (const frame of server) received.push(frame.toString());
      })(),
    );
    expect(received).toEqual(['ok']);
    expect(error).toMatchObject({ code: 'transport_frame_too_large', announcedLength: 0xffffff });
  });

  it('pauses reading while the owner lags and resumes when it catches up', async () => {
    const [stream, peer] = duplexPair();
    const server = new FrameSocket(stream, { role: 'server', receiveHighWaterMark: 1000 });
    const payloads = Array.from({ length: 50 }, (_, i) => Buffer.alloc(100, i));
    peer.write(PREFACE);
    for (const payload of payloads) peer.write(encodeFrame(payload));
    peer.end();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(stream.isPaused()).toBe(true);

    const received: Buffer[] = [];
    for await (const frame of server) received.push(frame);
    expect(received).toEqual(payloads);
  });
});
