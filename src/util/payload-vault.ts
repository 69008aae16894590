/**
 * Sealing of small stored payloads (row contents) with the operator's at-rest key: AES-256-GCM
 * with a random 96-bit nonce per payload and the row's identity as associated data, so a sealed
 * payload cannot be moved to another row. The core's outbox and inbox use it (src/store/at-rest.ts
 * holds the key file and the core's row identities), and so does an adapter for what it must keep
 * while it waits (the XMPP adapter's journal of stanzas not yet handed to the core).
 *
 * A sealed payload: 0x01 | nonce (12) | ciphertext | tag (16). A payload written before sealing
 * existed is JSON (it starts with `{`) or text and is read as it is; an empty payload has been cleared.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { InteropError } from '../errors.js';

export const AT_REST_KEY_BYTES = 32;
const VERSION = 0x01;
const NONCE = 12;
const TAG = 16;
/** Nonces drawn per call of the random source. */
const NONCE_POOL = 256;

export class AtRestKeyError extends InteropError {}

/** The content of a row could not be opened: sealed under another key, or damaged. */
export class PayloadUnreadableError extends InteropError {}

/** Seals and opens row payloads with one 32-byte key. */
export class PayloadVault {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== AT_REST_KEY_BYTES) {
      throw new AtRestKeyError(
        'at_rest_key_invalid',
        `an at-rest key is ${AT_REST_KEY_BYTES} bytes, not ${key.length}`,
      );
    }
    this.#key = Buffer.from(key);
  }

  /** Random nonces, drawn NONCE_POOL at a time (one random call per 256 seals, not one each). */
  #nonces = Buffer.alloc(0);
  #nonceAt = 0;

  /** `rowId` is the row's identity (table and key), bound to the ciphertext as associated data. */
  seal(rowId: string, plain: Uint8Array): Uint8Array {
    // One output buffer: version | nonce | ciphertext | tag (GCM's ciphertext is as long as the plaintext).
    const out = Buffer.allocUnsafe(1 + NONCE + plain.byteLength + TAG);
    out[0] = VERSION;
    if (this.#nonceAt + NONCE > this.#nonces.length) {
      this.#nonces = randomBytes(NONCE * NONCE_POOL);
      this.#nonceAt = 0;
    }
    const nonce = this.#nonces.subarray(this.#nonceAt, this.#nonceAt + NONCE);
    this.#nonceAt += NONCE;
    nonce.copy(out, 1);
    nonce.fill(0); // used once: not kept in memory
    const cipher = createCipheriv('aes-256-gcm', this.#key, out.subarray(1, 1 + NONCE));
    cipher.setAAD(Buffer.from(rowId, 'utf8'));
    const body = cipher.update(plain);
    body.copy(out, 1 + NONCE);
    cipher.final(); // GCM: nothing more
    cipher.getAuthTag().copy(out, 1 + NONCE + plain.byteLength);
    return out;
  }

  /**
   * The payload's content: opened if sealed, as it is if written before sealing (JSON), empty if
   * cleared. Throws PayloadUnreadableError when it was sealed under another key or altered.
   */
  open(rowId: string, stored: Uint8Array): Uint8Array {
    return openPayload(this, rowId, stored);
  }

  /** @internal */
  decrypt(rowId: string, stored: Uint8Array): Uint8Array {
    if (stored.length < 1 + NONCE + TAG) throw unreadable(rowId, 'too short');
    const buf = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, buf.subarray(1, 1 + NONCE));
      decipher.setAAD(Buffer.from(rowId, 'utf8'));
      decipher.setAuthTag(buf.subarray(buf.length - TAG));
      const plain = decipher.update(buf.subarray(1 + NONCE, buf.length - TAG));
      decipher.final(); // checks the tag; GCM gives nothing more
      return plain;
    } catch {
      throw unreadable(rowId, 'it was sealed under another at-rest key, or altered');
    }
  }
}

function unreadable(rowId: string, why: string): PayloadUnreadableError {
  return new PayloadUnreadableError(
    'at_rest_payload_unreadable',
    `the stored content of ${rowId} cannot be opened: ${why}`,
  );
}

/** Whether a stored payload is sealed (as opposed to cleared, or plain from before sealing). */
export const isSealed = (stored: Uint8Array): boolean => stored.length > 0 && stored[0] === VERSION;

/** Opens with `vault` when sealed; a sealed payload without a vault is unreadable. */
export function openPayload(vault: PayloadVault | undefined, rowId: string, stored: Uint8Array): Uint8Array {
  if (!isSealed(stored)) return stored;
  if (!vault) throw unreadable(rowId, 'the bridge has no at-rest key');
  return vault.decrypt(rowId, stored);
}

/** Seals with `vault` when there is one (tests and tools may run without). */
export const sealPayload = (vault: PayloadVault | undefined, rowId: string, plain: Uint8Array): Uint8Array =>
  vault ? vault.seal(rowId, plain) : plain;
