import { isObject, type SpecFiles, type SpecNode } from './spec-files.js';

/** One way a value fails its schema: where (`body.content.info.size`) and why. */
export interface SchemaProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * A validator for the subset of JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) that the Matrix
 * specification's definitions use. A keyword it does not know is reported as a problem rather than
 * skipped, so a constraint is never silently ignored.
 */
export class SchemaValidator {
  constructor(private readonly files: SpecFiles) {}

  validate(schema: SpecNode, value: unknown, at: string): SchemaProblem[] {
    const problems: SchemaProblem[] = [];
    this.check(schema.value, schema.file, value, at, problems);
    return problems;
  }

  private check(schema: unknown, file: string, value: unknown, at: string, out: SchemaProblem[]): void {
    if (schema === true || schema === undefined) return;
    if (schema === false) {
      out.push({ path: at, message: 'is not allowed here' });
      return;
    }
    if (!isObject(schema)) {
      out.push({ path: at, message: `schema in ${this.files.relative(file)} is not an object` });
      return;
    }
    for (const [keyword, arg] of Object.entries(schema)) {
      if (keyword.startsWith('x-') || ANNOTATIONS.has(keyword)) continue;
      const rule = RULES[keyword];
      if (rule === undefined) {
        out.push({
          path: at,
          message: `the validator does not support keyword "${keyword}" (${this.files.relative(file)}): extend test/support/homeserver/json-schema.ts`,
        });
        continue;
      }
      rule({ v: this, schema, arg, file, value, at, out });
    }
  }

  /** Used by the rules: validate against a subschema or a `$ref`. */
  sub(schema: unknown, file: string, value: unknown, at: string, out: SchemaProblem[]): void {
    this.check(schema, file, value, at, out);
  }

  ref(ref: string, file: string, value: unknown, at: string, out: SchemaProblem[]): void {
    const target = this.files.resolve(ref, file);
    this.check(target.value, target.file, value, at, out);
  }
}

/** Keywords that describe rather than constrain. (`format` is checked for the Matrix identifiers only.) */
const ANNOTATIONS = new Set([
  '$schema',
  '$comment',
  'title',
  'description',
  'example',
  'examples',
  'default',
  'deprecated',
  'readOnly',
  'writeOnly',
]);

interface RuleContext {
  v: SchemaValidator;
  schema: Record<string, unknown>;
  arg: unknown;
  file: string;
  value: unknown;
  at: string;
  out: SchemaProblem[];
}
type Rule = (c: RuleContext) => void;

export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function typeMatches(expected: string, value: unknown): boolean {
  const actual = jsonType(value);
  return expected === actual || (expected === 'number' && actual === 'integer');
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

const child = (at: string, key: string | number): string =>
  typeof key === 'number'
    ? `${at}[${key}]`
    : /^[A-Za-z_][\w]*$/.test(key)
      ? `${at}.${key}`
      : `${at}["${key}"]`;

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** The Matrix identifier grammars behind the spec's `format` values (others are annotations). */
const FORMATS: Record<string, RegExp> = {
  'mx-user-id': /^@[^:]+:.+$/,
  'mx-room-id': /^![^\s]+$/,
  'mx-event-id': /^\$[^\s]+$/,
  'mx-room-alias': /^#[^:]+:.+$/,
  'mx-mxc-uri': /^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/,
};

const patternCache = new Map<string, RegExp>();
const regex = (pattern: string): RegExp => {
  let r = patternCache.get(pattern);
  if (r === undefined) {
    r = new RegExp(pattern, 'u');
    patternCache.set(pattern, r);
  }
  return r;
};

const alternatives = (c: RuleContext): { passed: number; reasons: string[] } => {
  const list = Array.isArray(c.arg) ? c.arg : [];
  const reasons: string[] = [];
  let passed = 0;
  list.forEach((alt, i) => {
    const sub: SchemaProblem[] = [];
    c.v.sub(alt, c.file, c.value, c.at, sub);
    if (sub.length === 0) passed++;
    else reasons.push(`#${i}: ${sub.map((p) => `${p.path} ${p.message}`).join('; ')}`);
  });
  return { passed, reasons };
};

const RULES: Record<string, Rule> = {
  $ref: (c) => c.v.ref(String(c.arg), c.file, c.value, c.at, c.out),
  type: (c) => {
    const types = Array.isArray(c.arg) ? (c.arg as string[]) : [String(c.arg)];
    if (!types.some((t) => typeMatches(t, c.value))) {
      c.out.push({ path: c.at, message: `must be ${types.join(' or ')}, got ${jsonType(c.value)}` });
    }
  },
  enum: (c) => {
    const list = Array.isArray(c.arg) ? c.arg : [];
    if (!list.some((x) => deepEqual(x, c.value))) {
      c.out.push({ path: c.at, message: `must be one of ${show(list)}, got ${show(c.value)}` });
    }
  },
  const: (c) => {
    if (!deepEqual(c.arg, c.value)) c.out.push({ path: c.at, message: `must be ${show(c.arg)}` });
  },
  properties: (c) => {
    if (!isObject(c.value) || !isObject(c.arg)) return;
    for (const [key, sub] of Object.entries(c.arg)) {
      if (key in c.value) c.v.sub(sub, c.file, c.value[key], child(c.at, key), c.out);
    }
  },
  patternProperties: (c) => {
    if (!isObject(c.value) || !isObject(c.arg)) return;
    for (const [pattern, sub] of Object.entries(c.arg)) {
      for (const [key, val] of Object.entries(c.value)) {
        if (regex(pattern).test(key)) c.v.sub(sub, c.file, val, child(c.at, key), c.out);
      }
    }
  },
  additionalProperties: (c) => {
    if (!isObject(c.value)) return;
    const declared = isObject(c.schema['properties']) ? c.schema['properties'] : {};
    const patterns = isObject(c.schema['patternProperties'])
      ? Object.keys(c.schema['patternProperties']).map(regex)
      : [];
    for (const [key, val] of Object.entries(c.value)) {
      if (key in declared || patterns.some((p) => p.test(key))) continue;
      if (c.arg === false) c.out.push({ path: child(c.at, key), message: 'is not an allowed property' });
      else c.v.sub(c.arg, c.file, val, child(c.at, key), c.out);
    }
  },
  propertyNames: (c) => {
    if (!isObject(c.value)) return;
    for (const key of Object.keys(c.value))
      c.v.sub(c.arg, c.file, key, `${c.at} property name "${key}"`, c.out);
  },
  required: (c) => {
    if (!isObject(c.value) || !Array.isArray(c.arg)) return;
    for (const key of c.arg as string[]) {
      if (!(key in c.value)) c.out.push({ path: child(c.at, key), message: 'is required but missing' });
    }
  },
  minProperties: (c) => {
    if (isObject(c.value) && Object.keys(c.value).length < Number(c.arg)) {
      c.out.push({ path: c.at, message: `must have at least ${String(c.arg)} properties` });
    }
  },
  maxProperties: (c) => {
    if (isObject(c.value) && Object.keys(c.value).length > Number(c.arg)) {
      c.out.push({ path: c.at, message: `must have at most ${String(c.arg)} properties` });
    }
  },
  items: (c) => {
    if (!Array.isArray(c.value)) return;
    c.value.forEach((item, i) => c.v.sub(c.arg, c.file, item, child(c.at, i), c.out));
  },
  minItems: (c) => {
    if (Array.isArray(c.value) && c.value.length < Number(c.arg)) {
      c.out.push({ path: c.at, message: `must have at least ${String(c.arg)} items` });
    }
  },
  maxItems: (c) => {
    if (Array.isArray(c.value) && c.value.length > Number(c.arg)) {
      c.out.push({ path: c.at, message: `must have at most ${String(c.arg)} items` });
    }
  },
  pattern: (c) => {
    if (typeof c.value === 'string' && !regex(String(c.arg)).test(c.value)) {
      c.out.push({ path: c.at, message: `must match /${String(c.arg)}/, got ${show(c.value)}` });
    }
  },
  minLength: (c) => {
    if (typeof c.value === 'string' && [...c.value].length < Number(c.arg)) {
      c.out.push({ path: c.at, message: `must be at least ${String(c.arg)} characters` });
    }
  },
  maxLength: (c) => {
    if (typeof c.value === 'string' && [...c.value].length > Number(c.arg)) {
      c.out.push({ path: c.at, message: `must be at most ${String(c.arg)} characters` });
    }
  },
  minimum: (c) => {
    if (typeof c.value === 'number' && c.value < Number(c.arg)) {
      c.out.push({ path: c.at, message: `must be >= ${String(c.arg)}` });
    }
  },
  maximum: (c) => {
    if (typeof c.value === 'number' && c.value > Number(c.arg)) {
      c.out.push({ path: c.at, message: `must be <= ${String(c.arg)}` });
    }
  },
  format: (c) => {
    const grammar = FORMATS[String(c.arg)];
    if (typeof c.value === 'string' && grammar !== undefined && !grammar.test(c.value)) {
      c.out.push({ path: c.at, message: `must be a valid ${String(c.arg)}, got ${show(c.value)}` });
    }
    if (c.arg === 'int64' && typeof c.value === 'number' && !Number.isSafeInteger(c.value)) {
      c.out.push({ path: c.at, message: `must be a 64-bit integer, got ${show(c.value)}` });
    }
  },
  allOf: (c) => {
    for (const sub of Array.isArray(c.arg) ? c.arg : []) c.v.sub(sub, c.file, c.value, c.at, c.out);
  },
  anyOf: (c) => {
    const { passed, reasons } = alternatives(c);
    if (passed === 0)
      c.out.push({ path: c.at, message: `matches none of the alternatives (${reasons.join(' | ')})` });
  },
  oneOf: (c) => {
    const { passed, reasons } = alternatives(c);
    if (passed === 0)
      c.out.push({ path: c.at, message: `matches none of the alternatives (${reasons.join(' | ')})` });
    else if (passed > 1)
      c.out.push({ path: c.at, message: `matches ${passed} alternatives of a oneOf, expected exactly one` });
  },
  not: (c) => {
    const sub: SchemaProblem[] = [];
    c.v.sub(c.arg, c.file, c.value, c.at, sub);
    if (sub.length === 0) c.out.push({ path: c.at, message: 'must not match the excluded schema' });
  },
};
