/**
 * The application service registration a homeserver operator installs (Synapse:
 * `app_service_config_files`). Tokens are fresh random values; they are written to secret files
 * (mode 0600) that the bridge's config names with `as_token_file` / `hs_token_file`, so they never
 * need to be pasted into the config itself.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, fchmodSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { Config } from '../../src/config/schema.js';
import { InteropError } from '../../src/errors.js';

export interface RegistrationFiles {
  registration: string;
  asTokenFile: string;
  hsTokenFile: string;
}

/** The registration's `id`: the appservice ping names it. */
export const APPSERVICE_ID = 'interop-bridge';

export const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The registration for this config: the ghosts' and the bot's namespaces, exclusive; ephemeral events on. */
export function buildRegistration(config: Config, tokens: { asToken: string; hsToken: string }) {
  const m = config.matrix;
  const server = escapeRegex(m.server_name);
  return {
    id: APPSERVICE_ID,
    url: `http://${m.listen_host}:${m.listen_port}`,
    as_token: tokens.asToken,
    hs_token: tokens.hsToken,
    sender_localpart: m.bot_localpart,
    namespaces: {
      users: [
        { regex: `@${escapeRegex(m.ghost_localpart_prefix)}[0-9]+:${server}`, exclusive: true },
        { regex: `@${escapeRegex(m.bot_localpart)}:${server}`, exclusive: true },
      ],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
    // End-to-end encryption (matrix.encryption): to-device events in transactions (MSC2409), one-time
    // key counts and device lists in transactions (MSC3202), devices without a login (MSC4190).
    // Harmless where the homeserver lacks them or encryption is off.
    'org.matrix.msc3202': true,
    'io.element.msc4190': true,
  };
}

const token = () => randomBytes(32).toString('base64url');

/**
 * The double-puppet registration (mautrix's appservice method): its as_token may act as any user
 * of the server (`user_id` masquerading); not exclusive, no url (the homeserver sends it nothing).
 */
export function buildDoublePuppetRegistration(config: Config, asToken: string) {
  return {
    id: `${APPSERVICE_ID}-doublepuppet`,
    url: null,
    as_token: asToken,
    hs_token: token(),
    sender_localpart: `${config.matrix.bot_localpart}-doublepuppet-${randomBytes(4).toString('hex')}`,
    namespaces: {
      users: [{ regex: `@.*:${escapeRegex(config.matrix.server_name)}`, exclusive: false }],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
  };
}

export interface DoublePuppetFiles {
  registration: string;
  asTokenFile: string;
}

/** Writes `doublepuppet.yaml` and its token file; refuses to overwrite unless `force`. */
export function writeDoublePuppetRegistration(
  config: Config,
  dir: string,
  options: { force?: boolean } = {},
): DoublePuppetFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = {
    registration: path.join(dir, 'doublepuppet.yaml'),
    asTokenFile: path.join(dir, 'double_puppet_as_token'),
  };
  const asToken = token();
  const header =
    '# interop-bridge double-puppet registration: give this file to the homeserver (Synapse:\n' +
    '# app_service_config_files). Its token may act as any user of the server: keep it private.\n';
  write(files.asTokenFile, `${asToken}\n`, options.force === true);
  write(
    files.registration,
    header + stringify(buildDoublePuppetRegistration(config, asToken)),
    options.force === true,
  );
  return files;
}

/** Writes the registration YAML and the two token files; refuses to overwrite unless `force`. */
export function writeRegistration(
  config: Config,
  dir: string,
  options: { force?: boolean } = {},
): RegistrationFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: RegistrationFiles = {
    registration: path.join(dir, 'registration.yaml'),
    asTokenFile: path.join(dir, 'as_token'),
    hsTokenFile: path.join(dir, 'hs_token'),
  };
  const tokens = { asToken: token(), hsToken: token() };
  const registration = buildRegistration(config, tokens);
  const header =
    '# interop-bridge application service registration: give this file to the homeserver\n' +
    '# (Synapse: app_service_config_files). It holds the tokens: keep it private.\n';
  write(files.asTokenFile, `${tokens.asToken}\n`, options.force === true);
  write(files.hsTokenFile, `${tokens.hsToken}\n`, options.force === true);
  write(files.registration, header + stringify(registration), options.force === true);
  return files;
}

function write(file: string, text: string, force: boolean): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | (force ? constants.O_TRUNC : constants.O_EXCL);
  let fd: number;
  try {
    fd = openSync(file, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new InteropError(
        'registration_exists',
        `${file} already exists: keep it, or pass --force to make new tokens (the homeserver then needs the new registration)`,
      );
    }
    throw new InteropError('registration_unwritable', `cannot write ${file}: ${(err as Error).message}`);
  }
  try {
    // A replaced file (--force) keeps its old mode otherwise: the secret goes into an owner-only file.
    fchmodSync(fd, 0o600);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}
