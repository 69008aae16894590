/**
 * The client side of the handshake. Without a known server static key: XX. With one (pinned in
 * the configuration or cached from an earlier XX): IK, one round trip, and if the server answers
 * with XXfallback (its key rotated) the handshake completes that way instead. In every case the
 * server's certificate chain is verified against the pinned root *before* the client sends its
 * payload under a key it has not authenticated; with IK the payload is encrypted to the pinned key,
 * so only its holder can read it.
 */
import type { Duplex } from 'node:stream';
import { verifyCertChain, type DecodedCertChain } from '../cert-chain.js';
import {
  HandshakeState,
  IK_PROTOCOL,
  XX_PROTOCOL,
  XXFALLBACK_PROTOCOL,
  type KeyPair,
} from '../noise/index.js';
import { FrameSocket, NoiseSocket, PREFACE } from '../transport/index.js';
import { decodeHandshake, encodeHandshake, joinParts, splitNoiseMessage } from './messages.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, withDeadline, type HandshakePatternName } from './server.js';

export interface ClientHandshakeOptions {
  /** The client's Noise static key pair (the JWT's `cnf` names its public half). */
  staticKey: KeyPair;
  /** The server's static public key when known: IK instead of XX. */
  serverStaticKey?: Uint8Array | undefined;
  /** The gateway's pinned Ed25519 root key. */
  rootPublicKey: Uint8Array;
  /** Builds the ClientPayload bytes; called once per attempt (IK, then XXfallback), so a fresh JWT each time. */
  payload: () => Uint8Array | Promise<Uint8Array>;
  maxFrameSize?: number;
  timeoutMs?: number;
  /** Seconds since the epoch, for certificate validity; defaults to the clock. */
  now?: () => number;
}

export interface ClientHandshakeResult {
  socket: NoiseSocket;
  /** The server's static key as proven by this handshake: cache it for IK next time. */
  serverStaticKey: Buffer;
  certChain: DecodedCertChain;
  pattern: HandshakePatternName;
  handshakeHash: Buffer;
}

export async function clientHandshake(
  stream: Duplex,
  options: ClientHandshakeOptions,
): Promise<ClientHandshakeResult> {
  const frames = new FrameSocket(stream, { role: 'client', maxFrameSize: options.maxFrameSize });
  return withDeadline(frames, options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, () =>
    options.serverStaticKey
      ? initiateIK(frames, options, Buffer.from(options.serverStaticKey))
      : initiateXX(frames, options),
  );
}

async function initiateXX(
  frames: FrameSocket,
  options: ClientHandshakeOptions,
): Promise<ClientHandshakeResult> {
  const hs = HandshakeState.initialize({
    protocol: XX_PROTOCOL,
    initiator: true,
    prologue: PREFACE,
    s: options.staticKey,
  });
  frames.sendFrame(encodeHandshake('client_hello', splitNoiseMessage(hs.writeMessage(), true, false)));
  return completeXX(frames, hs, options, 'XX');
}

async function initiateIK(
  frames: FrameSocket,
  options: ClientHandshakeOptions,
  serverStaticKey: Buffer,
): Promise<ClientHandshakeResult> {
  const ik = HandshakeState.initialize({
    protocol: IK_PROTOCOL,
    initiator: true,
    prologue: PREFACE,
    s: options.staticKey,
    rs: serverStaticKey,
  });
  const first = ik.writeMessage(Buffer.from(await options.payload()));
  frames.sendFrame(encodeHandshake('client_hello', splitNoiseMessage(first, true, true)));

  const reply = await frames.receive();
  const hello = decodeHandshake('server_hello', reply);
  if (hello.static.length > 0) {
    // The server could not decrypt our IK message (its key changed): it switched to XXfallback.
    const ephemeral = ik.localEphemeral ?? undefined;
    const hs = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: false,
      prologue: PREFACE,
      s: options.staticKey,
      ...(ephemeral ? { e: ephemeral } : {}),
    });
    return completeXX(frames, hs, options, 'XXfallback', reply);
  }
  const certBytes = ik.readMessage(joinParts(hello.ephemeral, hello.payload));
  const certChain = verifyCertChain(certBytes, {
    rootPublicKey: options.rootPublicKey,
    serverStaticKey,
    ...(options.now ? { now: options.now() } : {}),
  });
  return result(frames, ik, certChain, 'IK');
}

/** Reads the server's e, ee, s, es message, verifies its certificate chain, then sends s, se with the payload. */
async function completeXX(
  frames: FrameSocket,
  hs: HandshakeState,
  options: ClientHandshakeOptions,
  pattern: HandshakePatternName,
  received?: Buffer,
): Promise<ClientHandshakeResult> {
  const hello = decodeHandshake('server_hello', received ?? (await frames.receive()));
  const certBytes = hs.readMessage(joinParts(hello.ephemeral, hello.static, hello.payload));
  const serverStaticKey = hs.remoteStaticKey as Buffer;
  const certChain = verifyCertChain(certBytes, {
    rootPublicKey: options.rootPublicKey,
    serverStaticKey,
    ...(options.now ? { now: options.now() } : {}),
  });
  const finish = hs.writeMessage(Buffer.from(await options.payload()));
  frames.sendFrame(encodeHandshake('client_finish', splitNoiseMessage(finish, false, true)));
  return result(frames, hs, certChain, pattern);
}

function result(
  frames: FrameSocket,
  hs: HandshakeState,
  certChain: DecodedCertChain,
  pattern: HandshakePatternName,
): ClientHandshakeResult {
  const transport = hs.getTransport();
  return {
    socket: new NoiseSocket(frames, transport.send, transport.receive),
    serverStaticKey: transport.remoteStaticKey as Buffer,
    certChain,
    pattern,
    handshakeHash: transport.handshakeHash,
  };
}
