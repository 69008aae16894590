/**
 * The Signal state on each store backend (SQLite, PostgreSQL): sessions survive a reopen; prekey
 * upkeep; stored records stay library-readable.
 */
import { SessionRecord } from '@privacyresearch/libsignal-protocol-typescript/lib/session-record.js';

import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager } from '../../src/signal/session-manager.js';
import { MemorySignalBackend } from '../../src/signal/store.js';
import { encodeRecord } from '../../src/signal/record.js';
import { storeBackends, type StoreBackend } from '../support/store-backends.js';

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const DAY = 24 * 3600 * 1000;

async function createPuppet(backend: StoreBackend, localId: string): Promise<number> {
  const store = await backend.open();
  const id = createSignalIdentity();
  const puppet = await store.puppets.create({
    localId,
    network: 'xmpp',
    accountId: localId,
    deviceId: 1,
    registrationId: id.registrationId,
    identityPublic: id.identityPublic,
    identityPrivate: id.identityPrivate,
    noisePublic: new Uint8Array(32),
    noisePrivate: new Uint8Array(32),
  });
  await backend.closeAll();
  return puppet.id;
}

function remotePeer() {
  const id = createSignalIdentity();
  const m = new SignalSessionManager(
    new MemorySignalBackend({
      registrationId: id.registrationId,
      publicKey: id.identityPublic,
      privateKey: id.identityPrivate,
    }),
    { localUser: 'remote' },
  );
  m.setUp({ preKeys: 2 });
  return m;
}

/** Opens the database (again) and the puppet's session manager, its own keys prepared. */
async function open(backend: StoreBackend, puppetId: number, now?: () => number) {
  const store = await backend.open();
  const m = new SignalSessionManager(backend.signal(store, puppetId, now), {
    localUser: 'puppet',
    ...(now ? { now } : {}),
  });
  await m.prepare();
  return m;
}

/** Everything written is durable, then the database is closed (a restart). */
async function close(backend: StoreBackend, m: SignalSessionManager): Promise<void> {
  await m.flush();
  await backend.closeAll();
}

describe.each(storeBackends())('Signal state on $name', (backend) => {
  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());
  beforeEach(() => backend.fresh());
  afterEach(() => backend.closeAll());

  it('keeps a session across closing and reopening the database', async () => {
    const puppetId = await createPuppet(backend, 'alice@example.org');
    const remote = remotePeer();
    let me = await open(backend, puppetId);
    me.setUp({ preKeys: 5 });
    const up = remote.prekeyUpload(1);
    await me.processBundle('remote.1', { ...up, preKey: up.preKeys[0] });
    const first = await me.encrypt('remote.1', text('before restart'));
    expect(str(await remote.decrypt('puppet.1', first.type, first.body))).toBe('before restart');
    const reply = await remote.encrypt('puppet.1', text('reply'));
    expect(str(await me.decrypt('remote.1', reply.type, reply.body))).toBe('reply');
    await close(backend, me);

    me = await open(backend, puppetId);
    await me.prepare('remote');
    expect(me.hasSession('remote.1')).toBe(true);
    const after = await me.encrypt('remote.1', text('after restart'));
    expect(after.type).toBe('msg');
    expect(str(await remote.decrypt('puppet.1', after.type, after.body))).toBe('after restart');
    const again = await remote.encrypt('puppet.1', text('welcome back'));
    expect(str(await me.decrypt('remote.1', again.type, again.body))).toBe('welcome back');
    expect(me.remoteIdentity('remote.1')?.trust).toBe('trusted');
    await close(backend, me);
  });

  it('answers a first pkmsg after a restart, with the prekeys it stored', async () => {
    const puppetId = await createPuppet(backend, 'bob@example.org');
    const first = await open(backend, puppetId);
    first.setUp({ preKeys: 3 });
    const upload = first.prekeyUpload(3);
    await close(backend, first);
    const me = await open(backend, puppetId);
    const remote = remotePeer();
    await remote.processBundle('puppet.1', { ...upload, preKey: upload.preKeys[1] });
    const m = await remote.encrypt('puppet.1', text('hi'));
    expect(str(await me.decrypt('remote.1', m.type, m.body))).toBe('hi');
    expect(me.prekeysToUpload(10).map((k) => k.id)).not.toContain(upload.preKeys[1]!.id);
    await close(backend, me);
  });

  it('consumes one-time prekeys, replenishes below the threshold, never reuses an id', async () => {
    const puppetId = await createPuppet(backend, 'carol@example.org');
    let me = await open(backend, puppetId);
    me.setUp({ preKeys: 10 });
    const batch = me.prekeysToUpload(10);
    me.markPrekeysUploaded(batch.map((k) => k.id));
    expect(me.prekeysToUpload(0)).toEqual([]);
    expect(me.preKeysNeeded(50)).toBe(0);
    expect(me.preKeysNeeded(5)).toBe(95);
    const more = me.prekeysToUpload(95);
    expect(more).toHaveLength(95);
    const ids = new Set([...batch, ...more].map((k) => k.id));
    expect(ids.size).toBe(105);
    await close(backend, me);
    // After a restart: the keys not uploaded yet are still waiting, and the id counter goes on.
    me = await open(backend, puppetId);
    expect(me.prekeysToUpload(95).map((k) => k.id)).toEqual(more.map((k) => k.id));
    me.markPrekeysUploaded(more.map((k) => k.id));
    const fresh = me.prekeysToUpload(1);
    expect(fresh).toHaveLength(1);
    expect(ids.has(fresh[0]!.id)).toBe(false);
  });

  it('rotates the signed prekey when due and forgets old ones after the grace period', async () => {
    const puppetId = await createPuppet(backend, 'dave@example.org');
    let now = 1_000_000_000_000;
    let me = await open(backend, puppetId, () => now);
    me.setUp({ preKeys: 1 });
    const first = me.currentSignedPreKey();
    expect(me.signedPreKeyRotationDue()).toBe(false);
    now += 8 * DAY;
    expect(me.signedPreKeyRotationDue()).toBe(true);
    const second = me.rotateSignedPreKey();
    expect(second.id).not.toBe(first.id);
    expect(me.currentSignedPreKey()).toEqual(second);
    now += 8 * DAY;
    const third = me.rotateSignedPreKey();
    now += 40 * DAY;
    me.rotateSignedPreKey();
    await close(backend, me);
    me = await open(backend, puppetId, () => now);
    expect(me.backend.signedPreKey(first.id)).toBeUndefined();
    expect(me.backend.signedPreKey(third.id)).toBeDefined();
  });
});

describe('Signal session records', () => {
  it('stores session records in the library format (the stock library can read them)', async () => {
    const a = remotePeer();
    const b = remotePeer();
    const up = b.prekeyUpload(1);
    await a.processBundle('b.1', { ...up, preKey: up.preKeys[0] });
    const record = a.backend.loadSession('b.1')!;
    const parsed = SessionRecord.deserialize(encodeRecord(record));
    expect(parsed.haveOpenSession()).toBe(true);
    expect(Buffer.from(parsed.getOpenSession()!.indexInfo.remoteIdentityKey)).toEqual(
      Buffer.from(record.getOpenSession()!.indexInfo.remoteIdentityKey),
    );
  });
});
