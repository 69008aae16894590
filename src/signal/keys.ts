/** Key material of a puppet: identity, registration id, signed and one-time prekeys. */
import crypto from 'node:crypto';

import { generateKeyPair, xeddsaSign } from './curve.js';
import { withTypeByte, type StoredPreKey, type StoredSignedPreKey } from './store.js';

/** What the puppets table keeps of a puppet's Signal identity. Keys are raw 32 bytes. */
export interface SignalIdentity {
  readonly registrationId: number;
  readonly identityPublic: Uint8Array;
  readonly identityPrivate: Uint8Array;
}

/** A registration id as libsignal makes them: 14 bits, never 0. */
export function generateRegistrationId(): number {
  return crypto.randomInt(1, 0x3fff + 1);
}

/** A new identity for a puppet: store it in the puppets row, then open a session manager on it. */
export function createSignalIdentity(): SignalIdentity {
  const pair = generateKeyPair();
  return {
    registrationId: generateRegistrationId(),
    identityPublic: pair.publicKey,
    identityPrivate: pair.privateKey,
  };
}

/** A signed prekey: a fresh key pair and the identity key's XEdDSA signature over 0x05 ‖ public key. */
export function makeSignedPreKey(
  identityPrivate: Uint8Array,
  keyId: number,
  createdAt: number,
): StoredSignedPreKey {
  const pair = generateKeyPair();
  return {
    keyId,
    publicKey: pair.publicKey,
    privateKey: pair.privateKey,
    signature: xeddsaSign(identityPrivate, withTypeByte(pair.publicKey)),
    createdAt,
  };
}

/** Fresh one-time prekeys with the given ids, not yet uploaded. */
export function makePreKeys(keyIds: readonly number[]): StoredPreKey[] {
  return keyIds.map((keyId) => {
    const pair = generateKeyPair();
    return { keyId, publicKey: pair.publicKey, privateKey: pair.privateKey, uploaded: false };
  });
}
