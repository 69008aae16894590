/**
 * A puppet's inbox delivery (src/bridge/inbox.ts, `InboxDelivery`) on a real SQLite store: an
 * entry just recorded is handed over with its content and delivered without reading the store; the
 * store is read when something was recorded without being handed over, and after a refusal (then in
 * order, with what was handed over meanwhile); an entry handed over after a read that returned it is
 * not delivered twice.
 */
import path from 'node:path';
import { InboxDelivery } from '../../src/bridge/inbox.js';
import { encodePayload } from '../../src/bridge/outbox.js';
import { encodeContent, textContent } from '../../src/protocol/content.js';
import { inboxRowId, sealPayload } from '../../src/store/at-rest.js';
import type { InboxEntry, Puppet } from '../../src/store/repositories.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { PayloadVault } from '../../src/util/payload-vault.js';
import { TestAdapter } from '../support/test-adapter.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/wait.js';

const BOB = '4915112345678@wa.interop';

describe('the inbox delivery, with entries handed over in memory', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  let puppet: Puppet;
  let portalId: number;
  let adapter: TestAdapter;
  let delivery: InboxDelivery;
  let reads: number;
  const vault = new PayloadVault(new Uint8Array(32).fill(5));

  beforeEach(async () => {
    tmp = tempDir();
    store = openSqliteStore(path.join(tmp.dir, 'bridge.db'));
    puppet = await store.puppets.create({
      localId: '@alice:example.org',
      network: 'matrix',
      accountId: 'acct-1',
      deviceId: 1,
      registrationId: 1001,
      identityPublic: new Uint8Array(33).fill(1),
      identityPrivate: new Uint8Array(32).fill(1),
      noisePublic: new Uint8Array(32).fill(2),
      noisePrivate: new Uint8Array(32).fill(3),
    });
    portalId = (await store.portals.ensure(puppet.id, BOB)).id;
    adapter = new TestAdapter();
    reads = 0;
    const pending = store.inbox.pending.bind(store.inbox);
    store.inbox.pending = (puppetId, limit) => {
      reads++;
      return pending(puppetId, limit);
    };
    delivery = new InboxDelivery({
      puppet,
      accountJid: '4915100000001@wa.interop',
      store,
      adapter: () => adapter,
      media: undefined,
      log: undefined,
      metrics: undefined,
      vault,
      kickReceipts: () => undefined,
    });
  });
  afterEach(async () => {
    delivery.stop();
    await store.close();
    tmp.cleanup();
  });

  /** Records a text from Bob as the incoming side does: the row, then (unless `silent`) hands it over. */
  const receive = async (id: string, text: string, silent = false) => {
    const payload = {
      from: `${BOB.split('@')[0]}.1@wa.interop`,
      t: 1_700_000_000,
      plaintext: Buffer.from(encodeContent(textContent(text))).toString('base64'),
    };
    const row = {
      puppetId: puppet.id,
      sender: BOB,
      messageId: id,
      portalId,
      payload: sealPayload(vault, inboxRowId(puppet.id, BOB, id), encodePayload(payload)),
    };
    let seq: number | undefined;
    await store.atomically((w) => {
      seq = w.recordInbox(row);
    });
    const entry: InboxEntry = { ...row, seq: seq!, state: 'pending', receivedAt: Date.now() };
    if (!silent) delivery.handOver(entry, payload);
    return entry;
  };
  const texts = () =>
    adapter.delivered.map((d) =>
      d.event.type === 'message' && 'text' in d.event.body ? d.event.body.text : '',
    );
  const settled = async (n: number) => {
    await until(async () => adapter.delivered.length >= n, `${n} delivered`);
    await until(async () => (await store.inbox.countPending(puppet.id)) === 0, 'nothing pending');
  };

  it('delivers what is handed over without reading the store, and reads it when told to', async () => {
    // The first pass reads the store (what came before this run); then entries come in memory.
    delivery.pump();
    await until(async () => reads === 1, 'the first read');
    await receive('M1', 'one');
    await receive('M2', 'two');
    await settled(2);
    expect([texts(), reads]).toEqual([['one', 'two'], 1]);
    // Recorded without being handed over (the front, a restart): `pump()` reads the store.
    await receive('M3', 'three', true);
    delivery.pump();
    await settled(3);
    expect([texts(), reads]).toEqual([['one', 'two', 'three'], 2]);
  });

  it('after a refusal reads the store again: in order, with what was handed over meanwhile, once each', async () => {
    delivery.pump();
    await until(async () => reads === 1, 'the first read');
    adapter.refuse = true;
    await receive('M1', 'one');
    await until(async () => adapter.deliveryCalls.length === 1, 'refused once');
    await receive('M2', 'two');
    adapter.refuse = false;
    delivery.retryNow();
    await settled(2);
    expect(texts()).toEqual(['one', 'two']);
    expect(adapter.deliveryCalls.filter((c) => c.remoteId === 'M2')).toHaveLength(1);
    expect(reads).toBeGreaterThan(1);
  });

  it('an entry handed over after a read that returned it is delivered once', async () => {
    // Recorded, then a read of the store (it returns the entry), and only then handed over.
    const entry = await receive('M1', 'one', true);
    delivery.pump();
    await settled(1);
    delivery.handOver(entry, {
      from: `${BOB.split('@')[0]}.1@wa.interop`,
      t: 1_700_000_000,
      plaintext: Buffer.from(encodeContent(textContent('one'))).toString('base64'),
    });
    await receive('M2', 'two');
    await settled(2);
    expect(adapter.deliveryCalls.map((c) => c.remoteId)).toEqual(['M1', 'M2']);
  });
});
