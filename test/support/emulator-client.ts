/**
 * Tests of the gateway emulator over real TCP: an emulator with a throw-away root, provider key and
 * database, and a tiny client built from the protocol's own client side (clientHandshake,
 * encodeClientPayload, mintClientToken, awaitAuthResult) that collects the stanzas it receives.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { awaitAuthResult, ConnectReason, encodeClientPayload } from '../../src/protocol/auth.js';
import { enlistmentStatement } from '../../src/protocol/enlistment.js';
import { clientHandshake } from '../../src/protocol/handshake/index.js';
import {
  generateProviderKey,
  jwksKeyResolverByIssuer,
  mintClientToken,
  publicJwks,
  type ProviderPrivateJwk,
} from '../../src/protocol/jwt.js';
import { generateKeyPair, type KeyPair } from '../../src/protocol/noise/index.js';
import {
  decodeStanza,
  formatJid,
  nativeJid,
  providerServer,
  toBytes,
  type IqBody,
  type Stanza,
  type SuccessStanza,
} from '../../src/protocol/stanza/index.js';
import type { NoiseSocket } from '../../src/protocol/transport/index.js';
import { Emulator, type EmulatorOptions } from '../../emulator/gateway.js';
import { connect, makeChain } from './gateway-fixture.js';
import { tempDir } from './tmp.js';

export const PROVIDER_ID = 'testprov';
export const GATEWAY_ID = 'gw.emulator.test';

// --- XEdDSA (Signal's signatures by Curve25519 keys), test-side ------------------------------------

const P = ed25519.Point;
const q = P.Fn.ORDER;
const p = P.Fp.ORDER;

function numberLE(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] as number);
  return n;
}

function bytesLE(n: bigint, length = 32): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function sha512(...parts: Uint8Array[]): bigint {
  const h = createHash('sha512');
  for (const part of parts) h.update(part);
  return numberLE(h.digest()) % q;
}

function mod(a: bigint, m: bigint): bigint {
  return ((a % m) + m) % m;
}

function inverse(a: bigint): bigint {
  let result = 1n;
  let base = mod(a, p);
  let e = p - 2n;
  while (e > 0n) {
    if (e & 1n) result = (result * base) % p;
    base = (base * base) % p;
    e >>= 1n;
  }
  return result;
}

/** XEdDSA sign (Signal spec section 3.3) with a Curve25519 private key. */
export function xeddsaSign(privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  const k = Uint8Array.from(privateKey);
  k[0] = (k[0] as number) & 248;
  k[31] = ((k[31] as number) & 127) | 64;
  let a = numberLE(k) % q;
  let A = P.BASE.multiply(a);
  if (((A.toBytes()[31] as number) & 0x80) !== 0) {
    a = mod(-a, q);
    A = A.negate();
  }
  const prefix = new Uint8Array(32).fill(0xff);
  prefix[0] = 0xfe;
  const r = sha512(prefix, bytesLE(a), message, randomBytes(64));
  const R = P.BASE.multiply(r === 0n ? 1n : r);
  const h = sha512(R.toBytes(), A.toBytes(), message);
  const s = mod((r === 0n ? 1n : r) + h * a, q);
  const sig = new Uint8Array(64);
  sig.set(R.toBytes(), 0);
  sig.set(bytesLE(s), 32);
  return sig;
}

/** XEdDSA verify with a Curve25519 public key (the Montgomery u coordinate). */
export function xeddsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const u = numberLE(publicKey) & ((1n << 255n) - 1n);
  if (u >= p || u === p - 1n) return false;
  const y = mod((u - 1n) * inverse(u + 1n), p);
  const edKey = bytesLE(y);
  edKey[31] = ((edKey[31] as number) & 0x7f) | ((signature[63] as number) & 0x80);
  const sig = Uint8Array.from(signature);
  sig[63] = (sig[63] as number) & 0x7f;
  try {
    return ed25519.verify(sig, message, edKey, { zip215: false });
  } catch {
    return false;
  }
}

export interface IdentityKeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export function identityKeyPair(): IdentityKeyPair {
  const privateKey = x25519.utils.randomSecretKey();
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

/** The `<enlist>` body proving `identity` for `accountJid` at `t`. */
export function enlistBody(
  accountJid: string,
  identity: IdentityKeyPair,
  t = Math.floor(Date.now() / 1000),
): IqBody {
  const signature = xeddsaSign(identity.privateKey, enlistmentStatement(accountJid, t, identity.publicKey));
  return { op: 'enlist', t, identityKey: identity.publicKey, signature };
}

/** A device's key upload with `preKeyCount` one-time prekeys (ids from `firstId`). */
export function uploadBody(identity: IdentityKeyPair, preKeyCount: number, firstId = 1): IqBody {
  const signedKey = x25519.getPublicKey(x25519.utils.randomSecretKey());
  return {
    op: 'prekey_upload',
    registrationId: 4242,
    identityKey: identity.publicKey,
    signedPreKey: {
      id: 7,
      publicKey: signedKey,
      signature: xeddsaSign(identity.privateKey, Uint8Array.from([5, ...signedKey])),
    },
    preKeys: Array.from({ length: preKeyCount }, (_, i) => ({
      id: firstId + i,
      publicKey: x25519.getPublicKey(x25519.utils.randomSecretKey()),
    })),
  };
}

// --- the emulator ---------------------------------------------------------------------------------

export interface TestEmulator {
  emulator: Emulator;
  root: { publicKey: Uint8Array; privateKey: Uint8Array };
  providerKey: ProviderPrivateJwk;
  databaseFile: string;
  options: EmulatorOptions;
  /** Stops and starts again on the same database and identity (a new port). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestEmulator(overrides: Partial<EmulatorOptions> = {}): Promise<TestEmulator> {
  const dir = tempDir('emulator-test-');
  const staticKey = generateKeyPair();
  const chain = makeChain(staticKey);
  const providerKey = await generateProviderKey('EdDSA');
  const jwks = new Map([[PROVIDER_ID, publicJwks([providerKey])]]);
  const options: EmulatorOptions = {
    gatewayId: GATEWAY_ID,
    identity: { staticKey, certChain: chain.bytes },
    providers: {
      keyResolver: jwksKeyResolverByIssuer(jwks),
      isKnownProvider: (id) => jwks.has(id),
    },
    databaseFile: path.join(dir.dir, 'emulator.sqlite'),
    verifyXEdDSA: xeddsaVerify,
    ...overrides,
  };
  const te: TestEmulator = {
    emulator: await Emulator.start(options),
    root: chain.root,
    providerKey,
    databaseFile: options.databaseFile,
    options,
    async restart() {
      await te.emulator.stop();
      te.emulator = await Emulator.start({ ...options, identity: te.emulator.identity });
    },
    async close() {
      await te.emulator.stop();
      dir.cleanup();
    },
  };
  return te;
}

// --- the client -----------------------------------------------------------------------------------

export interface ConnectOptions {
  /** A third-party account id (of PROVIDER_ID) ... */
  account?: string;
  /** ... or a native user's E.164 number. */
  phone?: string;
  device?: number;
  connectReason?: ConnectReason;
  staticKey?: KeyPair;
  /** Verify the chain against this root instead of the emulator's. */
  rootPublicKey?: Uint8Array;
}

type Waiter = { match: (s: Stanza) => boolean; resolve: (s: Stanza) => void; reject: (e: Error) => void };

export class EmulatorClient {
  readonly received: Stanza[] = [];
  readonly #waiters: Waiter[] = [];
  #ended: Error | undefined;
  #iqCounter = 0;
  /** Resolves when the connection ends. */
  readonly ended: Promise<void>;

  private constructor(
    readonly socket: NoiseSocket,
    readonly success: SuccessStanza,
    /** Bare JID. */
    readonly jid: string,
    readonly device: number,
  ) {
    this.ended = this.#read();
  }

  get deviceJid(): string {
    const [user, server] = this.jid.split('@') as [string, string];
    return formatJid({ user, device: this.device, server });
  }

  static async connect(te: TestEmulator, o: ConnectOptions): Promise<EmulatorClient> {
    const staticKey = o.staticKey ?? generateKeyPair();
    const device = o.device ?? 0;
    const stream = await connect(te.emulator.port);
    const native = o.phone !== undefined;
    const account = o.account ?? 'alice';
    const payload = async () =>
      native
        ? te.emulator.nativeClientPayload({
            phone: o.phone as string,
            device,
            noiseStaticKey: staticKey.publicKey,
            ...(o.connectReason === undefined ? {} : { connectReason: o.connectReason }),
          })
        : encodeClientPayload({
            accountId: account,
            providerId: PROVIDER_ID,
            device,
            connectReason: o.connectReason ?? ConnectReason.USER_ACTIVATED,
            token: await mintClientToken({
              privateKey: te.providerKey,
              kid: te.providerKey.kid,
              alg: 'EdDSA',
              issuer: PROVIDER_ID,
              subject: account,
              audience: GATEWAY_ID,
              noiseStaticKey: staticKey.publicKey,
            }),
          });
    const hs = await clientHandshake(stream, {
      staticKey,
      rootPublicKey: o.rootPublicKey ?? te.root.publicKey,
      payload,
    });
    const success = await awaitAuthResult(hs.socket);
    const jid = native ? nativeJid(o.phone as string) : `${account}@${providerServer(PROVIDER_ID)}`;
    return new EmulatorClient(hs.socket, success, jid, device);
  }

  async #read(): Promise<void> {
    try {
      for await (const frame of this.socket) {
        const stanza = decodeStanza(frame);
        const i = this.#waiters.findIndex((w) => w.match(stanza));
        if (i >= 0) this.#waiters.splice(i, 1)[0]?.resolve(stanza);
        else this.received.push(stanza);
      }
      this.#ended = new Error('connection closed');
    } catch (err) {
      this.#ended = err as Error;
    }
    for (const w of this.#waiters.splice(0)) w.reject(this.#ended);
  }

  get isOpen(): boolean {
    return this.socket.isOpen;
  }

  send(stanza: Stanza): void {
    this.socket.send(toBytes(stanza));
  }

  /** The next stanza (already received or yet to come) that matches. */
  next<S extends Stanza = Stanza>(match: (s: Stanza) => boolean = () => true, timeoutMs = 5000): Promise<S> {
    const i = this.received.findIndex(match);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0] as S);
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise<S>((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s as S);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `no matching stanza within ${timeoutMs} ms; have: ${JSON.stringify(this.received.map((s) => s.kind))}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  nextOf<K extends Stanza['kind']>(
    kind: K,
    match: (s: Extract<Stanza, { kind: K }>) => boolean = () => true,
  ) {
    return this.next<Extract<Stanza, { kind: K }>>(
      (s) => s.kind === kind && match(s as Extract<Stanza, { kind: K }>),
    );
  }

  /** Sends an iq request and returns the answer's body. */
  async iq(body: IqBody): Promise<IqBody> {
    const id = `iq${++this.#iqCounter}`;
    const answer = this.nextOf('iq', (s) => s.id === id);
    this.send({ kind: 'iq', id, to: 'wa.interop', body });
    return (await answer).body;
  }

  /** A round trip: everything the gateway sent before the answer has arrived once this resolves. */
  async sync(): Promise<void> {
    await this.iq({ op: 'ping' });
  }

  close(): void {
    this.socket.close();
  }
}

/** Enlists `account` (connecting with connect_reason ENLISTMENT) and returns the open, enlisted client. */
export async function enlistedClient(
  te: TestEmulator,
  account: string,
  device = 0,
  identity = identityKeyPair(),
): Promise<EmulatorClient> {
  const client = await EmulatorClient.connect(te, {
    account,
    device,
    connectReason: ConnectReason.ENLISTMENT,
  });
  const answer = await client.iq(enlistBody(client.jid, identity));
  if (answer.op !== 'result') throw new Error(`enlistment failed: ${JSON.stringify(answer)}`);
  return client;
}

/** A message stanza with one opaque ciphertext per addressed device. */
export function message(id: string, to: string, ciphertexts: Record<number, Uint8Array>): Stanza {
  return {
    kind: 'message',
    id,
    to,
    type: 'text',
    t: Math.floor(Date.now() / 1000),
    encs: Object.entries(ciphertexts).map(([device, ciphertext]) => ({
      type: 'msg' as const,
      device: Number(device),
      ciphertext,
    })),
  };
}
