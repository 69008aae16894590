import { AuthRejectedError, ConnectReason } from '../../src/protocol/auth.js';
import type { IqBody, NotificationStanza } from '../../src/protocol/stanza/index.js';
import {
  EmulatorClient,
  enlistBody,
  enlistedClient,
  identityKeyPair,
  message,
  startTestEmulator,
  uploadBody,
  type TestEmulator,
} from '../support/emulator-client.js';

const ALICE = 'alice@testprov.interop';

describe('gateway emulator: accounts, enlistment, directory, prekeys', () => {
  let te: TestEmulator;
  beforeEach(async () => (te = await startTestEmulator()));
  afterEach(async () => te.close());

  describe('enlistment', () => {
    it('refuses a third-party account that has not opted in with account_not_enlisted', async () => {
      await expect(EmulatorClient.connect(te, { account: 'alice' })).rejects.toMatchObject({
        reason: 'account_not_enlisted',
      });
    });

    it('lets a not-enlisted account connect for enlistment, refuses anything but enlist and ping with 403', async () => {
      const c = await EmulatorClient.connect(te, {
        account: 'alice',
        connectReason: ConnectReason.ENLISTMENT,
      });
      expect(await c.iq({ op: 'ping' })).toEqual({ op: 'result' });
      expect(await c.iq({ op: 'prekey_count' })).toMatchObject({ op: 'error', error: { code: 403 } });
      c.send(message('m1', '4915112345678@wa.interop', { 0: new Uint8Array([1]) }));
      expect(await c.nextOf('ack', (a) => a.id === 'm1')).toMatchObject({ error: 403 });
      expect(c.isOpen).toBe(true);
      c.close();
    });

    it('creates the account on a valid enlistment; it then connects normally', async () => {
      const c = await enlistedClient(te, 'alice');
      expect(await c.iq({ op: 'prekey_count' })).toEqual({ op: 'prekey_count_result', count: 0 });
      c.close();
      const again = await EmulatorClient.connect(te, { account: 'alice' });
      expect(again.success).toMatchObject({ account: 'alice', device: 0 });
      expect(te.emulator.accounts().map((a) => a.jid)).toEqual([ALICE]);
      again.close();
    });

    it('refuses a stale enlistment proof and one signed by another key', async () => {
      const c = await EmulatorClient.connect(te, {
        account: 'alice',
        connectReason: ConnectReason.ENLISTMENT,
      });
      const identity = identityKeyPair();
      const stale = enlistBody(ALICE, identity, Math.floor(Date.now() / 1000) - 600);
      expect(await c.iq(stale)).toMatchObject({
        op: 'error',
        error: { code: 400, text: expect.stringContaining('enlistment_stale') },
      });
      const forged = {
        ...(enlistBody(ALICE, identityKeyPair()) as Extract<IqBody, { op: 'enlist' }>),
        identityKey: identity.publicKey,
      };
      expect(await c.iq(forged)).toMatchObject({ op: 'error', error: { code: 401 } });
      const otherAccount = enlistBody('bob@testprov.interop', identity);
      expect(await c.iq(otherAccount)).toMatchObject({ op: 'error', error: { code: 401 } });
      expect(te.emulator.accounts()).toEqual([]);
      c.close();
    });

    it('opt-out removes the account, its keys and its queued messages', async () => {
      const identity = identityKeyPair();
      const alice = await enlistedClient(te, 'alice', 0, identity);
      expect(await alice.iq(uploadBody(identity, 5))).toEqual({ op: 'result' });
      alice.close();
      await alice.ended;
      te.emulator.createNativeUser('+4915112345678');
      const bob = await EmulatorClient.connect(te, { phone: '+4915112345678' });
      bob.send(message('m1', ALICE, { 0: new Uint8Array([9, 9]) }));
      await bob.nextOf('ack', (a) => a.id === 'm1');
      expect(te.emulator.queued(ALICE)).toHaveLength(1);

      const again = await EmulatorClient.connect(te, { account: 'alice' });
      await again.nextOf('message'); // the queued message arrives, unacked
      expect(await again.iq({ op: 'unenlist' })).toEqual({ op: 'result' });
      expect(te.emulator.queued(ALICE)).toEqual([]);
      expect(te.emulator.accounts().map((a) => a.jid)).not.toContain(ALICE);
      const fetched = await bob.iq({ op: 'prekey_fetch', jids: [`alice:0@testprov.interop`] });
      expect(fetched).toMatchObject({ op: 'prekey_fetch_result', users: [{ error: { code: 404 } }] });
      await expect(EmulatorClient.connect(te, { account: 'alice' })).rejects.toMatchObject({
        reason: 'account_not_enlisted',
      });
      again.close();
      bob.close();
    });
  });

  describe('native users', () => {
    it('authenticate with tokens of the built-in wa provider, once created', async () => {
      await expect(EmulatorClient.connect(te, { phone: '+4915112345678' })).rejects.toBeInstanceOf(
        AuthRejectedError,
      );
      te.emulator.createNativeUser('+4915112345678');
      const c = await EmulatorClient.connect(te, { phone: '+4915112345678', device: 2 });
      expect(c.success).toMatchObject({ account: '4915112345678', device: 2 });
      c.close();
    });
  });

  describe('directory', () => {
    it('answers a phone-number look-up only with users who can be reached, with their devices', async () => {
      te.emulator.createNativeUser('+4915112345678');
      const n = await EmulatorClient.connect(te, { phone: '+4915112345678', device: 0 });
      await n.iq(uploadBody(identityKeyPair(), 1));
      const n2 = await EmulatorClient.connect(te, { phone: '+4915112345678', device: 3 });
      await n2.iq(uploadBody(identityKeyPair(), 1));
      const alice = await enlistedClient(te, 'alice');
      const answer = await alice.iq({ op: 'usync_query', contacts: ['+4915112345678', '+4930123456'] });
      expect(answer).toEqual({
        op: 'usync_result',
        entries: [
          { contact: '+4915112345678', onNetwork: true, jid: '4915112345678@wa.interop', devices: [0, 3] },
          { contact: '+4930123456', onNetwork: false, devices: [] },
        ],
      });
      for (const c of [n, n2, alice]) c.close();
    });
  });

  describe('prekey server', () => {
    it('hands out each one-time prekey once, then bundles without one', async () => {
      te.emulator.createNativeUser('+4915112345678');
      const owner = await EmulatorClient.connect(te, { phone: '+4915112345678' });
      const upload = uploadBody(identityKeyPair(), 2) as Extract<IqBody, { op: 'prekey_upload' }>;
      await owner.iq(upload);
      expect(await owner.iq({ op: 'prekey_count' })).toEqual({ op: 'prekey_count_result', count: 2 });

      const alice = await enlistedClient(te, 'alice');
      const jid = '4915112345678:0@wa.interop';
      const fetch = async () => {
        const a = await alice.iq({ op: 'prekey_fetch', jids: [jid] });
        if (a.op !== 'prekey_fetch_result') throw new Error(JSON.stringify(a));
        return a.users[0];
      };
      const first = await fetch();
      const second = await fetch();
      const third = await fetch();
      expect(first).toMatchObject({
        jid,
        registrationId: upload.registrationId,
        identityKey: upload.identityKey,
        signedPreKey: upload.signedPreKey,
        preKey: upload.preKeys[0],
      });
      expect(second).toMatchObject({ preKey: upload.preKeys[1] });
      expect(third).toMatchObject({ identityKey: upload.identityKey });
      expect(third).not.toHaveProperty('preKey');
      expect(await owner.iq({ op: 'prekey_count' })).toEqual({ op: 'prekey_count_result', count: 0 });
      owner.close();
      alice.close();
    });

    it('tells a device to upload more when its stock falls below the low-water mark', async () => {
      await te.close();
      te = await startTestEmulator({ prekeyLowWater: 3 });
      te.emulator.createNativeUser('+4915112345678');
      const owner = await EmulatorClient.connect(te, { phone: '+4915112345678' });
      await owner.iq(uploadBody(identityKeyPair(), 4));
      const alice = await enlistedClient(te, 'alice');
      await alice.iq({ op: 'prekey_fetch', jids: ['4915112345678:0@wa.interop'] }); // 4 -> 3
      await owner.sync();
      expect(owner.received.filter((s) => s.kind === 'notification')).toEqual([]);
      await alice.iq({ op: 'prekey_fetch', jids: ['4915112345678:0@wa.interop'] }); // 3 -> 2
      const n = await owner.nextOf('notification');
      expect(n).toMatchObject({
        type: 'encrypt',
        from: 'wa.interop',
        body: { event: 'prekey_low', count: 2 },
      });
      owner.send({ kind: 'ack', class: 'notification', id: n.id });
      await owner.sync();
      expect(te.emulator.queued('4915112345678@wa.interop')).toEqual([]);
      owner.close();
      alice.close();
    });

    it('tells contacts when an account uploads a different identity key', async () => {
      te.emulator.createNativeUser('+4915112345678');
      const bob = await EmulatorClient.connect(te, { phone: '+4915112345678' });
      await bob.iq(uploadBody(identityKeyPair(), 2));
      const alice = await enlistedClient(te, 'alice');
      const carol = await enlistedClient(te, 'carol');
      await alice.iq({ op: 'prekey_fetch', jids: ['4915112345678:0@wa.interop'] }); // alice is a contact now

      await bob.iq(uploadBody(identityKeyPair(), 2)); // reinstalled: new identity
      const n = await alice.nextOf('notification');
      expect(n).toMatchObject<Partial<NotificationStanza>>({
        type: 'encrypt',
        from: '4915112345678@wa.interop',
        body: { event: 'identity_changed' },
      });
      await carol.sync();
      expect(carol.received.filter((s) => s.kind === 'notification')).toEqual([]);
      for (const c of [alice, bob, carol]) c.close();
    });

    it('does not notify anyone when the same identity key is uploaded again', async () => {
      te.emulator.createNativeUser('+4915112345678');
      const bob = await EmulatorClient.connect(te, { phone: '+4915112345678' });
      const identity = identityKeyPair();
      await bob.iq(uploadBody(identity, 1));
      const alice = await enlistedClient(te, 'alice');
      await alice.iq({ op: 'prekey_fetch', jids: ['4915112345678:0@wa.interop'] });
      await bob.iq(uploadBody(identity, 5, 100));
      await alice.sync();
      expect(alice.received.filter((s) => s.kind === 'notification')).toEqual([]);
      expect(await bob.iq({ op: 'prekey_count' })).toEqual({ op: 'prekey_count_result', count: 5 });
      alice.close();
      bob.close();
    });
  });
});
