import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/**
 * The Matrix specification's `data/` folder, read in place from `../shared/specs/matrix` beside the
 * repository (CI checks `shared/` out next to the clone). Never copied into the repository, so the
 * stand-in homeserver can only be as honest as the published definitions.
 */
export function matrixSpecDir(): string {
  const fromEnv = process.env['MATRIX_SPEC_DIR'];
  const here = path.dirname(fileURLToPath(import.meta.url));
  // test/support/homeserver in the repository, or dist/test/support/homeserver once built (bench).
  const candidates = ['../../..', '../../../..'].map((up) =>
    path.resolve(here, up, '../shared/specs/matrix/data'),
  );
  const dir =
    fromEnv ?? candidates.find((c) => existsSync(path.join(c, 'api/client-server'))) ?? candidates[0]!;
  if (!existsSync(path.join(dir, 'api/client-server'))) {
    throw new Error(
      `Matrix specification data not found at ${dir}: check out the shared specs beside the repository ` +
        `(../shared/specs/matrix/data) or set MATRIX_SPEC_DIR to the spec's data/ folder`,
    );
  }
  return dir;
}

/** A node inside a spec file: the value and the file it came from (relative `$ref`s resolve against it). */
export interface SpecNode {
  readonly value: unknown;
  readonly file: string;
}

/** Parsed YAML files of the spec, cached once per process, with `$ref` resolution across files. */
export class SpecFiles {
  private readonly cache = new Map<string, unknown>();

  constructor(readonly root: string = matrixSpecDir()) {}

  /** A file by its path relative to the spec's `data/` folder (or absolute). */
  load(file: string): unknown {
    const abs = path.isAbsolute(file) ? file : path.join(this.root, file);
    let doc = this.cache.get(abs);
    if (doc === undefined) {
      doc = parse(readFileSync(abs, 'utf8')) as unknown;
      this.cache.set(abs, doc);
    }
    return doc;
  }

  node(file: string): SpecNode {
    const abs = path.isAbsolute(file) ? file : path.join(this.root, file);
    return { value: this.load(abs), file: abs };
  }

  /** Resolves `other.yaml#/a/b`, `#/a/b` or `other.yaml` relative to the file holding the reference. */
  resolve(ref: string, from: string): SpecNode {
    const [filePart, pointer] = ref.split('#', 2) as [string, string | undefined];
    const file = filePart === '' ? from : path.resolve(path.dirname(from), filePart);
    let value = this.load(file);
    for (const raw of (pointer ?? '').split('/').filter((s) => s !== '')) {
      const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (!isObject(value) || !(key in value)) {
        throw new Error(`unresolvable $ref "${ref}" in ${path.relative(this.root, from)}`);
      }
      value = value[key];
    }
    return { value, file };
  }

  /** Follows `$ref` chains (OpenAPI parameters, responses, request bodies are plain references). */
  deref(node: SpecNode): SpecNode {
    let current = node;
    for (let hops = 0; isObject(current.value) && typeof current.value['$ref'] === 'string'; hops++) {
      if (hops > 20) throw new Error(`$ref loop at ${current.file}`);
      current = this.resolve(current.value['$ref'], current.file);
    }
    return current;
  }

  relative(file: string): string {
    return path.relative(this.root, file);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

let shared: SpecFiles | undefined;
/** One cache per process: the spec files never change during a run. */
export function sharedSpecFiles(): SpecFiles {
  shared ??= new SpecFiles();
  return shared;
}
