/**
 * Session records without the per-message JSON round trip.
 *
 * The library's storage contract passes session records as JSON strings with base64 keys: every
 * encrypt and decrypt parses the whole record and serializes it again (tens of microseconds, more
 * than the cryptography of a message). This layer keeps records decoded instead: the store holds the
 * committed `LiveSessionRecord`, each operation works on a cheap structural copy (key ArrayBuffers
 * are shared, since the library replaces them and never writes into them), and committing swaps the
 * copy in. A failed operation simply drops its copy, so it never changes the stored session: the
 * same guarantee the string round trip gave. JSON is only produced for SQLite, in the library's
 * own format (so the stock library can still read a stored record).
 */
import { SessionRecord } from '@privacyresearch/libsignal-protocol-typescript/lib/session-record.js';
import type {
  Chain,
  KeyPairType,
  OldRatchetInfo,
  SessionType,
} from '@privacyresearch/libsignal-protocol-typescript';

/**
 * What a working copy's `serialize()` returns: the library passes it straight to `storeSession`,
 * which then commits the working copy of that address instead of parsing a string.
 */
export const LIVE_RECORD = '\u0000interop-bridge/live-session-record';

/** The library keeps the last ten old receiving ratchets of a session (OLD_RATCHETS_MAX_LENGTH). */
const OLD_RATCHETS_MAX = 10;

const b64 = (ab: ArrayBuffer): string => Buffer.from(ab).toString('base64');
const ab = (s: string): ArrayBuffer => {
  const b = Buffer.from(s, 'base64');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
};

export class LiveSessionRecord extends SessionRecord {
  /** A working copy commits itself through `storeSession(address, LIVE_RECORD)`. */
  override serialize(): string {
    return LIVE_RECORD;
  }

  /**
   * The library's version deletes `session[key]` instead of `session.chains[key]` (and with the wrong
   * key encoding), so old receiving chains are never dropped and a record grows with every DH ratchet
   * step. This keeps the ten most recent old chains, as the library intends.
   */
  override removeOldChains(session: SessionType): void {
    // Old receiving chains that are closed (no chain key) and hold no skipped message keys can
    // decrypt nothing: drop them (in ping-pong that is every one of them, which keeps records small).
    // A replay of a message from such a chain then fails its MAC instead of being recognised as a
    // duplicate; either way nothing is committed.
    session.oldRatchetList = session.oldRatchetList.filter((r) => {
      const key = b64(r.ephemeralKey);
      const chain = session.chains[key];
      if (chain && (chain.chainKey.key !== undefined || Object.keys(chain.messageKeys).length > 0))
        return true;
      delete session.chains[key];
      return false;
    });
    while (session.oldRatchetList.length > OLD_RATCHETS_MAX) {
      let index = 0;
      let oldest = session.oldRatchetList[0] as OldRatchetInfo<ArrayBuffer>;
      session.oldRatchetList.forEach((r, i) => {
        if (r.added < oldest.added) {
          oldest = r;
          index = i;
        }
      });
      delete session.chains[b64(oldest.ephemeralKey)];
      session.oldRatchetList.splice(index, 1);
    }
  }

  /** A copy an operation may mutate freely. */
  copy(): LiveSessionRecord {
    const record = new LiveSessionRecord();
    for (const k of Object.keys(this.sessions)) {
      record.sessions[k] = copySession(this.sessions[k] as SessionType);
    }
    return record;
  }

  /** A new record sharing this one's sessions (replace, never mutate, the ones you change). */
  shallowCopy(): LiveSessionRecord {
    const record = new LiveSessionRecord();
    record.sessions = { ...this.sessions };
    return record;
  }

  /** Adopts any library record (a fresh `SessionRecord` built by the library's session builder). */
  static from(record: SessionRecord): LiveSessionRecord {
    if (record instanceof LiveSessionRecord) return record;
    const live = new LiveSessionRecord();
    live.sessions = record.sessions;
    return live;
  }
}

const copyKeyPair = (kp: KeyPairType): KeyPairType => ({ pubKey: kp.pubKey, privKey: kp.privKey });

/**
 * A copy of one session an operation may mutate (key ArrayBuffers are shared: nothing writes into
 * them). With `deepChains` false the chains map is new but the chain objects are shared: the caller
 * must replace a chain with a copy before changing it (ratchet.ts does).
 */
export function copySession(s: SessionType, deepChains = true): SessionType {
  const chains: Record<string, Chain<ArrayBuffer>> = deepChains ? {} : { ...s.chains };
  if (deepChains) {
    for (const k of Object.keys(s.chains)) {
      const c = s.chains[k] as Chain<ArrayBuffer>;
      chains[k] = {
        chainType: c.chainType,
        chainKey: c.chainKey.key === undefined ? { counter: c.chainKey.counter } : { ...c.chainKey },
        messageKeys: { ...c.messageKeys },
      };
    }
  }
  const r = s.currentRatchet;
  const copy: SessionType = {
    indexInfo: { ...s.indexInfo },
    registrationId: s.registrationId,
    currentRatchet: {
      ...r,
      ...(r.ephemeralKeyPair ? { ephemeralKeyPair: copyKeyPair(r.ephemeralKeyPair) } : {}),
    },
    // Entries are never changed in place, only added and removed: copying the list is enough.
    oldRatchetList: [...s.oldRatchetList],
    chains,
  };
  if (s.pendingPreKey) copy.pendingPreKey = { ...s.pendingPreKey };
  return copy;
}

// ---------------------------------------------------------------------------------------------
// The library's JSON format ({ sessions: { [binary base key]: session with base64 keys }, version })
// written with Buffer's native base64 instead of the library's JavaScript one.

interface JsonChain {
  chainType: number;
  chainKey: { key?: string; counter: number };
  messageKeys: Record<string, string>;
}

interface JsonSession {
  indexInfo: { closed: number; remoteIdentityKey: string; baseKey?: string; baseKeyType?: number };
  registrationId?: number;
  currentRatchet: {
    rootKey: string;
    ephemeralKeyPair?: { pubKey: string; privKey: string };
    lastRemoteEphemeralKey: string;
    previousCounter: number;
    added?: number;
  };
  pendingPreKey?: { baseKey: string; preKeyId?: number; signedKeyId: number };
  oldRatchetList: { ephemeralKey: string; added: number }[];
  chains: Record<string, JsonChain>;
}

function sessionToJson(s: SessionType): JsonSession {
  const chains: Record<string, JsonChain> = {};
  for (const k of Object.keys(s.chains)) {
    const c = s.chains[k] as Chain<ArrayBuffer>;
    const messageKeys: Record<string, string> = {};
    for (const n of Object.keys(c.messageKeys)) messageKeys[n] = b64(c.messageKeys[Number(n)] as ArrayBuffer);
    chains[k] = {
      chainType: c.chainType,
      chainKey: { ...(c.chainKey.key ? { key: b64(c.chainKey.key) } : {}), counter: c.chainKey.counter },
      messageKeys,
    };
  }
  const r = s.currentRatchet;
  const i = s.indexInfo;
  return {
    indexInfo: {
      closed: i.closed,
      remoteIdentityKey: b64(i.remoteIdentityKey),
      ...(i.baseKey ? { baseKey: b64(i.baseKey) } : {}),
      ...(i.baseKeyType !== undefined ? { baseKeyType: i.baseKeyType } : {}),
    },
    ...(s.registrationId !== undefined ? { registrationId: s.registrationId } : {}),
    currentRatchet: {
      rootKey: b64(r.rootKey),
      ...(r.ephemeralKeyPair
        ? {
            ephemeralKeyPair: {
              pubKey: b64(r.ephemeralKeyPair.pubKey),
              privKey: b64(r.ephemeralKeyPair.privKey),
            },
          }
        : {}),
      lastRemoteEphemeralKey: b64(r.lastRemoteEphemeralKey),
      previousCounter: r.previousCounter,
      ...(r.added !== undefined ? { added: r.added } : {}),
    },
    ...(s.pendingPreKey
      ? {
          pendingPreKey: {
            baseKey: b64(s.pendingPreKey.baseKey),
            ...(s.pendingPreKey.preKeyId !== undefined ? { preKeyId: s.pendingPreKey.preKeyId } : {}),
            signedKeyId: s.pendingPreKey.signedKeyId,
          },
        }
      : {}),
    oldRatchetList: s.oldRatchetList.map((o) => ({ ephemeralKey: b64(o.ephemeralKey), added: o.added })),
    chains,
  };
}

function sessionFromJson(j: JsonSession): SessionType {
  const chains: Record<string, Chain<ArrayBuffer>> = {};
  for (const k of Object.keys(j.chains)) {
    const c = j.chains[k] as JsonChain;
    const messageKeys: Record<number, ArrayBuffer> = {};
    for (const n of Object.keys(c.messageKeys)) messageKeys[Number(n)] = ab(c.messageKeys[n] as string);
    chains[k] = {
      chainType: c.chainType,
      chainKey: c.chainKey.key
        ? { key: ab(c.chainKey.key), counter: c.chainKey.counter }
        : { counter: c.chainKey.counter },
      messageKeys,
    };
  }
  const r = j.currentRatchet;
  const i = j.indexInfo;
  const session: SessionType = {
    indexInfo: {
      closed: i.closed,
      remoteIdentityKey: ab(i.remoteIdentityKey),
      ...(i.baseKey ? { baseKey: ab(i.baseKey) } : {}),
      ...(i.baseKeyType !== undefined ? { baseKeyType: i.baseKeyType } : {}),
    },
    registrationId: j.registrationId,
    currentRatchet: {
      rootKey: ab(r.rootKey),
      ...(r.ephemeralKeyPair
        ? {
            ephemeralKeyPair: {
              pubKey: ab(r.ephemeralKeyPair.pubKey),
              privKey: ab(r.ephemeralKeyPair.privKey),
            },
          }
        : {}),
      lastRemoteEphemeralKey: ab(r.lastRemoteEphemeralKey),
      previousCounter: r.previousCounter,
      ...(r.added !== undefined ? { added: r.added } : {}),
    },
    oldRatchetList: j.oldRatchetList.map((o) => ({ ephemeralKey: ab(o.ephemeralKey), added: o.added })),
    chains,
  };
  if (j.pendingPreKey) {
    session.pendingPreKey = {
      baseKey: ab(j.pendingPreKey.baseKey),
      signedKeyId: j.pendingPreKey.signedKeyId,
      ...(j.pendingPreKey.preKeyId !== undefined ? { preKeyId: j.pendingPreKey.preKeyId } : {}),
    };
  }
  return session;
}

/** The record as the library's JSON (readable by `SessionRecord.deserialize`). */
export function encodeRecord(record: SessionRecord): string {
  const sessions: Record<string, JsonSession> = {};
  for (const k of Object.keys(record.sessions))
    sessions[k] = sessionToJson(record.sessions[k] as SessionType);
  return JSON.stringify({ sessions, version: 'v1' });
}

/** Parses the library's JSON (as written by `encodeRecord` or `SessionRecord.serialize`). */
export function decodeRecord(json: string): LiveSessionRecord {
  const data = JSON.parse(json) as { sessions?: unknown; version?: unknown };
  if (
    data.version !== 'v1' ||
    typeof data.sessions !== 'object' ||
    data.sessions === null ||
    Array.isArray(data.sessions)
  ) {
    throw new Error('not a v1 session record');
  }
  const record = new LiveSessionRecord();
  const sessions = data.sessions as Record<string, JsonSession>;
  for (const k of Object.keys(sessions)) record.sessions[k] = sessionFromJson(sessions[k] as JsonSession);
  return record;
}
