/**
 * The emulator's configuration (emulator.yaml, documented option by option in emulator.sample.yaml).
 * Same rules as the bridge's: every mistake is reported as "key: expected X, found Y", all of them
 * at once, in one ConfigError; relative paths are resolved against the configuration file.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { expecting, host, int, oneOf, section, str } from '../src/config/fields.js';
import { describeIssue, readYaml, type SecretFile } from '../src/config/loader.js';
import { keyFiles } from './keys.js';
import { aboutProblem, pictureProblem, pushNameProblem } from './profiles.js';
import { ConfigError } from '../src/errors.js';

const port = () => int(0, 65535, 'a port number from 1 to 65535 (0: any free port)');

/** A provider id is the DNS label of its accounts' server (`<id>.interop`), so JIDs can name it. */
const PROVIDER_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** `host` or `host:port`; IPv6 in brackets. */
const MEDIA_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

const gatewaySchema = z.strictObject({
  host: host().default('127.0.0.1'),
  port: port().default(29400),
  gateway_id: str('the gateway id (the audience of client tokens)').default('emulator.interop'),
  max_frame_bytes: int(1024, 16_777_215).default(1_048_576),
  handshake_timeout_seconds: int(1, 300).default(10),
});

const emulatorSchema = z.strictObject({
  data_dir: str('a directory path').default('./emulator-data'),
  database: str('a file path').default('emulator.db'),
  offline_retention_seconds: int(60, 31_536_000).default(604_800),
  prekey_low_water: int(1, 1000).default(10),
});

const certificatesSchema = z.strictObject({
  validity_days: int(1, 3650).default(30),
  intermediate_validity_days: int(1, 36_500).default(365),
});

const mediaSchema = z.strictObject({
  host: host().default('127.0.0.1'),
  port: port().default(29401),
  public_host: z
    .string(expecting('a host name, optionally with a port, such as "media.emulator.example:443"'))
    .regex(MEDIA_HOST, expecting('a host name, optionally with a port, such as "media.emulator.example:443"'))
    .optional(),
  public_scheme: oneOf(['http', 'https'] as const).default('http'),
  max_bytes: int(1024, 2 ** 40).default(100 * 1024 * 1024),
  auth_ttl_seconds: int(10, 86_400).default(300),
  fetch_timeout_seconds: int(1, 600).default(30),
});

const mediaHost = () =>
  z
    .string(expecting('a host name or host:port, such as "media.provider.example" or "127.0.0.1:29330"'))
    .regex(
      MEDIA_HOST,
      expecting('a host name or host:port, such as "media.provider.example" or "127.0.0.1:29330"'),
    );

const providerSchema = z
  .strictObject({
    id: z
      .string(expecting('a provider id: 1-63 lower-case letters, digits and inner hyphens, not "wa"'))
      .regex(
        PROVIDER_ID,
        expecting('a provider id: 1-63 lower-case letters, digits and inner hyphens, not "wa"'),
      )
      .refine((v) => v !== 'wa', expecting('a provider id other than "wa" (the native users\' server)')),
    jwks_file: str('a file path').optional(),
    jwks_url: z.url({ protocol: /^https?$/, ...expecting('an http:// or https:// URL') }).optional(),
    jwks_refresh_seconds: int(10, 86_400).default(300),
    allowed_media_hosts: z.array(mediaHost(), expecting('a list of host names')).default([]),
  })
  .superRefine((p, ctx) => {
    if ((p.jwks_file === undefined) === (p.jwks_url === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [p.jwks_file === undefined ? 'jwks_file' : 'jwks_url'],
        message:
          p.jwks_file === undefined
            ? "jwks_file or jwks_url (one of them: where the provider's public keys are)"
            : 'nothing here when jwks_file is given (one of jwks_file and jwks_url, not both)',
      });
    }
  });

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and "localhost": reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The admin HTTP API can reset the emulator's state: loopback only, unless deliberately opened with a token. */
const adminSchema = z
  .strictObject({
    enabled: z.boolean(expecting('true or false')).default(true),
    host: host().default('127.0.0.1'),
    port: port().default(29402),
    token: z
      .string(expecting('a bearer token of at least 16 characters'))
      .min(16, expecting('a bearer token of at least 16 characters'))
      .optional(),
    allow_remote: z.boolean(expecting('true or false')).default(false),
  })
  .superRefine((a, ctx) => {
    if (isLoopbackHost(a.host)) return;
    if (!a.allow_remote) {
      ctx.addIssue({
        code: 'custom',
        path: ['host'],
        message:
          'a loopback address such as 127.0.0.1 (the admin API can inject faults and create users: ' +
          'to listen elsewhere set allow_remote: true and a token)',
        input: a.host,
      });
    } else if (a.token === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        message: `a bearer token of at least 16 characters (required when the admin API listens on ${a.host})`,
      });
    }
  });

/** Native users the emulator runs itself (for the demo and for trying a bridge by hand). */
const nativeUserSchema = z.strictObject({
  phone: z
    .string(expecting('an E.164 phone number such as "+4915100000001"'))
    .regex(/^\+[1-9]\d{6,14}$/, expecting('an E.164 phone number such as "+4915100000001"')),
  behaviour: oneOf(['echo', 'answer', 'silent'] as const).default('echo'),
  delay_ms: int(0, 600_000).default(0),
  answers: z.array(str(), expecting('a list of answers')).default([]),
  /** The push name its contacts see (PROTOCOL.md 5.8). */
  name: z
    .string(expecting('a push name: 1 to 25 characters without line breaks'))
    .refine(
      (v) => pushNameProblem(v) === undefined,
      expecting('a push name: 1 to 25 characters without line breaks'),
    )
    .optional(),
  /** The about text its contacts see. */
  about: z
    .string(expecting('an about text of at most 139 characters'))
    .refine((v) => aboutProblem(v) === undefined, expecting('an about text of at most 139 characters'))
    .optional(),
  /** A JPEG file (at most 262,144 bytes): its profile picture; resolved against the configuration file. */
  picture: str('a file path (a JPEG of at most 262,144 bytes)').optional(),
});

const loggingSchema = z.strictObject({
  level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const).default('info'),
  format: oneOf(['auto', 'json', 'pretty'] as const).default('auto'),
});

/** Options whose values never appear in a message or a log. */
const SECRET_KEYS: readonly string[] = ['admin.token'];

export const emulatorConfigSchema = z
  .strictObject({
    gateway: section(gatewaySchema),
    emulator: section(emulatorSchema),
    certificates: section(certificatesSchema),
    media: section(mediaSchema),
    admin: section(adminSchema),
    providers: z.array(providerSchema, expecting('a list of providers')).default([]),
    native_users: z.array(nativeUserSchema, expecting('a list of native users')).default([]),
    logging: section(loggingSchema),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.providers.forEach((p, i) => {
      if (seen.has(p.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['providers', i, 'id'],
          message: `a provider id not already listed ("${p.id}" appears twice)`,
        });
      }
      seen.add(p.id);
    });
  });

export type EmulatorConfig = z.infer<typeof emulatorConfigSchema>;
export type ProviderConfig = EmulatorConfig['providers'][number];

/** A provider with its JWKS source resolved to an absolute file or a URL. */
export interface ResolvedProvider {
  id: string;
  jwks: { file: string } | { url: string };
  refreshSeconds: number;
  allowedMediaHosts: readonly string[];
}

export interface LoadedEmulatorConfig {
  config: EmulatorConfig;
  /** The file path, or "embedded defaults". */
  source: string;
  paths: { dataDir: string; database: string; media: string };
  providers: ResolvedProvider[];
}

/**
 * Reads and validates the emulator's configuration. A provider's jwks_file must be readable JSON
 * with a "keys" list (checked here, so every configuration mistake is reported together), unless
 * `checkJwksFiles` is false: `emulator init` and `rotate` make keys and read no provider's JWKS.
 */
export function loadEmulatorConfig(
  file?: string,
  options: { checkJwksFiles?: boolean } = {},
): LoadedEmulatorConfig {
  const source = file ?? 'embedded defaults';
  const baseDir = file ? path.dirname(path.resolve(file)) : process.cwd();
  const raw = file ? readYaml(file) : {};
  const problems: string[] = [];

  const parsed = emulatorConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = issue.path.map(String).join('.');
      if (SECRET_KEYS.includes(key)) {
        // describeIssue would quote the value it found: never show a secret.
        const given = issue.path.reduce<unknown>(
          (node, k) =>
            typeof node === 'object' && node !== null
              ? (node as Record<string, unknown>)[String(k)]
              : undefined,
          raw,
        );
        const found = given === undefined ? 'nothing' : 'a value (not shown: it is a secret)';
        problems.push(`${key}: expected ${issue.message}, found ${found}`);
        continue;
      }
      problems.push(...describeIssue(issue, raw, new Map(), emulatorConfigSchema));
    }
  }
  const providers: ResolvedProvider[] = [];
  if (parsed.success) {
    parsed.data.providers.forEach((p, i) => {
      let jwks: ResolvedProvider['jwks'];
      if (p.jwks_file !== undefined) {
        jwks = { file: path.resolve(baseDir, p.jwks_file) };
        const problem = options.checkJwksFiles === false ? undefined : checkJwksFile(jwks.file);
        if (problem) problems.push(`providers.${i}.jwks_file: ${problem}`);
      } else {
        jwks = { url: p.jwks_url ?? '' };
      }
      providers.push({
        id: p.id,
        jwks,
        refreshSeconds: p.jwks_refresh_seconds,
        allowedMediaHosts: p.allowed_media_hosts.map((h) => h.toLowerCase()),
      });
    });
  }
  if (parsed.success) {
    parsed.data.native_users.forEach((n, i) => {
      if (n.picture === undefined) return;
      n.picture = path.resolve(baseDir, n.picture);
      const problem = checkPictureFile(n.picture);
      if (problem) problems.push(`native_users.${i}.picture: ${problem}`);
    });
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems, source);

  const config = parsed.data;
  const dataDir = path.resolve(baseDir, config.emulator.data_dir);
  return {
    config,
    source,
    paths: {
      dataDir,
      database: path.resolve(dataDir, config.emulator.database),
      media: path.join(dataDir, 'media'),
    },
    providers,
  };
}

/**
 * The emulator's files that hold secrets: its key files (the root and intermediate signing keys, the
 * Noise static key and the one before the last rotation) and the configuration file when it holds
 * `admin.token` inline. They must be readable by their owner only, as the bridge's are
 * (src/config/secret-files.ts).
 */
export function emulatorSecretFiles(loaded: LoadedEmulatorConfig): SecretFile[] {
  const keys = keyFiles(loaded.paths.dataDir);
  const files: SecretFile[] = [
    { file: keys.root, what: "the emulator's root key" },
    { file: keys.intermediate, what: "the emulator's intermediate key" },
    { file: keys.noiseStatic, what: "the emulator's Noise static key" },
    { file: keys.previousStatic, what: "the emulator's previous Noise static key" },
  ];
  if (loaded.source !== 'embedded defaults' && loaded.config.admin.token !== undefined) {
    files.push({
      file: path.resolve(loaded.source),
      what: 'the configuration file (it holds admin.token inline)',
    });
  }
  return files;
}

/** Why a picture file is unusable, or undefined when it is a JPEG small enough to be a picture. */
export function checkPictureFile(file: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(err);
    return `cannot read the picture ${file}: ${why}`;
  }
  const problem = pictureProblem(bytes);
  return problem ? `${file}: ${problem.text}` : undefined;
}

/** Why a JWKS file is unusable, or undefined when it is a JSON object with a "keys" list. */
export function checkJwksFile(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(err);
    return `cannot read the JWKS file ${file}: ${why}`;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `expected a JWKS (JSON with a "keys" list) in ${file}, found text that is not JSON`;
  }
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys))
    return `expected a JWKS (JSON with a "keys" list) in ${file}, found no "keys" list`;
  return undefined;
}
