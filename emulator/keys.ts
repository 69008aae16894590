/**
 * The emulator's keys on disk, in `<data_dir>/keys/` (directory 0700, files 0600, JSON, base64):
 *
 *   root.json                  Ed25519 root key: its public half is the bridge's gateway.root_key
 *   intermediate.json          Ed25519 intermediate key and its certificate, signed by the root
 *   noise-static.json          X25519 Noise static key and its leaf certificate, signed by the intermediate
 *   noise-static.json.previous the static key and leaf before the last rotation
 *
 * The static key and its leaf share one file, so a rotation replaces both in one rename and a
 * reload (SIGHUP) can never see a leaf for another key.
 */
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InteropError } from '../src/errors.js';
import {
  createIntermediateKey,
  createRootKey,
  encodeCertChain,
  issueIntermediate,
  issueLeaf,
  type Ed25519KeyPair,
} from '../src/protocol/cert-chain.js';
import {
  CertChain_NoiseCertificateSchema,
  CertChain_NoiseCertificate_DetailsSchema,
  type CertChain_NoiseCertificate,
} from '../src/protocol/gen/interop/v1/handshake_pb.js';
import { generateKeyPair, keyPairFromPrivateKey, type KeyPair } from '../src/protocol/noise/index.js';

export const KEYS_DIR = 'keys';
const DAY = 86_400;
/** Certificates start a little in the past: the verifier allows no clock skew on validity. */
const BACKDATE_SECONDS = 300;
/** Warn at load when a certificate expires within this many seconds. */
export const EXPIRY_WARNING_SECONDS = 7 * DAY;
const FIRST_INTERMEDIATE_SERIAL = 1;
const FIRST_LEAF_SERIAL = 1001;

export type EmulatorKeyErrorCode =
  | 'emulator_keys_exist'
  | 'emulator_keys_missing'
  | 'emulator_keys_invalid'
  | 'emulator_keys_unwritable'
  | 'emulator_cert_expired'
  | 'emulator_cert_not_yet_valid';

export class EmulatorKeyError extends InteropError {
  declare readonly code: EmulatorKeyErrorCode;

  constructor(code: EmulatorKeyErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Validity of one certificate, in seconds since the epoch. */
export interface CertificateInfo {
  serial: number;
  notBefore: number;
  notAfter: number;
}

/** Everything the running gateway needs, plus what the operator is told. */
export interface EmulatorKeys {
  /** For the bridge's gateway.root_key. */
  rootPublicKey: Uint8Array;
  /** The Noise static key (its public half for the bridge's gateway.static_key). */
  staticKey: KeyPair;
  /** The server's handshake payload: encodeCertChain({ leaf, intermediate }). */
  certChain: Uint8Array;
  intermediate: CertificateInfo;
  leaf: CertificateInfo;
}

export interface LoadedEmulatorKeys extends EmulatorKeys {
  /** Certificates expiring soon, as sentences for the log. */
  warnings: string[];
}

export interface KeyFiles {
  dir: string;
  root: string;
  intermediate: string;
  noiseStatic: string;
  previousStatic: string;
}

export function keyFiles(dataDir: string): KeyFiles {
  const dir = path.join(dataDir, KEYS_DIR);
  return {
    dir,
    root: path.join(dir, 'root.json'),
    intermediate: path.join(dir, 'intermediate.json'),
    noiseStatic: path.join(dir, 'noise-static.json'),
    previousStatic: path.join(dir, 'noise-static.json.previous'),
  };
}

export interface InitKeysOptions {
  /** Leaf certificate validity. */
  validityDays: number;
  /** Intermediate certificate validity (at least the leaf's). */
  intermediateValidityDays: number;
  /** Replace existing keys (the bridge then needs the new root key). */
  force?: boolean;
  /** Seconds since the epoch; defaults to the clock. */
  now?: number;
}

/**
 * Creates a root key, an intermediate certificate, a Noise static key and its leaf. Refuses when
 * any key file exists, unless `force`.
 */
export function initKeys(dataDir: string, options: InitKeysOptions): EmulatorKeys {
  const files = keyFiles(dataDir);
  const now = Math.floor(options.now ?? Date.now() / 1000);
  if (!options.force) {
    const existing = [files.root, files.intermediate, files.noiseStatic].filter((f) => existsSync(f));
    if (existing.length > 0) {
      throw new EmulatorKeyError(
        'emulator_keys_exist',
        `the emulator already has keys (${existing.join(', ')}): keep them, run "interop-bridge emulator rotate" ` +
          'for a new static key, or pass --force to replace everything (bridges then need the new gateway.root_key)',
      );
    }
  }
  makePrivateDir(dataDir);
  makePrivateDir(files.dir);

  const root = createRootKey();
  const intermediate = newIntermediate(
    root,
    FIRST_INTERMEDIATE_SERIAL,
    options.intermediateValidityDays,
    options.validityDays,
    now,
  );
  const leaf = newLeaf(intermediate, FIRST_LEAF_SERIAL, options.validityDays, now);

  writePrivate(files.root, {
    alg: 'Ed25519',
    publicKey: b64(root.publicKey),
    privateKey: b64(root.privateKey),
  });
  writePrivate(files.intermediate, intermediate.file);
  rmSync(files.previousStatic, { force: true });
  writePrivate(files.noiseStatic, leaf.file);
  return assemble(root.publicKey, intermediate.file, leaf.file);
}

export interface RotateKeysOptions {
  validityDays: number;
  /** Also re-issue the intermediate from the root (needed once it is about to expire). */
  intermediate?: boolean;
  intermediateValidityDays?: number;
  now?: number;
}

/**
 * A new Noise static key and a leaf for it, signed by the existing intermediate (or by a new one,
 * from the same root, with `intermediate`). The root does not change, so bridges keep working; the
 * old static key file is kept as `.previous`. A running emulator picks the new key up on reload.
 */
export function rotateKeys(dataDir: string, options: RotateKeysOptions): EmulatorKeys {
  const files = keyFiles(dataDir);
  const now = Math.floor(options.now ?? Date.now() / 1000);
  const rootFile = readKeyFile(files.root, 'root');
  const rootPublicKey = bytesField(rootFile, 'publicKey', files.root, 32);
  let intermediateFile = readKeyFile(files.intermediate, 'intermediate');
  const current = readKeyFile(files.noiseStatic, 'Noise static');
  const currentLeaf = certificateOf(current, files.noiseStatic);

  if (options.intermediate) {
    const root: Ed25519KeyPair = {
      publicKey: rootPublicKey,
      privateKey: bytesField(rootFile, 'privateKey', files.root, 32),
    };
    const serial = certificateOf(intermediateFile, files.intermediate).serial + 1;
    const days = options.intermediateValidityDays ?? 365;
    intermediateFile = newIntermediate(root, serial, days, options.validityDays, now).file;
  } else {
    const info = certificateOf(intermediateFile, files.intermediate);
    if (info.notAfter <= now) {
      throw new EmulatorKeyError(
        'emulator_cert_expired',
        `the emulator's intermediate certificate expired on ${isoDate(info.notAfter)}: run ` +
          '"interop-bridge emulator rotate --intermediate" to issue a new one from the same root',
      );
    }
  }
  const intermediate = {
    keyPair: {
      publicKey: bytesField(intermediateFile, 'publicKey', files.intermediate, 32),
      privateKey: bytesField(intermediateFile, 'privateKey', files.intermediate, 32),
    },
    info: certificateOf(intermediateFile, files.intermediate),
    file: intermediateFile,
  };
  const leaf = newLeaf(intermediate, currentLeaf.serial + 1, options.validityDays, now);

  makePrivateDir(files.dir);
  if (options.intermediate) writePrivate(files.intermediate, intermediateFile);
  // Keep the old key first, then replace it in one rename: a reload sees the old or the new pair.
  writePrivate(files.previousStatic, current);
  writePrivate(files.noiseStatic, leaf.file);
  return assemble(rootPublicKey, intermediateFile, leaf.file);
}

export interface LoadKeysOptions {
  now?: number;
  warnWithinSeconds?: number;
}

/**
 * Reads the keys for a running gateway. Throws when a certificate has expired or is not yet valid
 * (the message says which command fixes it) and warns when one expires within a week.
 */
export function loadKeys(dataDir: string, options: LoadKeysOptions = {}): LoadedEmulatorKeys {
  const files = keyFiles(dataDir);
  const now = Math.floor(options.now ?? Date.now() / 1000);
  const within = options.warnWithinSeconds ?? EXPIRY_WARNING_SECONDS;
  const rootFile = readKeyFile(files.root, 'root');
  const intermediateFile = readKeyFile(files.intermediate, 'intermediate');
  const staticFile = readKeyFile(files.noiseStatic, 'Noise static');
  const keys = assemble(bytesField(rootFile, 'publicKey', files.root, 32), intermediateFile, staticFile);

  const warnings: string[] = [];
  const fixes = {
    intermediate: 'interop-bridge emulator rotate --intermediate',
    leaf: 'interop-bridge emulator rotate',
  };
  for (const role of ['intermediate', 'leaf'] as const) {
    const info = keys[role];
    if (info.notAfter < now) {
      throw new EmulatorKeyError(
        'emulator_cert_expired',
        `the emulator's ${role} certificate expired on ${isoDate(info.notAfter)}: run "${fixes[role]}" ` +
          '(the root key stays the same, bridges need no change), then start the emulator again',
      );
    }
    if (info.notBefore > now) {
      throw new EmulatorKeyError(
        'emulator_cert_not_yet_valid',
        `the emulator's ${role} certificate is not valid before ${isoDate(info.notBefore)}: check this machine's clock`,
      );
    }
    if (info.notAfter - now < within) {
      warnings.push(
        `the emulator's ${role} certificate expires on ${isoDate(info.notAfter)}: run "${fixes[role]}" before then`,
      );
    }
  }
  return { ...keys, warnings };
}

/** The root key as the bridge's configuration wants it (gateway.root_key). */
export function rootKeyBase64(keys: Pick<EmulatorKeys, 'rootPublicKey'>): string {
  return b64(keys.rootPublicKey);
}

/** A short fingerprint of the root public key for logs: the first 8 bytes of its SHA-256, hex pairs. */
export function rootKeyFingerprint(rootPublicKey: Uint8Array): string {
  const digest = createHash('sha256').update(rootPublicKey).digest('hex').slice(0, 16);
  return digest.match(/../g)?.join(':') ?? digest;
}

// --- internals -------------------------------------------------------------------------------

type KeyFile = Record<string, unknown>;

interface IssuedIntermediate {
  keyPair: Ed25519KeyPair;
  info: CertificateInfo;
  file: KeyFile;
}

function newIntermediate(
  root: Ed25519KeyPair,
  serial: number,
  validityDays: number,
  leafValidityDays: number,
  now: number,
): IssuedIntermediate {
  const keyPair = createIntermediateKey();
  const notBefore = now - BACKDATE_SECONDS;
  const notAfter = now + Math.max(validityDays, leafValidityDays) * DAY;
  const cert = issueIntermediate({
    rootPrivateKey: root.privateKey,
    serial,
    key: keyPair.publicKey,
    notBefore,
    notAfter,
  });
  return {
    keyPair,
    info: { serial, notBefore, notAfter },
    file: {
      publicKey: b64(keyPair.publicKey),
      privateKey: b64(keyPair.privateKey),
      certificate: b64(toBinary(CertChain_NoiseCertificateSchema, cert)),
    },
  };
}

function newLeaf(
  intermediate: IssuedIntermediate,
  serial: number,
  validityDays: number,
  now: number,
): { file: KeyFile } {
  const staticKey = generateKeyPair();
  // A leaf never outlives its intermediate: the client checks both.
  const notAfter = Math.min(now + validityDays * DAY, intermediate.info.notAfter);
  const cert = issueLeaf({
    intermediatePrivateKey: intermediate.keyPair.privateKey,
    serial,
    issuerSerial: intermediate.info.serial,
    key: staticKey.publicKey,
    notBefore: now - BACKDATE_SECONDS,
    notAfter,
  });
  return {
    file: {
      publicKey: b64(staticKey.publicKey),
      privateKey: b64(staticKey.privateKey),
      certificate: b64(toBinary(CertChain_NoiseCertificateSchema, cert)),
    },
  };
}

function assemble(rootPublicKey: Uint8Array, intermediateFile: KeyFile, staticFile: KeyFile): EmulatorKeys {
  const intermediateCert = certificateBytes(intermediateFile, 'intermediate.json');
  const leafCert = certificateBytes(staticFile, 'noise-static.json');
  const staticKey = keyPairFromPrivateKey(
    Buffer.from(bytesField(staticFile, 'privateKey', 'noise-static.json', 32)),
  );
  const leafInfo = certificateOf(staticFile, 'noise-static.json');
  const leafKey = fromBinary(CertChain_NoiseCertificate_DetailsSchema, leafCert.details).key;
  if (!Buffer.from(leafKey).equals(staticKey.publicKey)) {
    throw new EmulatorKeyError(
      'emulator_keys_invalid',
      "the leaf certificate in noise-static.json certifies another key than the file's static key: " +
        'run "interop-bridge emulator rotate" to issue a matching pair',
    );
  }
  return {
    rootPublicKey,
    staticKey,
    certChain: encodeCertChain({ leaf: leafCert, intermediate: intermediateCert }),
    intermediate: certificateOf(intermediateFile, 'intermediate.json'),
    leaf: leafInfo,
  };
}

function certificateBytes(file: KeyFile, name: string): CertChain_NoiseCertificate {
  try {
    return fromBinary(CertChain_NoiseCertificateSchema, bytesField(file, 'certificate', name));
  } catch (cause) {
    if (cause instanceof EmulatorKeyError) throw cause;
    throw invalid(name, 'its certificate is not a NoiseCertificate protobuf', cause);
  }
}

function certificateOf(file: KeyFile, name: string): CertificateInfo {
  const cert = certificateBytes(file, name);
  try {
    const d = fromBinary(CertChain_NoiseCertificate_DetailsSchema, cert.details);
    return { serial: d.serial, notBefore: Number(d.notBefore), notAfter: Number(d.notAfter) };
  } catch (cause) {
    throw invalid(name, 'its certificate details do not parse', cause);
  }
}

function readKeyFile(file: string, what: string): KeyFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new EmulatorKeyError(
        'emulator_keys_missing',
        `the emulator's ${what} key ${file} does not exist: run "interop-bridge emulator init" first`,
      );
    }
    throw new EmulatorKeyError('emulator_keys_invalid', `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as KeyFile;
  } catch {
    // reported below
  }
  throw invalid(file, 'it is not a JSON object');
}

function bytesField(file: KeyFile, field: string, name: string, length?: number): Uint8Array {
  const value = file[field];
  const bytes = typeof value === 'string' ? new Uint8Array(Buffer.from(value, 'base64')) : undefined;
  if (bytes === undefined || bytes.length === 0 || (length !== undefined && bytes.length !== length)) {
    throw invalid(name, `"${field}" is missing or not ${length ? `${length} bytes of ` : ''}base64`);
  }
  return bytes;
}

function invalid(name: string, why: string, cause?: unknown): EmulatorKeyError {
  return new EmulatorKeyError(
    'emulator_keys_invalid',
    `the emulator key file ${name} is unusable (${why}): restore it from a backup, or run ` +
      '"interop-bridge emulator init --force" (bridges then need the new gateway.root_key)',
    { cause },
  );
}

function makePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new EmulatorKeyError('emulator_keys_unwritable', `cannot create ${dir}: ${(err as Error).message}`);
  }
}

/** Write to a temporary file (0600) and rename, so a reader sees the old or the new file, whole. */
function writePrivate(file: string, value: KeyFile): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600, flag: 'w' });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new EmulatorKeyError('emulator_keys_unwritable', `cannot write ${file}: ${(err as Error).message}`);
  }
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function isoDate(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
