/**
 * The Signal message path: 100-byte messages, encrypt plus decrypt, between two parties in this
 * process. Two modes, as case-name prefixes:
 *
 * - one-way: A sends to B over and over (one sending chain: symmetric ratchet only);
 * - ping-pong: A and B alternate, so every message carries a new ratchet key and its decrypt does a
 *   DH ratchet step (two agreements and a key pair).
 *
 * Cases: interop-bridge's Signal layer in memory and on its SQLite store (a real file in a temp dir),
 * and three baselines: the stock @privacyresearch/libsignal-protocol-typescript (its own asm.js curve
 * and WebCrypto), libsignal-node (`libsignal`, as Baileys uses it) and Signal's Rust
 * @signalapp/libsignal-client (with the Kyber prekeys it requires).
 *
 * The stock baseline must not run with our curve, yet `setCurve`/`setWebCrypto` are process-wide for
 * one copy of the library. So the baseline loads a *second copy* of the library's CommonJS modules
 * (its entries are removed from require.cache, the package is required again, and the cache is put
 * back): that copy has its own internal crypto object, still on the stock curve and WebCrypto, while
 * the project's copy keeps the native plug. setup() checks the two copies are distinct objects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type * as client from '@signalapp/libsignal-client';
import * as projectLibrary from '@privacyresearch/libsignal-protocol-typescript';
import type { KeyPairType, StorageType } from '@privacyresearch/libsignal-protocol-typescript';

import { QUICK, type BenchCase, type Benchmark } from './harness.js';
import { openDatabase, type Db } from '../src/store/database.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';
import { createSignalIdentity } from '../src/signal/keys.js';
import { SignalSessionManager } from '../src/signal/session-manager.js';
import { MemorySignalBackend, type SignalBackend } from '../src/signal/store.js';
import { SqliteSignalBackend } from '../src/signal/sqlite-store.js';

const require = createRequire(import.meta.url);
const PAYLOAD = new Uint8Array(100).fill(0x61);

type Mode = 'one-way' | 'ping-pong';

/** Two parties with a session in both directions: each call sends one message and decrypts it. */
interface Duo {
  aToB(plaintext: Uint8Array): Promise<void>;
  bToA(plaintext: Uint8Array): Promise<void>;
  close?(): void;
}

function check(plaintext: Uint8Array | ArrayBuffer): void {
  if (plaintext.byteLength !== PAYLOAD.length) throw new Error('decrypted the wrong plaintext');
}

// -------------------------------------------------------------------------------------------------
// interop-bridge

async function projectDuo(
  makeBackends: () =>
    | { a: SignalBackend; b: SignalBackend; close?: () => void }
    | Promise<{ a: SignalBackend; b: SignalBackend; close?: () => void }>,
): Promise<Duo> {
  const { a, b, close } = await makeBackends();
  const alice = new SignalSessionManager(a, { localUser: 'alice' });
  const bob = new SignalSessionManager(b, { localUser: 'bob' });
  bob.setUp({ preKeys: 1 });
  alice.setUp({ preKeys: 1 });
  const upload = bob.prekeyUpload(1);
  await alice.processBundle('bob.1', {
    registrationId: upload.registrationId,
    identityKey: upload.identityKey,
    signedPreKey: upload.signedPreKey,
    preKey: upload.preKeys[0],
  });
  const duo: Duo = {
    async aToB(pt) {
      const m = await alice.encrypt('bob.1', pt);
      check(await bob.decrypt('alice.1', m.type, m.body));
    },
    async bToA(pt) {
      const m = await bob.encrypt('alice.1', pt);
      check(await alice.decrypt('bob.1', m.type, m.body));
    },
    ...(close ? { close } : {}),
  };
  return duo;
}

function memoryBackends() {
  const backend = () => {
    const id = createSignalIdentity();
    return new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    });
  };
  return { a: backend(), b: backend() };
}

async function sqliteBackends() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'signal-bench-'));
  const file = path.join(dir, 'bridge.db');
  const store = openSqliteStore(file);
  const puppet = async (localId: string) => {
    const id = createSignalIdentity();
    const created = await store.puppets.create({
      localId,
      network: 'matrix',
      accountId: localId,
      deviceId: 1,
      registrationId: id.registrationId,
      identityPublic: id.identityPublic,
      identityPrivate: id.identityPrivate,
      noisePublic: new Uint8Array(32),
      noisePrivate: new Uint8Array(32),
    });
    return created.id;
  };
  const a = await puppet('@alice:example.org');
  const b = await puppet('@bob:example.org');
  await store.close();
  const db: Db = openDatabase(file);
  return {
    a: new SqliteSignalBackend(db, a),
    b: new SqliteSignalBackend(db, b),
    close: () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// -------------------------------------------------------------------------------------------------
// Stock @privacyresearch/libsignal-protocol-typescript, in a second copy of its modules

type Library = typeof projectLibrary;

async function loadSecondCopy(): Promise<Library> {
  if (process.env.JEST_WORKER_ID !== undefined) {
    // Under Jest (the suite's "benchmarks run" check), require() is served from Jest's own module
    // registry, which ignores require.cache: isolate the second copy there instead.
    const { jest } = await import('@jest/globals');
    let isolated: Library | undefined;
    jest.isolateModules(() => {
      isolated = require('@privacyresearch/libsignal-protocol-typescript') as Library;
    });
    return isolated as Library;
  }
  const root = path.dirname(require.resolve('@privacyresearch/libsignal-protocol-typescript/package.json'));
  const ours = Object.keys(require.cache).filter((k) => k.startsWith(root));
  const saved = new Map(ours.map((k) => [k, require.cache[k]]));
  for (const k of ours) delete require.cache[k];
  try {
    return require('@privacyresearch/libsignal-protocol-typescript') as Library;
  } finally {
    for (const k of Object.keys(require.cache)) if (k.startsWith(root)) delete require.cache[k];
    for (const [k, v] of saved) require.cache[k] = v;
  }
}

/** The in-memory store of the library's own examples: session records as strings. */
class StockStore implements StorageType {
  private readonly sessions = new Map<string, string>();
  private readonly preKeys = new Map<number, KeyPairType>();
  private readonly signed = new Map<number, KeyPairType>();
  constructor(
    private readonly identity: KeyPairType,
    private readonly registrationId: number,
  ) {}
  getIdentityKeyPair = () => Promise.resolve(this.identity);
  getLocalRegistrationId = () => Promise.resolve(this.registrationId);
  isTrustedIdentity = () => Promise.resolve(true);
  saveIdentity = () => Promise.resolve(false);
  loadPreKey = (id: string | number) => Promise.resolve(this.preKeys.get(Number(id)));
  storePreKey = (id: string | number, kp: KeyPairType) => {
    this.preKeys.set(Number(id), kp);
    return Promise.resolve();
  };
  removePreKey = (id: string | number) => {
    this.preKeys.delete(Number(id));
    return Promise.resolve();
  };
  storeSession = (address: string, record: string) => {
    this.sessions.set(address, record);
    return Promise.resolve();
  };
  loadSession = (address: string) => Promise.resolve(this.sessions.get(address));
  loadSignedPreKey = (id: string | number) => Promise.resolve(this.signed.get(Number(id)));
  storeSignedPreKey = (id: string | number, kp: KeyPairType) => {
    this.signed.set(Number(id), kp);
    return Promise.resolve();
  };
  removeSignedPreKey = (id: string | number) => {
    this.signed.delete(Number(id));
    return Promise.resolve();
  };
}

async function stockDuo(lib: Library): Promise<Duo> {
  const party = async () => {
    const identity = await lib.KeyHelper.generateIdentityKeyPair();
    const registrationId = lib.KeyHelper.generateRegistrationId();
    const store = new StockStore(identity, registrationId);
    const signed = await lib.KeyHelper.generateSignedPreKey(identity, 1);
    const pre = await lib.KeyHelper.generatePreKey(1);
    await store.storeSignedPreKey(1, signed.keyPair);
    await store.storePreKey(1, pre.keyPair);
    return { identity, registrationId, store, signed, pre };
  };
  const a = await party();
  const b = await party();
  const bobAddr = new lib.SignalProtocolAddress('bob', 1);
  const aliceAddr = new lib.SignalProtocolAddress('alice', 1);
  await new lib.SessionBuilder(a.store, bobAddr).processPreKey({
    registrationId: b.registrationId,
    identityKey: b.identity.pubKey,
    signedPreKey: { keyId: 1, publicKey: b.signed.keyPair.pubKey, signature: b.signed.signature },
    preKey: { keyId: 1, publicKey: b.pre.keyPair.pubKey },
  });
  const aCipher = new lib.SessionCipher(a.store, bobAddr);
  const bCipher = new lib.SessionCipher(b.store, aliceAddr);
  const send = async (
    from: InstanceType<Library['SessionCipher']>,
    to: InstanceType<Library['SessionCipher']>,
    pt: Uint8Array,
  ) => {
    const m = await from.encrypt(pt.slice().buffer);
    const body = m.body as string;
    check(
      m.type === 3
        ? await to.decryptPreKeyWhisperMessage(body, 'binary')
        : await to.decryptWhisperMessage(body, 'binary'),
    );
  };
  return { aToB: (pt) => send(aCipher, bCipher, pt), bToA: (pt) => send(bCipher, aCipher, pt) };
}

// -------------------------------------------------------------------------------------------------
// libsignal-node (CommonJS, untyped: the few calls used are typed here)

interface NodeKeyPair {
  pubKey: Buffer;
  privKey: Buffer;
}
interface NodeCipher {
  encrypt(data: Buffer): Promise<{ type: number; body: Buffer }>;
  decryptPreKeyWhisperMessage(data: Buffer): Promise<Buffer>;
  decryptWhisperMessage(data: Buffer): Promise<Buffer>;
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
  ProtocolAddress: new (id: string, deviceId: number) => object;
  SessionBuilder: new (storage: object, address: object) => { initOutgoing(device: object): Promise<void> };
  SessionCipher: new (storage: object, address: object) => NodeCipher;
}

async function nodeDuo(): Promise<Duo> {
  const ls = require('libsignal') as LibsignalNode;
  const party = () => {
    const identity = ls.keyhelper.generateIdentityKeyPair();
    const registrationId = ls.keyhelper.generateRegistrationId();
    const signed = ls.keyhelper.generateSignedPreKey(identity, 1);
    const pre = ls.keyhelper.generatePreKey(1);
    const sessions = new Map<string, unknown>();
    const preKeys = new Map<number, NodeKeyPair>([[1, pre.keyPair]]);
    const storage = {
      getOurIdentity: () => identity,
      getOurRegistrationId: () => registrationId,
      isTrustedIdentity: () => true,
      loadSession: (id: string) => sessions.get(id),
      storeSession: (id: string, record: unknown) => void sessions.set(id, record),
      loadPreKey: (id: number) => preKeys.get(id),
      removePreKey: (id: number) => void preKeys.delete(id),
      loadSignedPreKey: () => signed.keyPair,
    };
    return { identity, registrationId, signed, pre, storage };
  };
  const a = party();
  const b = party();
  const bobAddr = new ls.ProtocolAddress('bob', 1);
  const aliceAddr = new ls.ProtocolAddress('alice', 1);
  await new ls.SessionBuilder(a.storage, bobAddr).initOutgoing({
    identityKey: b.identity.pubKey,
    registrationId: b.registrationId,
    signedPreKey: { keyId: 1, publicKey: b.signed.keyPair.pubKey, signature: b.signed.signature },
    preKey: { keyId: 1, publicKey: b.pre.keyPair.pubKey },
  });
  const aCipher = new ls.SessionCipher(a.storage, bobAddr);
  const bCipher = new ls.SessionCipher(b.storage, aliceAddr);
  const send = async (from: NodeCipher, to: NodeCipher, pt: Uint8Array) => {
    const m = await from.encrypt(Buffer.from(pt));
    check(
      m.type === 3 ? await to.decryptPreKeyWhisperMessage(m.body) : await to.decryptWhisperMessage(m.body),
    );
  };
  return { aToB: (pt) => send(aCipher, bCipher, pt), bToA: (pt) => send(bCipher, aCipher, pt) };
}

// -------------------------------------------------------------------------------------------------
// @signalapp/libsignal-client

async function clientDuo(): Promise<Duo> {
  // Imported here, not at the top: its native addon cannot be located under Jest (see cases()).
  const signal = await import('@signalapp/libsignal-client');
  class ClientSessions extends signal.SessionStore {
    private readonly map = new Map<string, client.SessionRecord>();
    saveSession(name: client.ProtocolAddress, record: client.SessionRecord) {
      this.map.set(name.toString(), record);
      return Promise.resolve();
    }
    getSession(name: client.ProtocolAddress) {
      return Promise.resolve(this.map.get(name.toString()) ?? null);
    }
    getExistingSessions(addresses: client.ProtocolAddress[]) {
      return Promise.resolve(addresses.flatMap((a) => this.map.get(a.toString()) ?? []));
    }
  }

  class ClientIdentities extends signal.IdentityKeyStore {
    private readonly known = new Map<string, client.PublicKey>();
    constructor(
      private readonly key: client.PrivateKey,
      private readonly registrationId: number,
    ) {
      super();
    }
    getIdentityKey() {
      return Promise.resolve(this.key);
    }
    getLocalRegistrationId() {
      return Promise.resolve(this.registrationId);
    }
    saveIdentity(name: client.ProtocolAddress, key: client.PublicKey) {
      this.known.set(name.toString(), key);
      return Promise.resolve(signal.IdentityChange.NewOrUnchanged);
    }
    isTrustedIdentity() {
      return Promise.resolve(true);
    }
    getIdentity(name: client.ProtocolAddress) {
      return Promise.resolve(this.known.get(name.toString()) ?? null);
    }
  }

  class ClientPreKeys extends signal.PreKeyStore {
    readonly map = new Map<number, client.PreKeyRecord>();
    savePreKey(id: number, record: client.PreKeyRecord) {
      this.map.set(id, record);
      return Promise.resolve();
    }
    getPreKey(id: number) {
      const r = this.map.get(id);
      return r ? Promise.resolve(r) : Promise.reject(new Error(`no prekey ${id}`));
    }
    removePreKey(id: number) {
      this.map.delete(id);
      return Promise.resolve();
    }
  }

  class ClientSignedPreKeys extends signal.SignedPreKeyStore {
    readonly map = new Map<number, client.SignedPreKeyRecord>();
    saveSignedPreKey(id: number, record: client.SignedPreKeyRecord) {
      this.map.set(id, record);
      return Promise.resolve();
    }
    getSignedPreKey(id: number) {
      const r = this.map.get(id);
      return r ? Promise.resolve(r) : Promise.reject(new Error(`no signed prekey ${id}`));
    }
  }

  class ClientKyberPreKeys extends signal.KyberPreKeyStore {
    readonly map = new Map<number, client.KyberPreKeyRecord>();
    saveKyberPreKey(id: number, record: client.KyberPreKeyRecord) {
      this.map.set(id, record);
      return Promise.resolve();
    }
    getKyberPreKey(id: number) {
      const r = this.map.get(id);
      return r ? Promise.resolve(r) : Promise.reject(new Error(`no kyber prekey ${id}`));
    }
    markKyberPreKeyUsed() {
      return Promise.resolve();
    }
  }

  const party = (name: string) => {
    const identity = signal.IdentityKeyPair.generate();
    const registrationId = 1 + Math.floor(Math.random() * 16000);
    const stores = {
      sessions: new ClientSessions(),
      identities: new ClientIdentities(identity.privateKey, registrationId),
      preKeys: new ClientPreKeys(),
      signed: new ClientSignedPreKeys(),
      kyber: new ClientKyberPreKeys(),
    };
    const pre = signal.PrivateKey.generate();
    stores.preKeys.map.set(1, signal.PreKeyRecord.new(1, pre.getPublicKey(), pre));
    const spk = signal.PrivateKey.generate();
    const spkSig = identity.privateKey.sign(spk.getPublicKey().serialize());
    stores.signed.map.set(1, signal.SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, spkSig));
    const kem = signal.KEMKeyPair.generate();
    const kemSig = identity.privateKey.sign(kem.getPublicKey().serialize());
    stores.kyber.map.set(1, signal.KyberPreKeyRecord.new(1, Date.now(), kem, kemSig));
    const bundle = signal.PreKeyBundle.new(
      registrationId,
      1,
      1,
      pre.getPublicKey(),
      1,
      spk.getPublicKey(),
      spkSig,
      identity.publicKey,
      1,
      kem.getPublicKey(),
      kemSig,
    );
    return { address: signal.ProtocolAddress.new(name, 1), stores, bundle };
  };
  const a = party('alice');
  const b = party('bob');
  await signal.processPreKeyBundle(b.bundle, b.address, a.address, a.stores.sessions, a.stores.identities);
  const send = async (from: typeof a, to: typeof a, pt: Uint8Array) => {
    const m = await signal.signalEncrypt(
      Uint8Array.from(pt),
      to.address,
      from.address,
      from.stores.sessions,
      from.stores.identities,
    );
    const s = to.stores;
    check(
      m.type() === signal.CiphertextMessageType.PreKey
        ? await signal.signalDecryptPreKey(
            signal.PreKeySignalMessage.deserialize(m.serialize()),
            from.address,
            to.address,
            s.sessions,
            s.identities,
            s.preKeys,
            s.signed,
            s.kyber,
          )
        : await signal.signalDecrypt(
            signal.SignalMessage.deserialize(m.serialize()),
            from.address,
            to.address,
            s.sessions,
            s.identities,
          ),
    );
  };
  return { aToB: (pt) => send(a, b, pt), bToA: (pt) => send(b, a, pt) };
}

// -------------------------------------------------------------------------------------------------

const perRound = (n: number) => (QUICK ? Math.max(2, Math.ceil(n / 100)) : n);

function signalCase(
  mode: Mode,
  name: string,
  baseline: boolean,
  messages: number,
  makeDuo: () => Promise<Duo>,
): BenchCase {
  let duo: Duo | undefined;
  const n = perRound(messages);
  return {
    name: `${mode}: ${name}`,
    baseline,
    async setup() {
      duo = await makeDuo();
      // Both directions once, so every measured message is a plain WhisperMessage.
      await duo.aToB(PAYLOAD);
      await duo.bToA(PAYLOAD);
    },
    async round() {
      const d = duo as Duo;
      if (mode === 'one-way') {
        for (let i = 0; i < n; i++) await d.aToB(PAYLOAD);
      } else {
        for (let i = 0; i < n; i++) await (i % 2 === 0 ? d.aToB(PAYLOAD) : d.bToA(PAYLOAD));
      }
      return n;
    },
    teardown() {
      duo?.close?.();
      duo = undefined;
    },
  };
}

function stockCase(mode: Mode, messages: number): BenchCase {
  let lib: Library | undefined;
  const inner = signalCase(mode, 'baseline: stock libsignal-protocol-typescript', true, messages, () =>
    stockDuo(lib as Library),
  );
  return {
    ...inner,
    async setup() {
      lib = await loadSecondCopy();
      if (lib.SessionCipher === projectLibrary.SessionCipher) {
        throw new Error(
          'the stock baseline would share the project copy of the library (and its native curve)',
        );
      }
      await inner.setup?.();
    },
  };
}

const cases = (
  mode: Mode,
  sizes: { project: number; stock: number; node: number; client: number },
): BenchCase[] => [
  signalCase(mode, 'interop-bridge (in memory)', false, sizes.project, () => projectDuo(memoryBackends)),
  signalCase(mode, 'interop-bridge (SQLite)', false, sizes.project, () => projectDuo(sqliteBackends)),
  stockCase(mode, sizes.stock),
  signalCase(mode, 'baseline: libsignal-node', true, sizes.node, nodeDuo),
  // Under Jest (the suite's "benchmarks run" check) libsignal-client's native addon cannot be found
  // from Jest's module loader, so that one baseline runs only under `npm run bench`.
  ...(process.env.JEST_WORKER_ID === undefined
    ? [signalCase(mode, 'baseline: libsignal-client (Rust)', true, sizes.client, clientDuo)]
    : []),
];

const describe = (mode: string) => `Signal messages (100 bytes), encrypt + decrypt, ${mode}`;

const benches: Benchmark[] = [
  {
    name: 'signal-one-way',
    description: describe('one-way: A sends to B on one sending chain (symmetric ratchet only)'),
    unit: 'msgs',
    cases: cases('one-way', { project: 2000, stock: 200, node: 2000, client: 2000 }),
    goals: [
      { case: /interop-bridge \(in memory\)/, atLeast: 6000, text: '>= 6,000 msgs/s in memory' },
      { case: /interop-bridge \(SQLite\)/, atLeast: 3600, text: '>= 60% of the in-memory goal (3,600)' },
    ],
  },
  {
    name: 'signal-ping-pong',
    description: describe('ping-pong: A and B alternate, a DH ratchet step on every message'),
    unit: 'msgs',
    cases: cases('ping-pong', { project: 1000, stock: 40, node: 200, client: 1000 }),
    goals: [
      { case: /interop-bridge \(in memory\)/, atLeast: 3000, text: '>= 3,000 msgs/s in memory' },
      { case: /interop-bridge \(SQLite\)/, atLeast: 1800, text: '>= 60% of the in-memory goal (1,800)' },
    ],
  },
];

export default benches;
