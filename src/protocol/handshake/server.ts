/**
 * The gateway side of the handshake: XX for a client that does not know the server's static key,
 * IK for one that does, and XXfallback (Noise Pipes) when an IK first message does not decrypt
 * because the client pinned an old key. The server's payload is its certificate chain; the client's
 * payload (a ClientPayload with the JWT) is returned for the caller to authenticate.
 */
import type { Duplex } from 'node:stream';
import {
  HandshakeState,
  IK_PROTOCOL,
  NoiseError,
  XX_PROTOCOL,
  XXFALLBACK_PROTOCOL,
  type KeyPair,
} from '../noise/index.js';
import { FrameSocket, NoiseSocket, PREFACE, TransportError } from '../transport/index.js';
import { HandshakeError } from './errors.js';
import { decodeHandshake, encodeHandshake, joinParts, splitNoiseMessage } from './messages.js';

export type HandshakePatternName = 'XX' | 'IK' | 'XXfallback';

export interface ServerHandshakeOptions {
  /** The server's Noise static key pair (the leaf certificate's key). */
  staticKey: KeyPair;
  /** The encoded CertChain sent as the server's handshake payload. */
  certChain: Uint8Array;
  maxFrameSize?: number;
  /** The whole handshake must complete within this time (default 10 s). */
  timeoutMs?: number;
}

export interface ServerHandshakeResult {
  socket: NoiseSocket;
  /** The client's Noise static key, proven by the handshake (the JWT's `cnf` must match it). */
  clientStaticKey: Buffer;
  /** The client's ClientPayload bytes, still to be decoded and authenticated. */
  payload: Buffer;
  pattern: HandshakePatternName;
  handshakeHash: Buffer;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Runs the responder side on an accepted connection; on failure the connection is closed and the error thrown. */
export async function serverHandshake(
  stream: Duplex,
  options: ServerHandshakeOptions,
): Promise<ServerHandshakeResult> {
  const frames = new FrameSocket(stream, { role: 'server', maxFrameSize: options.maxFrameSize });
  return withDeadline(frames, options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, () =>
    respond(frames, options),
  );
}

async function respond(frames: FrameSocket, options: ServerHandshakeOptions): Promise<ServerHandshakeResult> {
  const hello = decodeHandshake('client_hello', await frames.receive());
  const prologue = frames.preface ?? PREFACE;
  const s = options.staticKey;
  const certChain = Buffer.from(options.certChain);

  if (hello.static.length === 0) {
    const hs = HandshakeState.initialize({ protocol: XX_PROTOCOL, initiator: false, prologue, s });
    hs.readMessage(joinParts(hello.ephemeral, hello.payload));
    sendServerHello(frames, hs.writeMessage(certChain), true);
    const payload = readClientFinish(hs, await frames.receive());
    return finish(frames, hs, payload, 'XX');
  }

  const ik = HandshakeState.initialize({ protocol: IK_PROTOCOL, initiator: false, prologue, s });
  let payload: Buffer;
  try {
    payload = ik.readMessage(joinParts(hello.ephemeral, hello.static, hello.payload));
  } catch (err) {
    if (!(err instanceof NoiseError) || err.code !== 'noise_decrypt_failed' || ik.remoteEphemeralKey === null)
      throw err;
    // The client encrypted to a static key we no longer hold: answer with XXfallback, reusing its ephemeral.
    const hs = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: true,
      prologue,
      s,
      re: ik.remoteEphemeralKey,
    });
    sendServerHello(frames, hs.writeMessage(certChain), true);
    const fallbackPayload = readClientFinish(hs, await frames.receive());
    return finish(frames, hs, fallbackPayload, 'XXfallback');
  }
  sendServerHello(frames, ik.writeMessage(certChain), false);
  return finish(frames, ik, payload, 'IK');
}

function sendServerHello(frames: FrameSocket, message: Buffer, withStatic: boolean): void {
  frames.sendFrame(encodeHandshake('server_hello', splitNoiseMessage(message, true, withStatic)));
}

function readClientFinish(hs: HandshakeState, frame: Buffer): Buffer {
  const finish = decodeHandshake('client_finish', frame);
  if (finish.static.length === 0) {
    throw new HandshakeError('handshake_malformed', 'client_finish: the static key is missing');
  }
  return hs.readMessage(joinParts(finish.static, finish.payload));
}

function finish(
  frames: FrameSocket,
  hs: HandshakeState,
  payload: Buffer,
  pattern: HandshakePatternName,
): ServerHandshakeResult {
  const transport = hs.getTransport();
  if (transport.remoteStaticKey === null)
    throw new HandshakeError('handshake_malformed', 'no client static key');
  return {
    socket: new NoiseSocket(frames, transport.send, transport.receive),
    clientStaticKey: transport.remoteStaticKey,
    payload,
    pattern,
    handshakeHash: transport.handshakeHash,
  };
}

/**
 * Runs `step` under an overall deadline (a slow peer cannot hold a handshake open byte by byte);
 * on any failure the connection is closed and the failure rethrown.
 */
export async function withDeadline<T>(
  frames: FrameSocket,
  timeoutMs: number,
  step: () => Promise<T>,
): Promise<T> {
  const timer = setTimeout(
    () =>
      frames.abort(
        new TransportError('transport_idle_timeout', `the handshake did not complete within ${timeoutMs} ms`),
      ),
    timeoutMs,
  );
  try {
    return await step();
  } catch (err) {
    if (frames.isOpen) frames.close();
    if (err instanceof TransportError && err.code === 'transport_idle_timeout') {
      throw new HandshakeError('handshake_timeout', err.message);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
