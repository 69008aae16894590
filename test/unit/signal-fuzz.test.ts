/** Hostile input: whatever bytes arrive, decrypt fails with a typed SignalError, never anything else. */
import fc from 'fast-check';

import { SignalError } from '../../src/signal/errors.js';
import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager } from '../../src/signal/session-manager.js';
import { MemorySignalBackend } from '../../src/signal/store.js';

function party(user: string) {
  const id = createSignalIdentity();
  const m = new SignalSessionManager(
    new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    }),
    { localUser: user },
  );
  m.setUp({ preKeys: 2 });
  return m;
}

describe('decrypting random bytes', () => {
  it('always fails with a typed error and leaves the session working', async () => {
    const alice = party('alice');
    const bob = party('bob');
    const up = bob.prekeyUpload(1);
    await alice.processBundle('bob.1', { ...up, preKey: up.preKeys[0] });
    const hello = await alice.encrypt('bob.1', new TextEncoder().encode('hello'));
    await bob.decrypt('alice.1', hello.type, hello.body);
    const reply = await bob.encrypt('alice.1', new TextEncoder().encode('reply'));
    await alice.decrypt('bob.1', reply.type, reply.body);
    // A WhisperMessage: everything but the version byte is covered by its MAC.
    const real = await alice.encrypt('bob.1', new TextEncoder().encode('real'));
    expect(real.type).toBe('msg');

    const framed = (body: Uint8Array, mutate: number) => {
      const b = Uint8Array.from(real.body);
      b.set(body.subarray(0, Math.max(0, b.length - mutate)), mutate % b.length);
      return b;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<'msg' | 'pkmsg'>('msg', 'pkmsg'),
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(60)).map(([b, i]) => framed(b, i)),
        ),
        async (type, body) => {
          try {
            await bob.decrypt('alice.1', type, body);
          } catch (err) {
            expect(err).toBeInstanceOf(SignalError);
            return;
          }
          // Only the real message decrypts (its version byte is not authenticated, as in libsignal).
          expect(Buffer.from(body.subarray(1))).toEqual(Buffer.from(real.body.subarray(1)));
        },
      ),
      { numRuns: 300 },
    );
    const after = await alice.encrypt('bob.1', new TextEncoder().encode('after'));
    expect(new TextDecoder().decode(await bob.decrypt('alice.1', after.type, after.body))).toBe('after');
  });
});
