/**
 * Every error the project raises on purpose is an InteropError: a stable machine-readable `code`
 * (used in logs, metrics, failure stanzas and tests) and a message that says what to do.
 */
export class InteropError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Invalid user-supplied configuration: exit code 2 at the CLI. */
export class ConfigError extends InteropError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], source: string) {
    const head =
      problems.length === 1
        ? `invalid configuration in ${source}:`
        : `${problems.length} problems in ${source}:`;
    super('config_invalid', [head, ...problems.map((p) => `  - ${p}`)].join('\n'));
    this.problems = problems;
  }
}

/** Wrong command-line usage: exit code 2 at the CLI. */
export class UsageError extends InteropError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** The embedded store cannot be opened or migrated. */
export class StoreError extends InteropError {}
