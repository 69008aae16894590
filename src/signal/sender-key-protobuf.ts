/**
 * The little protobuf that sender-key messages and records need (libsignal's wire.proto and
 * storage.proto: uint32 and bytes fields, nested and repeated messages), read strictly: every
 * tag, wire type, varint and length is checked, and a problem becomes the caller's typed error
 * (`fail`), never a RangeError from a slice. Groups (wire types 3 and 4) are refused: none of these
 * schemas has one.
 */

/** A field's value as read: a varint, or the bytes of a length-delimited field. */
type Value = { readonly varint: number } | { readonly bytes: Uint8Array };

/** The fields of one message, by number, in the order they came. */
export class ProtoFields {
  private constructor(
    private readonly fields: Map<number, Value[]>,
    private readonly fail: (why: string) => Error,
  ) {}

  /** Reads `buf` as one message. Unknown fields are checked for structure and kept unread. */
  static read(buf: Uint8Array, fail: (why: string) => Error): ProtoFields {
    const fields = new Map<number, Value[]>();
    let pos = 0;
    const varint = (): number => {
      let result = 0;
      for (let shift = 0; shift < 70; shift += 7) {
        if (pos >= buf.length) throw fail('truncated varint');
        const b = buf[pos++] as number;
        // Past 2^53 the number is not exact; every field read here is a uint32, so such a value is
        // refused later as out of range, whatever its low bits.
        result += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return result;
      }
      throw fail('varint longer than 10 bytes');
    };
    while (pos < buf.length) {
      const tag = varint();
      const no = Math.floor(tag / 8);
      const wire = tag % 8;
      if (no === 0 || no > 0x1fffffff) throw fail(`field number ${no}`);
      let value: Value | undefined;
      if (wire === 0) {
        value = { varint: varint() };
      } else if (wire === 2) {
        const len = varint();
        if (len > buf.length - pos) throw fail(`field ${no} runs past the end`);
        value = { bytes: buf.subarray(pos, pos + len) };
        pos += len;
      } else if (wire === 1 || wire === 5) {
        const len = wire === 1 ? 8 : 4;
        if (len > buf.length - pos) throw fail(`field ${no} runs past the end`);
        pos += len; // fixed-width: no field of these schemas, skipped
      } else {
        throw fail(`wire type ${wire} in field ${no}`);
      }
      if (value !== undefined) {
        const list = fields.get(no);
        if (list) list.push(value);
        else fields.set(no, [value]);
      }
    }
    return new ProtoFields(fields, fail);
  }

  /** A uint32 field: the last occurrence, as protobuf reads a non-repeated field; undefined if absent. */
  uint32(no: number): number | undefined {
    const v = this.fields.get(no)?.at(-1);
    if (v === undefined) return undefined;
    if (!('varint' in v) || v.varint > 0xffffffff) throw this.fail(`field ${no} is not a uint32`);
    return v.varint;
  }

  /** A bytes (or sub-message) field: the last occurrence; undefined if absent. */
  bytes(no: number): Uint8Array | undefined {
    const v = this.fields.get(no)?.at(-1);
    if (v === undefined) return undefined;
    if (!('bytes' in v)) throw this.fail(`field ${no} is not length-delimited`);
    return v.bytes;
  }

  /** Every occurrence of a repeated bytes (or sub-message) field, in order. */
  repeated(no: number): Uint8Array[] {
    return (this.fields.get(no) ?? []).map((v) => {
      if (!('bytes' in v)) throw this.fail(`field ${no} is not length-delimited`);
      return v.bytes;
    });
  }
}

const varintBytes = (n: number, out: number[]): void => {
  let v = n;
  while (v > 0x7f) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
};

/** Writes fields in the order called: callers go by field number, as libsignal's encoder (prost) does. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];

  uint32(no: number, value: number): this {
    const head: number[] = [];
    varintBytes(no * 8, head);
    varintBytes(value, head);
    this.parts.push(Uint8Array.from(head));
    return this;
  }

  bytes(no: number, value: Uint8Array): this {
    const head: number[] = [];
    varintBytes(no * 8 + 2, head);
    varintBytes(value.length, head);
    this.parts.push(Uint8Array.from(head), value);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}
