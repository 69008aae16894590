/** X3DH and the Double Ratchet through the session manager: both directions, order, replays. */
import { SignalError } from '../../src/signal/errors.js';
import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager, type IdentityPolicy } from '../../src/signal/session-manager.js';
import { MemorySignalBackend } from '../../src/signal/store.js';
import type { PreKeyBundle } from '../../src/protocol/stanza/types.js';

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

function puppet(user: string, policy: IdentityPolicy = 'trust_on_first_use') {
  const id = createSignalIdentity();
  const backend = new MemorySignalBackend({
    registrationId: id.registrationId,
    publicKey: id.identityPublic,
    privateKey: id.identityPrivate,
  });
  const manager = new SignalSessionManager(backend, { localUser: user, policy });
  manager.setUp({ preKeys: 5 });
  return { user, address: `${user}.1`, manager, backend };
}

function bundleOf(p: ReturnType<typeof puppet>, withPreKey = true): PreKeyBundle {
  const upload = p.manager.prekeyUpload(1);
  p.manager.markPrekeysUploaded(upload.preKeys.map((k) => k.id));
  return {
    registrationId: upload.registrationId,
    identityKey: upload.identityKey,
    signedPreKey: upload.signedPreKey,
    ...(withPreKey ? { preKey: upload.preKeys[0] } : {}),
  };
}

async function pair() {
  const alice = puppet('alice');
  const bob = puppet('bob');
  await alice.manager.processBundle(bob.address, bundleOf(bob));
  return { alice, bob };
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof SignalError ? err.code : `untyped: ${String(err)}`;
  }
};

describe('Signal sessions', () => {
  it('starts with a pkmsg, then carries msgs in both directions', async () => {
    const { alice, bob } = await pair();
    const first = await alice.manager.encrypt(bob.address, text('hello bob'));
    expect(first.type).toBe('pkmsg');
    expect(str(await bob.manager.decrypt(alice.address, first.type, first.body))).toBe('hello bob');

    const reply = await bob.manager.encrypt(alice.address, text('hi alice'));
    expect(reply.type).toBe('msg');
    expect(str(await alice.manager.decrypt(bob.address, reply.type, reply.body))).toBe('hi alice');

    const next = await alice.manager.encrypt(bob.address, text('how are you'));
    expect(next.type).toBe('msg');
    expect(str(await bob.manager.decrypt(alice.address, next.type, next.body))).toBe('how are you');
  });

  it('works without a one-time prekey (server ran out)', async () => {
    const alice = puppet('alice');
    const bob = puppet('bob');
    await alice.manager.processBundle(bob.address, bundleOf(bob, false));
    const m = await alice.manager.encrypt(bob.address, text('no otk'));
    expect(str(await bob.manager.decrypt(alice.address, m.type, m.body))).toBe('no otk');
  });

  it('keeps sending pkmsg until the peer answers', async () => {
    const { alice, bob } = await pair();
    const a = await alice.manager.encrypt(bob.address, text('1'));
    const b = await alice.manager.encrypt(bob.address, text('2'));
    expect([a.type, b.type]).toEqual(['pkmsg', 'pkmsg']);
    expect(str(await bob.manager.decrypt(alice.address, b.type, b.body))).toBe('2');
    expect(str(await bob.manager.decrypt(alice.address, a.type, a.body))).toBe('1');
  });

  it('decrypts messages delivered out of order, across ratchet steps', async () => {
    const { alice, bob } = await pair();
    const hello = await alice.manager.encrypt(bob.address, text('hello'));
    await bob.manager.decrypt(alice.address, hello.type, hello.body);
    const fromBob = await bob.manager.encrypt(alice.address, text('ack'));
    await alice.manager.decrypt(bob.address, fromBob.type, fromBob.body);

    const batch1 = [];
    for (let i = 0; i < 5; i++) batch1.push(await alice.manager.encrypt(bob.address, text(`a${i}`)));
    // Bob answers the first one, which makes Alice step her ratchet for the next batch.
    expect(str(await bob.manager.decrypt(alice.address, 'msg', batch1[4]!.body))).toBe('a4');
    const answer = await bob.manager.encrypt(alice.address, text('b'));
    await alice.manager.decrypt(bob.address, answer.type, answer.body);
    const batch2 = [];
    for (let i = 0; i < 3; i++) batch2.push(await alice.manager.encrypt(bob.address, text(`c${i}`)));

    const order = [batch2[2]!, batch1[0]!, batch2[0]!, batch1[3]!, batch1[1]!, batch2[1]!, batch1[2]!];
    const got = [];
    for (const m of order) got.push(str(await bob.manager.decrypt(alice.address, m.type, m.body)));
    expect(got).toEqual(['c2', 'a0', 'c0', 'a3', 'a1', 'c1', 'a2']);
  });

  it('rejects a replayed message with signal_duplicate_message, and the session goes on', async () => {
    const { alice, bob } = await pair();
    const m1 = await alice.manager.encrypt(bob.address, text('once'));
    await bob.manager.decrypt(alice.address, m1.type, m1.body);
    expect(await codeOf(bob.manager.decrypt(alice.address, m1.type, m1.body))).toBe(
      'signal_duplicate_message',
    );
    const m2 = await alice.manager.encrypt(bob.address, text('twice'));
    expect(await codeOf(bob.manager.decrypt(alice.address, m2.type, m2.body))).toBe('resolved');
    expect(await codeOf(bob.manager.decrypt(alice.address, m2.type, m2.body))).toBe(
      'signal_duplicate_message',
    );
  });

  it('a tampered message fails with signal_decrypt_failed and leaves the session unchanged', async () => {
    const { alice, bob } = await pair();
    const m1 = await alice.manager.encrypt(bob.address, text('first'));
    await bob.manager.decrypt(alice.address, m1.type, m1.body);
    const r = await bob.manager.encrypt(alice.address, text('reply'));
    const tampered = Uint8Array.from(r.body);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    expect(await codeOf(alice.manager.decrypt(bob.address, r.type, tampered))).toBe('signal_decrypt_failed');
    expect(str(await alice.manager.decrypt(bob.address, r.type, r.body))).toBe('reply');
  });

  it('consumes the one-time prekey a pkmsg used', async () => {
    const alice = puppet('alice');
    const bob = puppet('bob');
    const bundle = bundleOf(bob);
    const before = bob.backend.preKeyCount();
    await alice.manager.processBundle(bob.address, bundle);
    const m = await alice.manager.encrypt(bob.address, text('x'));
    await bob.manager.decrypt(alice.address, m.type, m.body);
    expect(bob.backend.preKeyCount()).toBe(before - 1);
    expect(bob.backend.preKey(bundle.preKey!.id)).toBeUndefined();
  });

  it('says there is no session, typed, for encrypt and for msg decrypt', async () => {
    const alice = puppet('alice');
    expect(await codeOf(alice.manager.encrypt('bob.1', text('x')))).toBe('signal_no_session');
    const { alice: a2, bob } = await pair();
    const m = await a2.manager.encrypt(bob.address, text('x'));
    await bob.manager.decrypt(a2.address, m.type, m.body);
    const r = await bob.manager.encrypt(a2.address, text('r'));
    await a2.manager.decrypt(bob.address, r.type, r.body);
    const m2 = await a2.manager.encrypt(bob.address, text('y'));
    expect(m2.type).toBe('msg');
    expect(await codeOf(alice.manager.decrypt('carol.1', 'msg', m2.body))).toBe('signal_no_session');
  });

  it('refuses a bundle whose signed prekey is not signed by its identity key', async () => {
    const alice = puppet('alice');
    const bob = puppet('bob');
    const good = bundleOf(bob);
    const sig = Uint8Array.from(good.signedPreKey.signature);
    sig[0] = (sig[0] as number) ^ 0xff;
    const bad = { ...good, signedPreKey: { ...good.signedPreKey, signature: sig } };
    expect(await codeOf(alice.manager.processBundle(bob.address, bad))).toBe('signal_bad_bundle');
    const short = { ...good, identityKey: good.identityKey.subarray(0, 31) };
    expect(await codeOf(alice.manager.processBundle(bob.address, short))).toBe('signal_bad_bundle');
    expect(alice.manager.hasSession(bob.address)).toBe(false);
  });

  it('refuses a malformed address with signal_bad_address', async () => {
    const alice = puppet('alice');
    expect(await codeOf(alice.manager.encrypt('bob', text('x')))).toBe('signal_bad_address');
    expect(await codeOf(alice.manager.encrypt('bob.one', text('x')))).toBe('signal_bad_address');
  });

  it('serializes concurrent encrypts and decrypts on one address', async () => {
    const { alice, bob } = await pair();
    const first = await alice.manager.encrypt(bob.address, text('start'));
    await bob.manager.decrypt(alice.address, first.type, first.body);
    const sent = await Promise.all(
      Array.from({ length: 40 }, (_, i) => alice.manager.encrypt(bob.address, text(`m${i}`))),
    );
    const counters = new Set(sent.map((m) => Buffer.from(m.body).toString('hex')));
    expect(counters.size).toBe(40);
    const [fromBob, ...received] = await Promise.all([
      bob.manager.encrypt(alice.address, text('meanwhile')),
      ...sent.map((m) => bob.manager.decrypt(alice.address, m.type, m.body)),
    ]);
    expect(received.map(str)).toEqual(sent.map((_, i) => `m${i}`));
    expect(str(await alice.manager.decrypt(bob.address, fromBob.type, fromBob.body))).toBe('meanwhile');
  });

  it('keeps a ping-pong session record bounded (old receiving chains are dropped)', async () => {
    const { alice, bob } = await pair();
    for (let i = 0; i < 40; i++) {
      const a = await alice.manager.encrypt(bob.address, text(`a${i}`));
      await bob.manager.decrypt(alice.address, a.type, a.body);
      const b = await bob.manager.encrypt(alice.address, text(`b${i}`));
      await alice.manager.decrypt(bob.address, b.type, b.body);
    }
    const session = alice.backend.loadSession(bob.address)!.getOpenSession()!;
    expect(Object.keys(session.chains).length).toBeLessThanOrEqual(12);
    expect(session.oldRatchetList.length).toBeLessThanOrEqual(10);
  });
});
