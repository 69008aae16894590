/**
 * Compatibility with the library's stock curve: XEdDSA signatures both ways, X25519 agreement, and
 * whole sessions between a puppet on the native plug and a peer on a second, untouched copy of the
 * library (asm.js curve, WebCrypto).
 */
import { createRequire } from 'node:module';
import { jest } from '@jest/globals';
import { x25519 } from '@noble/curves/ed25519.js';
import * as projectCopy from '@privacyresearch/libsignal-protocol-typescript';
import type { KeyPairType, StorageType } from '@privacyresearch/libsignal-protocol-typescript';

import {
  calculateAgreement,
  keyPairFromPrivateKey,
  xeddsaSign,
  xeddsaVerify,
} from '../../src/signal/curve.js';
import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager } from '../../src/signal/session-manager.js';
import { MemorySignalBackend } from '../../src/signal/store.js';

const require = createRequire(import.meta.url);
type Library = typeof import('@privacyresearch/libsignal-protocol-typescript');
interface StockCurve {
  keyPair(priv: ArrayBuffer): Promise<{ pubKey: ArrayBuffer; privKey: ArrayBuffer }>;
  sharedSecret(pub: ArrayBuffer, priv: ArrayBuffer): Promise<ArrayBuffer>;
  sign(priv: ArrayBuffer, msg: ArrayBuffer): Promise<ArrayBuffer>;
  /** true means INVALID, as in the library. */
  verify(pub: ArrayBuffer, msg: ArrayBuffer, sig: ArrayBuffer): Promise<boolean>;
}
// A separate copy of the library (an isolated module registry) whose curve hook was never touched.
let isolated: Library | undefined;
jest.isolateModules(() => {
  isolated = require('@privacyresearch/libsignal-protocol-typescript') as Library;
});
const stock = isolated as Library;
const { AsyncCurve25519Wrapper } = require('@privacyresearch/curve25519-typescript') as {
  AsyncCurve25519Wrapper: new () => StockCurve;
};
const stockCurve = new AsyncCurve25519Wrapper();

const ab = (b: Uint8Array): ArrayBuffer => b.slice().buffer;
const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));

describe('native curve against the stock curve', () => {
  it('derives the same key pair from the same private bytes', async () => {
    for (let i = 0; i < 5; i++) {
      const priv = rand(32);
      const ours = keyPairFromPrivateKey(priv);
      const theirs = await stockCurve.keyPair(ab(priv));
      expect(Buffer.from(ours.publicKey)).toEqual(Buffer.from(theirs.pubKey));
      expect(Buffer.from(ours.privateKey)).toEqual(Buffer.from(theirs.privKey));
      expect(Buffer.from(ours.publicKey)).toEqual(Buffer.from(x25519.getPublicKey(priv)));
    }
  });

  it('agrees on X25519 shared secrets', async () => {
    const a = keyPairFromPrivateKey(rand(32));
    const b = keyPairFromPrivateKey(rand(32));
    const ours = calculateAgreement(b.publicKey, a.privateKey);
    expect(ours).toEqual(Buffer.from(await stockCurve.sharedSecret(ab(a.publicKey), ab(b.privateKey))));
  });

  it('makes XEdDSA signatures the stock curve accepts, and accepts the stock curve signatures', async () => {
    for (let i = 0; i < 8; i++) {
      const pair = keyPairFromPrivateKey(rand(32));
      const msg = rand(33 + i);
      const ourSig = xeddsaSign(pair.privateKey, msg);
      expect(await stockCurve.verify(ab(pair.publicKey), ab(msg), ab(ourSig))).toBe(false);
      const theirSig = new Uint8Array(await stockCurve.sign(ab(pair.privateKey), ab(msg)));
      expect(xeddsaVerify(pair.publicKey, msg, theirSig)).toBe(true);
      const forged = Uint8Array.from(theirSig);
      forged[5] = (forged[5] as number) ^ 1;
      expect(xeddsaVerify(pair.publicKey, msg, forged)).toBe(false);
      expect(xeddsaVerify(pair.publicKey, rand(33), ourSig)).toBe(false);
    }
  });
});

/** A stock peer: the library's own cipher and builder with string session records. */
class StockStore implements StorageType {
  readonly sessions = new Map<string, string>();
  readonly preKeys = new Map<number, KeyPairType>();
  readonly signed = new Map<number, KeyPairType>();
  constructor(
    readonly identity: KeyPairType,
    readonly registrationId: number,
  ) {}
  getIdentityKeyPair = () => Promise.resolve(this.identity);
  getLocalRegistrationId = () => Promise.resolve(this.registrationId);
  isTrustedIdentity = () => Promise.resolve(true);
  saveIdentity = () => Promise.resolve(false);
  loadPreKey = (id: string | number) => Promise.resolve(this.preKeys.get(Number(id)));
  storePreKey = (id: string | number, kp: KeyPairType) =>
    Promise.resolve(void this.preKeys.set(Number(id), kp));
  removePreKey = (id: string | number) => Promise.resolve(void this.preKeys.delete(Number(id)));
  storeSession = (a: string, r: string) => Promise.resolve(void this.sessions.set(a, r));
  loadSession = (a: string) => Promise.resolve(this.sessions.get(a));
  loadSignedPreKey = (id: string | number) => Promise.resolve(this.signed.get(Number(id)));
  storeSignedPreKey = (id: string | number, kp: KeyPairType) =>
    Promise.resolve(void this.signed.set(Number(id), kp));
  removeSignedPreKey = (id: string | number) => Promise.resolve(void this.signed.delete(Number(id)));
}

async function stockPeer() {
  const identity = await stock.KeyHelper.generateIdentityKeyPair();
  const store = new StockStore(identity, stock.KeyHelper.generateRegistrationId());
  const signed = await stock.KeyHelper.generateSignedPreKey(identity, 7);
  const pre = await stock.KeyHelper.generatePreKey(9);
  await store.storeSignedPreKey(7, signed.keyPair);
  await store.storePreKey(9, pre.keyPair);
  const cipher = new stock.SessionCipher(store, new stock.SignalProtocolAddress('puppet', 1));
  return {
    store,
    bundle: {
      registrationId: store.registrationId,
      identityKey: new Uint8Array(identity.pubKey),
      signedPreKey: {
        id: 7,
        publicKey: new Uint8Array(signed.keyPair.pubKey),
        signature: new Uint8Array(signed.signature),
      },
      preKey: { id: 9, publicKey: new Uint8Array(pre.keyPair.pubKey) },
    },
    async encrypt(text: string) {
      const m = await cipher.encrypt(ab(new TextEncoder().encode(text)));
      return {
        type: m.type === 3 ? ('pkmsg' as const) : ('msg' as const),
        body: new Uint8Array(Buffer.from(m.body as string, 'latin1')),
      };
    },
    async decrypt(m: { type: 'pkmsg' | 'msg'; body: Uint8Array }) {
      const bin = Buffer.from(m.body).toString('latin1');
      const pt =
        m.type === 'pkmsg'
          ? await cipher.decryptPreKeyWhisperMessage(bin, 'binary')
          : await cipher.decryptWhisperMessage(bin, 'binary');
      return new TextDecoder().decode(pt);
    },
  };
}

function puppet() {
  const id = createSignalIdentity();
  const manager = new SignalSessionManager(
    new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    }),
    { localUser: 'puppet' },
  );
  manager.setUp({ preKeys: 3 });
  return manager;
}

const str = (b: Uint8Array) => new TextDecoder().decode(b);

describe('sessions with a peer on the stock library', () => {
  it('the peer really is a separate copy of the library (its curve hook untouched)', () => {
    expect(stock.SessionCipher).not.toBe(projectCopy.SessionCipher);
  });

  it('the puppet starts the session from the stock peer bundle; ping-pong both ways', async () => {
    const me = puppet();
    const peer = await stockPeer();
    await me.processBundle('peer.1', peer.bundle);
    for (let i = 0; i < 6; i++) {
      expect(await peer.decrypt(await me.encrypt('peer.1', new TextEncoder().encode(`to peer ${i}`)))).toBe(
        `to peer ${i}`,
      );
      const back = await peer.encrypt(`to puppet ${i}`);
      expect(str(await me.decrypt('peer.1', back.type, back.body))).toBe(`to puppet ${i}`);
    }
  });

  it('the stock peer starts the session from the puppet bundle', async () => {
    const me = puppet();
    const peer = await stockPeer();
    const upload = me.prekeyUpload(1);
    const builder = new stock.SessionBuilder(peer.store, new stock.SignalProtocolAddress('puppet', 1));
    const withType = (k: Uint8Array) => ab(Uint8Array.from([5, ...k]));
    await builder.processPreKey({
      registrationId: upload.registrationId,
      identityKey: withType(upload.identityKey),
      signedPreKey: {
        keyId: upload.signedPreKey.id,
        publicKey: withType(upload.signedPreKey.publicKey),
        signature: ab(upload.signedPreKey.signature),
      },
      preKey: { keyId: upload.preKeys[0]!.id, publicKey: withType(upload.preKeys[0]!.publicKey) },
    });
    for (let i = 0; i < 3; i++) {
      const m = await peer.encrypt(`hello ${i}`);
      expect(m.type).toBe('pkmsg');
      expect(str(await me.decrypt('peer.1', m.type, m.body))).toBe(`hello ${i}`);
    }
    const reply = await me.encrypt('peer.1', new TextEncoder().encode('reply'));
    expect(reply.type).toBe('msg');
    expect(await peer.decrypt(reply)).toBe('reply');
    const next = await peer.encrypt('after');
    expect(next.type).toBe('msg');
    expect(str(await me.decrypt('peer.1', next.type, next.body))).toBe('after');
  });
});
