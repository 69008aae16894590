/**
 * A Map (and below, a Set) whose table is made at its first entry. An empty Map still costs its
 * hash table (about 180 bytes), and a puppet holds a couple of dozen maps that stay empty for most puppets (retries,
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

const EMPTY_SET = new Set<unknown>();

/** A Set whose table is made at its first entry, for the same reason as LazyMap. Behaves as a Set. */
export class LazySet<T> implements Set<T> {
  #set: Set<T> | undefined;

  get size(): number {
    return this.#set?.size ?? 0;
  }

  has(value: T): boolean {
    return this.#set?.has(value) ?? false;
  }

  add(value: T): this {
    (this.#set ??= new Set()).add(value);
    return this;
  }

  delete(value: T): boolean {
    return this.#set?.delete(value) ?? false;
  }

  clear(): void {
    this.#set?.clear();
  }

  forEach(fn: (value: T, again: T, set: Set<T>) => void, thisArg?: unknown): void {
    this.#set?.forEach((value) => fn.call(thisArg, value, value, this));
  }

  entries(): SetIterator<[T, T]> {
    return (this.#set ?? (EMPTY_SET as Set<T>)).entries();
  }

  keys(): SetIterator<T> {
    return (this.#set ?? (EMPTY_SET as Set<T>)).keys();
  }

  values(): SetIterator<T> {
    return (this.#set ?? (EMPTY_SET as Set<T>)).values();
  }

  [Symbol.iterator](): SetIterator<T> {
    return this.values();
  }

  get [Symbol.toStringTag](): string {
    return 'Set';
  }
}
