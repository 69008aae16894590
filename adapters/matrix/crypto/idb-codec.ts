/**
 * How the crypto store's IndexedDB content becomes rows: a canonical byte encoding of IndexedDB
 * keys, a faithful encoding of structured-clone values, and the sealing of both with the
 * operator's at-rest key (src/util/payload-vault.ts).
 *
 * - Keys get their own encoding, not v8's serializer: v8 writes a string as Latin-1 or UTF-16
 *   depending on how the engine holds it, so two equal keys could encode differently; this one is
 *   the same bytes for equal keys (the bridge finds a record's row by it) and decodes to a key that
 *   compares equal (number, Date, string with lone surrogates, binary as ArrayBuffer, arrays).
 * - Values go through node:v8 (the structured clone algorithm itself: Map, Set, Date, ArrayBuffer,
 *   typed arrays). A typed array comes back as a compact copy (offset 0, its own buffer), as the
 *   Rust store writes them; a view into a larger buffer would lose the bytes outside the view.
 * - A record row is sealed as one payload (key and value together), bound to its identity
 *   (database, object store, key id): a row moved to another identity does not open. A schema row
 *   is bound to its database.
 */
import v8 from 'node:v8';
import { isSealed, PayloadUnreadableError, type PayloadVault } from '../../../src/util/payload-vault.js';
import { CryptoStoreError } from './errors.js';

/** An IndexedDB key as fake-indexeddb stores it. */
export type IdbKey = number | string | Date | ArrayBuffer | IdbKey[];

const NUMBER = 0x10;
const DATE = 0x20;
const STRING = 0x30;
const BINARY = 0x40;
const ARRAY = 0x50;

/** The key's canonical bytes: equal keys give equal bytes. */
export function encodeKey(key: unknown): Buffer {
  const parts: Buffer[] = [];
  const put = (k: unknown): void => {
    if (typeof k === 'number') {
      const b = Buffer.allocUnsafe(9);
      b[0] = NUMBER;
      b.writeDoubleBE(k === 0 ? 0 : k, 1); // -0 and 0 are the same key
      parts.push(b);
    } else if (k instanceof Date) {
      const b = Buffer.allocUnsafe(9);
      b[0] = DATE;
      b.writeDoubleBE(k.getTime(), 1);
      parts.push(b);
    } else if (typeof k === 'string') {
      const body = Buffer.from(k, 'utf16le'); // code units as they are, lone surrogates included
      parts.push(header(STRING, body.length), body);
    } else if (k instanceof ArrayBuffer || ArrayBuffer.isView(k)) {
      const view =
        k instanceof ArrayBuffer ? new Uint8Array(k) : new Uint8Array(k.buffer, k.byteOffset, k.byteLength);
      parts.push(header(BINARY, view.byteLength), Buffer.from(view));
    } else if (Array.isArray(k)) {
      parts.push(header(ARRAY, k.length));
      for (const item of k) put(item);
    } else {
      throw new CryptoStoreError('matrix_crypto_store_key', `not an IndexedDB key: ${typeof k}`);
    }
  };
  put(key);
  return Buffer.concat(parts);
}

function header(tag: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b[0] = tag;
  b.writeUInt32BE(n, 1);
  return b;
}

/** The key `encodeKey` encoded. */
export function decodeKey(bytes: Uint8Array): IdbKey {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const read = (): IdbKey => {
    const tag = buf[at];
    if (tag === NUMBER || tag === DATE) {
      const n = buf.readDoubleBE(at + 1);
      at += 9;
      return tag === NUMBER ? n : new Date(n);
    }
    const n = buf.readUInt32BE(at + 1);
    at += 5;
    if (tag === STRING) {
      const s = buf.toString('utf16le', at, at + n);
      at += n;
      return s;
    }
    if (tag === BINARY) {
      const copy = new Uint8Array(n);
      copy.set(buf.subarray(at, at + n));
      at += n;
      return copy.buffer;
    }
    if (tag === ARRAY) {
      const items: IdbKey[] = [];
      for (let i = 0; i < n; i++) items.push(read());
      return items;
    }
    throw new CryptoStoreError('matrix_crypto_store_key', `a stored key has an unknown tag ${String(tag)}`);
  };
  return read();
}

/** The value as bytes: the structured clone algorithm's own serialization. */
export const encodeValue = (value: unknown): Buffer => v8.serialize(value);

/**
 * Typed arrays come back as compact copies, not views into the serialized buffer. `_readHostObject`
 * is Node's documented hook of `v8.Deserializer` (its types lack it).
 */
class CompactDeserializer extends v8.DefaultDeserializer {
  constructor(buffer: Buffer) {
    super(buffer);
    const self = this as unknown as { _readHostObject(): unknown };
    const read = self._readHostObject.bind(this);
    self._readHostObject = (): unknown => {
      const view = read() as ArrayBufferView;
      if (view instanceof DataView) {
        return new DataView(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
      }
      const Ctor = view.constructor as new (from: ArrayBufferView) => ArrayBufferView;
      return new Ctor(view); // copies into a buffer of its own
    };
  }
}

export function decodeValue(bytes: Uint8Array): unknown {
  const d = new CompactDeserializer(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  d.readHeader();
  return d.readValue();
}

/** The identity a record row is sealed under. */
export const recordRowId = (db: string, store: string, keyId: number): string =>
  `matrix_crypto_idb:${db}:${store}:${keyId}`;
/** The identity a schema row is sealed under. */
export const schemaRowId = (db: string): string => `matrix_crypto_idb_schema:${db}`;

/** One record: its key's canonical bytes and its value. */
export interface PlainRecord {
  readonly key: Buffer;
  readonly value: unknown;
}

export function sealRecord(vault: PayloadVault, rowId: string, key: Buffer, value: unknown): Uint8Array {
  const body = encodeValue(value);
  const plain = Buffer.allocUnsafe(4 + key.length + body.length);
  plain.writeUInt32BE(key.length, 0);
  key.copy(plain, 4);
  body.copy(plain, 4 + key.length);
  const sealed = vault.seal(rowId, plain);
  plain.fill(0);
  return sealed;
}

export function openRecord(vault: PayloadVault, rowId: string, sealed: Uint8Array): PlainRecord {
  const plain = Buffer.from(openSealed(vault, rowId, sealed));
  const n = plain.readUInt32BE(0);
  return { key: plain.subarray(4, 4 + n), value: decodeValue(plain.subarray(4 + n)) };
}

/** Opens a sealed row; anything unsealed or sealed under another key is refused. */
export function openSealed(vault: PayloadVault, rowId: string, sealed: Uint8Array): Uint8Array {
  if (!isSealed(sealed)) {
    throw new CryptoStoreError(
      'matrix_crypto_store_unreadable',
      `the Matrix crypto store's row ${rowId} is not sealed: the table was written by something else than the bridge; restore it from a backup`,
    );
  }
  try {
    return vault.open(rowId, sealed);
  } catch (err) {
    if (!(err instanceof PayloadUnreadableError)) throw err;
    throw new CryptoStoreError(
      'matrix_crypto_store_unreadable',
      `the Matrix crypto store cannot be opened with this at-rest key (${rowId}): start the bridge with the key file it was written with (bridge.at_rest_key_file), or restore the database and the key from the same backup`,
      { cause: err },
    );
  }
}
