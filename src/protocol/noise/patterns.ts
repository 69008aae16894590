/**
 * Handshake patterns as data (spec section 7), always in canonical form: the initiator sends the
 * first message and the messages alternate. Token semantics follow spec 5.3 with respect to
 * initiator/responder, so a pattern printed in Bob-initiated form (XXfallback, spec 10.2) is stored
 * here with its arrows and its "es"/"se" tokens swapped (spec 7.2), which describes the same DHs.
 */
import { NoiseError } from './errors.js';

export type KeyToken = 'e' | 's';
export type DhToken = 'ee' | 'es' | 'se' | 'ss';
export type Token = KeyToken | DhToken;

export interface HandshakePattern {
  /** The pattern's part of the protocol name, modifiers included ("XX", "XXfallback"). */
  readonly name: string;
  /** Keys the responder knows about the initiator before the first message. */
  readonly initiatorPreMessage: readonly KeyToken[];
  /** Keys the initiator knows about the responder before the first message. */
  readonly responderPreMessage: readonly KeyToken[];
  /** Message patterns: index 0, 2, 4... sent by the initiator; 1, 3, 5... by the responder. */
  readonly messages: readonly (readonly Token[])[];
  /** One-way patterns (N, K, X) have a single message and only the initiator-to-responder cipher. */
  readonly oneWay: boolean;
}

function pattern(
  name: string,
  initiatorPreMessage: KeyToken[],
  responderPreMessage: KeyToken[],
  messages: Token[][],
): HandshakePattern {
  return { name, initiatorPreMessage, responderPreMessage, messages, oneWay: name.length === 1 };
}

/** The one-way patterns (spec 7.4) and the twelve fundamental interactive patterns (spec 7.5). */
export const BASE_PATTERNS: Readonly<Record<string, HandshakePattern>> = {
  N: pattern('N', [], ['s'], [['e', 'es']]),
  K: pattern('K', ['s'], ['s'], [['e', 'es', 'ss']]),
  X: pattern('X', [], ['s'], [['e', 'es', 's', 'ss']]),
  NN: pattern('NN', [], [], [['e'], ['e', 'ee']]),
  NK: pattern(
    'NK',
    [],
    ['s'],
    [
      ['e', 'es'],
      ['e', 'ee'],
    ],
  ),
  NX: pattern('NX', [], [], [['e'], ['e', 'ee', 's', 'es']]),
  KN: pattern('KN', ['s'], [], [['e'], ['e', 'ee', 'se']]),
  KK: pattern(
    'KK',
    ['s'],
    ['s'],
    [
      ['e', 'es', 'ss'],
      ['e', 'ee', 'se'],
    ],
  ),
  KX: pattern('KX', ['s'], [], [['e'], ['e', 'ee', 'se', 's', 'es']]),
  XN: pattern('XN', [], [], [['e'], ['e', 'ee'], ['s', 'se']]),
  XK: pattern(
    'XK',
    [],
    ['s'],
    [
      ['e', 'es'],
      ['e', 'ee'],
      ['s', 'se'],
    ],
  ),
  XX: pattern('XX', [], [], [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']]),
  IN: pattern(
    'IN',
    [],
    [],
    [
      ['e', 's'],
      ['e', 'ee', 'se'],
    ],
  ),
  IK: pattern(
    'IK',
    [],
    ['s'],
    [
      ['e', 'es', 's', 'ss'],
      ['e', 'ee', 'se'],
    ],
  ),
  IX: pattern(
    'IX',
    [],
    [],
    [
      ['e', 's'],
      ['e', 'ee', 'se', 's', 'es'],
    ],
  ),
};

const SWAP_DH: Readonly<Record<Token, Token>> = { e: 'e', s: 's', ee: 'ee', es: 'se', se: 'es', ss: 'ss' };

/**
 * The fallback modifier (spec 10.2): Alice's first message becomes a pre-message that Bob already
 * has (for Noise Pipes, from the IK message he could not decrypt), and Bob, the old responder,
 * becomes the initiator. In canonical form: Alice's first message joins the *responder's*
 * pre-message, the pre-messages change sides, and the remaining messages swap "es" and "se".
 *
 *   XX:  -> e                  XXfallback (canonical):  <- e
 *        <- e, ee, s, es                                ...
 *        -> s, se                                       -> e, ee, s, se
 *                                                       <- s, es
 */
export function fallback(base: HandshakePattern): HandshakePattern {
  const [first, ...rest] = base.messages;
  if (
    base.oneWay ||
    first === undefined ||
    rest.length === 0 ||
    !first.every((t) => t === 'e' || t === 's')
  ) {
    throw new NoiseError(
      'noise_unsupported_protocol',
      `the fallback modifier needs an interactive pattern whose first message only sends keys; ${base.name} is not one`,
    );
  }
  return {
    name: `${base.name}fallback`,
    initiatorPreMessage: base.responderPreMessage,
    responderPreMessage: [...base.initiatorPreMessage, ...(first as KeyToken[])],
    messages: rest.map((m) => m.map((t) => SWAP_DH[t])),
    oneWay: false,
  };
}

/** A pattern by its name in a protocol name: a base pattern, optionally with "fallback". */
export function patternByName(name: string): HandshakePattern {
  const match = /^([NKXI]{1,2})(.*)$/.exec(name);
  const base = match?.[1] === undefined ? undefined : BASE_PATTERNS[match[1]];
  const modifiers = match?.[2] ?? '';
  if (base !== undefined && modifiers === '') return base;
  if (base !== undefined && modifiers === 'fallback') return fallback(base);
  throw new NoiseError(
    'noise_unsupported_protocol',
    `Noise handshake pattern "${name}" is not supported: use one of ${Object.keys(BASE_PATTERNS).join(', ')}, or XXfallback (no PSK or deferred patterns)`,
  );
}
