import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, SECRET_KEYS, type Config } from './schema.js';

export const ENV_PREFIX = 'INTEROP_BRIDGE_';
/** Variables with the prefix that are not config overrides. */
const ENV_NOT_OVERRIDES = new Set(['INTEROP_BRIDGE_CONFIG']);

export interface LoadOptions {
  /** The YAML file; without it the embedded defaults apply (plus environment overrides). */
  path?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

export interface LoadedConfig {
  config: Config;
  /** What the configuration came from, for messages: the file path or "embedded defaults". */
  source: string;
  /** Absolute paths derived from the configuration. */
  paths: {
    dataDir: string;
    database: string;
    signingKey: string;
    atRestKey: string;
    provisioningSecret: string;
  };
  /**
   * The files secrets were read from: each `<secret>_file`, and the configuration file itself when
   * it holds a secret inline (secret-files.ts checks their modes).
   */
  secretFiles: SecretFile[];
}

export interface SecretFile {
  /** Absolute path. */
  file: string;
  /** The option it stands for, for messages: "matrix.as_token_file", "the configuration file". */
  what: string;
}

type Tree = Record<string, unknown>;

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads, overrides, resolves secrets and validates. Every problem found is reported at once in a
 * single ConfigError, each naming the key, the value found and what is expected.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const source = options.path ?? 'embedded defaults';
  const baseDir = options.path ? path.dirname(path.resolve(options.path)) : process.cwd();
  const problems: string[] = [];

  const raw = options.path ? readYaml(options.path) : {};
  const secretFiles: SecretFile[] = [];
  const inline = SECRET_KEYS.filter((key) => {
    const [sectionName, leaf] = key.split('.') as [string, string];
    const section = raw[sectionName];
    return isTree(section) && section[leaf] !== undefined;
  });
  if (options.path && inline.length > 0) {
    secretFiles.push({
      file: path.resolve(options.path),
      what: `the configuration file (it holds ${inline.join(', ')} inline)`,
    });
  }
  const origins = applyEnvOverrides(raw, env, problems);
  const unreadableSecrets = resolveSecretFiles(raw, baseDir, problems, secretFiles);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      // A secret whose file could not be read is already reported as such.
      if (unreadableSecrets.has(issue.path.join('.'))) continue;
      problems.push(...describeIssue(issue, raw, origins));
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems, source);

  const config = parsed.data;
  const dataDir = path.resolve(baseDir, config.bridge.data_dir);
  return {
    config,
    source,
    paths: {
      dataDir,
      database: isPostgresUrl(config.bridge.database)
        ? config.bridge.database
        : path.resolve(dataDir, config.bridge.database),
      signingKey: path.resolve(dataDir, config.provider.signing_key_file),
      atRestKey: path.resolve(dataDir, config.bridge.at_rest_key_file),
      provisioningSecret: path.resolve(dataDir, config.bridge.provisioning_secret_file),
    },
    secretFiles,
  };
}

/** `bridge.database` names a PostgreSQL database rather than a SQLite file. */
export const isPostgresUrl = (database: string): boolean => /^postgres(ql)?:\/\//.test(database);

/** How many aliases a configuration may resolve (yaml's own default, stated here). */
const MAX_ALIAS_COUNT = 100;

/** Reads a YAML mapping; syntax errors become a ConfigError with line and column. (Also used by emulator/config.ts.) */
export function readYaml(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read the configuration file: ${systemReason(err)}`], file);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const at = e.linePos?.[0];
        const what = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
        return `${at ? `line ${at.line}, column ${at.col}: ` : ''}YAML syntax error: ${what}`;
      }),
      file,
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // yaml refuses an alias expansion out of proportion to the document (a "billion laughs").
    if (err instanceof ReferenceError && /alias/i.test(err.message)) {
      throw new ConfigError(
        [
          `YAML aliases expand to too much (more than ${MAX_ALIAS_COUNT} alias uses, or aliases nested to multiply the document): write the values out, or use fewer anchors and aliases`,
        ],
        file,
      );
    }
    throw err;
  }
  if (value === null || value === undefined) return {};
  if (!isTree(value)) {
    throw new ConfigError([`expected a mapping of sections (bridge:, gateway:, ...) at the top level`], file);
  }
  return value;
}

/**
 * INTEROP_BRIDGE_GATEWAY__PORT=5000 sets gateway.port: sections and keys are separated by a double
 * underscore (keys themselves contain single underscores). Values are read as YAML scalars, so
 * numbers and booleans keep their types. Returns which keys came from which variable.
 */
function applyEnvOverrides(raw: Tree, env: NodeJS.ProcessEnv, problems: string[]): Map<string, string> {
  const origins = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || ENV_NOT_OVERRIDES.has(name) || value === undefined) continue;
    const keys = name.slice(ENV_PREFIX.length).toLowerCase().split('__');
    if (keys.some((k) => k.length === 0)) {
      problems.push(
        `${name}: not a valid override name; use ${ENV_PREFIX}SECTION__KEY, such as ${ENV_PREFIX}GATEWAY__PORT`,
      );
      continue;
    }
    let parsed: unknown;
    try {
      parsed = parseDocument(value).toJS();
    } catch {
      parsed = value;
    }
    let node = raw;
    for (const key of keys.slice(0, -1)) {
      const next = node[key];
      if (!isTree(next)) node[key] = {};
      node = node[key] as Tree;
    }
    node[keys[keys.length - 1] as string] = parsed ?? '';
    origins.set(keys.join('.'), name);
  }
  return origins;
}

/** `matrix.as_token_file: /etc/interop-bridge/as_token` stands for `matrix.as_token: <the file's contents>`. */
function resolveSecretFiles(raw: Tree, baseDir: string, problems: string[], read: SecretFile[]): Set<string> {
  const failed = new Set<string>();
  for (const key of SECRET_KEYS) {
    const [sectionName, leaf] = key.split('.') as [string, string];
    const section = raw[sectionName];
    if (!isTree(section) || !(`${leaf}_file` in section)) continue;
    const fileKey = `${key}_file`;
    const file = section[`${leaf}_file`];
    delete section[`${leaf}_file`];
    if (leaf in section) {
      problems.push(`${key} and ${fileKey}: give one or the other, not both`);
      continue;
    }
    failed.add(key);
    if (typeof file !== 'string' || file.length === 0) {
      problems.push(`${fileKey}: expected a file path, found ${render(file, false)}`);
      continue;
    }
    const resolved = path.resolve(baseDir, file);
    try {
      const contents = readFileSync(resolved, 'utf8').replace(/\r?\n$/, '');
      if (contents.length === 0) {
        problems.push(`${fileKey}: the file ${resolved} is empty`);
      } else {
        section[leaf] = contents;
        failed.delete(key);
        read.push({ file: resolved, what: fileKey });
      }
    } catch (err) {
      problems.push(`${fileKey}: cannot read the secret file ${resolved}: ${systemReason(err)}`);
    }
  }
  return failed;
}

/** One zod issue as "key: expected X, found Y" lines; `schema` gives the known keys for suggestions. */
export function describeIssue(
  issue: z.core.$ZodIssue,
  raw: Tree,
  origins: Map<string, string>,
  schema: unknown = configSchema,
): string[] {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((unknown) => {
      const full = key ? `${key}.${unknown}` : unknown;
      const hint = suggest(unknown, knownKeysAt(issue.path.map(String), schema));
      return `${full}: unknown option${hint ? `; did you mean "${hint}"?` : ''}${from(origins, full)}`;
    });
  }
  const secret = (SECRET_KEYS as readonly string[]).includes(key);
  const found = issue.path.reduce<unknown>(
    (node, k) =>
      isTree(node) ? node[String(k)] : Array.isArray(node) ? (node as unknown[])[Number(k)] : undefined,
    raw,
  );
  return [
    `${key || '(top level)'}: expected ${issue.message}, found ${render(found, secret)}${from(origins, key)}`,
  ];
}

const from = (origins: Map<string, string>, key: string) => {
  const name = origins.get(key);
  return name ? ` (from the environment variable ${name})` : '';
};

function render(value: unknown, secret: boolean): string {
  if (value === undefined) return 'nothing';
  if (secret) return 'a value (not shown: it is a secret)';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (isTree(value)) return 'a mapping';
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function systemReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return e.message ?? String(err);
  }
}

function knownKeysAt(pathKeys: string[], root: unknown): string[] {
  let schema: unknown = root;
  for (const key of pathKeys) {
    // A list's items: "providers.0.jwks_fil" suggests from the item schema.
    schema = /^\d+$/.test(key) ? elementOf(schema) : shapeOf(schema)?.[key];
  }
  return Object.keys(shapeOf(schema) ?? {});
}

/** Unwraps defaults/optionals/refinements to reach an object schema's shape. */
function shapeOf(schema: unknown): Record<string, unknown> | undefined {
  let current = schema as
    { shape?: Record<string, unknown>; def?: { innerType?: unknown; in?: unknown } } | undefined;
  for (let i = 0; i < 5 && current; i++) {
    if (current.shape) return current.shape;
    current = (current.def?.innerType ?? current.def?.in) as typeof current;
  }
  return undefined;
}

/** Unwraps defaults/optionals to reach an array schema's element. */
function elementOf(schema: unknown): unknown {
  let current = schema as { def?: { innerType?: unknown; in?: unknown; element?: unknown } } | undefined;
  for (let i = 0; i < 5 && current; i++) {
    if (current.def?.element) return current.def.element;
    current = (current.def?.innerType ?? current.def?.in) as typeof current;
  }
  return undefined;
}

function suggest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number;
      row[j] = Math.min(above + 1, (row[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] as number;
}
