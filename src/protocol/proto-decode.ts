/**
 * Decoding protobuf bytes that a peer sent: every malformed input becomes one typed error.
 *
 * `fromBinary` alone is too lenient for bytes from the network: in a proto2 file (message.proto) it
 * replaces invalid UTF-8 with U+FFFD, it reads a known field whatever wire type the record carries,
 * it lets a field run past the end of its enclosing sub-message, and it throws plain Error /
 * RangeError / TypeError. So a strict wire walk runs first: it checks every tag, wire type, varint,
 * length and (for fields the schema declares as `string`) UTF-8, then `fromBinary` builds the
 * message. Unknown fields are checked for structure only (their types are not known), and survive.
 */
import { fromBinary, ScalarType } from '@bufbuild/protobuf';
import type { DescField, DescMessage, MessageShape } from '@bufbuild/protobuf';
import { InteropError } from '../errors.js';

/** Contents travel in one frame (1 MiB at most by default), so a bigger protobuf is never legitimate. */
export const DEFAULT_PROTO_MAX_BYTES = 1024 * 1024;
/** Nesting limit (ContextInfo.quoted_message makes Message recursive). */
export const DEFAULT_PROTO_MAX_DEPTH = 32;

export type ProtoDecodeErrorCode = 'proto_malformed' | 'proto_too_large';

export class ProtoDecodeError extends InteropError {
  declare readonly code: ProtoDecodeErrorCode;

  constructor(code: ProtoDecodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface ProtoDecodeOptions {
  /** Largest accepted input in bytes (default DEFAULT_PROTO_MAX_BYTES). */
  maxBytes?: number;
  /** Deepest accepted nesting of sub-messages (default DEFAULT_PROTO_MAX_DEPTH). */
  maxDepth?: number;
}

/**
 * Decode `bytes` as `schema`, or throw ProtoDecodeError naming `what` (e.g. "message contents").
 * Never throws anything else.
 */
export function decodeProto<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  what: string,
  options: ProtoDecodeOptions = {},
): MessageShape<Desc> {
  const maxBytes = options.maxBytes ?? DEFAULT_PROTO_MAX_BYTES;
  const maxDepth = options.maxDepth ?? DEFAULT_PROTO_MAX_DEPTH;
  if (bytes.length > maxBytes) {
    throw new ProtoDecodeError(
      'proto_too_large',
      `${what}: ${bytes.length} bytes exceeds the limit of ${maxBytes}; the peer sent an oversized ` +
        `${schema.typeName}, drop it (raise the limit only if legitimate peers send such sizes)`,
    );
  }
  try {
    new WireWalker(bytes, maxDepth).message(schema, bytes.length, 1);
    return fromBinary(schema, bytes, { readUnknownFields: true, recursionLimit: maxDepth + 1 });
  } catch (err) {
    const detail = err instanceof Malformed ? err.message : `${errorName(err)}: ${errorMessage(err)}`;
    throw new ProtoDecodeError(
      'proto_malformed',
      `${what}: malformed ${schema.typeName} (${detail}); the peer sent bytes that are not a valid ` +
        `${schema.typeName}, drop them and report an undecodable message`,
      { cause: err },
    );
  }
}

/** A wire-level problem found by the walker; turned into ProtoDecodeError by decodeProto. */
class Malformed extends Error {}

enum Wire {
  Varint = 0,
  Bit64 = 1,
  LengthDelimited = 2,
  StartGroup = 3,
  EndGroup = 4,
  Bit32 = 5,
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Field number -> descriptor, per message type (descriptors are immutable, so caching is safe). */
const fieldsByNumber = new WeakMap<DescMessage, Map<number, DescField>>();
function fieldFor(desc: DescMessage, no: number): DescField | undefined {
  let map = fieldsByNumber.get(desc);
  if (map === undefined) {
    map = new Map(desc.fields.map((f) => [f.number, f]));
    fieldsByNumber.set(desc, map);
  }
  return map.get(no);
}

function scalarWire(scalar: ScalarType): Wire {
  switch (scalar) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return Wire.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return Wire.Bit32;
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return Wire.LengthDelimited;
    default:
      return Wire.Varint;
  }
}

/** Walks the protobuf wire format strictly, without building anything. */
class WireWalker {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly maxDepth: number,
  ) {}

  /** Check fields until `end`; a field that crosses `end` is malformed. */
  message(desc: DescMessage, end: number, depth: number): void {
    if (depth > this.maxDepth)
      throw new Malformed(`nesting deeper than ${this.maxDepth} in ${desc.typeName}`);
    while (this.pos < end) {
      const [no, wire] = this.tag(desc);
      if (wire === Wire.EndGroup) throw new Malformed(`unexpected end-group tag for field ${no}`);
      const field = fieldFor(desc, no);
      if (field === undefined) this.skip(wire, no, depth);
      else this.field(desc, field, wire, depth);
      if (this.pos > end)
        throw new Malformed(`field ${no} of ${desc.typeName} runs past its enclosing message`);
    }
  }

  private field(desc: DescMessage, field: DescField, wire: Wire, depth: number): void {
    const name = `${desc.typeName}.${field.name} (${field.number})`;
    const expect = (wanted: Wire): void => {
      if (wire !== wanted) throw new Malformed(`field ${name} has wire type ${wire}, expected ${wanted}`);
    };
    switch (field.fieldKind) {
      case 'scalar':
        expect(scalarWire(field.scalar));
        return this.scalar(field.scalar, name);
      case 'enum':
        expect(Wire.Varint);
        this.varint();
        return;
      case 'message':
        return this.subMessage(field.message, field.delimitedEncoding, field.number, wire, expect, depth);
      case 'list':
        if (field.listKind === 'message') {
          return this.subMessage(field.message, field.delimitedEncoding, field.number, wire, expect, depth);
        }
        {
          const element = field.listKind === 'scalar' ? scalarWire(field.scalar) : Wire.Varint;
          if (wire === Wire.LengthDelimited && element !== Wire.LengthDelimited) {
            return this.packed(element, name); // packed repeated numbers
          }
          expect(element);
          if (field.listKind === 'scalar') this.scalar(field.scalar, name);
          else this.varint();
          return;
        }
      case 'map':
        // No schema of this project uses maps: check the entry's structure only.
        expect(Wire.LengthDelimited);
        return this.skip(wire, field.number, depth);
    }
  }

  private subMessage(
    desc: DescMessage,
    delimited: boolean,
    no: number,
    wire: Wire,
    expect: (w: Wire) => void,
    depth: number,
  ): void {
    if (delimited) {
      expect(Wire.StartGroup);
      return this.skip(wire, no, depth); // groups: structure only (none in this project's schemas)
    }
    expect(Wire.LengthDelimited);
    const len = this.length();
    this.message(desc, this.pos + len, depth + 1);
  }

  private scalar(scalar: ScalarType, name: string): void {
    const wire = scalarWire(scalar);
    if (wire !== Wire.LengthDelimited) return this.skip(wire, 0, 0);
    const len = this.length();
    const start = this.pos;
    this.pos += len;
    if (scalar === ScalarType.STRING) {
      try {
        strictUtf8.decode(this.buf.subarray(start, this.pos));
      } catch {
        throw new Malformed(`field ${name} is not valid UTF-8`);
      }
    }
  }

  private packed(element: Wire, name: string): void {
    const end = this.pos + this.length();
    while (this.pos < end) this.skip(element, 0, 0);
    if (this.pos !== end) throw new Malformed(`packed field ${name} ends inside an element`);
  }

  private tag(desc: DescMessage): [number, Wire] {
    const start = this.pos;
    const tag = this.varint();
    if (this.pos - start > 5 || tag > 0xffffffff)
      throw new Malformed(`tag overflows uint32 in ${desc.typeName}`);
    const no = Math.floor(tag / 8);
    const wire = tag % 8;
    if (no === 0 || wire > 5) throw new Malformed(`illegal tag: field ${no}, wire type ${wire}`);
    return [no, wire as Wire];
  }

  private skip(wire: Wire, no: number, depth: number): void {
    switch (wire) {
      case Wire.Varint:
        this.varint();
        return;
      case Wire.Bit64:
        return this.advance(8);
      case Wire.Bit32:
        return this.advance(4);
      case Wire.LengthDelimited:
        return this.advance(this.length());
      case Wire.StartGroup: {
        if (depth + 1 > this.maxDepth) throw new Malformed(`group nesting deeper than ${this.maxDepth}`);
        for (;;) {
          if (this.pos >= this.buf.length) throw new Malformed(`unterminated group ${no}`);
          const start = this.pos;
          const tag = this.varint();
          if (this.pos - start > 5 || tag > 0xffffffff || tag < 8 || tag % 8 > 5) {
            throw new Malformed(`illegal tag inside group ${no}`);
          }
          if (tag % 8 === Wire.EndGroup) {
            if (Math.floor(tag / 8) !== no) throw new Malformed(`end-group tag does not match group ${no}`);
            return;
          }
          this.skip((tag % 8) as Wire, Math.floor(tag / 8), depth + 1);
        }
      }
      default:
        throw new Malformed(`unexpected wire type ${wire}`);
    }
  }

  /** A varint of at most 10 bytes; the value is exact up to 2^53, which covers tags and lengths. */
  private varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.buf[this.pos++];
      if (byte === undefined) throw new Malformed('truncated varint');
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) return value;
    }
    throw new Malformed('varint longer than 10 bytes');
  }

  private length(): number {
    const len = this.varint();
    if (len > this.buf.length - this.pos) {
      throw new Malformed(`length ${len} exceeds the ${this.buf.length - this.pos} bytes that remain`);
    }
    return len;
  }

  private advance(n: number): void {
    if (n > this.buf.length - this.pos) throw new Malformed('truncated field');
    this.pos += n;
  }
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
