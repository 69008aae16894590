/**
 * Sealed files (src/util/sealed-file.ts): what adapters keep on disk while it waits, under the
 * at-rest key, in 64 KiB chunks that cannot be altered, reordered, cut or opened with another key.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FileSealer, isSealedFile, plainSizeOf, SEALED_CHUNK } from '../../src/util/sealed-file.js';
import { tempDir } from '../support/tmp.js';

describe('sealed files', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());
  const sealer = new FileSealer(randomBytes(32));

  it.each([0, 1, 1000, SEALED_CHUNK - 1, SEALED_CHUNK, SEALED_CHUNK + 1, 3 * SEALED_CHUNK, 200_000])(
    'round-trips %i bytes, holds none of them in the clear and knows their size',
    async (n) => {
      const plain = Buffer.alloc(n, 'MARKER-sealed-');
      const file = path.join(tmp.dir, `f${n}`);
      await sealer.writeSealed(file, plain);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const sealed = readFileSync(file);
      if (n >= 14) expect(sealed.includes(Buffer.from('MARKER-sealed-'))).toBe(false);
      expect(await isSealedFile(file)).toBe(true);
      expect(plainSizeOf(sealed.length)).toBe(n);
      expect((await sealer.read(file)).equals(plain)).toBe(true);
      const streamed: Buffer[] = [];
      for await (const part of sealer.open(file)) streamed.push(part as Buffer);
      expect(Buffer.concat(streamed).equals(plain)).toBe(true);
    },
  );

  it('seals a copy of a plain file', async () => {
    const plain = randomBytes(150_000);
    writeFileSync(path.join(tmp.dir, 'plain'), plain);
    await sealer.sealCopy(path.join(tmp.dir, 'plain'), path.join(tmp.dir, 'sealed'));
    expect((await sealer.read(path.join(tmp.dir, 'sealed'))).equals(plain)).toBe(true);
    expect(await isSealedFile(path.join(tmp.dir, 'plain'))).toBe(false);
  });

  it('refuses another key, an altered byte, a file cut at a chunk boundary, and a plain file', async () => {
    const file = path.join(tmp.dir, 'f');
    await sealer.writeSealed(file, randomBytes(2 * SEALED_CHUNK + 10));
    await expect(new FileSealer(randomBytes(32)).read(file)).rejects.toMatchObject({
      code: 'sealed_file_unreadable',
    });
    const sealed = readFileSync(file);
    const altered = Buffer.from(sealed);
    altered[100] = altered[100]! ^ 1;
    writeFileSync(file, altered);
    await expect(sealer.read(file)).rejects.toMatchObject({ code: 'sealed_file_unreadable' });
    // The first two chunks alone: the second was not sealed as the last one.
    writeFileSync(file, sealed.subarray(0, 21 + 2 * (SEALED_CHUNK + 16)));
    await expect(sealer.read(file)).rejects.toMatchObject({ code: 'sealed_file_unreadable' });
    writeFileSync(file, 'just some plain text that is long enough');
    await expect(sealer.read(file)).rejects.toMatchObject({ code: 'sealed_file_not_sealed' });
  });
});
