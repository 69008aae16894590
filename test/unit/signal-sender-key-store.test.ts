/**
 * Sender keys on each store backend (SQLite, PostgreSQL): chains survive a reopen, one record per
 * puppet, distribution and sender device, rotation and puppet deletion remove them; on PostgreSQL,
 * reads wait for prepare and a stale lease holder's writes do not land. And the records themselves:
 * libsignal's storage format, read and written byte for byte as @signalapp/libsignal-client does.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type * as Client from '@signalapp/libsignal-client';

import { Leases } from '../../src/cluster/leases.js';
import { PostgresSenderKeyBackend } from '../../src/signal/postgres-store.js';
import { decodeSenderKeyRecord, encodeSenderKeyRecord } from '../../src/signal/sender-key-record.js';
import { MemorySenderKeyBackend, type SenderKeyBackend } from '../../src/signal/sender-key-store.js';
import {
  createDistribution,
  groupDecrypt,
  groupEncrypt,
  processDistribution,
  rotate,
} from '../../src/signal/sender-keys.js';
import { SqliteSenderKeyBackend } from '../../src/signal/sqlite-store.js';
import type { PostgresStore } from '../../src/store/postgres-store.js';
import type { Store } from '../../src/store/repositories.js';
import type { SqliteStore } from '../../src/store/sqlite-store.js';
import { storeBackends, type StoreBackend } from '../support/store-backends.js';

const text = (s: string) => Uint8Array.from(Buffer.from(s));
const str = (b: Uint8Array) => Buffer.from(b).toString();
const me = { name: 'puppet', deviceId: 1 };
const bob = { name: 'bob', deviceId: 1 };
const bob2 = { name: 'bob', deviceId: 2 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function senderKeys(backend: StoreBackend, store: Store, puppetId: number): SenderKeyBackend {
  return backend.name === 'sqlite'
    ? new SqliteSenderKeyBackend((store as SqliteStore).db, puppetId)
    : new PostgresSenderKeyBackend((store as PostgresStore).pg, puppetId);
}

async function createPuppet(store: Store, localId: string): Promise<number> {
  const puppet = await store.puppets.create({
    localId,
    network: 'xmpp',
    accountId: localId,
    deviceId: 1,
    registrationId: 1,
    identityPublic: new Uint8Array(32),
    identityPrivate: new Uint8Array(32),
    noisePublic: new Uint8Array(32),
    noisePrivate: new Uint8Array(32),
  });
  return puppet.id;
}

/** Bob's side, in memory: his own chain in the group, and the chain he received from the puppet. */
async function remoteMember(group: string) {
  const store = new MemorySenderKeyBackend();
  const skdm = await createDistribution(store, bob, group);
  return {
    store,
    skdm,
    send: (s: string) => groupEncrypt(store, bob, group, text(s)),
    read: async (body: Uint8Array) => str(await groupDecrypt(store, me, group, body)),
  };
}

describe.each(storeBackends())('sender keys on $name', (backend) => {
  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());
  beforeEach(() => backend.fresh());
  afterEach(() => backend.closeAll());

  /** Opens the database again (a restart) and the puppet's sender keys on it. */
  const reopen = async (puppetId: number) => {
    await backend.closeAll();
    return senderKeys(backend, await backend.open(), puppetId);
  };

  it('keeps both directions of a group across closing and reopening the database', async () => {
    const group = crypto.randomUUID();
    const store = await backend.open();
    const puppetId = await createPuppet(store, 'alice@example.org');
    const remote = await remoteMember(group);
    let keys = senderKeys(backend, store, puppetId);
    await processDistribution(remote.store, me, group, await createDistribution(keys, me, group));
    await processDistribution(keys, bob, group, remote.skdm);
    const ownFirst = await groupEncrypt(keys, me, group, text('mine 1'));
    const skipped = await remote.send('theirs 1');
    expect(str(await groupDecrypt(keys, bob, group, await remote.send('theirs 2')))).toBe('theirs 2');

    keys = await reopen(puppetId);
    expect(await remote.read(await groupEncrypt(keys, me, group, text('mine 2')))).toBe('mine 2');
    expect(await remote.read(ownFirst)).toBe('mine 1');
    expect(str(await groupDecrypt(keys, bob, group, skipped))).toBe('theirs 1'); // its skipped key was kept
    await expect(groupDecrypt(keys, bob, group, skipped)).rejects.toMatchObject({
      code: 'signal_duplicate_message',
    });
  });

  it('keeps one record per puppet, distribution and sender device', async () => {
    const [g1, g2] = [crypto.randomUUID(), crypto.randomUUID()];
    const store = await backend.open();
    const [p1, p2] = [await createPuppet(store, 'a@example.org'), await createPuppet(store, 'b@example.org')];
    const keys1 = senderKeys(backend, store, p1);
    const keys2 = senderKeys(backend, store, p2);
    const records = [
      [keys1, g1, bob, Uint8Array.from([1])],
      [keys1, g1, bob2, Uint8Array.from([2])],
      [keys1, g2, bob, Uint8Array.from([3])],
      [keys2, g1, bob, Uint8Array.from([4])],
    ] as const;
    for (const [keys, g] of records) await keys.prepare(g);
    for (const [keys, g, sender, record] of records) keys.putSenderKey(g, sender, record);
    await keys1.flush();

    await backend.closeAll();
    const reopenedStore = await backend.open();
    const again1 = senderKeys(backend, reopenedStore, p1);
    const again2 = senderKeys(backend, reopenedStore, p2);
    for (const [keys, g, sender, record] of records) {
      const reopened = keys === keys1 ? again1 : again2;
      await reopened.prepare(g);
      expect(reopened.getSenderKey(g, sender)).toEqual(record);
    }
    await again1.prepare(g2);
    expect(again1.getSenderKey(g2, bob2)).toBeUndefined();
  });

  it('forgets our chain on rotate, so the next distribution starts a new one', async () => {
    const group = crypto.randomUUID();
    const store = await backend.open();
    const puppetId = await createPuppet(store, 'alice@example.org');
    const first = await createDistribution(senderKeys(backend, store, puppetId), me, group);
    await rotate(senderKeys(backend, store, puppetId), me, group);

    const keys = await reopen(puppetId);
    await keys.prepare(group);
    expect(keys.getSenderKey(group, me)).toBeUndefined();
    expect(Buffer.from(await createDistribution(keys, me, group))).not.toEqual(Buffer.from(first));
  });

  it("deletes a puppet's sender keys with the puppet", async () => {
    const group = crypto.randomUUID();
    const store = await backend.open();
    const puppetId = await createPuppet(store, 'alice@example.org');
    await createDistribution(senderKeys(backend, store, puppetId), me, group);
    await store.puppets.delete(puppetId);

    const keys = await reopen(puppetId);
    await keys.prepare(group);
    expect(keys.getSenderKey(group, me)).toBeUndefined();
  });
});

describe('sender keys on PostgreSQL only', () => {
  const [backend] = storeBackends().filter((b) => b.name === 'postgres') as [StoreBackend];
  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());
  beforeEach(() => backend.fresh());
  afterEach(() => backend.closeAll());

  it('refuses a read of a distribution not prepared', async () => {
    const store = await backend.open();
    const keys = senderKeys(backend, store, await createPuppet(store, 'alice@example.org'));
    const group = crypto.randomUUID();
    let refusal: unknown;
    try {
      keys.getSenderKey(group, bob);
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toMatchObject({ code: 'signal_not_prepared' });
    await keys.prepare(group);
    expect(keys.getSenderKey(group, bob)).toBeUndefined();
  });

  it("drops a stale lease holder's sender key writes, keeping the new holder's", async () => {
    const group = crypto.randomUUID();
    const store = (await backend.open()) as PostgresStore;
    const puppetId = await createPuppet(store, 'alice@example.org');
    const leases = new Leases(store.pg);
    const name = `puppet:${puppetId}`;
    const [old] = await leases.acquire('w1', [name], 200);
    const stale = new PostgresSenderKeyBackend(store.pg, puppetId, { lease: () => old });
    const rows = async () =>
      (
        await store.pg.query(
          'SELECT sender, device, record FROM signal_sender_keys WHERE puppet_id = $1 ORDER BY sender, device',
          [puppetId],
        )
      ).map((r) => `${r.sender as string}.${r.device as number}=${(r.record as Buffer)[0]}`);

    await stale.prepare(group);
    stale.putSenderKey(group, bob, Uint8Array.from([1]));
    stale.putSenderKey(group, bob2, Uint8Array.from([1]));
    await stale.flush();
    expect(await rows()).toEqual(['bob.1=1', 'bob.2=1']); // while held: written

    await sleep(300);
    const [current] = await leases.acquire('w2', [name], 60_000);
    const owner = new PostgresSenderKeyBackend(store.pg, puppetId, { lease: () => current });
    await owner.prepare(group);
    owner.putSenderKey(group, bob, Uint8Array.from([2]));
    stale.putSenderKey(group, bob, Uint8Array.from([3])); // the old holder, after the new one
    stale.deleteSenderKey(group, bob2);
    await owner.flush();
    expect(await rows()).toEqual(['bob.1=2', 'bob.2=1']);
  });
});

describe("records in libsignal's storage format (@signalapp/libsignal-client)", () => {
  let signal: typeof Client;
  beforeAll(async () => {
    // The library finds its native addon from `import.meta.dirname`, which Jest's ESM loader leaves
    // undefined, so node-gyp-build looks in the working directory: import it from there.
    const before = process.cwd();
    process.chdir(path.resolve('node_modules/@signalapp/libsignal-client'));
    try {
      signal = await import('@signalapp/libsignal-client');
    } finally {
      process.chdir(before);
    }
  });

  it("reads libsignal's sending record and writes it back identically; libsignal does the same with ours", async () => {
    const group = crypto.randomUUID();
    const records = new Map<string, Client.SenderKeyRecord>();
    class Store extends signal.SenderKeyStore {
      saveSenderKey(_a: Client.ProtocolAddress, _d: string, record: Client.SenderKeyRecord) {
        records.set('own', record);
        return Promise.resolve();
      }
      getSenderKey() {
        return Promise.resolve(records.get('own') ?? null);
      }
    }
    const skdm = await signal.SenderKeyDistributionMessage.create(
      signal.ProtocolAddress.new('puppet', 1),
      group,
      new Store(),
    );
    const theirs = records.get('own')!.serialize();
    const [state] = decodeSenderKeyRecord(theirs);
    expect(state).toMatchObject({ chainId: skdm.chainId(), chainKey: { iteration: 0 } });
    expect(Buffer.from(state!.chainKey.seed)).toEqual(Buffer.from(skdm.chainKey()));
    expect(state!.signingPrivate).toHaveLength(32);
    expect(Buffer.from(encodeSenderKeyRecord(decodeSenderKeyRecord(theirs)))).toEqual(Buffer.from(theirs));

    // Ours, with a sending chain moved on and a received chain with skipped keys.
    const keys = new MemorySenderKeyBackend();
    const remote = await remoteMember(group);
    await createDistribution(keys, me, group);
    await groupEncrypt(keys, me, group, text('one'));
    await processDistribution(keys, bob, group, remote.skdm);
    await remote.send('skipped');
    await groupDecrypt(keys, bob, group, await remote.send('read'));
    for (const ours of [keys.getSenderKey(group, me)!, keys.getSenderKey(group, bob)!]) {
      const again = signal.SenderKeyRecord.deserialize(Uint8Array.from(ours)).serialize();
      expect(Buffer.from(again)).toEqual(Buffer.from(ours));
    }
    expect(decodeSenderKeyRecord(keys.getSenderKey(group, bob)!)[0]!.messageKeys).toHaveLength(1);
  });
});
