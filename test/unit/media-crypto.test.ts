import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import {
  decryptMedia,
  deriveMediaKeys,
  encryptedMediaLength,
  encryptMedia,
  MediaEncryptor,
  MediaError,
  MediaHashMismatchError,
} from '../../src/media/crypto.js';
import type { EncryptedMediaInfo, ExpectedMedia, MediaType } from '../../src/media/crypto.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const fixedKey = Uint8Array.from({ length: 32 }, (_, i) => i);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

let spoolRoot: string;
// A fresh spool directory per test, so that "nothing was kept" is checked test by test.
beforeEach(async () => {
  spoolRoot = await mkdtemp(join(tmpdir(), 'media-crypto-test-'));
});
afterEach(async () => {
  await rm(spoolRoot, { recursive: true, force: true });
});

/** Yield `data` in pieces whose sizes cycle through `sizes`. */
async function* chunked(data: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const size = sizes.length === 0 ? data.length : sizes[i % sizes.length]!;
    yield data.subarray(at, at + size);
    at += size;
  }
}

function collector(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

async function encryptAll(
  plaintext: Uint8Array,
  type: MediaType,
  sizes: number[] = [],
  mediaKey?: Uint8Array,
): Promise<{ blob: Buffer; info: EncryptedMediaInfo }> {
  const out = collector();
  const info = await encryptMedia(chunked(plaintext, sizes), out.sink, type, mediaKey ? { mediaKey } : {});
  return { blob: out.bytes(), info };
}

function expectationOf(info: EncryptedMediaInfo, type: MediaType): ExpectedMedia {
  return {
    type,
    mediaKey: info.mediaKey,
    fileSha256: info.fileSha256,
    fileEncSha256: info.fileEncSha256,
    fileLength: info.fileLength,
  };
}

async function decryptAll(
  blob: Uint8Array,
  expected: ExpectedMedia,
  sizes: number[] = [],
  maxBytes = 64 * MiB,
) {
  const media = await decryptMedia(chunked(blob, sizes), expected, { maxBytes, spoolDir: spoolRoot });
  try {
    const parts: Buffer[] = [];
    for await (const part of media.open()) parts.push(part as Buffer);
    return Buffer.concat(parts);
  } finally {
    await media.dispose();
  }
}

async function rejection(promise: Promise<unknown>): Promise<MediaError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof MediaError) return err;
    throw err;
  }
  throw new Error('expected a MediaError, the promise resolved');
}

/** RFC 5869 by hand with HMAC, as a second, independent HKDF. */
function hkdfByHand(ikm: Uint8Array, info: string, length: number): Buffer {
  const prk = createHmac('sha256', Buffer.alloc(32)).update(ikm).digest();
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; blocks.length * 32 < length; i++) {
    previous = createHmac('sha256', prk)
      .update(Buffer.concat([previous, Buffer.from(info), Buffer.from([i])]))
      .digest();
    blocks.push(previous);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

describe('media key derivation', () => {
  it.each([
    ['image', 'WhatsApp Image Keys'],
    ['video', 'WhatsApp Video Keys'],
    ['audio', 'WhatsApp Audio Keys'],
    ['document', 'WhatsApp Document Keys'],
  ] as const)(
    'expands a %s key with HKDF-SHA256, info "%s", into iv, cipherKey, macKey, refKey',
    (type, info) => {
      const expanded = Buffer.from(hkdfSync('sha256', fixedKey, Buffer.alloc(0), info, 112));
      expect(hkdfByHand(fixedKey, info, 112)).toEqual(expanded);
      const keys = deriveMediaKeys(fixedKey, type);
      expect(Buffer.concat([keys.iv, keys.cipherKey, keys.macKey, keys.refKey])).toEqual(expanded);
    },
  );

  it('rejects a media key that is not 32 bytes with media_bad_key', () => {
    expect(() => deriveMediaKeys(new Uint8Array(31), 'image')).toThrow(
      expect.objectContaining({ code: 'media_bad_key' }),
    );
  });
});

describe('media encryption interop vector', () => {
  const plaintext = Buffer.from('Hello, interop!');

  it('produces exactly the bytes derived by hand from node:crypto primitives', async () => {
    const x = Buffer.from(hkdfSync('sha256', fixedKey, Buffer.alloc(32), 'WhatsApp Image Keys', 112));
    const [iv, cipherKey, macKey] = [x.subarray(0, 16), x.subarray(16, 48), x.subarray(48, 80)];
    const cipher = createCipheriv('aes-256-cbc', cipherKey, iv);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const mac = createHmac('sha256', macKey).update(iv).update(ciphertext).digest().subarray(0, 10);
    const expectedBlob = Buffer.concat([ciphertext, mac]);

    const { blob, info } = await encryptAll(plaintext, 'image', [], fixedKey);
    expect(blob).toEqual(expectedBlob);
    expect(Buffer.from(info.fileSha256)).toEqual(sha256(plaintext));
    expect(Buffer.from(info.fileEncSha256)).toEqual(sha256(expectedBlob));
    expect(info.fileLength).toBe(15);
    expect(info.encLength).toBe(26);
  });

  it('matches the documented hex example', async () => {
    const { blob, info } = await encryptAll(plaintext, 'image', [], fixedKey);
    expect(hex(blob)).toBe('39dc616360f36e5822563b937c083460' + '66abc42cdd58a415e4e0');
    expect(hex(info.fileSha256)).toBe('a40128ebdc6dbb8360ca4a75737a36d22b4219cffc72df62d6ecb87387a02b0e');
    expect(hex(info.fileEncSha256)).toBe('72617abc35fa7516ff7a726cd400eb086a19e9516f338e765801114eec59aadf');
    const keys = deriveMediaKeys(fixedKey, 'image');
    expect(hex(keys.iv)).toBe('aa6a127218397cbd2383e4ccf7176a79');
  });

  it('decrypts the hand-made blob', async () => {
    const { blob, info } = await encryptAll(plaintext, 'image', [], fixedKey);
    expect(await decryptAll(blob, expectationOf(info, 'image'))).toEqual(plaintext);
  });
});

describe('media round trip', () => {
  // Any chunk sizes, but not so small that a stream has more than ~2048 chunks (slow, not harder).
  const chunkSizes = (size: number) =>
    fc.array(fc.integer({ min: Math.max(1, Math.floor(size / 2048)), max: 70 * KiB }), {
      minLength: 1,
      maxLength: 8,
    });

  it.each([0, 1, 15, 16, 17, 64 * KiB + 1])('round-trips %i bytes fed in any chunk sizes', async (size) => {
    const plaintext = randomBytes(size);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<MediaType>('image', 'video', 'audio', 'document'),
        chunkSizes(size),
        chunkSizes(size),
        async (type, inSizes, outSizes) => {
          const { blob, info } = await encryptAll(plaintext, type, inSizes);
          expect(blob.length).toBe(encryptedMediaLength(size));
          expect(info.fileLength).toBe(size);
          expect((await decryptAll(blob, expectationOf(info, type), outSizes)).equals(plaintext)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('round-trips 5 MiB fed in random chunk sizes', async () => {
    const plaintext = randomBytes(5 * MiB);
    await fc.assert(
      fc.asyncProperty(chunkSizes(5 * MiB), chunkSizes(5 * MiB), async (inSizes, outSizes) => {
        const { blob, info } = await encryptAll(plaintext, 'video', inSizes);
        expect((await decryptAll(blob, expectationOf(info, 'video'), outSizes)).equals(plaintext)).toBe(true);
      }),
      { numRuns: 3 },
    );
  });

  it('uses a fresh random media key each time unless one is given', async () => {
    const a = await encryptAll(Buffer.from('same'), 'image');
    const b = await encryptAll(Buffer.from('same'), 'image');
    expect(hex(a.info.mediaKey)).not.toBe(hex(b.info.mediaKey));
    expect(a.blob).not.toEqual(b.blob);
  });
});

describe('media verification', () => {
  const plaintext = randomBytes(100);
  let blob: Buffer;
  let expected: ExpectedMedia;
  beforeAll(async () => {
    const encrypted = await encryptAll(plaintext, 'document');
    blob = encrypted.blob;
    expected = expectationOf(encrypted.info, 'document');
  });

  async function spoolIsEmpty(): Promise<boolean> {
    return (await readdir(spoolRoot)).length === 0;
  }

  it('rejects a blob with any single flipped bit as media_mac_mismatch and keeps no plaintext', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: blob.length * 8 - 1 }), async (bit) => {
        const corrupt = Buffer.from(blob);
        corrupt[bit >> 3]! ^= 1 << (bit & 7);
        const err = await rejection(decryptAll(corrupt, expected));
        expect(err.code).toBe('media_mac_mismatch');
        expect(await spoolIsEmpty()).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('rejects an intact blob whose fileEncSha256 differs from the message as an enc hash mismatch', async () => {
    const err = await rejection(decryptAll(blob, { ...expected, fileEncSha256: randomBytes(32) }));
    expect(err).toBeInstanceOf(MediaHashMismatchError);
    expect(err.code).toBe('media_hash_mismatch');
    expect((err as MediaHashMismatchError).which).toBe('enc');
    expect(await spoolIsEmpty()).toBe(true);
  });

  it('rejects a plaintext whose fileSha256 differs from the message as a plain hash mismatch', async () => {
    const err = await rejection(decryptAll(blob, { ...expected, fileSha256: randomBytes(32) }));
    expect((err as MediaHashMismatchError).which).toBe('plain');
    expect(await spoolIsEmpty()).toBe(true);
  });

  it('rejects a plaintext whose length differs from the message with media_length_mismatch', async () => {
    const err = await rejection(decryptAll(blob, { ...expected, fileLength: 99 }));
    expect(err.code).toBe('media_length_mismatch');
  });

  it.each([
    ['cut by one byte', (b: Buffer) => b.subarray(0, b.length - 1)],
    ['cut to the MAC alone', (b: Buffer) => b.subarray(b.length - 10)],
    ['empty', () => Buffer.alloc(0)],
  ])('rejects a blob %s with media_truncated', async (_name, cut) => {
    const err = await rejection(decryptAll(cut(blob), expected));
    expect(err.code).toBe('media_truncated');
    expect(await spoolIsEmpty()).toBe(true);
  });

  it('rejects an authentic blob with invalid PKCS#7 padding with media_bad_padding', async () => {
    const keys = deriveMediaKeys(fixedKey, 'image');
    const cipher = createCipheriv('aes-256-cbc', keys.cipherKey, keys.iv).setAutoPadding(false);
    const ciphertext = Buffer.concat([cipher.update(Buffer.alloc(32, 0x41)), cipher.final()]);
    const mac = createHmac('sha256', keys.macKey).update(keys.iv).update(ciphertext).digest().subarray(0, 10);
    const bad = Buffer.concat([ciphertext, mac]);
    const err = await rejection(
      decryptAll(bad, {
        type: 'image',
        mediaKey: fixedKey,
        fileEncSha256: sha256(bad),
        fileSha256: sha256(bad),
      }),
    );
    expect(err.code).toBe('media_bad_padding');
  });

  it('rejects a blob decrypted with the key of another media type as media_mac_mismatch', async () => {
    const err = await rejection(decryptAll(blob, { ...expected, type: 'image' }));
    expect(err.code).toBe('media_mac_mismatch');
  });

  it('spools a verified plaintext to a private file', async () => {
    const { blob, info } = await encryptAll(Buffer.from('private'), 'image');
    const media = await decryptMedia(chunked(blob, []), expectationOf(info, 'image'), {
      maxBytes: MiB,
      spoolDir: spoolRoot,
    });
    expect(await readFile(media.path, 'utf8')).toBe('private');
    expect(statSync(media.path).mode & 0o777).toBe(0o600);
    await media.dispose();
    await media.dispose();
    expect(await readdir(spoolRoot)).toEqual([]);
  });
});

describe('media size limits', () => {
  it('refuses before reading anything when the message announces a file over the limit', async () => {
    let pulled = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      pulled++;
      yield new Uint8Array(16);
    }
    const expected: ExpectedMedia = {
      type: 'video',
      mediaKey: fixedKey,
      fileSha256: new Uint8Array(32),
      fileEncSha256: new Uint8Array(32),
      fileLength: 10n * BigInt(MiB),
    };
    const err = await rejection(decryptMedia(source(), expected, { maxBytes: MiB, spoolDir: spoolRoot }));
    expect(err.code).toBe('media_too_large');
    expect(pulled).toBe(0);
  });

  it('stops reading a download as soon as it passes the limit', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) {
        pulled += 64 * KiB;
        yield new Uint8Array(64 * KiB);
      }
    }
    const expected: ExpectedMedia = {
      type: 'video',
      mediaKey: fixedKey,
      fileSha256: new Uint8Array(32),
      fileEncSha256: new Uint8Array(32),
    };
    const err = await rejection(decryptMedia(endless(), expected, { maxBytes: MiB, spoolDir: spoolRoot }));
    expect(err.code).toBe('media_too_large');
    expect(pulled).toBeLessThanOrEqual(MiB + 64 * KiB);
    expect(await readdir(spoolRoot)).toEqual([]);
  });

  it('refuses to encrypt a plaintext over the limit', async () => {
    const err = await rejection(
      encryptMedia(chunked(randomBytes(3 * KiB), [KiB]), collector().sink, 'image', { maxBytes: 2 * KiB }),
    );
    expect(err.code).toBe('media_too_large');
  });
});

describe('media streaming memory', () => {
  // Measure retained memory, not garbage: force a collection before each sample.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // V8 frees ArrayBuffer memory on a background sweeper: let it run before reading the counter.
  const retained = async (): Promise<number> => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 5));
    gc();
    return process.memoryUsage().arrayBuffers;
  };

  it('encrypts and decrypts 50 MiB without holding the file in memory', async () => {
    const size = 50 * MiB;
    const dir = await mkdtemp(join(tmpdir(), 'media-memory-test-'));
    try {
      const baseline = await retained();
      let peak = baseline;
      const plainHash = createHash('sha256');
      async function* generated(): AsyncGenerator<Uint8Array> {
        for (let at = 0; at < size; at += 64 * KiB) {
          const chunk = randomBytes(64 * KiB);
          plainHash.update(chunk);
          if (at % (4 * MiB) === 0) peak = Math.max(peak, await retained());
          yield chunk;
        }
      }
      async function* sampled(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
        let seen = 0;
        for await (const chunk of source) {
          if ((seen += chunk.length) % (4 * MiB) < chunk.length) peak = Math.max(peak, await retained());
          yield chunk;
        }
      }

      const encPath = join(dir, 'blob.enc');
      const info = await encryptMedia(generated(), createWriteStream(encPath), 'video');
      expect(info.fileLength).toBe(size);

      const media = await decryptMedia(sampled(createReadStream(encPath)), expectationOf(info, 'video'), {
        maxBytes: 64 * MiB,
        spoolDir: dir,
      });
      const readBack = createHash('sha256');
      for await (const chunk of sampled(media.open())) readBack.update(chunk);
      await media.dispose();

      expect(readBack.digest()).toEqual(plainHash.digest());
      expect(peak - baseline).toBeLessThan(size / 10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('exposes the encryptor as a Transform whose result is readable after it finishes', async () => {
    const encryptor = new MediaEncryptor('audio', { mediaKey: fixedKey });
    expect(() => encryptor.result).toThrow(/before the stream finished/);
    const out = collector();
    encryptor.pipe(out.sink);
    encryptor.end(Buffer.from('Hello, interop!'));
    await new Promise((resolve) => out.sink.on('finish', resolve));
    expect(encryptor.result.fileLength).toBe(15);
    expect(out.bytes().length).toBe(26);
  });
});
