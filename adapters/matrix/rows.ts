/**
 * The Matrix adapter's table rows as the store's records, and its migrations, for both backends
 * (sqlite-store.ts, postgres-store.ts): SQLite and PostgreSQL answer with the same column names
 * and values (flags are integers 0/1 in both dialects).
 */
import { fileURLToPath } from 'node:url';
import { readMigrations, type Migration, type Row } from '../../src/store/sql.js';
import type { Ghost, GhostAvatar, InboundRow, InboundState, MatrixRoom } from './store.js';

export const toRoom = (r: Row): MatrixRoom => ({
  roomId: r.room_id as string,
  kind: r.kind as MatrixRoom['kind'],
  localUser: r.local_user as string,
  remoteJid: (r.remote_jid as string | null) ?? null,
  encryptionTold: r.encryption_told === 1,
});

export const toGhost = (r: Row): Ghost => ({
  userId: r.user_id as string,
  jid: r.jid as string,
  displayname: (r.displayname as string | null) ?? null,
  registered: r.registered === 1,
});

/** The avatar columns of a ghost's row; undefined when it has none. */
export const toGhostAvatar = (r: Row): GhostAvatar | undefined =>
  typeof r.avatar_picture_id === 'string' && typeof r.avatar_url === 'string'
    ? { pictureId: r.avatar_picture_id, url: r.avatar_url }
    : undefined;

export const toInbound = (r: Row): InboundRow => ({
  seq: r.seq as number,
  key: r.key as string,
  roomId: r.room_id as string,
  kind: r.kind as InboundRow['kind'],
  payload: JSON.parse(r.payload as string) as Record<string, unknown>,
  attempts: r.attempts as number,
});

export const toInboundState = (r: Row): InboundState => ({
  seq: Number(r.seq),
  state: r.state as string,
  attempts: r.attempts as number,
  error: (r.error as string | null) ?? null,
});

export const toReaction = (r: Row): { target: string; emoji: string } => ({
  target: r.target as string,
  emoji: r.emoji as string,
});

/** The migrations of the Matrix adapter's tables (migrations/, beside this file; PostgreSQL's in pg/). */
export function matrixMigrations(dialect: 'sqlite' | 'postgres' = 'sqlite'): Migration[] {
  const dir = dialect === 'sqlite' ? './migrations/' : './migrations/pg/';
  return readMigrations(fileURLToPath(new URL(dir, import.meta.url)));
}
