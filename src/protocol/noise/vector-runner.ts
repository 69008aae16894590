/**
 * Runs cacophony-format Noise test vectors ({"vectors": [...]}, each with protocol_name or name,
 * init_/resp_ keys and prologues, and messages [{payload, ciphertext}]) against this implementation.
 * Messages alternate between the two sides (all from the initiator in one-way patterns); after the
 * handshake they continue as transport messages. Vectors this code cannot run (PSK, 448, unknown
 * fields) are counted as skipped, never as passed.
 *
 *   node dist/src/protocol/noise/vector-runner.js <file.json> [more.json...]
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { UsageError } from '../../errors.js';
import { keyPairFromPrivateKey } from './dh.js';
import { NoiseError } from './errors.js';
import { HandshakeState, type HandshakeOptions } from './handshake-state.js';
import { type NoiseProtocol, parseProtocolName } from './protocol-name.js';

export interface VectorFileResult {
  passed: number;
  failed: number;
  skipped: number;
  /** "<index> <protocol>: <what differed>" for every failed vector. */
  failures: string[];
  /** Protocol names of the passed vectors, in file order. */
  passedProtocols: string[];
  /** "<protocol>: <why>" for every skipped vector. */
  skippedProtocols: string[];
}

interface VectorMessage {
  payload: string;
  ciphertext: string;
}

/** Fields this runner understands; a vector with any other field is skipped, not misread. */
const KNOWN_FIELDS = new Set([
  'protocol_name',
  'name',
  'init_prologue',
  'init_static',
  'init_ephemeral',
  'init_remote_static',
  'init_remote_ephemeral',
  'resp_prologue',
  'resp_static',
  'resp_ephemeral',
  'resp_remote_static',
  'resp_remote_ephemeral',
  'handshake_hash',
  'messages',
]);

type Outcome = { kind: 'passed' } | { kind: 'skipped'; why: string } | { kind: 'failed'; why: string };

/** Runs every vector in the file. Throws UsageError if the file cannot be read or is not vector JSON. */
export function runVectorFile(path: string): VectorFileResult {
  let vectors: unknown;
  try {
    vectors = (JSON.parse(readFileSync(path, 'utf8')) as { vectors?: unknown }).vectors;
  } catch (cause) {
    throw new UsageError(`cannot read Noise vector file ${path}: ${(cause as Error).message}`);
  }
  if (!Array.isArray(vectors)) {
    throw new UsageError(
      `${path} is not a cacophony-format vector file: no "vectors" array at the top level`,
    );
  }
  const result: VectorFileResult = {
    passed: 0,
    failed: 0,
    skipped: 0,
    failures: [],
    passedProtocols: [],
    skippedProtocols: [],
  };
  vectors.forEach((vector: unknown, index) => {
    const v = (typeof vector === 'object' && vector !== null ? vector : {}) as Record<string, unknown>;
    const name = String(v['protocol_name'] ?? v['name'] ?? `vector ${index}`);
    const outcome = runVector(v, name);
    if (outcome.kind === 'passed') {
      result.passed += 1;
      result.passedProtocols.push(name);
    } else if (outcome.kind === 'skipped') {
      result.skipped += 1;
      result.skippedProtocols.push(`${name}: ${outcome.why}`);
    } else {
      result.failed += 1;
      result.failures.push(`#${index} ${name}: ${outcome.why}`);
    }
  });
  return result;
}

function runVector(v: Record<string, unknown>, name: string): Outcome {
  const unknownFields = Object.keys(v).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknownFields.length > 0)
    return { kind: 'skipped', why: `fields not supported: ${unknownFields.join(', ')}` };
  let protocol: NoiseProtocol;
  try {
    protocol = parseProtocolName(name);
  } catch (error) {
    if (error instanceof NoiseError) return { kind: 'skipped', why: error.message };
    throw error;
  }
  try {
    return check(v, protocol);
  } catch (error) {
    return {
      kind: 'failed',
      why: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    };
  }
}

function check(v: Record<string, unknown>, protocol: NoiseProtocol): Outcome {
  const hex = (field: string): Buffer | undefined => {
    const value = v[field];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(value)) {
      throw new Error(`field ${field} is not hex`);
    }
    return Buffer.from(value, 'hex');
  };
  const options = (side: 'init' | 'resp'): HandshakeOptions => {
    const s = hex(`${side}_static`);
    const e = hex(`${side}_ephemeral`);
    const rs = hex(`${side}_remote_static`);
    const re = hex(`${side}_remote_ephemeral`);
    return {
      protocol,
      initiator: side === 'init',
      prologue: hex(`${side}_prologue`) ?? Buffer.alloc(0),
      ...(s === undefined ? {} : { s: keyPairFromPrivateKey(s) }),
      ...(e === undefined ? {} : { e: keyPairFromPrivateKey(e) }),
      ...(rs === undefined ? {} : { rs }),
      ...(re === undefined ? {} : { re }),
    };
  };
  const messages = v['messages'];
  if (!Array.isArray(messages) || messages.length === 0) return { kind: 'failed', why: 'no messages' };

  const initiator = HandshakeState.initialize(options('init'));
  const responder = HandshakeState.initialize(options('resp'));
  const handshakeLength = protocol.pattern.messages.length;
  for (const [i, raw] of (messages as VectorMessage[]).entries()) {
    const payload = Buffer.from(raw.payload, 'hex');
    const expected = Buffer.from(raw.ciphertext, 'hex');
    // Handshake messages and interactive transport messages alternate; one-way ones all go forward.
    const fromInitiator = protocol.pattern.oneWay || i % 2 === 0;
    const [sender, receiver] = fromInitiator ? [initiator, responder] : [responder, initiator];
    let ciphertext: Buffer;
    let decrypted: Buffer;
    if (i < handshakeLength) {
      ciphertext = sender.writeMessage(payload);
      if (!ciphertext.equals(expected)) return mismatch(i, 'handshake ciphertext', expected, ciphertext);
      decrypted = receiver.readMessage(ciphertext);
    } else {
      ciphertext = sender.getTransport().send.encryptWithAd(Buffer.alloc(0), payload);
      if (!ciphertext.equals(expected)) return mismatch(i, 'transport ciphertext', expected, ciphertext);
      decrypted = receiver.getTransport().receive.decryptWithAd(Buffer.alloc(0), ciphertext);
    }
    if (!decrypted.equals(payload)) return mismatch(i, 'decrypted payload', payload, decrypted);
    if (i === handshakeLength - 1) {
      const expectedHash = hex('handshake_hash');
      for (const [side, hs] of [
        ['initiator', initiator],
        ['responder', responder],
      ] as const) {
        if (!hs.isComplete) return { kind: 'failed', why: `${side} not complete after message ${i}` };
        const h = hs.getTransport().handshakeHash;
        if (expectedHash !== undefined && !h.equals(expectedHash)) {
          return mismatch(i, `${side} handshake hash`, expectedHash, h);
        }
      }
    }
  }
  if (!initiator.isComplete) return { kind: 'failed', why: 'the vector ends before the handshake completes' };
  return { kind: 'passed' };
}

function mismatch(index: number, what: string, expected: Buffer, actual: Buffer): Outcome {
  return {
    kind: 'failed',
    why: `message ${index}: ${what} differs: expected ${expected.toString('hex')}, got ${actual.toString('hex')}`,
  };
}

/** CLI: prints each failure, then "N passed, M failed, K skipped"; exit 1 on failures, 2 on usage. */
function main(files: string[]): number {
  if (files.length === 0) {
    console.error('usage: vector-runner <vectors.json> [more.json...]');
    return 2;
  }
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const file of files) {
    let result: VectorFileResult;
    try {
      result = runVectorFile(file);
    } catch (error) {
      if (error instanceof UsageError) {
        console.error(error.message);
        return 2;
      }
      throw error;
    }
    for (const failure of result.failures) console.log(`FAIL ${file} ${failure}`);
    passed += result.passed;
    failed += result.failed;
    skipped += result.skipped;
  }
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed > 0 ? 1 : 0;
}

function isRunDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isRunDirectly()) {
  process.exitCode = main(process.argv.slice(2));
}
