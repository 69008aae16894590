import { LazyMap } from '../../src/util/lazy-map.js';

describe('LazyMap (a Map whose table is made at its first entry)', () => {
  it('answers as an empty Map before anything is set', () => {
    const m = new LazyMap<string, number>();
    expect([m.size, m.get('a'), m.has('a'), m.delete('a')]).toEqual([0, undefined, false, false]);
    expect([...m]).toEqual([]);
    expect([...m.keys(), ...m.values()]).toEqual([]);
    m.clear();
    const seen: unknown[] = [];
    m.forEach((v) => seen.push(v));
    expect(seen).toEqual([]);
    expect(Object.prototype.toString.call(m)).toBe('[object Map]');
  });

  it('then behaves as a Map: insertion order, overwrite, delete, clear, forEach with itself as the map', () => {
    const m = new LazyMap<string, number>();
    expect(m.set('b', 2).set('a', 1).set('b', 3)).toBe(m);
    expect([...m]).toEqual([
      ['b', 3],
      ['a', 1],
    ]);
    expect([...m.entries()]).toEqual([...new Map(m)]);
    const seen: [number, string, unknown][] = [];
    m.forEach((v, k, map) => seen.push([v, k, map]));
    expect(seen).toEqual([
      [3, 'b', m],
      [1, 'a', m],
    ]);
    expect(m.delete('b')).toBe(true);
    expect([m.size, m.has('b'), m.get('a')]).toEqual([1, false, 1]);
    m.clear();
    expect([m.size, [...m.keys()]]).toEqual([0, []]);
    m.set('c', 5);
    expect([...m.values()]).toEqual([5]);
  });
});
