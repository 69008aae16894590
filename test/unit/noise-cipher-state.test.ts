import crypto from 'node:crypto';

import {
  AESGCM,
  ChaChaPoly,
  CipherState,
  DEFAULT_NONCE_SOFT_LIMIT,
  MAX_NONCE,
  NoiseError,
} from '../../src/protocol/noise/index.js';

const KEY = Buffer.alloc(32, 0x42);
const AD = Buffer.from('ad');
const EMPTY = Buffer.alloc(0);

function keyed(cipher = AESGCM): CipherState {
  const cs = new CipherState(cipher);
  cs.initializeKey(KEY);
  return cs;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof NoiseError ? error.code : `not a NoiseError: ${String(error)}`;
  }
  return undefined;
}

/** What OpenSSL produces for the given 12-byte nonce, to pin the nonce layout of each cipher. */
function reference(algorithm: 'aes-256-gcm' | 'chacha20-poly1305', iv: string, plaintext: Buffer): Buffer {
  const cipher = crypto.createCipheriv(algorithm as 'aes-256-gcm', KEY, Buffer.from(iv, 'hex'), {
    authTagLength: 16,
  });
  cipher.setAAD(AD, { plaintextLength: plaintext.length });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

describe('CipherState', () => {
  it('passes plaintext through unchanged while it has no key', () => {
    const cs = new CipherState(AESGCM);
    expect(cs.hasKey()).toBe(false);
    expect(cs.encryptWithAd(AD, Buffer.from('x'))).toEqual(Buffer.from('x'));
  });

  it('AESGCM puts the counter big-endian after 4 zero bytes', () => {
    const cs = keyed(AESGCM);
    cs.setNonce(0x0102n);
    expect(cs.encryptWithAd(AD, Buffer.from('msg'))).toEqual(
      reference('aes-256-gcm', '000000000000000000000102', Buffer.from('msg')),
    );
  });

  it('ChaChaPoly puts the counter little-endian after 4 zero bytes', () => {
    const cs = keyed(ChaChaPoly);
    cs.setNonce(0x0102n);
    expect(cs.encryptWithAd(AD, Buffer.from('msg'))).toEqual(
      reference('chacha20-poly1305', '000000000201000000000000', Buffer.from('msg')),
    );
  });

  it('uses nonce 0, 1, 2... and the receiver follows', () => {
    const sender = keyed();
    const receiver = keyed();
    for (const text of ['a', 'b', 'c']) {
      expect(receiver.decryptWithAd(AD, sender.encryptWithAd(AD, Buffer.from(text))).toString()).toBe(text);
    }
    expect(sender.nonce).toBe(3n);
    expect(receiver.nonce).toBe(3n);
  });

  it('a ciphertext shorter than the tag, or with the wrong ad, fails without advancing the nonce', () => {
    const receiver = keyed();
    const ct = keyed().encryptWithAd(AD, Buffer.from('x'));
    expect(codeOf(() => receiver.decryptWithAd(AD, Buffer.alloc(15)))).toBe('noise_decrypt_failed');
    expect(codeOf(() => receiver.decryptWithAd(EMPTY, ct))).toBe('noise_decrypt_failed');
    expect(receiver.nonce).toBe(0n);
    expect(receiver.decryptWithAd(AD, ct).toString()).toBe('x');
  });

  it.each([AESGCM, ChaChaPoly])('$name refuses to wrap: the nonce 2^64-1 is never used', (cipher) => {
    const sender = keyed(cipher);
    const receiver = keyed(cipher);
    sender.setNonce(MAX_NONCE - 1n);
    receiver.setNonce(MAX_NONCE - 1n);
    const last = sender.encryptWithAd(AD, Buffer.from('last'));
    expect(receiver.decryptWithAd(AD, last).toString()).toBe('last');
    expect(sender.noncesRemaining).toBe(0n);
    expect(codeOf(() => sender.encryptWithAd(AD, Buffer.from('one more')))).toBe('noise_nonce_exhausted');
    expect(codeOf(() => receiver.decryptWithAd(AD, last))).toBe('noise_nonce_exhausted');
    expect(sender.nonce).toBe(MAX_NONCE);
  });

  it('signals nearNonceLimit from the soft limit on, so the transport can rekey or reconnect early', () => {
    const cs = keyed();
    expect(cs.nearNonceLimit).toBe(false);
    cs.setNonce(DEFAULT_NONCE_SOFT_LIMIT - 1n);
    expect(cs.nearNonceLimit).toBe(false);
    cs.encryptWithAd(AD, EMPTY);
    expect(cs.nearNonceLimit).toBe(true);
    const custom = new CipherState(AESGCM, { nonceSoftLimit: 2n });
    custom.initializeKey(KEY);
    custom.encryptWithAd(AD, EMPTY);
    custom.encryptWithAd(AD, EMPTY);
    expect(custom.nearNonceLimit).toBe(true);
  });

  it.each([AESGCM, ChaChaPoly])(
    '$name rekey: both sides switch keys, keep nonces, and still agree',
    (cipher) => {
      const sender = keyed(cipher);
      const receiver = keyed(cipher);
      receiver.decryptWithAd(AD, sender.encryptWithAd(AD, Buffer.from('before')));
      sender.rekey();
      receiver.rekey();
      expect(sender.nonce).toBe(1n);
      const ct = sender.encryptWithAd(AD, Buffer.from('after'));
      expect(receiver.decryptWithAd(AD, ct).toString()).toBe('after');
      const stale = keyed(cipher);
      stale.setNonce(1n);
      expect(codeOf(() => stale.decryptWithAd(AD, ct))).toBe('noise_decrypt_failed');
    },
  );

  it('REKEY(k) is the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes)', () => {
    const expected = AESGCM.encrypt(KEY, MAX_NONCE, EMPTY, Buffer.alloc(32)).subarray(0, 32);
    expect(AESGCM.rekey(KEY)).toEqual(expected);
    const iv = Buffer.from('00000000ffffffffffffffff', 'hex');
    const openssl = crypto.createCipheriv('aes-256-gcm', KEY, iv).update(Buffer.alloc(32));
    expect(AESGCM.rekey(KEY)).toEqual(openssl);
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(codeOf(() => new CipherState(AESGCM).initializeKey(Buffer.alloc(16)))).toBe('noise_invalid_key');
  });
});
