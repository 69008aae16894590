/** JSON parsed with its nesting bounded (src/util/json.ts). */
import { jsonDepthExceeds, parseJsonBounded } from '../../src/util/json.js';

test('nesting deeper than the bound is refused before parsing; wide, shallow or quoted brackets are not', () => {
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  expect(jsonDepthExceeds(nested(128), 128)).toBe(false);
  expect(jsonDepthExceeds(nested(129), 128)).toBe(true);
  expect(jsonDepthExceeds(`{"a":${nested(129)}}`, 129)).toBe(true);
  // Many brackets side by side (more than the bound in all) nest only two deep.
  expect(jsonDepthExceeds(JSON.stringify(Array.from({ length: 500 }, () => ({ a: [1] }))), 10)).toBe(false);
  // Brackets inside strings, escaped quotes included, do not count.
  expect(jsonDepthExceeds(JSON.stringify({ text: `\\"${'{['.repeat(300)}` }), 10)).toBe(false);
  expect(parseJsonBounded(nested(200))).toEqual({ ok: false, reason: 'too_deep' });
  expect(parseJsonBounded('{"a": [1, {"b": 2}]}')).toEqual({ ok: true, value: { a: [1, { b: 2 }] } });
  expect(parseJsonBounded('{"a": ')).toEqual({ ok: false, reason: 'not_json' });
});
