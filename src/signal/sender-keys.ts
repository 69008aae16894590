/**
 * Signal sender keys: group messages encrypted once for every member. The key schedule and the
 * limits are libsignal's (group_cipher.rs), the records its storage format (sender-key-record.ts);
 * the wire is the classic group cipher's (libsignal-protocol-java's, which WhatsApp clients use:
 * sender-key-wire.ts), which does not name the group, so the caller says which distribution a
 * message belongs to (the group it arrived in).
 *
 * Each sender has a chain per group distribution. The sender hands the chain's current key and its
 * public signing key to every member once, in a SenderKeyDistributionMessage sent over the 1:1
 * sessions; after that each group message is one SenderKeyMessage, signed by the sender.
 *
 * Key schedule: message key seed = HMAC-SHA256(chain key, 0x01), next chain key =
 * HMAC-SHA256(chain key, 0x02); HKDF-SHA256(seed, no salt, "WhisperGroup") -> IV (16) ‖ AES-256 key
 * (32); AES-256-CBC with PKCS#7 padding.
 *
 * Limits (libsignal's): a receiver jumps at most 25,000 iterations ahead, keeps at most 2000
 * skipped message keys per chain and five chains per sender. Each operation reads the stored record,
 * works on a copy and stores the result only when it succeeded; it flushes the backend before it
 * returns, so no ciphertext leaves before the chain step that made it is durable (a lost step
 * would encrypt the next message with the same key and IV).
 */
import crypto from 'node:crypto';

import { generateKeyPair, xeddsaVerify } from './curve.js';
import { SignalError } from './errors.js';
import {
  decodeSenderKeyRecord,
  encodeSenderKeyRecord,
  replaceState,
  stateForChain,
  withMessageKeys,
  withState,
  type SenderChainKey,
  type SenderKeyRecord,
  type SenderKeyState,
  type SenderMessageKeySeed,
} from './sender-key-record.js';
import { checkSenderAddress, type SenderKeyAddress, type SenderKeyBackend } from './sender-key-store.js';
import { withTypeByte } from './store.js';
import {
  canonicalDistributionId,
  readSenderKeyDistribution,
  readSenderKeyMessage,
  SENDER_KEY_VERSION,
  writeSenderKeyDistribution,
  writeSenderKeyMessage,
} from './sender-key-wire.js';

/** libsignal's MAX_FORWARD_JUMPS. */
export const MAX_FORWARD_JUMPS = 25_000;
const MAX_ITERATION = 0xffffffff;
const MESSAGE_KEY_SEED = Buffer.from([0x01]);
const CHAIN_KEY_SEED = Buffer.from([0x02]);
const WHISPER_GROUP = Buffer.from('WhisperGroup');
const NO_SALT = Buffer.alloc(0);

const hmac = (key: Uint8Array, data: Buffer): Uint8Array =>
  new Uint8Array(crypto.createHmac('sha256', key).update(data).digest());

// ---------------------------------------------------------------------------------------------
// The chain

/** The seed of the message key at the chain key's iteration. */
const messageKeySeed = (ck: SenderChainKey): SenderMessageKeySeed => ({
  iteration: ck.iteration,
  seed: hmac(ck.seed, MESSAGE_KEY_SEED),
});

function nextChainKey(ck: SenderChainKey, distributionId: string): SenderChainKey {
  if (ck.iteration >= MAX_ITERATION) {
    throw new SignalError(
      'signal_sender_chain_exhausted',
      `the sender key chain of distribution ${distributionId} reached its last iteration: rotate the sender key and send a new distribution message`,
    );
  }
  return { iteration: ck.iteration + 1, seed: hmac(ck.seed, CHAIN_KEY_SEED) };
}

/** AES-256-CBC under the keys a message key seed derives. */
function aes256cbc(decrypt: boolean, seed: Uint8Array, data: Uint8Array): Buffer {
  const derived = Buffer.from(crypto.hkdfSync('sha256', seed, NO_SALT, WHISPER_GROUP, 48));
  const iv = derived.subarray(0, 16);
  const key = derived.subarray(16, 48);
  const c = decrypt
    ? crypto.createDecipheriv('aes-256-cbc', key, iv)
    : crypto.createCipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

/**
 * The message key seed for `iteration` and the state after using it: a skipped key taken out, or
 * the chain moved past `iteration` with the keys jumped over kept.
 */
function messageKeyFor(
  state: SenderKeyState,
  iteration: number,
  distributionId: string,
): { seed: Uint8Array; state: SenderKeyState } {
  const current = state.chainKey.iteration;
  if (iteration < current) {
    const index = state.messageKeys.findIndex((k) => k.iteration === iteration);
    if (index < 0) {
      throw new SignalError(
        'signal_duplicate_message',
        `the group message at iteration ${iteration} of distribution ${distributionId} was already decrypted (or is older than the ${state.messageKeys.length} skipped keys kept): a replay or duplicate; drop it`,
      );
    }
    const messageKeys = [...state.messageKeys.slice(0, index), ...state.messageKeys.slice(index + 1)];
    return {
      seed: (state.messageKeys[index] as SenderMessageKeySeed).seed,
      state: { ...state, messageKeys },
    };
  }
  if (iteration - current > MAX_FORWARD_JUMPS) {
    throw new SignalError(
      'signal_message_too_far_ahead',
      `the group message is at iteration ${iteration}, more than ${MAX_FORWARD_JUMPS} past the chain's ${current} (distribution ${distributionId}): drop it`,
    );
  }
  const skipped: SenderMessageKeySeed[] = [];
  let ck = state.chainKey;
  while (ck.iteration < iteration) {
    skipped.push(messageKeySeed(ck));
    ck = nextChainKey(ck, distributionId);
  }
  return {
    seed: messageKeySeed(ck).seed,
    state: {
      ...state,
      chainKey: nextChainKey(ck, distributionId),
      messageKeys: withMessageKeys(state.messageKeys, skipped),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Records in the backend

async function loadRecord(
  store: SenderKeyBackend,
  distributionId: string,
  sender: SenderKeyAddress,
): Promise<SenderKeyRecord> {
  await store.prepare(distributionId);
  const bytes = store.getSenderKey(distributionId, sender);
  return bytes === undefined ? [] : decodeSenderKeyRecord(bytes);
}

function saveRecord(
  store: SenderKeyBackend,
  distributionId: string,
  sender: SenderKeyAddress,
  record: SenderKeyRecord,
): void {
  store.putSenderKey(distributionId, sender, new Uint8Array(encodeSenderKeyRecord(record)));
}

const who = (sender: SenderKeyAddress): string => `${sender.name}.${sender.deviceId}`;

function newOwnState(): SenderKeyState {
  const signing = generateKeyPair();
  return {
    messageVersion: SENDER_KEY_VERSION,
    // libsignal (after libsignal-protocol-java) keeps chain ids to 31 bits.
    chainId: crypto.randomBytes(4).readUInt32BE(0) >>> 1,
    chainKey: { iteration: 0, seed: new Uint8Array(crypto.randomBytes(32)) },
    signingPublic: withTypeByte(signing.publicKey),
    signingPrivate: signing.privateKey,
    messageKeys: [],
  };
}

// ---------------------------------------------------------------------------------------------
// The operations

/**
 * The SenderKeyDistributionMessage of our own chain in a group distribution, to send to every
 * member over the 1:1 sessions. Makes the chain first if there is none we can send on (random
 * 31-bit chain id, random chain key, new signing key pair). The message hands out the chain at its
 * current iteration: a member who gets it later reads only what is sent after.
 */
export async function createDistribution(
  store: SenderKeyBackend,
  sender: SenderKeyAddress,
  distributionId: string,
): Promise<Uint8Array> {
  const id = canonicalDistributionId(distributionId);
  checkSenderAddress(sender);
  const record = await loadRecord(store, id, sender);
  let state = record[0];
  if (state?.signingPrivate === undefined) {
    state = newOwnState();
    saveRecord(store, id, sender, withState(record, state));
    await store.flush();
  }
  return new Uint8Array(
    writeSenderKeyDistribution({
      chainId: state.chainId,
      iteration: state.chainKey.iteration,
      chainKey: state.chainKey.seed,
      signingKey: state.signingPublic,
    }),
  );
}

/**
 * Stores the chain a member sent us in a SenderKeyDistributionMessage, so its group messages can be
 * decrypted. The message does not name its group: `distributionId` is that of the group it came
 * for (the `groupId` beside it). Processing the same message again changes nothing.
 */
export async function processDistribution(
  store: SenderKeyBackend,
  sender: SenderKeyAddress,
  distributionId: string,
  bytes: Uint8Array,
): Promise<void> {
  const id = canonicalDistributionId(distributionId);
  checkSenderAddress(sender);
  const m = readSenderKeyDistribution(bytes);
  const record = await loadRecord(store, id, sender);
  const state: SenderKeyState = {
    messageVersion: SENDER_KEY_VERSION,
    chainId: m.chainId,
    chainKey: { iteration: m.iteration, seed: Uint8Array.from(m.chainKey) },
    signingPublic: Uint8Array.from(m.signingKey),
    signingPrivate: undefined,
    messageKeys: [],
  };
  saveRecord(store, id, sender, withState(record, state));
  await store.flush();
}

/** Encrypts `plaintext` once for the whole group: a SenderKeyMessage on our current chain. */
export async function groupEncrypt(
  store: SenderKeyBackend,
  sender: SenderKeyAddress,
  distributionId: string,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const id = canonicalDistributionId(distributionId);
  checkSenderAddress(sender);
  const record = await loadRecord(store, id, sender);
  const state = record[0];
  if (state?.signingPrivate === undefined) {
    throw new SignalError(
      'signal_no_sender_key',
      `no sending chain of ${who(sender)} in distribution ${id}: call createDistribution and send its message to the members first`,
    );
  }
  const message = messageKeySeed(state.chainKey);
  const next: SenderKeyState = { ...state, chainKey: nextChainKey(state.chainKey, id) };
  const body = writeSenderKeyMessage(
    {
      chainId: state.chainId,
      iteration: message.iteration,
      ciphertext: aes256cbc(false, message.seed, plaintext),
    },
    state.signingPrivate,
  );
  saveRecord(store, id, sender, replaceState(record, next));
  await store.flush();
  return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * Decrypts a SenderKeyMessage from `sender` in the group whose distribution is `distributionId` (the
 * group it arrived in: the message does not name it). The signature is checked before anything
 * else is done with the message. Errors: signal_invalid_message, signal_no_sender_key,
 * signal_bad_signature, signal_duplicate_message, signal_message_too_far_ahead,
 * signal_decrypt_failed; the stored record is unchanged after any of them.
 */
export async function groupDecrypt(
  store: SenderKeyBackend,
  sender: SenderKeyAddress,
  distributionId: string,
  bytes: Uint8Array,
): Promise<Uint8Array> {
  const id = canonicalDistributionId(distributionId);
  checkSenderAddress(sender);
  const m = readSenderKeyMessage(bytes);
  const record = await loadRecord(store, id, sender);
  const state = stateForChain(record, m.chainId);
  if (state === undefined) {
    throw new SignalError(
      'signal_no_sender_key',
      record.length === 0
        ? `no sender key of ${who(sender)} in distribution ${id}: ask the sender for its distribution message (a retry receipt)`
        : `no sender key of ${who(sender)} for chain ${m.chainId} in distribution ${id} (it rotated?): ask the sender for its new distribution message`,
    );
  }
  if (state.messageVersion !== SENDER_KEY_VERSION) {
    throw new SignalError(
      'signal_invalid_message',
      `the group message is version ${SENDER_KEY_VERSION} but the chain of ${who(sender)} is version ${state.messageVersion}: drop it`,
    );
  }
  if (!xeddsaVerify(state.signingPublic.subarray(1), m.signed, m.signature)) {
    throw new SignalError(
      'signal_bad_signature',
      `the group message claiming to be from ${who(sender)} is not signed by its sender key: forged or damaged; drop it`,
    );
  }
  const used = messageKeyFor(state, m.iteration, id);
  let plaintext: Buffer;
  try {
    plaintext = aes256cbc(true, used.seed, m.ciphertext);
  } catch (cause) {
    throw new SignalError(
      'signal_decrypt_failed',
      `the group message from ${who(sender)} is signed but does not decrypt (bad padding): the sender's client is broken; drop it`,
      { cause },
    );
  }
  saveRecord(store, id, sender, replaceState(record, used.state));
  await store.flush();
  return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
}

/**
 * Drops our chain in a group distribution (when a member leaves, so what we send next is not
 * readable with the chain they had): the next `createDistribution` makes a new chain, whose
 * message must then go to every remaining member.
 */
export async function rotate(
  store: SenderKeyBackend,
  sender: SenderKeyAddress,
  distributionId: string,
): Promise<void> {
  const id = canonicalDistributionId(distributionId);
  checkSenderAddress(sender);
  await store.prepare(id);
  store.deleteSenderKey(id, sender);
  await store.flush();
}
