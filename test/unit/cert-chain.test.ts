import { create, toBinary } from '@bufbuild/protobuf';
import { documentedHex, protocolDoc } from '../support/doc.js';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { InteropError } from '../../src/errors.js';
import {
  CertError,
  createIntermediateKey,
  createRootKey,
  decodeCertChain,
  encodeCertChain,
  issueIntermediate,
  issueLeaf,
  verifyCertChain,
  type Ed25519KeyPair,
} from '../../src/protocol/cert-chain.js';
import {
  CertChainSchema,
  CertChain_NoiseCertificateSchema,
  type CertChain_NoiseCertificate,
} from '../../src/protocol/gen/interop/v1/handshake_pb.js';

const NOW = Date.UTC(2026, 5, 1) / 1000;
const JAN_2027 = Date.UTC(2027, 0, 1) / 1000;
const DAY = 86_400;

function x25519PublicKey(): Uint8Array {
  const jwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
}

interface Gateway {
  root: Ed25519KeyPair;
  intermediateKey: Ed25519KeyPair;
  serverStatic: Uint8Array;
  intermediate: CertChain_NoiseCertificate;
  leaf: CertChain_NoiseCertificate;
}

/** A gateway whose chain is valid at NOW; `overrides` change one thing to make it invalid. */
function gateway(
  overrides: {
    intermediate?: Partial<Parameters<typeof issueIntermediate>[0]>;
    leaf?: Partial<Parameters<typeof issueLeaf>[0]>;
  } = {},
): Gateway {
  const root = createRootKey();
  const intermediateKey = createIntermediateKey();
  const serverStatic = x25519PublicKey();
  const intermediate = issueIntermediate({
    rootPrivateKey: root.privateKey,
    serial: 7,
    key: intermediateKey.publicKey,
    notBefore: NOW - 30 * DAY,
    notAfter: NOW + 365 * DAY,
    ...overrides.intermediate,
  });
  const leaf = issueLeaf({
    intermediatePrivateKey: intermediateKey.privateKey,
    serial: 42,
    issuerSerial: 7,
    key: serverStatic,
    notBefore: NOW - DAY,
    notAfter: NOW + 30 * DAY,
    ...overrides.leaf,
  });
  return { root, intermediateKey, serverStatic, intermediate, leaf };
}

function verify(g: Gateway, bytes = encodeCertChain(g)): ReturnType<typeof verifyCertChain> {
  return verifyCertChain(bytes, {
    rootPublicKey: g.root.publicKey,
    serverStaticKey: g.serverStatic,
    now: NOW,
  });
}

function certErrorOf(fn: () => unknown): CertError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CertError) return e;
    throw e;
  }
  throw new Error('expected a CertError, nothing was thrown');
}

describe('gateway certificate chain', () => {
  it('accepts a chain issued by the pinned root for the server static key and returns its details', () => {
    const g = gateway();
    const chain = verify(g);
    expect(chain.leaf.details.serial).toBe(42);
    expect(chain.leaf.details.issuerSerial).toBe(7);
    expect(chain.intermediate.details.serial).toBe(7);
    expect(Buffer.from(chain.leaf.details.key)).toEqual(Buffer.from(g.serverStatic));
  });

  it('round-trips through encode and decode with the signed details bytes intact', () => {
    const g = gateway();
    const decoded = decodeCertChain(encodeCertChain(g));
    expect(Buffer.from(decoded.leaf.detailsBytes)).toEqual(Buffer.from(g.leaf.details));
    expect(Buffer.from(decoded.intermediate.signature)).toEqual(Buffer.from(g.intermediate.signature));
    expect(decoded.intermediate.details.notAfter).toBe(BigInt(NOW + 365 * DAY));
  });

  it('reports garbage bytes as cert_malformed', () => {
    const err = certErrorOf(() => decodeCertChain(new Uint8Array([0xff, 0xff, 0xff])));
    expect(err.code).toBe('cert_malformed');
    expect(err).toBeInstanceOf(InteropError);
  });

  it('reports a chain without a leaf as cert_malformed', () => {
    const g = gateway();
    const bytes = toBinary(CertChainSchema, create(CertChainSchema, { intermediate: g.intermediate }));
    expect(certErrorOf(() => verify(g, bytes)).message).toMatch(/no leaf/);
  });

  it('reports a truncated signature as cert_malformed', () => {
    const g = gateway();
    const shortSig = create(CertChain_NoiseCertificateSchema, {
      details: g.leaf.details,
      signature: g.leaf.signature.subarray(0, 10),
    });
    expect(certErrorOf(() => verify(g, encodeCertChain({ ...g, leaf: shortSig }))).code).toBe(
      'cert_malformed',
    );
  });

  it('rejects an intermediate not signed by the pinned root with cert_bad_signature naming the intermediate', () => {
    const g = gateway({ intermediate: { rootPrivateKey: createRootKey().privateKey } });
    const err = certErrorOf(() => verify(g));
    expect(err.code).toBe('cert_bad_signature');
    expect(err.message).toMatch(/intermediate certificate .* not signed by the pinned root key/);
  });

  it('rejects a leaf whose issuer serial is not the intermediate serial with cert_wrong_issuer', () => {
    const err = certErrorOf(() => verify(gateway({ leaf: { issuerSerial: 8 } })));
    expect(err.code).toBe('cert_wrong_issuer');
  });

  it('rejects a leaf signed by another key with cert_bad_signature naming the leaf', () => {
    const g = gateway({ leaf: { intermediatePrivateKey: createIntermediateKey().privateKey } });
    const err = certErrorOf(() => verify(g));
    expect(err.code).toBe('cert_bad_signature');
    expect(err.message).toMatch(/leaf certificate .* not signed by the intermediate/);
  });

  it('rejects a leaf whose signed details were altered in flight with cert_bad_signature', () => {
    const g = gateway();
    const tampered = Uint8Array.from(g.leaf.details);
    tampered[tampered.length - 1]! ^= 1;
    const leaf = create(CertChain_NoiseCertificateSchema, { details: tampered, signature: g.leaf.signature });
    expect(certErrorOf(() => verify(g, encodeCertChain({ ...g, leaf }))).code).toBe('cert_bad_signature');
  });

  it('rejects an expired leaf with cert_expired, naming the certificate, the date and the fix', () => {
    const g = gateway({ leaf: { notBefore: JAN_2027 - 30 * DAY, notAfter: JAN_2027 } });
    const err = certErrorOf(() =>
      verifyCertChain(encodeCertChain(g), {
        rootPublicKey: g.root.publicKey,
        serverStaticKey: g.serverStatic,
        now: JAN_2027 + 1,
      }),
    );
    expect(err.code).toBe('cert_expired');
    expect(err.message).toBe(
      "gateway leaf certificate expired on 2027-01-01T00:00:00Z: renew the emulator's leaf certificate or update gateway.root_key",
    );
  });

  it('rejects an expired intermediate with cert_expired naming the intermediate', () => {
    const g = gateway({ intermediate: { notBefore: NOW - 60 * DAY, notAfter: NOW - DAY } });
    const err = certErrorOf(() => verify(g));
    expect(err.code).toBe('cert_expired');
    expect(err.message).toMatch(/^gateway intermediate certificate expired on/);
  });

  it('rejects a leaf that is not valid yet with cert_not_yet_valid', () => {
    const err = certErrorOf(() => verify(gateway({ leaf: { notBefore: NOW + 10, notAfter: NOW + DAY } })));
    expect(err.code).toBe('cert_not_yet_valid');
  });

  it('accepts a chain at the exact edges of its validity windows', () => {
    const g = gateway({ leaf: { notBefore: NOW, notAfter: NOW } });
    expect(() => verify(g)).not.toThrow();
  });

  it('rejects a valid chain for another static key with cert_key_mismatch', () => {
    const g = gateway();
    const err = certErrorOf(() =>
      verifyCertChain(encodeCertChain(g), {
        rootPublicKey: g.root.publicKey,
        serverStaticKey: x25519PublicKey(),
        now: NOW,
      }),
    );
    expect(err.code).toBe('cert_key_mismatch');
  });

  it('checks signatures before validity: an expired chain from the wrong root is a bad signature', () => {
    const g = gateway({
      intermediate: { rootPrivateKey: createRootKey().privateKey, notBefore: 0, notAfter: 1 },
    });
    expect(certErrorOf(() => verify(g)).code).toBe('cert_bad_signature');
  });

  it('refuses to issue certificates with out-of-range serials or windows', () => {
    expect(() => gateway({ leaf: { serial: 2 ** 32 } })).toThrow(RangeError);
    expect(() => gateway({ leaf: { notBefore: NOW, notAfter: NOW - 1 } })).toThrow(RangeError);
  });

  it('reproduces the example chain of docs/PROTOCOL.md (4.1.3) byte for byte', () => {
    const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
    const intermediate = issueIntermediate({
      rootPrivateKey: new Uint8Array(32).fill(1),
      serial: 1,
      key: hex('8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394'),
      notBefore: 1767225600,
      notAfter: 1830297600,
    });
    const leaf = issueLeaf({
      intermediatePrivateKey: new Uint8Array(32).fill(2),
      serial: 1001,
      issuerSerial: 1,
      key: hex('5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22'),
      notBefore: 1767225600,
      notAfter: 1798761600,
    });
    const bytes = encodeCertChain({ leaf, intermediate });
    expect(Buffer.from(bytes).toString('hex')).toBe(DOCUMENTED_CHAIN);
    expect(documentedHex(protocolDoc(), '0a 77')).toBe(DOCUMENTED_CHAIN);
    expect(() =>
      verifyCertChain(hex(DOCUMENTED_CHAIN), {
        rootPublicKey: hex('8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c'),
        serverStaticKey: hex('5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22'),
        now: 1780000000,
      }),
    ).not.toThrow();
  });

  it('turns any bytes into either a decoded chain or a CertError, never another exception', () => {
    const g = gateway();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        for (const run of [() => decodeCertChain(bytes), () => verify(g, bytes)]) {
          try {
            run();
          } catch (e) {
            if (!(e instanceof CertError)) throw e;
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never accepts a chain whose signed details or signatures were altered by a flipped byte', () => {
    const g = gateway();
    const bytes = encodeCertChain(g);
    const original = decodeCertChain(bytes);
    const signedParts = (c: typeof original): string =>
      [c.leaf, c.intermediate]
        .map((x) => Buffer.concat([x.detailsBytes, x.signature]).toString('hex'))
        .join();
    fc.assert(
      fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (at, mask) => {
        const mutated = Uint8Array.from(bytes);
        mutated[at]! ^= mask;
        try {
          // The envelope is not signed (protobuf-es, for one, also reads a message field sent as a
          // group), so a flip there may still decode; what it yields must be the signed original.
          expect(signedParts(verify(g, mutated))).toBe(signedParts(original));
        } catch (e) {
          if (!(e instanceof CertError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
  });
});

const DOCUMENTED_CHAIN =
  '0a770a3308e90710011a205dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef222080f2d6ca062880d9dbd906' +
  '12405205aa0b1f3402acb4e70b8531a500454446193873869bcc3d53b489982e0bf55c1e642939769044b93d892add4ab0856ec0c51e09' +
  '4654bc1a52f3a35a2c5e0612740a3008011a208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3942080f2d6' +
  'ca062880c0e0e80612403bb63bee3e0df7b736877477a16e66a5a761986790c7a41947cd8011aa9489bfc34cdfe08e7af15bfe18f3d7f4' +
  'faebc73a508783219e76316f45647cdee87004';
