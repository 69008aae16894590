import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { runVectorFile } from '../../src/protocol/noise/vector-runner.js';
import { UsageError } from '../../src/errors.js';

// The repository root is two levels up from test/unit; the shared vectors sit beside it.
const VECTOR_DIR = fileURLToPath(new URL('../../../shared/vectors/noise/', import.meta.url));
const vectorFiles = readdirSync(VECTOR_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => join(VECTOR_DIR, f));

/** The protocols the gateway relies on: these vectors may never be skipped. */
const MUST_RUN = /^Noise_(XX|IK|XXfallback)_25519_(AESGCM|ChaChaPoly)_SHA256$/;

describe('published Noise test vectors', () => {
  it('finds at least one vector file', () => {
    expect(vectorFiles.length).toBeGreaterThan(0);
  });

  it.each(vectorFiles)(
    '%s: every supported vector passes, ciphertexts and handshake hash included',
    (file) => {
      const result = runVectorFile(file);
      expect(result.failures).toEqual([]);
      expect(result.failed).toBe(0);
      expect(result.passed).toBeGreaterThan(0);
    },
  );

  it.each(vectorFiles)('%s: no XX, IK or XXfallback vector over 25519/SHA256 is skipped', (file) => {
    const result = runVectorFile(file);
    const skippedButRequired = result.skippedProtocols.filter((s) => MUST_RUN.test(s.split(':')[0] ?? ''));
    expect(skippedButRequired).toEqual([]);
  });

  it('runs the XX and IK vectors for both ciphers', () => {
    const passed = vectorFiles.flatMap((f) => runVectorFile(f).passedProtocols);
    for (const name of [
      'Noise_XX_25519_AESGCM_SHA256',
      'Noise_XX_25519_ChaChaPoly_SHA256',
      'Noise_IK_25519_AESGCM_SHA256',
      'Noise_IK_25519_ChaChaPoly_SHA256',
    ]) {
      expect(passed).toContain(name);
    }
  });
});

describe('runVectorFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'noise-vectors-'));
  const write = (name: string, content: unknown): string => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(content));
    return path;
  };
  const payloads = [
    '4c756477696720766f6e204d69736573',
    '4d757272617920526f746862617264',
    '462e20412e20486179656b',
    '4361726c204d656e676572',
    '4a65616e2d426170746973746520536179',
    '457567656e2042f6686d20766f6e2042617765726b',
  ];
  const nn = (name: string, ciphertexts: string[]): Record<string, unknown> => ({
    name,
    init_prologue: '4a6f686e2047616c74',
    init_ephemeral: '893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a',
    resp_prologue: '4a6f686e2047616c74',
    resp_ephemeral: 'bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b',
    messages: ciphertexts.map((ciphertext, i) => ({ payload: payloads[i], ciphertext })),
  });
  const first =
    'ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573';
  // Facts from cacophony's vectors/cacophony.txt (public domain): NN with the other hash functions.
  const otherHashes = [
    nn('Noise_NN_25519_AESGCM_BLAKE2b', [
      first,
      '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088430b4b427c7ab9fac9f434513fa08726db51b1b447074227725c16a35f6b37c4',
      '9d37117df3063b2dd15b76ab8feb70d1a863ed48809447faffba69',
      '0637f52a8c2a4fc85335e3e54ff6f354c640a748db72134abc544a',
      '6d2a593b40932c40c700d71f5e4223e0ee4401e8682bc1e9c756523f34b2354fcb',
      'a5c747fe5132b92fc0819925ea2e2cf6ce10fd2c52fa8d25a4480c71fcd0d508a8c57adf54',
    ]),
    nn('Noise_NN_25519_AESGCM_BLAKE2s', [
      first,
      '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088435637c95d5175db82241df5bb90db690493dacfa51454f80512c3e223de17f7',
      '017e18dffa3706f97c3f08d9318fa68784302749e9389ff63a31b3',
      'ce88f443e45f17ada7021df6150b2dd590d985e2eae4ea17c47f5d',
      '714026c2b7100d53d6ad9d7bebed71e684779bdd0dee4ca12015ab3f2f7efd78f4',
      '83ed741d1bb903b7b26d3539d64dc42779643dbcdd3df5f65e43c91b969b1edba029d12e12',
    ]),
    nn('Noise_NN_25519_AESGCM_SHA512', [
      first,
      '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843f01eddcfafa2580bf4b9670208b19eea75586d8b0352dd82aae394a668e50f',
      'a267e88b70a00fbc099d3bd4438073cea04835321f89f028f421bd',
      'd0dce53724a6e38d5c0ee4bcb19bdc896c8e62d7a26fe71f7c3424',
      '91ab3b07fd6cd6cc8877ffcf12cef8aeb0c2f8c8d58cd52398899a29b8b92dc8c4',
      'ff76c3fc888707743dac49d4629f8009264aa4123b8e0818a396ef4c2ca48f2beb7c9215bb',
    ]),
  ];

  it('passes cacophony vectors for BLAKE2b, BLAKE2s and SHA512 given under "name"', () => {
    const result = runVectorFile(write('hashes.json', { vectors: otherHashes }));
    expect(result).toMatchObject({ passed: 3, failed: 0, skipped: 0, failures: [] });
  });

  it('reports a wrong ciphertext as a failure naming the vector and the message', () => {
    const broken = nn('Noise_NN_25519_AESGCM_SHA512', [first, first]);
    const result = runVectorFile(write('broken.json', { vectors: [broken] }));
    expect(result.failed).toBe(1);
    expect(result.failures[0]).toMatch(
      /^#0 Noise_NN_25519_AESGCM_SHA512: message 1: handshake ciphertext differs/,
    );
  });

  it('skips PSK, 448 and unknown-field vectors instead of passing them', () => {
    const result = runVectorFile(
      write('skipped.json', {
        vectors: [
          { ...nn('Noise_NNpsk0_25519_AESGCM_SHA256', [first]) },
          { ...nn('Noise_NN_448_AESGCM_SHA256', [first]) },
          { ...nn('Noise_NN_25519_AESGCM_SHA256', [first]), init_psks: [] },
        ],
      }),
    );
    expect(result).toMatchObject({ passed: 0, failed: 0, skipped: 3 });
  });

  it('rejects a file without a vectors array as a usage error', () => {
    expect(() => runVectorFile(write('empty.json', {}))).toThrow(UsageError);
    expect(() => runVectorFile(join(dir, 'missing.json'))).toThrow(UsageError);
  });
});
