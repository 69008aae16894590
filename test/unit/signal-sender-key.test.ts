/**
 * Sender keys (group messages) on the in-memory backend: the chain ratchet, the skipped-key window
 * and its limits, duplicates, signatures, rotation, and what hostile bytes get.
 */
import crypto from 'node:crypto';
import fc from 'fast-check';

import { generateKeyPair } from '../../src/signal/curve.js';
import { SignalError, type SignalErrorCode } from '../../src/signal/errors.js';
import {
  decodeSenderKeyRecord,
  encodeSenderKeyRecord,
  MAX_MESSAGE_KEYS,
  type SenderKeyState,
} from '../../src/signal/sender-key-record.js';
import { MemorySenderKeyBackend, type SenderKeyAddress } from '../../src/signal/sender-key-store.js';
import {
  readSenderKeyDistribution,
  readSenderKeyMessage,
  writeSenderKeyDistribution,
  writeSenderKeyMessage,
} from '../../src/signal/sender-key-wire.js';
import {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  MAX_FORWARD_JUMPS,
  processDistribution,
  rotate,
} from '../../src/signal/sender-keys.js';

const text = (s: string) => Uint8Array.from(Buffer.from(s));
const str = (b: Uint8Array) => Buffer.from(b).toString();
const alice: SenderKeyAddress = { name: 'alice', deviceId: 1 };

/** A group with Alice sending and `members` receivers that processed her distribution message. */
async function group(members = 1) {
  const id = crypto.randomUUID();
  const sender = new MemorySenderKeyBackend();
  const receivers = Array.from({ length: members }, () => new MemorySenderKeyBackend());
  const skdm = await createDistribution(sender, alice, id);
  for (const r of receivers) await processDistribution(r, alice, id, skdm);
  const send = (s: string) => groupEncrypt(sender, alice, id, text(s));
  const decrypt = async (store: MemorySenderKeyBackend, body: Uint8Array) =>
    str(await groupDecrypt(store, alice, id, body));
  return { id, sender, receivers, receiver: receivers[0]!, skdm, send, decrypt };
}

const failsWith = (promise: Promise<unknown>, code: SignalErrorCode) =>
  expect(promise).rejects.toMatchObject({ code });

/** Alice's own chain, moved `n` iterations ahead (as if she had sent `n` messages elsewhere). */
function skipAhead(store: MemorySenderKeyBackend, id: string, n: number): void {
  const [state, ...older] = decodeSenderKeyRecord(store.getSenderKey(id, alice)!);
  let seed = Buffer.from(state!.chainKey.seed);
  for (let i = 0; i < n; i++)
    seed = crypto
      .createHmac('sha256', seed)
      .update(Buffer.from([2]))
      .digest();
  const moved: SenderKeyState = {
    ...state!,
    chainKey: { iteration: state!.chainKey.iteration + n, seed: new Uint8Array(seed) },
  };
  store.putSenderKey(id, alice, encodeSenderKeyRecord([moved, ...older]));
}

describe('sender key chains', () => {
  it('encrypts once for every member: each decrypts the same bytes, in order', async () => {
    const g = await group(3);
    const sent = [await g.send('one'), await g.send('two'), await g.send('three')];
    for (const r of g.receivers) {
      expect([
        await g.decrypt(r, sent[0]!),
        await g.decrypt(r, sent[1]!),
        await g.decrypt(r, sent[2]!),
      ]).toEqual(['one', 'two', 'three']);
    }
  });

  it('derives message keys as libsignal does: HMAC chain steps, HKDF "WhisperGroup", AES-256-CBC', async () => {
    const g = await group();
    const body = await g.send('by the spec');
    const m = readSenderKeyMessage(body);
    const skdm = readSenderKeyDistribution(g.skdm);
    const seed = crypto
      .createHmac('sha256', skdm.chainKey)
      .update(Buffer.from([1]))
      .digest();
    const keys = Buffer.from(crypto.hkdfSync('sha256', seed, Buffer.alloc(0), 'WhisperGroup', 48));
    const d = crypto.createDecipheriv('aes-256-cbc', keys.subarray(16), keys.subarray(0, 16));
    expect(Buffer.concat([d.update(m.ciphertext), d.final()]).toString()).toBe('by the spec');
    expect([m.iteration, m.chainId]).toEqual([0, skdm.chainId]);
    expect(body[0]).toBe(0x33);
  });

  it('decrypts out of order within the window, each message once', async () => {
    const g = await group();
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 10; i++) sent.push(await g.send(`m${i}`));
    for (const i of [9, 0, 5, 1, 8, 2, 7, 3, 6, 4])
      expect(await g.decrypt(g.receiver, sent[i]!)).toBe(`m${i}`);
  });

  it('refuses a duplicate and stays usable after it', async () => {
    const g = await group();
    const first = await g.send('first');
    expect(await g.decrypt(g.receiver, first)).toBe('first');
    await failsWith(groupDecrypt(g.receiver, alice, g.id, first), 'signal_duplicate_message');
    expect(await g.decrypt(g.receiver, await g.send('second'))).toBe('second');
  });

  it(`accepts a jump of ${MAX_FORWARD_JUMPS} iterations and refuses one further, changing nothing`, async () => {
    const g = await group(2);
    skipAhead(g.sender, g.id, MAX_FORWARD_JUMPS);
    const far = await g.send('far'); // iteration 25000
    const farther = await g.send('farther'); // iteration 25001

    const [first, second] = g.receivers as [MemorySenderKeyBackend, MemorySenderKeyBackend];
    const before = second.getSenderKey(g.id, alice);
    await expect(groupDecrypt(second, alice, g.id, farther)).rejects.toMatchObject({
      code: 'signal_message_too_far_ahead',
      message: expect.stringMatching(/iteration 25001, more than 25000 past the chain's 0/),
    });
    expect(second.getSenderKey(g.id, alice)).toBe(before);

    expect(await g.decrypt(first, far)).toBe('far');
    expect(await g.decrypt(first, farther)).toBe('farther');
  });

  it(`keeps the newest ${MAX_MESSAGE_KEYS} skipped keys: older skipped messages are refused as duplicates`, async () => {
    const g = await group();
    const early = [await g.send('m0'), await g.send('m1')];
    skipAhead(g.sender, g.id, MAX_MESSAGE_KEYS);
    const late = await g.send('late'); // iteration 2002: 2002 keys skipped, the first two dropped
    expect(await g.decrypt(g.receiver, late)).toBe('late');
    const [state] = decodeSenderKeyRecord(g.receiver.getSenderKey(g.id, alice)!);
    expect(state!.messageKeys).toHaveLength(MAX_MESSAGE_KEYS);
    expect(state!.messageKeys[0]!.iteration).toBe(2);
    await failsWith(groupDecrypt(g.receiver, alice, g.id, early[0]!), 'signal_duplicate_message');
    await failsWith(groupDecrypt(g.receiver, alice, g.id, early[1]!), 'signal_duplicate_message');
  });

  it('refuses a message whose signature, body or version byte was changed, and the real one still decrypts', async () => {
    const g = await group();
    const real = await g.send('real');
    for (const index of [real.length - 1, real.length - 70, 0, 5]) {
      const tampered = Uint8Array.from(real);
      tampered[index] = (tampered[index] as number) ^ (index === 0 ? 0x01 : 0x40);
      await expect(groupDecrypt(g.receiver, alice, g.id, tampered)).rejects.toBeInstanceOf(SignalError);
    }
    const flippedCiphertext = Uint8Array.from(real);
    flippedCiphertext[real.length - 70] = (flippedCiphertext[real.length - 70] as number) ^ 1;
    await failsWith(groupDecrypt(g.receiver, alice, g.id, flippedCiphertext), 'signal_bad_signature');
    expect(await g.decrypt(g.receiver, real)).toBe('real');
  });

  it('refuses a message signed by another key, even with the right chain id and iteration', async () => {
    const g = await group();
    const m = readSenderKeyMessage(await g.send('real'));
    const forged = writeSenderKeyMessage(
      { ...m, ciphertext: new Uint8Array(16) },
      generateKeyPair().privateKey,
    );
    await failsWith(groupDecrypt(g.receiver, alice, g.id, forged), 'signal_bad_signature');
  });

  it("reports a signed message that does not decrypt (a broken sender's) as signal_decrypt_failed", async () => {
    const g = await group();
    const [own] = decodeSenderKeyRecord(g.sender.getSenderKey(g.id, alice)!);
    const m = readSenderKeyMessage(await g.send('real'));
    const garbage = writeSenderKeyMessage({ ...m, ciphertext: new Uint8Array(32) }, own!.signingPrivate!);
    await failsWith(groupDecrypt(g.receiver, alice, g.id, garbage), 'signal_decrypt_failed');
  });

  it('processing the same distribution message again does not rewind the chain', async () => {
    const g = await group();
    const first = await g.send('first');
    expect(await g.decrypt(g.receiver, first)).toBe('first');
    await processDistribution(g.receiver, alice, g.id, g.skdm);
    await failsWith(groupDecrypt(g.receiver, alice, g.id, first), 'signal_duplicate_message');
  });

  it('lets a distribution with a known chain id but another signing key replace that chain', async () => {
    const g = await group();
    const skdm = readSenderKeyDistribution(g.skdm);
    const other = generateKeyPair().publicKey;
    const replaced = writeSenderKeyDistribution({ ...skdm, signingKey: Uint8Array.from([5, ...other]) });
    await processDistribution(g.receiver, alice, g.id, replaced);
    const states = decodeSenderKeyRecord(g.receiver.getSenderKey(g.id, alice)!);
    expect(states).toHaveLength(1);
    await failsWith(groupDecrypt(g.receiver, alice, g.id, await g.send('now')), 'signal_bad_signature');
  });

  it('needs a distribution message first, on both sides', async () => {
    const id = crypto.randomUUID();
    await failsWith(groupEncrypt(new MemorySenderKeyBackend(), alice, id, text('x')), 'signal_no_sender_key');
    const g = await group();
    await failsWith(
      groupDecrypt(new MemorySenderKeyBackend(), alice, g.id, await g.send('x')),
      'signal_no_sender_key',
    );
    const bob = { name: 'bob', deviceId: 1 };
    await failsWith(groupDecrypt(g.receiver, bob, g.id, await g.send('y')), 'signal_no_sender_key');
  });

  it("keys a sender's chain by the group the caller names: the wire does not carry it", async () => {
    const g = await group();
    const other = crypto.randomUUID();
    const body = await g.send('for the first group');
    await failsWith(groupDecrypt(g.receiver, alice, other, body), 'signal_no_sender_key');
    await processDistribution(g.receiver, alice, other, g.skdm); // the same chain, handed out for another group
    expect(str(await groupDecrypt(g.receiver, alice, other, body))).toBe('for the first group');
    expect(await g.decrypt(g.receiver, body)).toBe('for the first group'); // each group's record moved on its own
    await failsWith(processDistribution(g.receiver, alice, 'group-1', g.skdm), 'signal_bad_distribution_id');
    await failsWith(groupDecrypt(g.receiver, alice, 'group-1', body), 'signal_bad_distribution_id');
  });

  it('keeps one chain when createDistribution is called again', async () => {
    const g = await group();
    expect(Buffer.from(await createDistribution(g.sender, alice, g.id))).toEqual(Buffer.from(g.skdm));
    await g.send('advance');
    const again = readSenderKeyDistribution(await createDistribution(g.sender, alice, g.id));
    expect([again.chainId, again.iteration]).toEqual([readSenderKeyDistribution(g.skdm).chainId, 1]);
  });
});

describe('rotation', () => {
  it('makes a new chain old receivers cannot read until they get its distribution; late old messages still decrypt', async () => {
    const g = await group();
    const old = await g.send('before');
    await rotate(g.sender, alice, g.id);
    const second = await createDistribution(g.sender, alice, g.id);
    expect(readSenderKeyDistribution(second).chainId).not.toBe(readSenderKeyDistribution(g.skdm).chainId);
    const fresh = await g.send('after');

    await expect(groupDecrypt(g.receiver, alice, g.id, fresh)).rejects.toMatchObject({
      code: 'signal_no_sender_key',
      message: expect.stringMatching(/for chain \d+ .*ask the sender for its new distribution message/),
    });
    await processDistribution(g.receiver, alice, g.id, second);
    expect(await g.decrypt(g.receiver, fresh)).toBe('after');
    expect(await g.decrypt(g.receiver, old)).toBe('before');
  });

  it('keeps the five newest chains of a sender, newest first', async () => {
    const g = await group();
    const first = await g.send('first chain');
    const chains = [readSenderKeyDistribution(g.skdm).chainId];
    for (let i = 0; i < 5; i++) {
      await rotate(g.sender, alice, g.id);
      const skdm = await createDistribution(g.sender, alice, g.id);
      chains.push(readSenderKeyDistribution(skdm).chainId);
      await processDistribution(g.receiver, alice, g.id, skdm);
    }
    const kept = decodeSenderKeyRecord(g.receiver.getSenderKey(g.id, alice)!).map((s) => s.chainId);
    expect(kept).toEqual(chains.slice(1).reverse());
    await failsWith(groupDecrypt(g.receiver, alice, g.id, first), 'signal_no_sender_key');
  });

  it('rotating with nothing stored is harmless', async () => {
    await expect(rotate(new MemorySenderKeyBackend(), alice, crypto.randomUUID())).resolves.toBeUndefined();
  });
});

describe('refusals', () => {
  it('refuses a chain at its last iteration, asking for a rotation', async () => {
    const g = await group();
    const [state] = decodeSenderKeyRecord(g.sender.getSenderKey(g.id, alice)!);
    const last: SenderKeyState = { ...state!, chainKey: { ...state!.chainKey, iteration: 0xffffffff } };
    g.sender.putSenderKey(g.id, alice, encodeSenderKeyRecord([last]));
    await expect(g.send('x')).rejects.toMatchObject({
      code: 'signal_sender_chain_exhausted',
      message: expect.stringMatching(/rotate the sender key/),
    });
  });

  it('refuses a distribution id that is not a UUID, and a malformed sender address', async () => {
    const store = new MemorySenderKeyBackend();
    await failsWith(createDistribution(store, alice, 'group-1'), 'signal_bad_distribution_id');
    await failsWith(
      createDistribution(store, { name: '', deviceId: 1 }, crypto.randomUUID()),
      'signal_bad_address',
    );
    await failsWith(
      createDistribution(store, { name: 'a', deviceId: 1.5 }, crypto.randomUUID()),
      'signal_bad_address',
    );
  });

  it('accepts a distribution id in upper case as the same group', async () => {
    const g = await group();
    const body = await groupEncrypt(g.sender, alice, g.id.toUpperCase(), text('same'));
    expect(await g.decrypt(g.receiver, body)).toBe('same');
  });

  it('reports a stored record it cannot read as signal_sender_key_corrupt', async () => {
    const g = await group();
    g.receiver.putSenderKey(g.id, alice, Uint8Array.from([0x0a, 0x05, 0x01]));
    await expect(groupDecrypt(g.receiver, alice, g.id, await g.send('x'))).rejects.toMatchObject({
      code: 'signal_sender_key_corrupt',
      message: expect.stringMatching(/delete it/),
    });
  });

  it('refuses distribution messages with a wrong version, a short chain key or an untyped signing key', async () => {
    const g = await group();
    const skdm = readSenderKeyDistribution(g.skdm);
    const v2 = Uint8Array.from(g.skdm);
    v2[0] = 0x22;
    const v4 = Uint8Array.from(g.skdm);
    v4[0] = 0x43;
    const short = writeSenderKeyDistribution({ ...skdm, chainKey: skdm.chainKey.subarray(0, 31) });
    const untyped = writeSenderKeyDistribution({
      ...skdm,
      signingKey: Uint8Array.from([6, ...skdm.signingKey.subarray(1)]),
    });
    for (const bad of [v2, v4, short, untyped, g.skdm.subarray(0, 40), new Uint8Array(0)]) {
      await failsWith(processDistribution(g.receiver, alice, g.id, bad), 'signal_invalid_message');
    }
  });
});

describe('hostile bytes', () => {
  const CODES = new Set<SignalErrorCode>([
    'signal_invalid_message',
    'signal_no_sender_key',
    'signal_bad_signature',
    'signal_duplicate_message',
    'signal_message_too_far_ahead',
    'signal_decrypt_failed',
  ]);
  const mutated = (real: Uint8Array) =>
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.nat(real.length).map((n) => real.subarray(0, n)),
      fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat(real.length - 1)).map(([bytes, at]) => {
        const b = Uint8Array.from(real);
        b.set(bytes.subarray(0, b.length - at), at);
        return b;
      }),
    );

  it('group messages: a typed SignalError for anything but the real message, the record unchanged', async () => {
    const g = await group();
    const real = await g.send('real');
    const before = g.receiver.getSenderKey(g.id, alice);
    await fc.assert(
      fc.asyncProperty(mutated(real), async (body) => {
        if (Buffer.from(body).equals(Buffer.from(real))) return;
        const err = await groupDecrypt(g.receiver, alice, g.id, body).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(SignalError);
        expect(CODES.has((err as SignalError).code)).toBe(true);
      }),
      { numRuns: 3000 },
    );
    expect(g.receiver.getSenderKey(g.id, alice)).toBe(before);
    expect(await g.decrypt(g.receiver, real)).toBe('real');
  });

  it('distribution messages: a typed SignalError, or a well-formed state stored', async () => {
    const g = await group();
    await fc.assert(
      fc.asyncProperty(mutated(g.skdm), async (body) => {
        const store = new MemorySenderKeyBackend();
        try {
          await processDistribution(store, alice, g.id, body);
          expect(decodeSenderKeyRecord(store.getSenderKey(g.id, alice)!)).toHaveLength(1);
        } catch (err) {
          expect(err).toBeInstanceOf(SignalError);
          expect((err as SignalError).code).toBe('signal_invalid_message');
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('stored records: a typed SignalError for bytes that are not a record', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeSenderKeyRecord(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(SignalError);
          expect((err as SignalError).code).toBe('signal_sender_key_corrupt');
        }
      }),
      { numRuns: 3000 },
    );
  });
});
