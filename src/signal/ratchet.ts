/**
 * The Double Ratchet of an established session, synchronous, on node:crypto: encrypting and
 * decrypting WhisperMessages the way the library's SessionCipher does (same key schedule, same
 * wire bytes, same session record structure), without its promise chains, ArrayBuffer round trips
 * and per-call WebCrypto key imports, which cost several times the cryptography itself.
 *
 * Sessions are never mutated in place: each operation works on a copy of the one session it
 * touches and returns a new record sharing the others, so a failure leaves the committed record
 * exactly as it was (the library, trying several sessions in turn, could keep a failed attempt's
 * ratchet step). Session set-up (bundles, PreKeyWhisperMessages) stays with the library.
 *
 * Key schedule (as libsignal v3): chain step  mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02);
 * message keys  HKDF-SHA256(mk, salt 0^32, "WhisperMessageKeys") -> AES-256 key ‖ MAC key ‖ IV(16 of 32);
 * ratchet step  HKDF-SHA256(DH(our ratchet key, their ratchet key), root key, "WhisperRatchet") ->
 * root key ‖ chain key; MAC = HMAC-SHA256(MAC key, sender identity ‖ receiver identity ‖ 0x33 ‖
 * protobuf), first 8 bytes.
 */
import crypto from 'node:crypto';
import { ChainType, type SessionType } from '@privacyresearch/libsignal-protocol-typescript';
import type { Chain } from '@privacyresearch/libsignal-protocol-typescript';

import { calculateAgreement, generateKeyPair, toArrayBuffer } from './curve.js';
import { SignalError } from './errors.js';
import { copySession, type LiveSessionRecord } from './record.js';
import { withTypeByte } from './store.js';
import {
  encodePreKeyWhisperMessage,
  encodeWhisperMessage,
  VERSION_BYTE,
  type WhisperMessageFields,
} from './wire.js';

const ZERO_SALT = Buffer.alloc(32);
const ONE = Buffer.from([1]);
const TWO = Buffer.from([2]);
const MAX_SKIP = 2000;
const MAC_LENGTH = 8;

const view = (ab: ArrayBuffer): Buffer => Buffer.from(ab);
/** An exact ArrayBuffer for a Buffer, without a copy when the Buffer owns all of its memory. */
const own = (b: Buffer): ArrayBuffer =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b.buffer as ArrayBuffer) : toArrayBuffer(b);
const b64 = (ab: ArrayBuffer | Uint8Array): string =>
  (ab instanceof ArrayBuffer
    ? Buffer.from(ab)
    : Buffer.from(ab.buffer, ab.byteOffset, ab.byteLength)
  ).toString('base64');

const hmac = (key: Buffer, data: Buffer): Buffer => crypto.createHmac('sha256', key).update(data).digest();

const INFO = {
  WhisperMessageKeys: Buffer.from('WhisperMessageKeys'),
  WhisperRatchet: Buffer.from('WhisperRatchet'),
};
const THREE = Buffer.from([3]);

/** HKDF-SHA256 with three 32-byte outputs (RFC 5869; HMACs by hand are faster than hkdfSync here). */
function hkdf3(
  input: Buffer,
  salt: Buffer,
  info: keyof typeof INFO,
): [ArrayBuffer, ArrayBuffer, ArrayBuffer] {
  const i = INFO[info];
  const prk = hmac(salt, input);
  const t1 = crypto.createHmac('sha256', prk).update(i).update(ONE).digest();
  const t2 = crypto.createHmac('sha256', prk).update(t1).update(i).update(TWO).digest();
  const t3 = crypto.createHmac('sha256', prk).update(t2).update(i).update(THREE).digest();
  return [own(t1), own(t2), own(t3)];
}

/**
 * The chain under `key`, copied into `session` before it is changed: sessions are copied with their
 * chains shared (see copySession), so a chain is written only after this.
 */
function writableChain(session: SessionType, key: string): Chain<ArrayBuffer> | undefined {
  const c = session.chains[key];
  if (c === undefined) return undefined;
  const copy: Chain<ArrayBuffer> = {
    chainType: c.chainType,
    chainKey: c.chainKey.key === undefined ? { counter: c.chainKey.counter } : { ...c.chainKey },
    messageKeys: { ...c.messageKeys },
  };
  session.chains[key] = copy;
  return copy;
}

const failed = (why: string) =>
  new SignalError(
    'signal_decrypt_failed',
    `the message did not decrypt (${why}): send a retry receipt so the sender re-encrypts it`,
  );

function fillMessageKeys(chain: Chain<ArrayBuffer>, counter: number): void {
  if (chain.chainKey.counter >= counter) return;
  if (counter - chain.chainKey.counter > MAX_SKIP) throw failed(`it skips more than ${MAX_SKIP} messages`);
  if (chain.chainKey.key === undefined) throw failed('its chain was already closed');
  let key = view(chain.chainKey.key);
  while (chain.chainKey.counter < counter) {
    chain.messageKeys[chain.chainKey.counter + 1] = own(hmac(key, ONE));
    key = hmac(key, TWO);
    chain.chainKey.counter += 1;
  }
  chain.chainKey.key = own(key);
}

function calculateRatchet(session: SessionType, remoteKey: ArrayBuffer, sending: boolean): void {
  const ratchet = session.currentRatchet;
  const ours = ratchet.ephemeralKeyPair;
  if (!ours) throw failed('the session has no ratchet key');
  const shared = calculateAgreement(new Uint8Array(remoteKey, 1), new Uint8Array(ours.privKey));
  const [rootKey, chainKey] = hkdf3(shared, view(ratchet.rootKey), 'WhisperRatchet');
  session.chains[b64(sending ? ours.pubKey : remoteKey)] = {
    messageKeys: {},
    chainKey: { counter: -1, key: chainKey },
    chainType: sending ? ChainType.SENDING : ChainType.RECEIVING,
  };
  ratchet.rootKey = rootKey;
}

function maybeStepRatchet(session: SessionType, remoteKey: ArrayBuffer, previousCounter: number): void {
  if (session.chains[b64(remoteKey)] !== undefined) return;
  const ratchet = session.currentRatchet;
  if (!ratchet.ephemeralKeyPair) throw failed('the session has no ratchet key');
  const previous = writableChain(session, b64(ratchet.lastRemoteEphemeralKey));
  if (previous !== undefined) {
    fillMessageKeys(previous, previousCounter);
    delete previous.chainKey.key;
    session.oldRatchetList.push({ added: Date.now(), ephemeralKey: ratchet.lastRemoteEphemeralKey });
  }
  calculateRatchet(session, remoteKey, false);
  const previousSending = b64(ratchet.ephemeralKeyPair.pubKey);
  const sendingChain = session.chains[previousSending];
  if (sendingChain !== undefined) {
    ratchet.previousCounter = sendingChain.chainKey.counter;
    delete session.chains[previousSending];
  }
  const fresh = generateKeyPair();
  ratchet.ephemeralKeyPair = {
    pubKey: toArrayBuffer(withTypeByte(fresh.publicKey)),
    privKey: toArrayBuffer(fresh.privateKey),
  };
  calculateRatchet(session, remoteKey, true);
  ratchet.lastRemoteEphemeralKey = remoteKey;
}

function aes(decrypt: boolean, keys: [ArrayBuffer, ArrayBuffer, ArrayBuffer], data: Uint8Array): Buffer {
  const key = view(keys[0]);
  const iv = Buffer.from(keys[2], 0, 16);
  const c = decrypt
    ? crypto.createDecipheriv('aes-256-cbc', key, iv)
    : crypto.createCipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

function mac(
  key: ArrayBuffer,
  senderIdentity: ArrayBuffer,
  receiverIdentity: ArrayBuffer,
  proto: Uint8Array,
): Buffer {
  return crypto
    .createHmac('sha256', view(key))
    .update(view(senderIdentity))
    .update(view(receiverIdentity))
    .update(Buffer.from([VERSION_BYTE]))
    .update(proto)
    .digest()
    .subarray(0, MAC_LENGTH);
}

/** Our side of a session: the 33-byte identity key and the registration id pkmsgs carry. */
export interface LocalParty {
  readonly identityKey: ArrayBuffer;
  readonly registrationId: number;
}

export interface Encrypted {
  readonly record: LiveSessionRecord;
  /** 3: PreKeyWhisperMessage (the peer has not answered yet), 1: WhisperMessage. */
  readonly type: 1 | 3;
  readonly body: Buffer;
}

/** Encrypts with the open session of `record`; returns the record to commit. */
export function ratchetEncrypt(record: LiveSessionRecord, plaintext: Uint8Array, us: LocalParty): Encrypted {
  const open = record.getOpenSession();
  if (open === undefined) {
    throw new SignalError(
      'signal_no_session',
      'no open session: fetch the device prekey bundle and call processBundle',
    );
  }
  const session = copySession(open, false);
  const ours = session.currentRatchet.ephemeralKeyPair;
  if (!ours)
    throw new SignalError(
      'signal_encrypt_failed',
      'the session has no ratchet key: delete it and start a new one',
    );
  const chain = writableChain(session, b64(ours.pubKey));
  if (chain === undefined || chain.chainType !== ChainType.SENDING) {
    throw new SignalError(
      'signal_encrypt_failed',
      'the session has no sending chain: delete it and start a new one',
    );
  }
  fillMessageKeys(chain, chain.chainKey.counter + 1);
  const counter = chain.chainKey.counter;
  const keys = hkdf3(view(chain.messageKeys[counter] as ArrayBuffer), ZERO_SALT, 'WhisperMessageKeys');
  delete chain.messageKeys[counter];
  const proto = encodeWhisperMessage({
    ephemeralKey: new Uint8Array(ours.pubKey),
    counter,
    previousCounter: session.currentRatchet.previousCounter,
    ciphertext: aes(false, keys, plaintext),
  });
  const whisper = Buffer.concat([
    Buffer.from([VERSION_BYTE]),
    proto,
    mac(keys[1], us.identityKey, session.indexInfo.remoteIdentityKey, proto),
  ]);
  const next = record.shallowCopy();
  next.updateSessionState(session);
  const pending = session.pendingPreKey;
  if (pending === undefined) return { record: next, type: 1, body: whisper };
  return {
    record: next,
    type: 3,
    body: encodePreKeyWhisperMessage({
      registrationId: us.registrationId,
      preKeyId: pending.preKeyId,
      signedPreKeyId: pending.signedKeyId,
      baseKey: new Uint8Array(pending.baseKey),
      identityKey: new Uint8Array(us.identityKey),
      message: whisper,
    }),
  };
}

function decryptWithSession(session: SessionType, m: WhisperMessageFields, us: LocalParty): Buffer {
  const remoteKey = toArrayBuffer(m.ephemeralKey);
  maybeStepRatchet(session, remoteKey, m.previousCounter);
  const chain = writableChain(session, b64(m.ephemeralKey));
  if (chain === undefined || chain.chainType === ChainType.SENDING)
    throw failed('no receiving chain for its ratchet key');
  fillMessageKeys(chain, m.counter);
  const messageKey = chain.messageKeys[m.counter];
  if (messageKey === undefined) {
    throw new SignalError(
      'signal_duplicate_message',
      'the message reuses a counter already decrypted: a replay or duplicate; drop it',
    );
  }
  delete chain.messageKeys[m.counter];
  const keys = hkdf3(view(messageKey), ZERO_SALT, 'WhisperMessageKeys');
  const expected = mac(keys[1], session.indexInfo.remoteIdentityKey, us.identityKey, m.proto);
  if (!crypto.timingSafeEqual(expected, m.mac)) throw failed('bad MAC');
  let plaintext: Buffer;
  try {
    plaintext = aes(true, keys, m.ciphertext);
  } catch {
    throw failed('bad padding');
  }
  delete session.pendingPreKey;
  return plaintext;
}

export interface Decrypted {
  readonly record: LiveSessionRecord;
  readonly plaintext: Buffer;
  /** The session that decrypted it (now the open one). */
  readonly session: SessionType;
}

/**
 * Decrypts a WhisperMessage with the open session, else the archived ones, newest first (a peer may
 * still be on a session we replaced). Returns the record to commit.
 */
export function ratchetDecrypt(
  record: LiveSessionRecord,
  m: WhisperMessageFields,
  us: LocalParty,
): Decrypted {
  const open = record.getOpenSession();
  const candidates = record.getSessions().reverse();
  let firstError: unknown;
  for (const candidate of candidates) {
    const session = copySession(candidate, false);
    let plaintext: Buffer;
    try {
      plaintext = decryptWithSession(session, m, us);
    } catch (err) {
      if (err instanceof SignalError && err.code === 'signal_duplicate_message') throw err;
      firstError ??= err;
      continue;
    }
    const next = record.shallowCopy();
    if (candidate !== open) {
      if (open !== undefined) {
        const archived = copySession(open, false);
        archived.indexInfo.closed = Date.now();
        next.updateSessionState(archived);
      }
      session.indexInfo.closed = -1;
    }
    next.updateSessionState(session);
    return { record: next, plaintext, session };
  }
  throw firstError ?? new SignalError('signal_no_session', 'no session to decrypt the message with');
}
