/** Identity changes under both policies, and safety numbers. */
import { FingerprintGenerator } from '@privacyresearch/libsignal-protocol-typescript';

import { SignalError } from '../../src/signal/errors.js';
import { safetyNumber } from '../../src/signal/fingerprint.js';
import { createSignalIdentity } from '../../src/signal/keys.js';
import {
  SignalSessionManager,
  type IdentityChange,
  type IdentityPolicy,
} from '../../src/signal/session-manager.js';
import { MemorySignalBackend, withTypeByte } from '../../src/signal/store.js';

const text = (s: string) => new TextEncoder().encode(s);

function party(user: string, policy: IdentityPolicy = 'trust_on_first_use') {
  const id = createSignalIdentity();
  const m = new SignalSessionManager(
    new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    }),
    { localUser: user, policy },
  );
  m.setUp({ preKeys: 3 });
  return m;
}

const bundle = (m: SignalSessionManager) => {
  const up = m.prekeyUpload(1);
  return { ...up, preKey: up.preKeys[0] };
};

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof SignalError ? err.code : `untyped: ${String(err)}`;
  }
}

async function meetThenReinstall(policy: IdentityPolicy) {
  const me = party('me', policy);
  const changes: IdentityChange[] = [];
  me.onIdentityChange((c) => changes.push(c));
  await me.processBundle('bob.1', bundle(party('bob')));
  await me.encrypt('bob.1', text('hi'));
  const reinstalled = party('bob'); // same address, new identity key
  const result = await me.processBundle('bob.1', bundle(reinstalled));
  return { me, changes, result, reinstalled };
}

describe('identity changes', () => {
  it('trust on first use: records the new key, reports the change, keeps sending', async () => {
    const { me, changes, result } = await meetThenReinstall('trust_on_first_use');
    expect(changes).toHaveLength(1);
    expect(result.identityChange).toEqual(changes[0]);
    expect(changes[0]).toMatchObject({ address: 'bob.1', user: 'bob', trust: 'changed' });
    expect(me.remoteIdentity('bob.1')?.trust).toBe('changed');
    expect(await codeOf(me.encrypt('bob.1', text('still')))).toBe('resolved');
  });

  it('block until confirmed: refuses to encrypt until the user confirms, then sends', async () => {
    const { me, changes, reinstalled } = await meetThenReinstall('block_until_confirmed');
    expect(changes[0]).toMatchObject({ address: 'bob.1', trust: 'blocked' });
    expect(await codeOf(me.encrypt('bob.1', text('x')))).toBe('signal_identity_changed');
    me.confirmIdentity('bob.1');
    const m = await me.encrypt('bob.1', text('confirmed'));
    expect(new TextDecoder().decode(await reinstalled.decrypt('me.1', m.type, m.body))).toBe('confirmed');
  });

  it('detects a change carried by an incoming pkmsg', async () => {
    const me = party('me', 'block_until_confirmed');
    const changes: IdentityChange[] = [];
    me.onIdentityChange((c) => changes.push(c));
    const first = party('bob');
    await first.processBundle('me.1', bundle(me));
    const m1 = await first.encrypt('me.1', text('1'));
    await me.decrypt('bob.1', m1.type, m1.body);
    const second = party('bob');
    await second.processBundle('me.1', bundle(me));
    const m2 = await second.encrypt('me.1', text('2'));
    expect(new TextDecoder().decode(await me.decrypt('bob.1', m2.type, m2.body))).toBe('2');
    expect(changes.map((c) => c.trust)).toEqual(['blocked']);
    expect(await codeOf(me.encrypt('bob.1', text('x')))).toBe('signal_identity_changed');
  });

  it('gives both sides the same safety number, equal to the library fingerprint', async () => {
    const alice = party('alice');
    const bob = party('bob');
    await alice.processBundle('bob.1', bundle(bob));
    const m = await alice.encrypt('bob.1', text('hi'));
    await bob.decrypt('alice.1', m.type, m.body);
    const fromAlice = alice.safetyNumber('bob.1');
    expect(fromAlice).toMatch(/^\d{60}$/);
    expect(bob.safetyNumber('alice')).toBe(fromAlice);

    const a = withTypeByte(createSignalIdentity().identityPublic);
    const b = withTypeByte(createSignalIdentity().identityPublic);
    const lib = await new FingerprintGenerator(50).createFor(
      'alice',
      a.slice().buffer,
      'bob',
      b.slice().buffer,
    );
    expect(safetyNumber('alice', a, 'bob', b, 50)).toBe(lib);
  });
});
