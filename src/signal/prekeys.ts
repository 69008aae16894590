/**
 * The puppet's own side of X3DH: its identity as the store holds it, and the prekeys others start
 * sessions from (first set-up, the `prekey_upload` content, replenishing one-time prekeys, rotating
 * the signed prekey). Nothing here runs per message.
 */
import type { PreKey, SignedPreKey } from '../protocol/stanza/types.js';
import { SignalError } from './errors.js';
import { makePreKeys, makeSignedPreKey } from './keys.js';
import { withoutTypeByte, type LocalIdentity, type SignalBackend, type StoredSignedPreKey } from './store.js';

/** The `prekey_upload` iq's content. */
export interface PreKeyUpload {
  readonly registrationId: number;
  /** 32 raw bytes. */
  readonly identityKey: Uint8Array;
  readonly preKeys: PreKey[];
  readonly signedPreKey: SignedPreKey;
}

export interface PrekeyUpkeepOptions {
  /** Milliseconds since the epoch: prekey ages (and, in the session manager, identity changes). Default Date.now. */
  now?: () => number;
  /** Rotate the signed prekey after this long. Default 7 days. */
  signedPreKeyMaxAgeMs?: number;
  /** Keep replaced signed prekeys this long, for prekey messages still in flight. Default 30 days. */
  signedPreKeyGraceMs?: number;
  /** Replenish when the server holds fewer one-time prekeys than this. Default 20. */
  preKeyThreshold?: number;
  /** ...up to this many. Default 100. */
  preKeyTarget?: number;
}

const DAY = 24 * 60 * 60 * 1000;

/** The puppet's identity key pair and registration id; enlisting it must have stored them. */
export function localIdentity(backend: SignalBackend): LocalIdentity {
  const id = backend.localIdentity();
  if (id === undefined) {
    throw new SignalError(
      'signal_identity_missing',
      'this puppet has no Signal identity in the store: create one (createSignalIdentity) when enlisting it',
    );
  }
  return id;
}

export class PrekeyUpkeep {
  private readonly now: () => number;
  private readonly signedPreKeyMaxAgeMs: number;
  private readonly signedPreKeyGraceMs: number;
  private readonly preKeyThreshold: number;
  private readonly preKeyTarget: number;

  constructor(
    private readonly backend: SignalBackend,
    options: PrekeyUpkeepOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.signedPreKeyMaxAgeMs = options.signedPreKeyMaxAgeMs ?? 7 * DAY;
    this.signedPreKeyGraceMs = options.signedPreKeyGraceMs ?? 30 * DAY;
    this.preKeyThreshold = options.preKeyThreshold ?? 20;
    this.preKeyTarget = options.preKeyTarget ?? 100;
  }

  /** First-time set-up of a new puppet: a signed prekey and `preKeys` one-time prekeys. */
  setUp(options: { preKeys?: number } = {}): void {
    if (this.backend.signedPreKeys().length === 0) this.rotateSignedPreKey();
    const missing = (options.preKeys ?? this.preKeyTarget) - this.backend.preKeyCount();
    if (missing > 0) this.generatePreKeys(missing);
  }

  private generatePreKeys(count: number): void {
    this.backend.putPreKeys(makePreKeys(this.backend.allocatePreKeyIds(count)));
  }

  /** `count` one-time prekeys not uploaded yet, generating more if needed. Mark them once uploaded. */
  prekeysToUpload(count: number): PreKey[] {
    const have = this.backend.preKeysNotUploaded(count);
    if (have.length < count) {
      this.generatePreKeys(count - have.length);
      return this.prekeysToUpload(count);
    }
    return have.map((k) => ({ id: k.keyId, publicKey: k.publicKey }));
  }

  markPrekeysUploaded(keyIds: readonly number[]): void {
    this.backend.markPreKeysUploaded(keyIds);
  }

  /** How many one-time prekeys to upload, given how many the server still holds (0: enough). */
  preKeysNeeded(serverCount: number): number {
    return serverCount < this.preKeyThreshold ? this.preKeyTarget - serverCount : 0;
  }

  /** The newest signed prekey (what bundles carry). */
  currentSignedPreKey(): SignedPreKey {
    const current = this.backend.signedPreKeys()[0];
    if (current === undefined) {
      throw new SignalError(
        'signal_identity_missing',
        'this puppet has no signed prekey: call setUp() when enlisting it',
      );
    }
    return publicSignedPreKey(current);
  }

  signedPreKeyRotationDue(now = this.now()): boolean {
    const current = this.backend.signedPreKeys()[0];
    return current === undefined || now - current.createdAt >= this.signedPreKeyMaxAgeMs;
  }

  /**
   * Makes a new signed prekey (upload it) and forgets replaced ones older than the grace period;
   * the newest replaced one is always kept, for prekey messages already in flight.
   */
  rotateSignedPreKey(now = this.now()): SignedPreKey {
    const id = localIdentity(this.backend);
    const fresh = makeSignedPreKey(id.privateKey, this.backend.allocateSignedPreKeyId(), now);
    this.backend.atomically(() => {
      this.backend.putSignedPreKey(fresh);
      const older = this.backend.signedPreKeys().filter((k) => k.keyId !== fresh.keyId);
      for (const k of older.slice(1)) {
        if (now - k.createdAt > this.signedPreKeyGraceMs) this.backend.removeSignedPreKey(k.keyId);
      }
    });
    return publicSignedPreKey(fresh);
  }

  /** The content of a `prekey_upload` iq: identity, current signed prekey and `count` one-time prekeys. */
  prekeyUpload(count: number): PreKeyUpload {
    const id = localIdentity(this.backend);
    return {
      registrationId: id.registrationId,
      identityKey: withoutTypeByte(id.publicKey),
      preKeys: this.prekeysToUpload(count),
      signedPreKey: this.currentSignedPreKey(),
    };
  }
}

const publicSignedPreKey = (k: StoredSignedPreKey): SignedPreKey => ({
  id: k.keyId,
  publicKey: k.publicKey,
  signature: k.signature,
});
