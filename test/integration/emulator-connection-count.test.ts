/**
 * The emulator counts, per account, the most authenticated connections it had live at the same
 * moment (`stats().maxSimultaneousPerAccount`, `connectedTwice`, also in GET /admin/stats): how the
 * several-workers test proves that no puppet was ever connected from two processes at once. A
 * second connection of the same device replaces the first, but both were live for that moment.
 */
import { ConnectReason } from '../../src/protocol/auth.js';
import { generateKeyPair } from '../../src/protocol/noise/index.js';
import {
  EmulatorClient,
  enlistBody,
  enlistedClient,
  identityKeyPair,
  startTestEmulator,
  type TestEmulator,
} from '../support/emulator-client.js';
import { until } from '../support/wait.js';

describe('emulator: simultaneous connections per account', () => {
  let te: TestEmulator;
  beforeAll(async () => (te = await startTestEmulator()));
  afterAll(() => te.close());

  it('counts one for connections one after the other, two for a second one while the first is live', async () => {
    const staticKey = generateKeyPair();
    const first = await EmulatorClient.connect(te, {
      account: 'alice',
      staticKey,
      connectReason: ConnectReason.ENLISTMENT,
    });
    expect((await first.iq(enlistBody(first.jid, identityKeyPair()))).op).toBe('result');
    first.close();
    await first.ended.catch(() => undefined);
    await until(() => te.emulator.stats().connections === 0, 'the first connection closed');
    const again = await EmulatorClient.connect(te, { account: 'alice', staticKey });
    const bob = await enlistedClient(te, 'bob');
    expect(te.emulator.stats()).toMatchObject({ maxSimultaneousPerAccount: 1, connectedTwice: [] });

    const twice = await EmulatorClient.connect(te, { account: 'alice', staticKey });
    await again.ended.catch(() => undefined); // replaced
    expect(te.emulator.stats().maxSimultaneousPerAccount).toBe(2);
    expect(te.emulator.stats().connectedTwice).toEqual([again.jid]);
    twice.close();
    bob.close();
  });
});
