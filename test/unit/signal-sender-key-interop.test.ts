/**
 * Sender keys against libsignal itself (@signalapp/libsignal-client, the Rust library): its
 * distribution and group messages read by ours and ours by it, in order and out of order, across a
 * rotation, and the stored records of each readable by the other.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type * as Client from '@signalapp/libsignal-client';

import {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  processDistribution,
  rotate,
} from '../../src/signal/sender-keys.js';
import { decodeSenderKeyRecord, encodeSenderKeyRecord } from '../../src/signal/sender-key-record.js';
import { MemorySenderKeyBackend, type SenderKeyAddress } from '../../src/signal/sender-key-store.js';
import { readSenderKeyDistribution, writeSenderKeyDistribution } from '../../src/signal/sender-key-wire.js';

type Signal = typeof Client;

/**
 * The library finds its native addon from `import.meta.dirname`, which Jest's ESM loader leaves
 * undefined, so node-gyp-build looks in the working directory: the import runs from the package's
 * own directory (bench/signal.bench.ts skips the library under Jest for the same reason).
 */
async function loadLibsignal(): Promise<Signal> {
  const before = process.cwd();
  process.chdir(path.resolve('node_modules/@signalapp/libsignal-client'));
  try {
    return await import('@signalapp/libsignal-client');
  } finally {
    process.chdir(before);
  }
}

let signal: Signal;
beforeAll(async () => {
  signal = await loadLibsignal();
});

const text = (s: string) => Uint8Array.from(Buffer.from(s));
const str = (b: Uint8Array) => Buffer.from(b).toString();
/** An exact-length copy, as the library's Uint8Array<ArrayBuffer> parameters want. */
const own = (b: Uint8Array): Uint8Array<ArrayBuffer> => Uint8Array.from(b);

/** libsignal's side of one member: its SenderKeyStore in memory. */
function clientMember() {
  const records = new Map<string, Client.SenderKeyRecord>();
  const key = (a: Client.ProtocolAddress, d: string) => `${a.name()}.${a.deviceId()}/${d}`;
  class Store extends signal.SenderKeyStore {
    saveSenderKey(sender: Client.ProtocolAddress, distributionId: string, record: Client.SenderKeyRecord) {
      records.set(key(sender, distributionId), record);
      return Promise.resolve();
    }
    getSenderKey(sender: Client.ProtocolAddress, distributionId: string) {
      return Promise.resolve(records.get(key(sender, distributionId)) ?? null);
    }
  }
  const store = new Store();
  return {
    store,
    records,
    /** Rotation as a libsignal client does it: forget our own record, so `create` makes a new chain. */
    rotate: (a: Client.ProtocolAddress, d: string) => records.delete(key(a, d)),
    distribution: async (a: Client.ProtocolAddress, d: string) =>
      (await signal.SenderKeyDistributionMessage.create(a, d, store)).serialize(),
    process: (a: Client.ProtocolAddress, skdm: Uint8Array) =>
      signal.processSenderKeyDistributionMessage(
        a,
        signal.SenderKeyDistributionMessage.deserialize(own(skdm)),
        store,
      ),
    encrypt: async (a: Client.ProtocolAddress, d: string, plaintext: string) =>
      (await signal.groupEncrypt(a, d, store, text(plaintext))).serialize(),
    decrypt: async (a: Client.ProtocolAddress, body: Uint8Array) =>
      str(await signal.groupDecrypt(a, store, own(body))),
  };
}

const alice: SenderKeyAddress = { name: 'alice', deviceId: 1 };
const aliceClient = () => signal.ProtocolAddress.new('alice', 1);

describe('sender keys against @signalapp/libsignal-client', () => {
  it("decrypts libsignal's group messages, in order and out of order, after its distribution message", async () => {
    const group = crypto.randomUUID();
    const sender = clientMember();
    const ours = new MemorySenderKeyBackend();
    expect(await processDistribution(ours, alice, await sender.distribution(aliceClient(), group))).toBe(
      group,
    );

    const sent: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) sent.push(await sender.encrypt(aliceClient(), group, `message ${i}`));
    for (const i of [0, 1, 5, 2, 7, 3, 6, 4]) {
      expect(str(await groupDecrypt(ours, alice, sent[i]!))).toBe(`message ${i}`);
    }
    await expect(groupDecrypt(ours, alice, sent[5]!)).rejects.toMatchObject({
      code: 'signal_duplicate_message',
    });
  });

  it('has libsignal decrypt our group messages, in order and out of order, after our distribution message', async () => {
    const group = crypto.randomUUID();
    const ours = new MemorySenderKeyBackend();
    const receiver = clientMember();
    await receiver.process(aliceClient(), await createDistribution(ours, alice, group));

    const sent: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) sent.push(await groupEncrypt(ours, alice, group, text(`message ${i}`)));
    for (const i of [3, 0, 1, 7, 2, 6, 5, 4]) {
      expect(await receiver.decrypt(aliceClient(), sent[i]!)).toBe(`message ${i}`);
    }
    await expect(receiver.decrypt(aliceClient(), sent[2]!)).rejects.toMatchObject({
      code: signal.ErrorCode.DuplicatedMessage,
    });
  });

  it('reads and writes distribution messages byte for byte as libsignal does', async () => {
    const group = crypto.randomUUID();
    const theirs = await clientMember().distribution(aliceClient(), group);
    const fields = readSenderKeyDistribution(theirs);
    expect(Buffer.from(writeSenderKeyDistribution(fields))).toEqual(Buffer.from(theirs));

    const mine = await createDistribution(new MemorySenderKeyBackend(), alice, group);
    const parsed = signal.SenderKeyDistributionMessage.deserialize(own(mine));
    const ourFields = readSenderKeyDistribution(mine);
    expect(parsed.distributionId()).toBe(group);
    expect(parsed.chainId()).toBe(ourFields.chainId);
    expect(parsed.iteration()).toBe(0);
    expect(Buffer.from(parsed.chainKey())).toEqual(Buffer.from(ourFields.chainKey));
    expect(Buffer.from(parsed.serialize())).toEqual(Buffer.from(mine));
  });

  it("follows a libsignal sender's rotation: old chain still readable, new chain only after its distribution", async () => {
    const group = crypto.randomUUID();
    const sender = clientMember();
    const ours = new MemorySenderKeyBackend();
    await processDistribution(ours, alice, await sender.distribution(aliceClient(), group));
    const old1 = await sender.encrypt(aliceClient(), group, 'old 1');
    const old2 = await sender.encrypt(aliceClient(), group, 'old 2');
    expect(str(await groupDecrypt(ours, alice, old1))).toBe('old 1');

    sender.rotate(aliceClient(), group);
    const second = await sender.distribution(aliceClient(), group);
    const new1 = await sender.encrypt(aliceClient(), group, 'new 1');
    await expect(groupDecrypt(ours, alice, new1)).rejects.toMatchObject({ code: 'signal_no_sender_key' });

    await processDistribution(ours, alice, second);
    expect(str(await groupDecrypt(ours, alice, new1))).toBe('new 1');
    expect(str(await groupDecrypt(ours, alice, old2))).toBe('old 2'); // sent before the rotation, late
  });

  it('rotates so that libsignal receivers need the new distribution message, and reads the new chain with it', async () => {
    const group = crypto.randomUUID();
    const ours = new MemorySenderKeyBackend();
    const receiver = clientMember();
    await receiver.process(aliceClient(), await createDistribution(ours, alice, group));
    const old = await groupEncrypt(ours, alice, group, text('before'));

    await rotate(ours, alice, group);
    const second = await createDistribution(ours, alice, group);
    const fresh = await groupEncrypt(ours, alice, group, text('after'));
    await expect(receiver.decrypt(aliceClient(), fresh)).rejects.toThrow(/missing sender key state/);

    await receiver.process(aliceClient(), second);
    expect(await receiver.decrypt(aliceClient(), fresh)).toBe('after');
    expect(await receiver.decrypt(aliceClient(), old)).toBe('before');
  });

  it("stores records libsignal reads, and reads libsignal's: a sender can move between the two", async () => {
    const group = crypto.randomUUID();
    const client = clientMember();
    const receiver = new MemorySenderKeyBackend();
    await processDistribution(receiver, alice, await client.distribution(aliceClient(), group));
    expect(str(await groupDecrypt(receiver, alice, await client.encrypt(aliceClient(), group, 'one')))).toBe(
      'one',
    );

    // libsignal's own sending record (private signing key, chain at iteration 1) continues here...
    const ours = new MemorySenderKeyBackend();
    const theirRecord = client.records.get(`alice.1/${group}`)!.serialize();
    expect(Buffer.from(encodeSenderKeyRecord(decodeSenderKeyRecord(theirRecord)))).toEqual(
      Buffer.from(theirRecord),
    );
    ours.putSenderKey(group, alice, theirRecord);
    expect(
      str(await groupDecrypt(receiver, alice, await groupEncrypt(ours, alice, group, text('two')))),
    ).toBe('two');

    // ...and ours goes back to libsignal, which sends on at iteration 2.
    client.records.set(
      `alice.1/${group}`,
      signal.SenderKeyRecord.deserialize(own(ours.getSenderKey(group, alice)!)),
    );
    expect(
      str(await groupDecrypt(receiver, alice, await client.encrypt(aliceClient(), group, 'three'))),
    ).toBe('three');
  });
});
