/**
 * A copy of `bytes` in memory of its own, for bytes kept as long as a puppet lives (its Noise key
 * pair, a session's cipher keys). `Buffer.from` and `Buffer.allocUnsafe` cut small buffers out of a
 * shared 8 KiB pool, and one long-lived slice keeps its whole slab alive: in the scale benchmark,
 * a handful of 32-byte keys per puppet held 3.6 KiB of slabs per puppet (docs/BENCHMARKS.md).
 */
export function unpooledCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}
