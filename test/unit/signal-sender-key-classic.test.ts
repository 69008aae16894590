/**
 * Sender keys against an independent implementation of the classic group cipher: Baileys'
 * WASignalGroup (the `baileys` package, v6.17.16, MIT; libsignal-protocol-javascript's group
 * cipher, as WhatsApp clients speak it, on the WhiskeySockets libsignal it shares with
 * signal-libsignal-node.test.ts). Its distribution and group messages read by ours and ours by it,
 * in order, out of order and after a rotation; a tampered message refused by each; and the bytes of
 * both encodings compared.
 *
 * Only WASignalGroup's own files are loaded (they need libsignal's crypto and curve and
 * protobufjs): the package root would load all of Baileys.
 *
 * Baileys' GroupCipher.encrypt steps its chain twice per message after the first (it asks for
 * iteration + 1 of a chain already at the next one), so its messages go out at iterations 0, 2, 4,
 * ...: a receiver keeps the key of every odd iteration as skipped. Ours must, and does.
 */
import { createRequire } from 'node:module';

import { distributionIdOf } from '../../src/bridge/groups.js';
import { generateKeyPair } from '../../src/signal/curve.js';
import { decodeSenderKeyRecord } from '../../src/signal/sender-key-record.js';
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
  processDistribution,
  rotate,
} from '../../src/signal/sender-keys.js';

const require = createRequire(import.meta.url);

// WASignalGroup as its code behaves (it ships no types).
interface Address {
  toString(): string;
}
interface KeyName {
  toString(): string;
}
interface KeyRecord {
  serialize(): unknown;
}
interface Skdm {
  serialize(): Buffer;
  getId(): number;
  getIteration(): number;
}
interface WASignalGroup {
  SenderKeyName: new (groupId: string, sender: Address) => KeyName;
  SenderKeyRecord: new (serialized?: unknown) => KeyRecord;
  SenderKeyDistributionMessage: new (
    id: number | null,
    iteration: number | null,
    chainKey: Uint8Array | null,
    signatureKey: Uint8Array | null,
    serialized?: Uint8Array,
  ) => Skdm;
  GroupSessionBuilder: new (store: BaileysStore) => {
    create(name: KeyName): Promise<Skdm>;
    process(name: KeyName, message: Skdm): Promise<void>;
  };
  GroupCipher: new (
    store: BaileysStore,
    name: KeyName,
  ) => {
    encrypt(plaintext: Uint8Array): Promise<Buffer>;
    decrypt(message: Uint8Array): Promise<Buffer>;
  };
}
interface GroupProto {
  SenderKeyMessage: { encode(m: object): { finish(): Uint8Array } };
  SenderKeyDistributionMessage: { encode(m: object): { finish(): Uint8Array } };
}
interface BaileysStore {
  loadSenderKey(name: KeyName): Promise<KeyRecord>;
  storeSenderKey(name: KeyName, record: KeyRecord): Promise<void>;
}

const W = require('baileys/WASignalGroup/index.js') as WASignalGroup;
const groupproto = require('baileys/WASignalGroup/protobufs.js') as GroupProto;
const ProtocolAddress = require('libsignal/src/protocol_address.js') as new (
  id: string,
  deviceId: number,
) => Address;

const GROUP = '120363001@g.wa.interop';
const DISTRIBUTION = distributionIdOf(GROUP);
const alice: SenderKeyAddress = { name: 'alice', deviceId: 1 };
const text = (s: string) => Uint8Array.from(Buffer.from(s));
const str = (b: Uint8Array) => Buffer.from(b).toString();

/**
 * One Baileys device. Its store is Baileys' own (lib/Signal/libsignal.js): it keeps each record's
 * `serialize()` under the sender key name, (group, sender address), and loads it back with `new
 * SenderKeyRecord(...)`; in memory, as its in-memory and cached key stores do. (Not as JSON: through
 * JSON, as its file-backed auth state keeps keys, WASignalGroup's skipped message keys lose their
 * iteration and seed, and it can no longer read a message that arrives out of order.)
 */
function baileysMember() {
  const records = new Map<string, unknown>();
  const store: BaileysStore = {
    loadSenderKey: (name) => Promise.resolve(new W.SenderKeyRecord(records.get(name.toString()))),
    storeSenderKey: (name, record) => Promise.resolve(void records.set(name.toString(), record.serialize())),
  };
  const nameOf = (sender: SenderKeyAddress) =>
    new W.SenderKeyName(GROUP, new ProtocolAddress(sender.name, sender.deviceId));
  return {
    records,
    /** Its own chain's distribution message (Baileys makes the chain on first use). */
    distribution: async (me: SenderKeyAddress) =>
      (await new W.GroupSessionBuilder(store).create(nameOf(me))).serialize(),
    /** A rotation as Baileys has one: the record forgotten, so `create` makes a new chain. */
    rotate: (me: SenderKeyAddress) => records.delete(nameOf(me).toString()),
    /** The private signing key of its own chain, from its stored record. */
    signingPrivate: (me: SenderKeyAddress): Uint8Array => {
      const [state] = records.get(nameOf(me).toString()) as [{ senderSigningKey: { private: Uint8Array } }];
      return state.senderSigningKey.private;
    },
    process: (sender: SenderKeyAddress, skdm: Uint8Array) =>
      new W.GroupSessionBuilder(store).process(
        nameOf(sender),
        new W.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(skdm)),
      ),
    encrypt: (me: SenderKeyAddress, plaintext: string) =>
      new W.GroupCipher(store, nameOf(me)).encrypt(text(plaintext)),
    decrypt: async (sender: SenderKeyAddress, body: Uint8Array) =>
      str(await new W.GroupCipher(store, nameOf(sender)).decrypt(Buffer.from(body))),
  };
}

/** Our side of one member: the group's chains under its distribution id. */
function ourMember() {
  const store = new MemorySenderKeyBackend();
  return {
    store,
    process: (sender: SenderKeyAddress, skdm: Uint8Array) =>
      processDistribution(store, sender, DISTRIBUTION, skdm),
    encrypt: (me: SenderKeyAddress, plaintext: string) =>
      groupEncrypt(store, me, DISTRIBUTION, text(plaintext)),
    decrypt: async (sender: SenderKeyAddress, body: Uint8Array) =>
      str(await groupDecrypt(store, sender, DISTRIBUTION, body)),
  };
}

describe("sender keys against Baileys' WASignalGroup (the classic group cipher)", () => {
  it("decrypts Baileys' group messages, in order and out of order, after its distribution message", async () => {
    const sender = baileysMember();
    const ours = ourMember();
    await ours.process(alice, await sender.distribution(alice));

    const sent: Buffer[] = [];
    for (let i = 0; i < 8; i++) sent.push(await sender.encrypt(alice, `message ${i}`));
    expect(sent.map((m) => readSenderKeyMessage(m).iteration)).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
    for (const i of [0, 1, 5, 2, 7, 3, 6, 4])
      expect(await ours.decrypt(alice, sent[i]!)).toBe(`message ${i}`);
    await expect(ours.decrypt(alice, sent[5]!)).rejects.toMatchObject({ code: 'signal_duplicate_message' });
  });

  it('keeps the keys of skipped Baileys messages: the last of 40 first, then the rest backwards', async () => {
    const sender = baileysMember();
    const ours = ourMember();
    await ours.process(alice, await sender.distribution(alice));
    const sent: Buffer[] = [];
    for (let i = 0; i < 40; i++) sent.push(await sender.encrypt(alice, `m${i}`));
    for (let i = 39; i >= 0; i--) expect(await ours.decrypt(alice, sent[i]!)).toBe(`m${i}`);
    const [state] = decodeSenderKeyRecord(ours.store.getSenderKey(DISTRIBUTION, alice)!);
    // What is left: the odd iterations Baileys stepped over and never sent on.
    expect(state!.messageKeys.map((k) => k.iteration)).toEqual(
      Array.from({ length: 39 }, (_, i) => 2 * i + 1),
    );
  });

  it('has Baileys decrypt our group messages, in order and out of order, after our distribution message', async () => {
    const ours = ourMember();
    const receiver = baileysMember();
    await receiver.process(alice, await createDistribution(ours.store, alice, DISTRIBUTION));

    const sent: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) sent.push(await ours.encrypt(alice, `message ${i}`));
    for (const i of [3, 0, 1, 7, 2, 6, 5, 4])
      expect(await receiver.decrypt(alice, sent[i]!)).toBe(`message ${i}`);
    await expect(receiver.decrypt(alice, sent[2]!)).rejects.toThrow(/old counter/);
  });

  it("follows a Baileys sender's rotation (a new distribution, a new id): old chain still readable", async () => {
    const sender = baileysMember();
    const ours = ourMember();
    const first = await sender.distribution(alice);
    await ours.process(alice, first);
    const old1 = await sender.encrypt(alice, 'old 1');
    const old2 = await sender.encrypt(alice, 'old 2');
    expect(await ours.decrypt(alice, old1)).toBe('old 1');

    sender.rotate(alice);
    const second = await sender.distribution(alice);
    expect(readSenderKeyDistribution(second).chainId).not.toBe(readSenderKeyDistribution(first).chainId);
    const new1 = await sender.encrypt(alice, 'new 1');
    await expect(ours.decrypt(alice, new1)).rejects.toMatchObject({ code: 'signal_no_sender_key' });

    await ours.process(alice, second);
    expect(await ours.decrypt(alice, new1)).toBe('new 1');
    expect(await ours.decrypt(alice, old2)).toBe('old 2'); // sent before the rotation, late
  });

  it('rotates so that Baileys receivers need the new distribution message, and reads the new chain with it', async () => {
    const ours = ourMember();
    const receiver = baileysMember();
    await receiver.process(alice, await createDistribution(ours.store, alice, DISTRIBUTION));
    const old = await ours.encrypt(alice, 'before');

    await rotate(ours.store, alice, DISTRIBUTION);
    const second = await createDistribution(ours.store, alice, DISTRIBUTION);
    const fresh = await ours.encrypt(alice, 'after');
    await expect(receiver.decrypt(alice, fresh)).rejects.toThrow(/No session found/);

    await receiver.process(alice, second);
    expect(await receiver.decrypt(alice, fresh)).toBe('after');
    expect(await receiver.decrypt(alice, old)).toBe('before');
  });

  it('a tampered message is refused by each side, and the real one still decrypts', async () => {
    const baileys = baileysMember();
    const ours = ourMember();
    await ours.process(alice, await baileys.distribution(alice));
    const bob: SenderKeyAddress = { name: 'bob', deviceId: 2 };
    await baileys.process(bob, await createDistribution(ours.store, bob, DISTRIBUTION));

    const theirs = await baileys.encrypt(alice, 'theirs');
    const mine = await ours.encrypt(bob, 'mine');
    for (const at of [-1, -70]) {
      const t = Uint8Array.from(theirs);
      t.set([t.at(at)! ^ 1], t.length + at);
      await expect(ours.decrypt(alice, t)).rejects.toMatchObject({ code: 'signal_bad_signature' });
      const m = Uint8Array.from(mine);
      m.set([m.at(at)! ^ 1], m.length + at);
      await expect(baileys.decrypt(bob, m)).rejects.toThrow(/Invalid signature/);
    }
    // Signed by another key, with the right id and iteration.
    const forged = writeSenderKeyMessage(readSenderKeyMessage(mine), generateKeyPair().privateKey);
    await expect(baileys.decrypt(bob, forged)).rejects.toThrow(/Invalid signature/);

    expect(await ours.decrypt(alice, theirs)).toBe('theirs');
    expect(await baileys.decrypt(bob, mine)).toBe('mine');
  });
});

describe('the classic encoding, byte for byte', () => {
  it("reads Baileys' distribution message and writes it back identically; Baileys writes ours identically", async () => {
    const baileys = baileysMember();
    const theirs = await baileys.distribution(alice);
    const fields = readSenderKeyDistribution(theirs);
    expect(Buffer.from(writeSenderKeyDistribution(fields))).toEqual(theirs);

    const mine = await createDistribution(new MemorySenderKeyBackend(), alice, DISTRIBUTION);
    const f = readSenderKeyDistribution(mine);
    const parsed = new W.SenderKeyDistributionMessage(null, null, null, null, Buffer.from(mine));
    expect([parsed.getId(), parsed.getIteration()]).toEqual([f.chainId, 0]);
    const rewritten = new W.SenderKeyDistributionMessage(f.chainId, f.iteration, f.chainKey, f.signingKey);
    expect(rewritten.serialize()).toEqual(Buffer.from(mine));
  });

  it('signs the same bytes: version byte and protobuf as Baileys writes them', async () => {
    const baileys = baileysMember();
    await baileys.distribution(alice);
    const theirs = await baileys.encrypt(alice, 'hello');
    const m = readSenderKeyMessage(theirs);
    const again = writeSenderKeyMessage(m, baileys.signingPrivate(alice));
    expect(again.subarray(0, -64)).toEqual(theirs.subarray(0, -64));

    const ours = ourMember();
    await createDistribution(ours.store, alice, DISTRIBUTION);
    const mine = readSenderKeyMessage(await ours.encrypt(alice, 'hello'));
    const proto = groupproto.SenderKeyMessage.encode({
      id: mine.chainId,
      iteration: mine.iteration,
      ciphertext: mine.ciphertext,
    }).finish();
    expect(Buffer.from(mine.signed)).toEqual(Buffer.concat([Buffer.from([0x33]), proto]));
  });

  it('writes zero-valued fields (id 0, iteration 0) as Baileys does, and refuses a message without them', () => {
    const chainKey = new Uint8Array(32).fill(7);
    const signingKey = Uint8Array.from([5, ...generateKeyPair().publicKey]);
    const theirs = new W.SenderKeyDistributionMessage(0, 0, chainKey, signingKey).serialize();
    // 0x33, then field 1 = 0 and field 2 = 0 written out (proto2: present, though zero).
    expect(theirs.subarray(0, 5)).toEqual(Buffer.from([0x33, 0x08, 0x00, 0x10, 0x00]));
    const ours = writeSenderKeyDistribution({ chainId: 0, iteration: 0, chainKey, signingKey });
    expect(ours).toEqual(theirs);
    expect(readSenderKeyDistribution(theirs)).toMatchObject({ chainId: 0, iteration: 0 });

    // No classic writer leaves them out (libsignal-protocol-java refuses such a message as
    // "Incomplete message."), so neither do we read one.
    const incomplete = (m: object, what: RegExp) => {
      const skdm = Buffer.concat([
        Buffer.from([0x33]),
        groupproto.SenderKeyDistributionMessage.encode(m).finish(),
      ]);
      expect(() => readSenderKeyDistribution(skdm)).toThrow(
        expect.objectContaining({ code: 'signal_invalid_message', message: expect.stringMatching(what) }),
      );
    };
    incomplete({ iteration: 0, chainKey, signingKey }, /no key id/);
    incomplete({ id: 0, chainKey, signingKey }, /no iteration/);
    incomplete({ id: 0, iteration: 0, signingKey }, /no 32-byte chain key/);
    incomplete({ id: 0, iteration: 0, chainKey }, /signing key/);
    const unsigned = Buffer.concat([
      Buffer.from([0x33]),
      groupproto.SenderKeyMessage.encode({ id: 1, ciphertext: new Uint8Array(16) }).finish(),
      Buffer.alloc(64),
    ]);
    expect(() => readSenderKeyMessage(unsigned)).toThrow(/no iteration/);
  });
});
