import { LazyMap, LazySet } from '../../src/util/lazy-map.js';

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

describe('LazySet (a Set whose table is made at its first entry)', () => {
  it('answers as an empty Set before anything is added', () => {
    const s = new LazySet<number>();
    expect([s.size, s.has(1), s.delete(1)]).toEqual([0, false, false]);
    expect([...s, ...s.keys(), ...s.values(), ...s.entries()]).toEqual([]);
    s.clear();
    const seen: unknown[] = [];
    s.forEach((v) => seen.push(v));
    expect(seen).toEqual([]);
    expect(Object.prototype.toString.call(s)).toBe('[object Set]');
  });

  it('then behaves as a Set: insertion order, no duplicates, delete, clear, forEach with itself as the set', () => {
    const s = new LazySet<number>();
    expect(s.add(3).add(1).add(3)).toBe(s);
    expect([...s]).toEqual([3, 1]);
    expect([...s.entries()]).toEqual([
      [3, 3],
      [1, 1],
    ]);
    const seen: [number, number, unknown][] = [];
    s.forEach((v, again, set) => seen.push([v, again, set]));
    expect(seen).toEqual([
      [3, 3, s],
      [1, 1, s],
    ]);
    expect(s.delete(3)).toBe(true);
    expect([s.size, s.has(3), s.has(1)]).toEqual([1, false, true]);
    s.clear();
    expect([s.size, [...s.keys()]]).toEqual([0, []]);
    s.add(7);
    expect([...s.values()]).toEqual([7]);
  });
});
