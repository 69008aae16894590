/**
 * Noise handshake messages inside the `HandshakeMessage` protobuf. A Noise message is the
 * concatenation ephemeral || static || payload; the protobuf carries the three parts in their own
 * fields (WhatsApp's layout), so each side re-joins them before handing them to the HandshakeState.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import {
  HandshakeMessageSchema,
  type ClientFinish,
  type ClientHello,
  type ServerHello,
} from '../gen/interop/v1/handshake_pb.js';
import { decodeProto } from '../proto-decode.js';
import { DHLEN, TAGLEN } from '../noise/index.js';
import { HandshakeError } from './errors.js';

/** An encrypted static key: the public key and its AEAD tag. */
const ENCRYPTED_STATIC_LEN = DHLEN + TAGLEN;
const MAX_HANDSHAKE_FRAME = 65_535 + 64;

export type HandshakeStep = 'client_hello' | 'server_hello' | 'client_finish';

/** The parts of a Noise message, by the shape of the message pattern that produced it. */
export interface MessageParts {
  ephemeral: Buffer;
  static: Buffer;
  payload: Buffer;
}

/** Splits a Noise message whose pattern sends `e` (32 bytes) and/or an encrypted `s` (48 bytes) first. */
export function splitNoiseMessage(message: Buffer, hasEphemeral: boolean, hasStatic: boolean): MessageParts {
  let offset = 0;
  const take = (n: number) => message.subarray(offset, (offset += n));
  return {
    ephemeral: hasEphemeral ? take(DHLEN) : Buffer.alloc(0),
    static: hasStatic ? take(ENCRYPTED_STATIC_LEN) : Buffer.alloc(0),
    payload: message.subarray(offset),
  };
}

export function encodeHandshake(step: HandshakeStep, parts: MessageParts): Uint8Array {
  const message =
    step === 'client_hello'
      ? { clientHello: parts }
      : step === 'server_hello'
        ? { serverHello: parts }
        : { clientFinish: { static: parts.static, payload: parts.payload } };
  return toBinary(HandshakeMessageSchema, create(HandshakeMessageSchema, message));
}

/** Decodes the frame expected at `step`, checking the part lengths; throws `handshake_malformed`. */
export function decodeHandshake(step: 'client_hello', frame: Uint8Array): ClientHello;
export function decodeHandshake(step: 'server_hello', frame: Uint8Array): ServerHello;
export function decodeHandshake(step: 'client_finish', frame: Uint8Array): ClientFinish;
export function decodeHandshake(
  step: HandshakeStep,
  frame: Uint8Array,
): ClientHello | ServerHello | ClientFinish {
  let decoded;
  try {
    decoded = decodeProto(HandshakeMessageSchema, frame, 'handshake message', {
      maxBytes: MAX_HANDSHAKE_FRAME,
    });
  } catch (err) {
    throw new HandshakeError('handshake_malformed', `${(err as Error).message}`);
  }
  const part =
    step === 'client_hello'
      ? decoded.clientHello
      : step === 'server_hello'
        ? decoded.serverHello
        : decoded.clientFinish;
  if (part === undefined) {
    throw new HandshakeError(
      'handshake_malformed',
      `expected a HandshakeMessage with ${step}, got another step`,
    );
  }
  if ('ephemeral' in part && part.ephemeral.length !== DHLEN) {
    throw new HandshakeError(
      'handshake_malformed',
      `${step}: the ephemeral key is ${part.ephemeral.length} bytes, expected ${DHLEN}`,
    );
  }
  if (part.static.length !== 0 && part.static.length !== ENCRYPTED_STATIC_LEN) {
    throw new HandshakeError(
      'handshake_malformed',
      `${step}: the encrypted static key is ${part.static.length} bytes, expected ${ENCRYPTED_STATIC_LEN}`,
    );
  }
  return part;
}

export const joinParts = (...parts: Uint8Array[]): Buffer => Buffer.concat(parts);
