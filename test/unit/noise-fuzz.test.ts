import fc from 'fast-check';

import { InteropError } from '../../src/errors.js';
import {
  BASE_PATTERNS,
  generateKeyPair,
  HandshakeState,
  parseProtocolName,
  type HandshakeOptions,
} from '../../src/protocol/noise/index.js';

const PATTERNS = [...Object.keys(BASE_PATTERNS), 'XXfallback'];
const ALICE = generateKeyPair();
const BOB = generateKeyPair();
const PEER_E = generateKeyPair();
const OWN_E = generateKeyPair();

/** A fresh responder holding every key its pattern could ask for. */
function responder(pattern: string): HandshakeState {
  const protocol = parseProtocolName(`Noise_${pattern}_25519_AESGCM_SHA256`);
  const options: HandshakeOptions = {
    protocol,
    initiator: false,
    prologue: Buffer.from('IG\x01\x00', 'latin1'),
    s: BOB,
    rs: ALICE.publicKey,
    re: PEER_E.publicKey,
    ...(protocol.pattern.responderPreMessage.includes('e') ? { e: OWN_E } : {}),
  };
  return HandshakeState.initialize(options);
}

/** True if the first message already carries a DH, so a random message cannot authenticate. */
function firstMessageAuthenticated(pattern: string): boolean {
  const first = parseProtocolName(`Noise_${pattern}_25519_AESGCM_SHA256`).pattern.messages[0] ?? [];
  return first.some((t) => t.length === 2);
}

describe('HandshakeState.readMessage on random bytes', () => {
  it.each(PATTERNS)('%s: a fresh responder throws an InteropError, never another exception', (pattern) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
        const hs = responder(pattern);
        try {
          hs.readMessage(Buffer.from(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(InteropError);
          return;
        }
        // Only patterns whose first message carries no DH can accept arbitrary bytes: there is
        // nothing to authenticate yet (the spec's first XX message is just a public key).
        expect(firstMessageAuthenticated(pattern)).toBe(false);
      }),
      { numRuns: 150 },
    );
  });

  it.each(PATTERNS.filter(firstMessageAuthenticated))(
    '%s: random bytes never authenticate as a first message',
    (pattern) => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
          expect(() => responder(pattern).readMessage(Buffer.from(bytes))).toThrow(InteropError);
        }),
        { numRuns: 100 },
      );
    },
  );
});
