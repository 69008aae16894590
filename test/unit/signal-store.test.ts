/** The SQLite store: sessions survive a reopen; prekey upkeep; stored records stay library-readable. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SessionRecord } from '@privacyresearch/libsignal-protocol-typescript/lib/session-record.js';

import { openDatabase, type Db } from '../../src/store/database.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { createSignalIdentity } from '../../src/signal/keys.js';
import { SignalSessionManager } from '../../src/signal/session-manager.js';
import { SqliteSignalBackend } from '../../src/signal/sqlite-store.js';
import { MemorySignalBackend } from '../../src/signal/store.js';
import { encodeRecord } from '../../src/signal/record.js';

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const DAY = 24 * 3600 * 1000;

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'signal-store-'));
  file = path.join(dir, 'bridge.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function createPuppet(localId: string): Promise<number> {
  const store = openSqliteStore(file);
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
  await store.close();
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

function open(db: Db, puppetId: number, now?: () => number) {
  return new SignalSessionManager(new SqliteSignalBackend(db, puppetId), {
    localUser: 'puppet',
    ...(now ? { now } : {}),
  });
}

describe('Signal state in SQLite', () => {
  it('keeps a session across closing and reopening the database', async () => {
    const puppetId = await createPuppet('alice@example.org');
    const remote = remotePeer();
    let db = openDatabase(file);
    let me = open(db, puppetId);
    me.setUp({ preKeys: 5 });
    const up = remote.prekeyUpload(1);
    await me.processBundle('remote.1', { ...up, preKey: up.preKeys[0] });
    const first = await me.encrypt('remote.1', text('before restart'));
    expect(str(await remote.decrypt('puppet.1', first.type, first.body))).toBe('before restart');
    const reply = await remote.encrypt('puppet.1', text('reply'));
    expect(str(await me.decrypt('remote.1', reply.type, reply.body))).toBe('reply');
    db.close();

    db = openDatabase(file);
    me = open(db, puppetId);
    expect(me.hasSession('remote.1')).toBe(true);
    const after = await me.encrypt('remote.1', text('after restart'));
    expect(after.type).toBe('msg');
    expect(str(await remote.decrypt('puppet.1', after.type, after.body))).toBe('after restart');
    const again = await remote.encrypt('puppet.1', text('welcome back'));
    expect(str(await me.decrypt('remote.1', again.type, again.body))).toBe('welcome back');
    expect(me.remoteIdentity('remote.1')?.trust).toBe('trusted');
    db.close();
  });

  it('answers a first pkmsg after a restart, with the prekeys it stored', async () => {
    const puppetId = await createPuppet('bob@example.org');
    let db = openDatabase(file);
    const first = open(db, puppetId);
    first.setUp({ preKeys: 3 });
    const upload = first.prekeyUpload(3);
    db.close();
    db = openDatabase(file);
    const me = open(db, puppetId);
    const remote = remotePeer();
    await remote.processBundle('puppet.1', { ...upload, preKey: upload.preKeys[1] });
    const m = await remote.encrypt('puppet.1', text('hi'));
    expect(str(await me.decrypt('remote.1', m.type, m.body))).toBe('hi');
    expect(me.prekeysToUpload(10).map((k) => k.id)).not.toContain(upload.preKeys[1]!.id);
    db.close();
  });

  it('consumes one-time prekeys, replenishes below the threshold, never reuses an id', async () => {
    const puppetId = await createPuppet('carol@example.org');
    const db = openDatabase(file);
    const me = open(db, puppetId);
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
    db.close();
  });

  it('rotates the signed prekey when due and forgets old ones after the grace period', async () => {
    const puppetId = await createPuppet('dave@example.org');
    const db = openDatabase(file);
    let now = 1_000_000_000_000;
    const me = open(db, puppetId, () => now);
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
    const backend = me.backend;
    expect(backend.signedPreKey(first.id)).toBeUndefined();
    expect(backend.signedPreKey(third.id)).toBeDefined();
    db.close();
  });

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
