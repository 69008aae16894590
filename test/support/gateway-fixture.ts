/**
 * A minimal gateway endpoint over real TCP for protocol tests: certificate chain, server static
 * key, provider JWKS, and a handler run on each authenticated connection. The real emulator is
 * built on the same functions.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  createIntermediateKey,
  createRootKey,
  encodeCertChain,
  issueIntermediate,
  issueLeaf,
  type Ed25519KeyPair,
} from '../../src/protocol/cert-chain.js';
import {
  authenticateClient,
  awaitAuthResult,
  encodeClientPayload,
  type AccountCheck,
  type AuthenticatedClient,
} from '../../src/protocol/auth.js';
import {
  clientHandshake,
  serverHandshake,
  type ClientHandshakeOptions,
} from '../../src/protocol/handshake/index.js';
import {
  generateProviderKey,
  jwksKeyResolver,
  mintClientToken,
  publicJwks,
  type ProviderPrivateJwk,
} from '../../src/protocol/jwt.js';
import { generateKeyPair, type KeyPair } from '../../src/protocol/noise/index.js';
import { ReplayCache } from '../../src/protocol/replay-cache.js';
import type { NoiseSocket } from '../../src/protocol/transport/index.js';

export const PROVIDER = 'provider.example';
export const GATEWAY = 'gateway.example';
const now = () => Math.floor(Date.now() / 1000);

export interface ChainOptions {
  root?: Ed25519KeyPair;
  leafKey?: Uint8Array;
  leafNotBefore?: number;
  leafNotAfter?: number;
  issuerSerial?: number;
}

export function makeChain(serverStatic: KeyPair, o: ChainOptions = {}) {
  const root = o.root ?? createRootKey();
  const inter = createIntermediateKey();
  const intermediate = issueIntermediate({
    rootPrivateKey: root.privateKey,
    serial: 1,
    key: inter.publicKey,
    notBefore: now() - 3600,
    notAfter: now() + 86400,
  });
  const leaf = issueLeaf({
    intermediatePrivateKey: inter.privateKey,
    serial: 2,
    issuerSerial: o.issuerSerial ?? 1,
    key: o.leafKey ?? serverStatic.publicKey,
    notBefore: o.leafNotBefore ?? now() - 3600,
    notAfter: o.leafNotAfter ?? now() + 86400,
  });
  return { root, bytes: encodeCertChain({ leaf, intermediate }) };
}

export interface Fixture {
  port: number;
  root: Ed25519KeyPair;
  serverStatic: KeyPair;
  providerKey: ProviderPrivateJwk;
  /** Errors the server side saw, in order. */
  serverErrors: unknown[];
  accepted: (AuthenticatedClient & { pattern: string })[];
  /** Closes every open client connection (the clients see the gateway drop them). */
  dropAll(): void;
  setChain(bytes: Uint8Array): void;
  rotateStatic(): void;
  close(): Promise<void>;
}

export async function startGateway(
  options: {
    check?: AccountCheck;
    onClient?: (socket: NoiseSocket, client: AuthenticatedClient) => void | Promise<void>;
    timeoutMs?: number;
  } = {},
): Promise<Fixture> {
  let serverStatic = generateKeyPair();
  let chain = makeChain(serverStatic);
  const root = chain.root;
  const providerKey = await generateProviderKey('EdDSA');
  const replayCache = new ReplayCache({ maxEntries: 1000 });
  const serverErrors: unknown[] = [];
  const accepted: (AuthenticatedClient & { pattern: string })[] = [];
  const sockets = new Set<net.Socket>();

  const server = net.createServer(async (conn) => {
    sockets.add(conn);
    conn.on('close', () => sockets.delete(conn));
    try {
      const hs = await serverHandshake(conn, {
        staticKey: serverStatic,
        certChain: chain.bytes,
        ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      });
      const client = await authenticateClient(
        hs.socket,
        hs.payload,
        hs.clientStaticKey,
        {
          keyResolver: jwksKeyResolver(publicJwks([providerKey])),
          issuer: PROVIDER,
          audience: GATEWAY,
          replayCache,
        },
        options.check,
      );
      accepted.push({ ...client, pattern: hs.pattern });
      if (options.onClient) await options.onClient(hs.socket, client);
      else for await (const frame of hs.socket) hs.socket.send(frame); // echo
    } catch (err) {
      serverErrors.push(err);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    root,
    get serverStatic() {
      return serverStatic;
    },
    providerKey,
    serverErrors,
    accepted,
    dropAll() {
      for (const s of sockets) s.destroy();
    },
    setChain(bytes) {
      chain = { root, bytes };
    },
    rotateStatic() {
      serverStatic = generateKeyPair();
      chain = { root, bytes: makeChain(serverStatic, { root }).bytes };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ClientOptions {
  staticKey?: KeyPair;
  serverStaticKey?: Uint8Array;
  rootPublicKey?: Uint8Array;
  account?: string;
  /** Mint the token with these overrides. */
  token?: Partial<Parameters<typeof mintClientToken>[0]>;
  /** Use exactly this token string. */
  fixedToken?: string;
}

export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Connects, handshakes and authenticates as a provider client. */
export async function connectClient(fx: Fixture, o: ClientOptions = {}) {
  const staticKey = o.staticKey ?? generateKeyPair();
  const account = o.account ?? 'alice';
  const stream = await connect(fx.port);
  const handshakeOptions: ClientHandshakeOptions = {
    staticKey,
    rootPublicKey: o.rootPublicKey ?? fx.root.publicKey,
    serverStaticKey: o.serverStaticKey,
    payload: async () =>
      encodeClientPayload({
        accountId: account,
        providerId: PROVIDER,
        device: 1,
        token:
          o.fixedToken ??
          (await mintClientToken({
            privateKey: fx.providerKey,
            kid: fx.providerKey.kid,
            alg: 'EdDSA',
            issuer: PROVIDER,
            subject: account,
            audience: GATEWAY,
            noiseStaticKey: staticKey.publicKey,
            ...o.token,
          })),
      }),
  };
  const hs = await clientHandshake(stream, handshakeOptions);
  const success = await awaitAuthResult(hs.socket);
  return { ...hs, success, staticKey };
}
