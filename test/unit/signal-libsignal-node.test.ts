/**
 * 1:1 sessions between a puppet's Signal layer and libsignal-node (the `libsignal` package, v6, the
 * WhiskeySockets fork Baileys builds on): the prekey message first, then ratchet steps both ways,
 * out-of-order and late delivery, and tampered ciphertexts refused.
 *
 * Sender keys are not here: libsignal 6.0.0 ships no group cipher (its index.js exports crypto,
 * curve, keyhelper, ProtocolAddress, SessionBuilder, SessionCipher, SessionRecord and errors only;
 * Baileys keeps its own, WASignalGroup, on top of it). signal-sender-key-classic.test.ts proves
 * sender keys against that one.
 */
import { createRequire } from 'node:module';
import { jest } from '@jest/globals';

import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager, type SignalMessageType } from '../../src/signal/session-manager.js';
import { MemorySignalBackend } from '../../src/signal/store.js';

const require = createRequire(import.meta.url);

// libsignal-node as its code behaves. Its index.d.ts is not followed: it says encrypt's body is a
// string (it is a Buffer) and SessionRecord.serialize returns bytes (a JSON-ready object), and it
// declares neither keyhelper nor protobufs.
interface NodeKeyPair {
  readonly pubKey: Buffer;
  readonly privKey: Buffer;
}
interface NodeAddress {
  toString(): string;
}
interface NodeSessionRecord {
  serialize(): unknown;
}
interface NodeDevice {
  registrationId: number;
  identityKey: Buffer;
  signedPreKey: { keyId: number; publicKey: Buffer; signature: Buffer };
  preKey?: { keyId: number; publicKey: Buffer };
}
interface LibsignalNode {
  keyhelper: {
    generateIdentityKeyPair(): NodeKeyPair;
    generateRegistrationId(): number;
    generateSignedPreKey(
      identity: NodeKeyPair,
      keyId: number,
    ): { keyId: number; keyPair: NodeKeyPair; signature: Buffer };
    generatePreKey(keyId: number): { keyId: number; keyPair: NodeKeyPair };
  };
  ProtocolAddress: new (id: string, deviceId: number) => NodeAddress;
  SessionRecord: { deserialize(data: unknown): NodeSessionRecord };
  SessionBuilder: new (
    storage: NodeStore,
    address: NodeAddress,
  ) => { initOutgoing(device: NodeDevice): Promise<void> };
  SessionCipher: new (
    storage: NodeStore,
    address: NodeAddress,
  ) => {
    encrypt(data: Buffer): Promise<{ type: 1 | 3; body: Buffer; registrationId: number }>;
    decryptPreKeyWhisperMessage(data: Buffer): Promise<Buffer>;
    decryptWhisperMessage(data: Buffer): Promise<Buffer>;
  };
}
interface NodeProtobufs {
  WhisperMessage: { decode(b: Uint8Array): { ciphertext: Uint8Array } };
  PreKeyWhisperMessage: { decode(b: Uint8Array): { message: Uint8Array } };
}
const libsignal = require('libsignal') as LibsignalNode;
const protobufs = require('libsignal/src/protobufs') as NodeProtobufs;

/** libsignal-node's storage, in memory. */
class NodeStore {
  // Records are kept serialized, as any real store keeps them: libsignal-node steps the ratchet on
  // the loaded object before it checks the MAC, and only a store keeps a refused message's steps out.
  private readonly sessions = new Map<string, string>();
  readonly preKeys = new Map<number, NodeKeyPair>();
  readonly signedPreKeys = new Map<number, NodeKeyPair>();
  constructor(
    private readonly identity: NodeKeyPair,
    private readonly registrationId: number,
  ) {}
  getOurIdentity = () => this.identity;
  getOurRegistrationId = () => this.registrationId;
  isTrustedIdentity = () => true;
  loadPreKey = (id: number) => Promise.resolve(this.preKeys.get(id));
  removePreKey = (id: number) => void this.preKeys.delete(id);
  loadSignedPreKey = (id: number) => this.signedPreKeys.get(id);
  loadSession = (address: string) => {
    const json = this.sessions.get(address);
    return Promise.resolve(
      json === undefined ? undefined : libsignal.SessionRecord.deserialize(JSON.parse(json)),
    );
  };
  storeSession = (address: string, record: NodeSessionRecord) =>
    Promise.resolve(void this.sessions.set(address, JSON.stringify(record.serialize())));
}

interface Wire {
  readonly type: SignalMessageType;
  readonly body: Uint8Array;
}

/** One end of a conversation: sends text, reads what the other end sent. */
interface Side {
  readonly name: string;
  send(text: string): Promise<Wire>;
  read(message: Wire): Promise<string>;
}

const PUPPET = 'puppet';
const PEER = 'node';

/** A libsignal-node device with a signed prekey (7) and one one-time prekey (9), talking to the puppet. */
function nodePeer() {
  const identity = libsignal.keyhelper.generateIdentityKeyPair();
  const registrationId = libsignal.keyhelper.generateRegistrationId();
  const signed = libsignal.keyhelper.generateSignedPreKey(identity, 7);
  const pre = libsignal.keyhelper.generatePreKey(9);
  const store = new NodeStore(identity, registrationId);
  store.signedPreKeys.set(signed.keyId, signed.keyPair);
  store.preKeys.set(pre.keyId, pre.keyPair);
  const puppet = new libsignal.ProtocolAddress(PUPPET, 1);
  const cipher = new libsignal.SessionCipher(store, puppet);
  return {
    name: PEER,
    store,
    puppet,
    /** What a server hands out for this device (33-byte keys, as libsignal-node keeps them). */
    bundle: {
      registrationId,
      identityKey: Uint8Array.from(identity.pubKey),
      signedPreKey: {
        id: signed.keyId,
        publicKey: Uint8Array.from(signed.keyPair.pubKey),
        signature: Uint8Array.from(signed.signature),
      },
      preKey: { id: pre.keyId, publicKey: Uint8Array.from(pre.keyPair.pubKey) },
    },
    async send(text: string) {
      const m = await cipher.encrypt(Buffer.from(text));
      return {
        type: m.type === 3 ? ('pkmsg' as const) : ('msg' as const),
        body: Uint8Array.from(m.body),
        /** The registration id libsignal-node holds for the puppet. */
        registrationId: m.registrationId,
      };
    },
    async read(m: Wire) {
      const body = Buffer.from(m.body);
      const plaintext =
        m.type === 'pkmsg'
          ? await cipher.decryptPreKeyWhisperMessage(body)
          : await cipher.decryptWhisperMessage(body);
      return plaintext.toString();
    },
  };
}

/** A puppet's Signal layer with its own prekeys, talking to the libsignal-node device. */
function puppet() {
  const id = createSignalIdentity();
  const manager = new SignalSessionManager(
    new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    }),
    { localUser: PUPPET },
  );
  manager.setUp({ preKeys: 3 });
  const peer = `${PEER}.1`;
  return {
    name: PUPPET,
    manager,
    registrationId: id.registrationId,
    send: (text: string) => manager.encrypt(peer, Buffer.from(text)),
    read: async (m: Wire) => Buffer.from(await manager.decrypt(peer, m.type, m.body)).toString(),
  };
}

/** Our bundle as libsignal-node's SessionBuilder takes it: Buffers, 33-byte (0x05 ‖ key) public keys. */
function deviceOf(me: ReturnType<typeof puppet>): NodeDevice {
  const upload = me.manager.prekeyUpload(1);
  const djb = (key: Uint8Array) => Buffer.concat([Buffer.from([0x05]), key]);
  const preKey = upload.preKeys[0]!;
  return {
    registrationId: upload.registrationId,
    identityKey: djb(upload.identityKey),
    signedPreKey: {
      keyId: upload.signedPreKey.id,
      publicKey: djb(upload.signedPreKey.publicKey),
      signature: Buffer.from(upload.signedPreKey.signature),
    },
    preKey: { keyId: preKey.id, publicKey: djb(preKey.publicKey) },
  };
}

/** The message with the last byte of its AES ciphertext flipped (located with libsignal-node's own protobufs). */
function tampered(m: Wire): Wire {
  const whisper =
    m.type === 'pkmsg' ? protobufs.PreKeyWhisperMessage.decode(m.body.subarray(1)).message : m.body;
  const ciphertext = protobufs.WhisperMessage.decode(whisper.subarray(1, whisper.length - 8)).ciphertext;
  const at = Buffer.from(m.body).indexOf(Buffer.from(ciphertext));
  expect(at).toBeGreaterThan(0);
  const body = Uint8Array.from(m.body);
  body[at + ciphertext.length - 1]! ^= 0x01;
  return { type: m.type, body };
}

/** Sends `texts` from `from`, then has `to` read them in `order` (indexes into `texts`). */
async function deliver(from: Side, to: Side, texts: readonly string[], order: readonly number[]) {
  const sent: Wire[] = [];
  for (const text of texts) sent.push(await from.send(`${from.name}: ${text}`));
  for (const i of order) expect(await to.read(sent[i]!)).toBe(`${from.name}: ${texts[i]!}`);
  return sent;
}

/**
 * Ratchet steps once both ends hold the session: two messages in a row from each side, a chain read
 * out of order each way, and a message read only after the ratchet has moved past its chain.
 */
async function ratchetBothWays(a: Side, b: Side) {
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    await deliver(from, to, ['first of two', 'second of two'], [0, 1]);
    await deliver(to, from, ['an answer'], [0]);
  }
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    await deliver(from, to, ['one', 'two', 'three', 'four'], [2, 0, 3, 1]);
    await deliver(to, from, ['got them'], [0]);
  }
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    const [late] = await deliver(from, to, ['late', 'on time'], [1]);
    await deliver(to, from, ['reply'], [0]);
    await deliver(from, to, ['on the next chain'], [0]);
    expect(await to.read(late!)).toBe(`${from.name}: late`);
  }
}

describe('1:1 sessions with libsignal-node', () => {
  afterEach(() => jest.restoreAllMocks());

  it('the puppet opens the session from a libsignal-node bundle: it reads the prekey message, and the ratchet runs both ways', async () => {
    const me = puppet();
    const peer = nodePeer();
    await me.manager.processBundle(`${PEER}.1`, peer.bundle);

    const first = await me.send('hello');
    expect(first.type).toBe('pkmsg');
    expect(await peer.read(first)).toBe('hello');
    expect(peer.store.preKeys.has(9)).toBe(false); // its one-time prekey is used up

    const reply = await peer.send('hello back');
    expect(reply.type).toBe('msg');
    expect(reply.registrationId).toBe(me.registrationId);
    expect(await me.read(reply)).toBe('hello back');

    await ratchetBothWays(me, peer);
  });

  it('libsignal-node opens the session from the puppet bundle: the puppet reads its prekey messages, and the ratchet runs both ways', async () => {
    const me = puppet();
    const peer = nodePeer();
    await new libsignal.SessionBuilder(peer.store, peer.puppet).initOutgoing(deviceOf(me));

    const first = await peer.send('hello');
    const second = await peer.send('again, before any answer');
    expect([first.type, second.type]).toEqual(['pkmsg', 'pkmsg']);
    expect(await me.read(second)).toBe('again, before any answer');
    expect(await me.read(first)).toBe('hello');

    const reply = await me.send('hello back');
    expect(reply.type).toBe('msg');
    expect(await peer.read(reply)).toBe('hello back');
    expect((await peer.send('now without a prekey')).type).toBe('msg');

    await ratchetBothWays(peer, me);
  });

  it('a prekey message with a tampered ciphertext is refused each way, and the genuine one still opens the session', async () => {
    jest.spyOn(console, 'error').mockImplementation(() => undefined); // libsignal-node logs what it refuses
    const me = puppet();
    const peer = nodePeer();
    await me.manager.processBundle(`${PEER}.1`, peer.bundle);
    const ours = await me.send('from the puppet');
    await expect(peer.read(tampered(ours))).rejects.toThrow('Bad MAC');
    expect(await peer.read(ours)).toBe('from the puppet');

    const other = puppet();
    const otherPeer = nodePeer();
    await new libsignal.SessionBuilder(otherPeer.store, otherPeer.puppet).initOutgoing(deviceOf(other));
    const theirs = await otherPeer.send('from libsignal-node');
    await expect(other.read(tampered(theirs))).rejects.toMatchObject({ code: 'signal_decrypt_failed' });
    expect(await other.read(theirs)).toBe('from libsignal-node');
  });

  it('a ratchet message with a tampered ciphertext is refused each way, and the genuine one still reads', async () => {
    const errors = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const me = puppet();
    const peer = nodePeer();
    await me.manager.processBundle(`${PEER}.1`, peer.bundle);
    await deliver(me, peer, ['hello'], [0]);
    await deliver(peer, me, ['hello back'], [0]);

    const ours = await me.send('genuine, from the puppet');
    await expect(peer.read(tampered(ours))).rejects.toThrow(/No matching sessions/);
    expect(errors).toHaveBeenCalled();
    expect(await peer.read(ours)).toBe('genuine, from the puppet');

    const theirs = await peer.send('genuine, from libsignal-node');
    await expect(me.read(tampered(theirs))).rejects.toMatchObject({ code: 'signal_decrypt_failed' });
    expect(await me.read(theirs)).toBe('genuine, from libsignal-node');
  });
});
