import v8 from 'node:v8';
import vm from 'node:vm';

import {
  dh,
  generateKeyPair,
  HandshakeState,
  importPublicKey,
  IK_PROTOCOL,
  type KeyPair,
  keyPairFromPrivateKey,
  NoiseError,
  parseProtocolName,
  SymmetricState,
  XX_PROTOCOL,
  XXFALLBACK_PROTOCOL,
  AESGCM,
  HASHES,
} from '../../src/protocol/noise/index.js';

const PREFACE = Buffer.from([0x49, 0x47, 0x01, 0x00]);
const EMPTY = Buffer.alloc(0);

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof NoiseError ? error.code : `not a NoiseError: ${String(error)}`;
  }
  return undefined;
}

/** Runs a whole handshake, each side sending `payloads[i]` in message i; returns both states. */
function handshake(
  initiator: HandshakeState,
  responder: HandshakeState,
  payloads: Buffer[] = [],
): { received: Buffer[] } {
  const received: Buffer[] = [];
  for (let i = 0; !initiator.isComplete || !responder.isComplete; i++) {
    const [sender, receiver] = initiator.isMyTurn ? [initiator, responder] : [responder, initiator];
    received.push(receiver.readMessage(sender.writeMessage(payloads[i] ?? EMPTY)));
  }
  return { received };
}

function xxPair(protocol = XX_PROTOCOL): {
  client: HandshakeState;
  server: HandshakeState;
  c: KeyPair;
  s: KeyPair;
} {
  const c = generateKeyPair();
  const s = generateKeyPair();
  return {
    c,
    s,
    client: HandshakeState.initialize({ protocol, initiator: true, prologue: PREFACE, s: c }),
    server: HandshakeState.initialize({ protocol, initiator: false, prologue: PREFACE, s }),
  };
}

describe('Noise XX handshake', () => {
  it('completes in three messages, delivers payloads and agrees on the handshake hash and static keys', () => {
    const { client, server, c, s } = xxPair();
    const payloads = [Buffer.from(''), Buffer.from('server certificate chain'), Buffer.from('client JWT')];
    const { received } = handshake(client, server, payloads);
    expect(received).toEqual(payloads);
    expect(client.getTransport().handshakeHash).toEqual(server.getTransport().handshakeHash);
    expect(client.getTransport().remoteStaticKey).toEqual(s.publicKey);
    expect(server.getTransport().remoteStaticKey).toEqual(c.publicKey);
  });

  it.each([XX_PROTOCOL, 'Noise_XX_25519_ChaChaPoly_SHA256'])(
    '%s carries transport messages both ways',
    (protocol) => {
      const { client, server } = xxPair(protocol);
      handshake(client, server);
      const up = client.getTransport().send.encryptWithAd(EMPTY, Buffer.from('<iq id="1"/>'));
      expect(server.getTransport().receive.decryptWithAd(EMPTY, up).toString()).toBe('<iq id="1"/>');
      const down = server.getTransport().send.encryptWithAd(EMPTY, Buffer.from('<success/>'));
      expect(client.getTransport().receive.decryptWithAd(EMPTY, down).toString()).toBe('<success/>');
      expect(up.length).toBe('<iq id="1"/>'.length + 16);
    },
  );

  it('carries a 1 MiB transport message (the documented deviation from the 65,535-byte limit)', () => {
    const { client, server } = xxPair();
    handshake(client, server);
    const big = Buffer.alloc(1024 * 1024, 7);
    const ciphertext = client.getTransport().send.encryptWithAd(EMPTY, big);
    const decrypted = server.getTransport().receive.decryptWithAd(EMPTY, ciphertext);
    expect(ciphertext.length).toBe(big.length + 16);
    expect(decrypted.equals(big)).toBe(true); // Buffer.equals: Jest's deep toEqual is slow on 1 MiB
  });

  it('a different prologue (a preface changed in flight) makes the handshake fail', () => {
    const c = generateKeyPair();
    const client = HandshakeState.initialize({
      protocol: XX_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: c,
    });
    const server = HandshakeState.initialize({
      protocol: XX_PROTOCOL,
      initiator: false,
      prologue: Buffer.from([0x49, 0x47, 0x01, 0x01]),
      s: generateKeyPair(),
    });
    server.readMessage(client.writeMessage());
    const message2 = server.writeMessage();
    expect(codeOf(() => client.readMessage(message2))).toBe('noise_decrypt_failed');
  });
});

describe('Noise IK handshake', () => {
  it('completes in one round trip with the pinned server key, payloads both ways, then transport', () => {
    const c = generateKeyPair();
    const s = generateKeyPair();
    const client = HandshakeState.initialize({
      protocol: IK_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: c,
      rs: s.publicKey,
    });
    const server = HandshakeState.initialize({
      protocol: IK_PROTOCOL,
      initiator: false,
      prologue: PREFACE,
      s,
    });
    const { received } = handshake(client, server, [Buffer.from('jwt'), Buffer.from('certs')]);
    expect(received.map(String)).toEqual(['jwt', 'certs']);
    expect(server.remoteStaticKey).toEqual(c.publicKey);
    const ct = server.getTransport().send.encryptWithAd(EMPTY, Buffer.from('hello'));
    expect(client.getTransport().receive.decryptWithAd(EMPTY, ct).toString()).toBe('hello');
    const ct2 = client.getTransport().send.encryptWithAd(EMPTY, Buffer.from('hi'));
    expect(server.getTransport().receive.decryptWithAd(EMPTY, ct2).toString()).toBe('hi');
  });

  it('accepts the pinned server key already imported, as a PublicKey', () => {
    const s = generateKeyPair();
    const pinned = importPublicKey(s.publicKey);
    const client = HandshakeState.initialize({
      protocol: IK_PROTOCOL,
      initiator: true,
      s: generateKeyPair(),
      rs: pinned,
    });
    const server = HandshakeState.initialize({ protocol: IK_PROTOCOL, initiator: false, s });
    handshake(client, server);
    expect(client.getTransport().remoteStaticKey).toEqual(s.publicKey);
  });

  it('reconnects with the same client key to the same and then to a rotated server key (the remembered ss DH)', () => {
    const c = generateKeyPair();
    const first = generateKeyPair();
    const rotated = generateKeyPair();
    const connect = (server: typeof first) => {
      const client = HandshakeState.initialize({
        protocol: IK_PROTOCOL,
        initiator: true,
        s: c,
        rs: server.publicKey,
      });
      const responder = HandshakeState.initialize({ protocol: IK_PROTOCOL, initiator: false, s: server });
      const { received } = handshake(client, responder, [Buffer.from('jwt'), Buffer.from('certs')]);
      expect(received.map(String)).toEqual(['jwt', 'certs']);
      expect(client.getHandshakeHash()).toEqual(responder.getHandshakeHash());
    };
    connect(first);
    connect(first); // the client's DH(s, rs) now comes from memory: it must still agree
    connect(rotated);
    connect(first);
  });

  it('needs the remote static key up front', () => {
    expect(
      codeOf(() =>
        HandshakeState.initialize({ protocol: IK_PROTOCOL, initiator: true, s: generateKeyPair() }),
      ),
    ).toBe('noise_invalid_key');
  });
});

describe('Noise Pipes: IK falling back to XXfallback', () => {
  it('a server whose key rotated answers with XXfallback, reusing the client ephemeral, and both sides finish', () => {
    const c = generateKeyPair();
    const oldServerKey = generateKeyPair();
    const newServerKey = generateKeyPair();
    const clientIk = HandshakeState.initialize({
      protocol: IK_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: c,
      rs: oldServerKey.publicKey,
    });
    const serverIk = HandshakeState.initialize({
      protocol: IK_PROTOCOL,
      initiator: false,
      prologue: PREFACE,
      s: newServerKey,
    });
    const ikMessage = clientIk.writeMessage(Buffer.from('jwt'));
    expect(codeOf(() => serverIk.readMessage(ikMessage))).toBe('noise_decrypt_failed');
    const clientEphemeral = serverIk.remoteEphemeralKey;
    expect(clientEphemeral).toEqual(clientIk.localEphemeral?.publicKey);

    // The IK responder becomes the XXfallback initiator.
    const server = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: newServerKey,
      re: clientEphemeral!,
    });
    const client = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: false,
      prologue: PREFACE,
      s: c,
      e: clientIk.localEphemeral!,
    });
    const { received } = handshake(server, client, [Buffer.from('certs'), Buffer.from('jwt')]);
    expect(received.map(String)).toEqual(['certs', 'jwt']);
    expect(client.remoteStaticKey).toEqual(newServerKey.publicKey);
    expect(server.remoteStaticKey).toEqual(c.publicKey);
    // The client still sends with its own cipher: the server's receive, not its send.
    const up = client.getTransport().send.encryptWithAd(EMPTY, Buffer.from('<presence/>'));
    expect(server.getTransport().receive.decryptWithAd(EMPTY, up).toString()).toBe('<presence/>');
    const down = server.getTransport().send.encryptWithAd(EMPTY, Buffer.from('<ack/>'));
    expect(client.getTransport().receive.decryptWithAd(EMPTY, down).toString()).toBe('<ack/>');
  });

  it('XXfallback computes the DHs of spec 10.2: DH(Alice e, Bob s) after Bob sends s, then DH(Alice s, Bob e)', () => {
    // Alice: the IK initiator, fallback responder. Bob: the fallback initiator.
    const aliceE = keyPairFromPrivateKey(Buffer.alloc(32, 1));
    const aliceS = keyPairFromPrivateKey(Buffer.alloc(32, 2));
    const bobE = keyPairFromPrivateKey(Buffer.alloc(32, 3));
    const bobS = keyPairFromPrivateKey(Buffer.alloc(32, 4));
    const bob = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: true,
      prologue: PREFACE,
      s: bobS,
      e: bobE,
      re: aliceE.publicKey,
    });
    const alice = HandshakeState.initialize({
      protocol: XXFALLBACK_PROTOCOL,
      initiator: false,
      prologue: PREFACE,
      s: aliceS,
      e: aliceE,
    });
    const message1 = bob.writeMessage(Buffer.from('p1'));
    alice.readMessage(message1);
    const message2 = alice.writeMessage(Buffer.from('p2'));

    // The same transcript written out by hand from the spec's Bob-initiated notation.
    const ss = SymmetricState.initializeSymmetric(XXFALLBACK_PROTOCOL, AESGCM, HASHES.SHA256);
    ss.mixHash(PREFACE);
    ss.mixHash(aliceE.publicKey); // pre-message "-> e"
    ss.mixHash(bobE.publicKey); // "<- e"
    ss.mixKey(dh(bobE, importPublicKey(aliceE.publicKey))); // "ee"
    const bobStatic = ss.encryptAndHash(bobS.publicKey); // "s"
    ss.mixKey(dh(bobS, importPublicKey(aliceE.publicKey))); // "es" = DH(Alice's e, Bob's s)
    const payload1 = ss.encryptAndHash(Buffer.from('p1'));
    expect(message1).toEqual(Buffer.concat([bobE.publicKey, bobStatic, payload1]));
    const aliceStatic = ss.encryptAndHash(aliceS.publicKey); // "-> s"
    ss.mixKey(dh(aliceS, importPublicKey(bobE.publicKey))); // "se" = DH(Alice's s, Bob's e)
    const payload2 = ss.encryptAndHash(Buffer.from('p2'));
    expect(message2).toEqual(Buffer.concat([aliceStatic, payload2]));
  });

  it('parses the fallback pattern with the IK responder as initiator and the old ephemeral as pre-message', () => {
    const { pattern } = parseProtocolName(XXFALLBACK_PROTOCOL);
    expect(pattern).toMatchObject({
      initiatorPreMessage: [],
      responderPreMessage: ['e'],
      messages: [
        ['e', 'ee', 's', 'se'],
        ['s', 'es'],
      ],
    });
  });
});

describe('Noise handshake failures', () => {
  it('a tampered handshake message raises noise_decrypt_failed and the state refuses further use', () => {
    const { client, server } = xxPair();
    server.readMessage(client.writeMessage());
    const message2 = server.writeMessage(Buffer.from('certs'));
    message2[40] = (message2[40] ?? 0) ^ 0x01;
    expect(codeOf(() => client.readMessage(message2))).toBe('noise_decrypt_failed');
    expect(codeOf(() => client.writeMessage())).toBe('noise_invalid_state');
  });

  it('a tampered transport ciphertext raises noise_decrypt_failed and does not advance the nonce', () => {
    const { client, server } = xxPair();
    handshake(client, server);
    const good = client.getTransport().send.encryptWithAd(EMPTY, Buffer.from('hello'));
    const bad = Buffer.from(good);
    bad[0] = (bad[0] ?? 0) ^ 0x80;
    const receive = server.getTransport().receive;
    expect(codeOf(() => receive.decryptWithAd(EMPTY, bad))).toBe('noise_decrypt_failed');
    expect(receive.nonce).toBe(0n);
    expect(receive.decryptWithAd(EMPTY, good).toString()).toBe('hello');
  });

  it('a truncated handshake message raises noise_malformed_message', () => {
    const { client, server } = xxPair();
    server.readMessage(client.writeMessage());
    const message2 = server.writeMessage();
    expect(codeOf(() => client.readMessage(message2.subarray(0, 40)))).toBe('noise_malformed_message');
  });

  it('refuses a handshake payload that would make a message over 65,535 bytes', () => {
    const { client, server } = xxPair();
    server.readMessage(client.writeMessage(Buffer.alloc(65_535 - 32)));
    expect(codeOf(() => server.writeMessage(Buffer.alloc(65_535)))).toBe('noise_message_too_large');
    expect(codeOf(() => xxPair().client.writeMessage(Buffer.alloc(65_535 - 31)))).toBe(
      'noise_message_too_large',
    );
  });

  it('refuses to read a handshake message over 65,535 bytes', () => {
    const { server } = xxPair();
    expect(codeOf(() => server.readMessage(Buffer.alloc(65_536)))).toBe('noise_message_too_large');
  });

  it('refuses to write out of turn, and to run handshake steps after completion', () => {
    const { client, server } = xxPair();
    expect(codeOf(() => server.writeMessage())).toBe('noise_invalid_state');
    handshake(client, server);
    expect(codeOf(() => client.writeMessage())).toBe('noise_invalid_state');
    expect(codeOf(() => xxPair().client.getTransport())).toBe('noise_invalid_state');
  });

  it.each([
    'Noise_XXpsk3_25519_AESGCM_SHA256',
    'Noise_XX_448_AESGCM_SHA256',
    'Noise_XX_25519_AESGCM_SHA3',
    'Noise_XX_25519_AES256_SHA256',
    'Noise_NKfallback_25519_AESGCM_SHA256',
    'Noise_XX1_25519_AESGCM_SHA256',
    'Noise_XX_25519_AESGCM',
    'garbage',
  ])('refuses protocol name %s as noise_unsupported_protocol', (name) => {
    expect(codeOf(() => parseProtocolName(name))).toBe('noise_unsupported_protocol');
  });

  it('rejects keys of the wrong length with noise_invalid_key', () => {
    expect(codeOf(() => keyPairFromPrivateKey(Buffer.alloc(31)))).toBe('noise_invalid_key');
    expect(codeOf(() => importPublicKey(Buffer.alloc(33)))).toBe('noise_invalid_key');
  });

  it('rejects a low-order peer ephemeral with noise_dh_failed', () => {
    const { client, server } = xxPair();
    client.writeMessage();
    server.readMessage(Buffer.alloc(32)); // the all-zero point
    expect(codeOf(() => server.writeMessage())).toBe('noise_dh_failed');
  });
});

describe('keyPairFromPrivateKey', () => {
  it('derives the public key of a fixed private key (RFC 7748 section 6.1, Alice)', () => {
    const pair = keyPairFromPrivateKey(
      Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'),
    );
    expect(pair.publicKey.toString('hex')).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
  });

  it('still does DH after its KeyObject was collected (held weakly, imported again)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const alice = keyPairFromPrivateKey(Buffer.alloc(32, 7));
    const bob = generateKeyPair();
    const bobPublic = importPublicKey(bob.publicKey);
    const before = dh(alice, bobPublic);
    const firstObject = new WeakRef(alice.privateKeyObject);
    // A WeakRef's target lives at least until the current job ends.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    expect(firstObject.deref()).toBeUndefined();
    expect(dh(alice, bobPublic).equals(before)).toBe(true);
    expect(dh(bob, importPublicKey(alice.publicKey)).equals(before)).toBe(true);
  });
});
