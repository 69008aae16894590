/**
 * A Map whose table is made at its first entry. An empty Map still costs its hash table (about
 * 180 bytes), and a puppet holds a couple of dozen maps that stay empty for most puppets (retries,
 * groups, profile reads, held Signal writes...): at 10,000 puppets that is megabytes of nothing
 * (docs/BENCHMARKS.md, "Scale"). Behaves as a Map; once made, the table stays.
 */
const EMPTY = new Map<unknown, unknown>();

export class LazyMap<K, V> implements Map<K, V> {
  #map: Map<K, V> | undefined;

  get size(): number {
    return this.#map?.size ?? 0;
  }

  get(key: K): V | undefined {
    return this.#map?.get(key);
  }

  has(key: K): boolean {
    return this.#map?.has(key) ?? false;
  }

  set(key: K, value: V): this {
    (this.#map ??= new Map()).set(key, value);
    return this;
  }

  delete(key: K): boolean {
    return this.#map?.delete(key) ?? false;
  }

  clear(): void {
    this.#map?.clear();
  }

  forEach(fn: (value: V, key: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    this.#map?.forEach((value, key) => fn.call(thisArg, value, key, this));
  }

  entries(): MapIterator<[K, V]> {
    return (this.#map ?? (EMPTY as Map<K, V>)).entries();
  }

  keys(): MapIterator<K> {
    return (this.#map ?? (EMPTY as Map<K, V>)).keys();
  }

  values(): MapIterator<V> {
    return (this.#map ?? (EMPTY as Map<K, V>)).values();
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'Map';
  }
}
