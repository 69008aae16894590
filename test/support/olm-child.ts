/**
 * One Matrix device with an OlmMachine (matrix-sdk-crypto-wasm), in a process of its own, for the
 * crypto store tests (test/unit/matrix-crypto-store.test.ts): the parent kills it with SIGKILL and
 * starts it again on the same database. Run with the TypeScript hooks:
 *
 *   node --import ./test/support/ts-hooks.mjs test/support/olm-child.ts '<OlmChildConfig JSON>'
 *
 * `persistent`: the machine's store is a PersistentIndexedDb on the bridge's database (SQLite file
 * or PostgreSQL URL), opened with `StoreHandle.open(name, passphrase)` and `initFromStore`.
 * `memory`: `OlmMachine.initialize` (the other side of the conversation).
 *
 * stdout: one JSON line `{ready, identity, openMs}`, then one line per command. stdin: one JSON
 * command per line, `{id, cmd, args}`. A persistent device awaits `flush()` before each answer, as
 * the bridge will before acknowledging anything.
 */
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import * as W from '@matrix-org/matrix-sdk-crypto-wasm';
import { PersistentIndexedDb } from '../../adapters/matrix/crypto/idb-persistence.js';
import { SqliteCryptoJournal } from '../../adapters/matrix/crypto/crypto-store-sqlite.js';
import { PostgresCryptoJournal } from '../../adapters/matrix/crypto/crypto-store-postgres.js';
import type { CryptoJournal } from '../../adapters/matrix/crypto/crypto-journal.js';
import { PgDatabase } from '../../src/store/postgres-database.js';
import { PayloadVault } from '../../src/util/payload-vault.js';

export interface OlmChildConfig {
  mode: 'persistent' | 'memory';
  user: string;
  device: string;
  database?: { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };
  /** base64 of the 32-byte at-rest key. */
  atRestKey?: string;
  storeName?: string;
  passphrase?: string;
}

type Json = Record<string, unknown>;
const config = JSON.parse(process.argv[2] ?? '{}') as OlmChildConfig;
const out = (line: Json): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const settings = () => new W.DecryptionSettings(W.TrustRequirement.Untrusted);

async function openJournal(): Promise<{ journal: CryptoJournal; close: () => Promise<void> }> {
  const db = config.database!;
  if (db.kind === 'sqlite') {
    const sqlite = new Database(db.file, { fileMustExist: true });
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    return { journal: new SqliteCryptoJournal(sqlite), close: () => Promise.resolve(void sqlite.close()) };
  }
  const pg = await PgDatabase.open({ url: db.url, migrations: false });
  return { journal: new PostgresCryptoJournal(pg), close: () => pg.close() };
}

async function main(): Promise<void> {
  await W.initAsync();
  const started = performance.now();
  let idb: PersistentIndexedDb | undefined;
  let machine: W.OlmMachine;
  if (config.mode === 'persistent') {
    const { journal } = await openJournal();
    idb = await PersistentIndexedDb.open(journal, new PayloadVault(Buffer.from(config.atRestKey!, 'base64')));
    idb.install();
    const handle = await W.StoreHandle.open(config.storeName!, config.passphrase);
    machine = await W.OlmMachine.initFromStore(
      new W.UserId(config.user),
      new W.DeviceId(config.device),
      handle,
    );
    handle.free();
    await idb.flush();
  } else {
    machine = await W.OlmMachine.initialize(new W.UserId(config.user), new W.DeviceId(config.device));
  }
  const openMs = performance.now() - started;
  const identity = {
    curve25519: machine.identityKeys.curve25519.toBase64(),
    ed25519: machine.identityKeys.ed25519.toBase64(),
  };

  const commands: Record<string, (args: Json) => Promise<unknown>> = {
    /** Uploads the device keys and one-time keys (answered as a homeserver would); returns them. */
    async uploadKeys() {
      for (const r of await machine.outgoingRequests()) {
        if (r.type !== W.RequestType.KeysUpload) continue;
        const body = JSON.parse(r.body as string) as { device_keys?: Json; one_time_keys?: Json };
        const count = Object.keys(body.one_time_keys ?? {}).length;
        await machine.markRequestAsSent(
          r.id!,
          r.type,
          JSON.stringify({ one_time_key_counts: { signed_curve25519: count } }),
        );
        return { deviceKeys: body.device_keys, oneTimeKeys: body.one_time_keys };
      }
      throw new Error('no keys upload request');
    },
    /** Learns another device from its uploaded keys and claims one of its one-time keys. */
    async learnDevice(args) {
      const user = args.user as string;
      const device = args.device as string;
      await machine.updateTrackedUsers([new W.UserId(user)]);
      for (const r of await machine.outgoingRequests()) {
        if (r.type !== W.RequestType.KeysQuery) continue;
        const response = { device_keys: { [user]: { [device]: args.deviceKeys } }, failures: {} };
        await machine.markRequestAsSent(r.id!, r.type, JSON.stringify(response));
      }
      const claim = await machine.getMissingSessions([new W.UserId(user)]);
      if (!claim) throw new Error('no keys claim: a session exists already?');
      const [keyId, key] = Object.entries(args.oneTimeKeys as Json)[0]!;
      const response = { one_time_keys: { [user]: { [device]: { [keyId]: key } } }, failures: {} };
      await machine.markRequestAsSent(claim.id, claim.type, JSON.stringify(response));
      return true;
    },
    /** Shares the room's Megolm key with `users`; returns the to-device events, as received. */
    async shareRoomKey(args) {
      const users = (args.users as string[]).map((u) => new W.UserId(u));
      const requests = await machine.shareRoomKey(
        new W.RoomId(args.room as string),
        users,
        new W.EncryptionSettings(),
      );
      const events: Json[] = [];
      for (const r of requests) {
        const body = JSON.parse(r.body) as { messages: Record<string, Record<string, Json>> };
        for (const byDevice of Object.values(body.messages)) {
          for (const content of Object.values(byDevice))
            events.push({ type: r.event_type, sender: config.user, content });
        }
        await machine.markRequestAsSent(r.id, r.type, '{}');
      }
      return events;
    },
    /** A room event encrypted with the room's Megolm session. */
    async encrypt(args) {
      const room = args.room as string;
      const content = await machine.encryptRoomEvent(
        new W.RoomId(room),
        'm.room.message',
        JSON.stringify({ msgtype: 'm.text', body: args.body }),
      );
      return {
        type: 'm.room.encrypted',
        sender: config.user,
        event_id: `$${Math.random().toString(36).slice(2)}`,
        room_id: room,
        origin_server_ts: Date.now(),
        content: JSON.parse(content) as Json,
      };
    },
    /** An Olm-encrypted to-device event for another device. */
    async encryptToDevice(args) {
      const device = await machine.getDevice(
        new W.UserId(args.user as string),
        new W.DeviceId(args.device as string),
      );
      if (!device) throw new Error('unknown device');
      const content = await device.encryptToDeviceEvent(args.type as string, args.content);
      return { type: 'm.room.encrypted', sender: config.user, content: JSON.parse(content) as Json };
    },
    /** Receives to-device events as a sync (or an appservice transaction) delivers them. */
    async receive(args) {
      const processed = await machine.receiveSyncChanges(
        JSON.stringify(args.events),
        new W.DeviceLists([], []),
        new Map([['signed_curve25519', 50]]),
        new Set(),
        settings(),
      );
      return processed.map((p) => ({ kind: p.constructor.name, event: JSON.parse(p.rawEvent) as Json }));
    },
    /** Decrypts a room event; returns its clear content. */
    async decrypt(args) {
      const event = args.event as Json;
      const d = await machine.decryptRoomEvent(
        JSON.stringify(event),
        new W.RoomId(event.room_id as string),
        settings(),
      );
      return (JSON.parse(d.event) as { content: Json }).content;
    },
  };

  out({ ready: true, identity, openMs });
  const lines = createInterface({ input: process.stdin });
  // One command at a time, in order, as a bridge drives one device.
  let turn = Promise.resolve();
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    turn = turn.then(async () => {
      const { id, cmd, args } = JSON.parse(line) as { id: number; cmd: string; args: Json };
      try {
        const result = await commands[cmd]!(args ?? {});
        await idb?.flush();
        out({ id, ok: true, result });
      } catch (err) {
        out({ id, ok: false, error: (err as Error).stack ?? String(err) });
      }
    });
  });
  lines.on('close', () => void turn.then(() => process.exit(0)));
}

main().catch((err: unknown) => {
  out({ ready: false, error: (err as { code?: string }).code ?? 'failed', message: (err as Error).message });
  process.exit(1);
});
