import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  EmulatorKeyError,
  initKeys,
  keyFiles,
  loadKeys,
  rootKeyBase64,
  rootKeyFingerprint,
  rotateKeys,
} from '../../emulator/keys.js';
import { CertError, verifyCertChain } from '../../src/protocol/cert-chain.js';
import { tempDir } from '../support/tmp.js';

const DAY = 86_400;
const NOW = 1_780_000_000;
const opts = { validityDays: 30, intermediateValidityDays: 365, now: NOW };

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof EmulatorKeyError) return err.code;
    throw err;
  }
  throw new Error('expected an EmulatorKeyError');
}

describe('emulator keys', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dataDir: string;
  beforeEach(() => {
    tmp = tempDir();
    dataDir = path.join(tmp.dir, 'data');
  });
  afterEach(() => tmp.cleanup());

  it('init writes every key file with mode 0600 in directories with mode 0700', () => {
    initKeys(dataDir, opts);
    const files = keyFiles(dataDir);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(files.dir).mode & 0o777).toBe(0o700);
    for (const file of [files.root, files.intermediate, files.noiseStatic]) {
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
  });

  it('init refuses to overwrite existing keys without force, and replaces them with it', () => {
    const first = initKeys(dataDir, opts);
    expect(codeOf(() => initKeys(dataDir, opts))).toBe('emulator_keys_exist');
    expect(loadKeys(dataDir, { now: NOW }).rootPublicKey).toEqual(first.rootPublicKey);
    const second = initKeys(dataDir, { ...opts, force: true });
    expect(second.rootPublicKey).not.toEqual(first.rootPublicKey);
  });

  it('a chain built from the files verifies against the printed root key', () => {
    const printed = rootKeyBase64(initKeys(dataDir, opts));
    const loaded = loadKeys(dataDir, { now: NOW });
    const chain = verifyCertChain(loaded.certChain, {
      rootPublicKey: new Uint8Array(Buffer.from(printed, 'base64')),
      serverStaticKey: loaded.staticKey.publicKey,
      now: NOW,
    });
    expect(chain.leaf.details.notAfter).toBe(BigInt(NOW + 30 * DAY));
    expect(chain.intermediate.details.notAfter).toBe(BigInt(NOW + 365 * DAY));
    expect(rootKeyFingerprint(loaded.rootPublicKey)).toMatch(/^([0-9a-f]{2}:){7}[0-9a-f]{2}$/);
  });

  it('rotate issues a new static key whose chain verifies under the same root, and keeps the old key as .previous', () => {
    const before = initKeys(dataDir, opts);
    const files = keyFiles(dataDir);
    const oldFile = readFileSync(files.noiseStatic, 'utf8');
    const after = rotateKeys(dataDir, { validityDays: 30, now: NOW + DAY });

    expect(after.staticKey.publicKey).not.toEqual(before.staticKey.publicKey);
    expect(after.rootPublicKey).toEqual(before.rootPublicKey);
    expect(after.leaf.serial).toBe(before.leaf.serial + 1);
    expect(readFileSync(files.previousStatic, 'utf8')).toBe(oldFile);
    expect(statSync(files.previousStatic).mode & 0o777).toBe(0o600);
    const loaded = loadKeys(dataDir, { now: NOW + DAY });
    expect(loaded.staticKey.publicKey).toEqual(after.staticKey.publicKey);
    expect(() =>
      verifyCertChain(loaded.certChain, {
        rootPublicKey: before.rootPublicKey,
        serverStaticKey: loaded.staticKey.publicKey,
        now: NOW + DAY,
      }),
    ).not.toThrow();
  });

  it('a rotated leaf never outlives its intermediate', () => {
    initKeys(dataDir, { validityDays: 10, intermediateValidityDays: 20, now: NOW });
    const rotated = rotateKeys(dataDir, { validityDays: 30, now: NOW + 15 * DAY });
    expect(rotated.leaf.notAfter).toBe(rotated.intermediate.notAfter);
  });

  it('rotate --intermediate re-issues the intermediate from the same root', () => {
    const before = initKeys(dataDir, { validityDays: 10, intermediateValidityDays: 20, now: NOW });
    const after = rotateKeys(dataDir, {
      validityDays: 10,
      intermediate: true,
      intermediateValidityDays: 365,
      now: NOW + 30 * DAY,
    });
    expect(after.intermediate.serial).toBe(before.intermediate.serial + 1);
    const loaded = loadKeys(dataDir, { now: NOW + 30 * DAY });
    expect(() =>
      verifyCertChain(loaded.certChain, {
        rootPublicKey: before.rootPublicKey,
        serverStaticKey: loaded.staticKey.publicKey,
        now: NOW + 30 * DAY,
      }),
    ).not.toThrow();
  });

  it('loading an expired leaf fails with a message that says to run "emulator rotate"', () => {
    initKeys(dataDir, opts);
    let error: unknown;
    try {
      loadKeys(dataDir, { now: NOW + 31 * DAY });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(EmulatorKeyError);
    expect((error as EmulatorKeyError).code).toBe('emulator_cert_expired');
    expect((error as Error).message).toContain('leaf certificate expired on');
    expect((error as Error).message).toContain('interop-bridge emulator rotate');
  });

  it('warns when a certificate expires within a week', () => {
    initKeys(dataDir, opts);
    expect(loadKeys(dataDir, { now: NOW }).warnings).toEqual([]);
    const { warnings } = loadKeys(dataDir, { now: NOW + 25 * DAY });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('leaf certificate expires on');
  });

  it('missing or damaged key files are reported with the command that fixes them', () => {
    expect(codeOf(() => loadKeys(dataDir))).toBe('emulator_keys_missing');
    initKeys(dataDir, opts);
    writeFileSync(keyFiles(dataDir).intermediate, '{"publicKey": 1}');
    expect(codeOf(() => loadKeys(dataDir, { now: NOW }))).toBe('emulator_keys_invalid');
  });

  it('an expired leaf is detectable by a client too (the chain a stale emulator would present)', () => {
    initKeys(dataDir, opts);
    const loaded = loadKeys(dataDir, { now: NOW });
    expect(() =>
      verifyCertChain(loaded.certChain, {
        rootPublicKey: loaded.rootPublicKey,
        serverStaticKey: loaded.staticKey.publicKey,
        now: NOW + 31 * DAY,
      }),
    ).toThrow(CertError);
  });
});
