#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { emulatorSecretFiles, loadEmulatorConfig } from '../emulator/config.js';
import { initKeys, rootKeyBase64, rotateKeys } from '../emulator/keys.js';
import { RunningEmulator, serveUntilSignal } from '../emulator/main.js';
import { writeDoublePuppetRegistration, writeRegistration } from '../adapters/matrix/registration.js';
import { ENV_PREFIX, isPostgresUrl, loadConfig, type LoadedConfig } from '../src/config/loader.js';
import {
  describeExposed,
  exposedFiles,
  exposedSecretFiles,
  refuseExposedSecretFiles,
} from '../src/config/secret-files.js';
import { migrateBridgeDatabase } from './database.js';
import { copySqliteToPostgres, dbCopyTarget, type DbCopyOptions } from './db-copy.js';
import { startDaemon } from './daemon.js';
import { backupState } from './backup.js';
import { renderReport, runChecks } from './doctor.js';
import { runLiveChecks } from './doctor-live.js';
import { checkPostgres } from './doctor-database.js';
import { ConfigError, InteropError, UsageError } from '../src/errors.js';
import { createLogger } from '../src/observability/logger.js';
import { generateProviderKey, publicJwks, type ClientTokenAlg } from '../src/protocol/jwt.js';
import { readProviderKey, writeProviderKey } from '../src/provider-keys.js';
import { ensureProvisioningSecret } from '../src/provisioning/secret.js';
import { ensureAtRestKey, writeAtRestKey } from '../src/store/at-rest.js';
import { VERSION } from '../src/version.js';

/** Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Resolves when the daemon should stop (a signal); injected by tests. */
  waitForStop?: () => Promise<string>;
  /** Where the daemon's log goes (standard output when absent); injected by tests. */
  logDestination?: NonNullable<Parameters<typeof createLogger>[0]>['destination'];
}

const defaultIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
};

interface ConfigOption {
  config?: string;
}

/** Runs the command line and resolves to the exit code; never calls process.exit itself. */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command('interop-bridge');
  const configOption = () =>
    new Option(
      '-c, --config <file>',
      'the configuration file (default: $INTEROP_BRIDGE_CONFIG, else embedded defaults)',
    );
  const load = (opts: ConfigOption): LoadedConfig =>
    loadConfig({ path: opts.config ?? io.env.INTEROP_BRIDGE_CONFIG, env: io.env });

  const commands: Command[] = [];
  const command = (parent: Command, name: string, description: string): Command => {
    const c = parent.command(name).description(description);
    commands.push(c);
    return c;
  };

  program
    .description(
      'Bridges Matrix and XMPP users to a gatekeeper messenger through its DMA interop gateway (Noise, JWT, Signal).',
    )
    .addHelpText(
      'after',
      '\nExit codes: 0 success, 1 runtime failure, 2 usage or configuration error.\nDocumentation: README.md and docs/ in the project.',
    );

  command(program, 'start', 'run the bridge daemon (until SIGINT or SIGTERM)')
    .addOption(configOption())
    .option(
      '--allow-insecure-secrets',
      'start even if a secret file (token files, the signing key, a config file with secrets) is open to group or others; warns instead',
    )
    .option(
      '--worker',
      'run as one worker of several on one PostgreSQL database: own only the puppets this process holds leases on (docs/OPERATING.md, "Several workers")',
    )
    .action(async (opts: ConfigOption & { allowInsecureSecrets?: boolean; worker?: boolean }) => {
      const loaded = load(opts);
      const exposed = exposedSecretFiles(loaded);
      if (opts.allowInsecureSecrets !== true) refuseExposedSecretFiles(loaded, exposed);
      const logger = createLogger({
        level: loaded.config.logging.level,
        format: loaded.config.logging.format,
        ...(io.logDestination ? { destination: io.logDestination } : {}),
      });
      for (const f of exposed) {
        logger.warn(
          { file: f.file, mode: `0${f.mode.toString(8)}` },
          `INSECURE: ${describeExposed(f)} (started anyway: --allow-insecure-secrets)`,
        );
      }
      const daemon = await startDaemon(loaded, logger, { worker: opts.worker === true });
      const signal = await (io.waitForStop ?? waitForSignal)();
      logger.info({ signal }, 'shutting down');
      await daemon.stop();
      logger.flush();
    });

  const db = command(program, 'db', "the bridge's database (bridge.database: SQLite or PostgreSQL)");
  command(
    db,
    'migrate',
    'apply the pending migrations to the configured database (refused while a bridge runs on it)',
  )
    .addOption(configOption())
    .action(async (_opts: unknown, cmd: Command) => {
      const loaded = load(cmd.optsWithGlobals<ConfigOption>());
      const exposed = exposedSecretFiles(loaded);
      refuseExposedSecretFiles(loaded, exposed);
      const { label, version } = await migrateBridgeDatabase(loaded);
      io.out(`${label}: schema version ${version}\n`);
    });
  command(
    db,
    'copy',
    "copy a stopped bridge's SQLite database into a new, empty PostgreSQL database (every session and queued message)",
  )
    .requiredOption('--from <sqlite:file>', "the bridge's SQLite database, as sqlite:<file>")
    .requiredOption('--to <url>', 'the PostgreSQL database, postgres://user@host:port/database')
    .option(
      '--password-file <file>',
      `PostgreSQL's password (else ${ENV_PREFIX}BRIDGE__DATABASE_PASSWORD, else the URL's)`,
    )
    .addOption(
      new Option('--sslmode <mode>', 'TLS to PostgreSQL').choices(['disable', 'require', 'verify-full']),
    )
    .option('--sslrootcert <file>', 'the CA certificate (PEM) to verify the server with under verify-full')
    .action(async (opts: DbCopyOptions) => {
      const report = await copySqliteToPostgres(opts.from, dbCopyTarget(opts, io.env));
      const rows = report.tables.reduce((n, t) => n + t.rows, 0);
      io.out(
        `copied ${report.from} to ${report.to} (schema version ${report.version}): ${rows} rows in ${report.tables.length} tables\n` +
          report.tables.map((t) => `  ${t.table}: ${t.rows}\n`).join('') +
          'now set bridge.database to the PostgreSQL URL (with database_password_file) and start the bridge; keep the SQLite file until it runs\n',
      );
    });

  command(
    program,
    'doctor',
    'check the configuration, the database, the gateway, the Matrix homeserver and the XMPP server, and say what to fix',
  )
    .addOption(configOption())
    .option('--offline', 'skip the checks that connect to the gateway, the homeserver and the XMPP server')
    .action(async (opts: ConfigOption & { offline?: boolean }) => {
      const loaded = load(opts);
      const results = [
        ...runChecks(loaded),
        ...(isPostgresUrl(loaded.config.bridge.database) ? await checkPostgres(loaded) : []),
        ...(opts.offline ? [] : await runLiveChecks(loaded)),
      ];
      io.out(`${renderReport(loaded.source, results)}\n`);
      if (results.some((r) => r.status === 'fail')) exitCode = EXIT.failure;
    });

  const keys = command(program, 'keys', "manage the provider's JWT signing key and the at-rest key");
  command(
    keys,
    'generate',
    "create the signing key (a private JWK, mode 0600) and print the public JWKS; create the at-rest key (32 bytes) and the provisioning API's shared secret (mode 0600) if missing",
  )
    .addOption(configOption())
    .addOption(new Option('--alg <alg>', 'signature algorithm').choices(['EdDSA', 'ES256']).default('EdDSA'))
    .option(
      '-o, --out <file>',
      'write the key here instead of provider.signing_key_file (or bridge.at_rest_key_file with --at-rest)',
    )
    .option('--at-rest', 'create only the at-rest key (bridge.at_rest_key_file)')
    .option('--force', 'replace an existing key (an at-rest key: what waits under the old one is lost)')
    .action(
      async (
        opts: ConfigOption & { alg: ClientTokenAlg; out?: string; force?: boolean; atRest?: boolean },
      ) => {
        if (opts.atRest) {
          const file = opts.out ?? load(opts).paths.atRestKey;
          writeAtRestKey(file, { force: opts.force === true });
          io.err(`wrote a new at-rest key to ${file} (mode 0600): include it in backups\n`);
          return;
        }
        const loaded = opts.out === undefined ? load(opts) : undefined;
        const file = opts.out ?? (loaded as LoadedConfig).paths.signingKey;
        const jwk = await generateProviderKey(opts.alg);
        writeProviderKey(file, jwk, { force: opts.force === true });
        if (loaded && ensureAtRestKey(loaded.paths.atRestKey).created) {
          io.err(`wrote the at-rest key to ${loaded.paths.atRestKey} (mode 0600)\n`);
        }
        if (loaded && ensureProvisioningSecret(loaded.paths.provisioningSecret).created) {
          io.err(
            `wrote the provisioning API's shared secret to ${loaded.paths.provisioningSecret} (mode 0600)\n`,
          );
        }
        io.err(
          `wrote the ${opts.alg} signing key ${jwk.kid} to ${file}\nthe provider's JWKS (give it to the gatekeeper):\n`,
        );
        io.out(`${JSON.stringify(publicJwks([jwk]), null, 2)}\n`);
      },
    );
  command(keys, 'jwks', 'print the public JWKS of the existing signing key')
    .addOption(configOption())
    .action((opts: ConfigOption) => {
      const jwk = readProviderKey(load(opts).paths.signingKey);
      io.out(`${JSON.stringify(publicJwks([jwk]), null, 2)}\n`);
    });

  command(program, 'generate-registration', 'write the Matrix application service registration file')
    .addOption(configOption())
    .option(
      '-o, --out <dir>',
      'where to write registration.yaml and the token files (default: <data_dir>/matrix)',
    )
    .option('--force', 'replace existing files (new tokens: the homeserver needs the new registration)')
    .option(
      '--double-puppet',
      'write the double-puppet registration instead (doublepuppet.yaml: lets the bridge act as your users)',
    )
    .action((opts: ConfigOption & { out?: string; force?: boolean; doublePuppet?: boolean }) => {
      // The tokens do not exist yet: load the rest of the configuration without requiring them.
      const loaded = loadConfig({
        path: opts.config ?? io.env.INTEROP_BRIDGE_CONFIG,
        env: { ...io.env, INTEROP_BRIDGE_MATRIX__ENABLED: 'false' },
      });
      const dir = path.resolve(opts.out ?? path.join(loaded.paths.dataDir, 'matrix'));
      if (opts.doublePuppet === true) {
        const dp = writeDoublePuppetRegistration(loaded.config, dir, { force: opts.force === true });
        io.err(
          `wrote ${dp.registration}: give it to the homeserver as well (Synapse: app_service_config_files), then restart it\n` +
            "and put this in the bridge's configuration:\n",
        );
        io.out(`matrix:\n  double_puppet_as_token_file: ${dp.asTokenFile}\n`);
        return;
      }
      const files = writeRegistration(loaded.config, dir, { force: opts.force === true });
      io.err(
        `wrote ${files.registration}: give it to the homeserver (Synapse: app_service_config_files), then restart it\n` +
          "and put these in the bridge's configuration:\n",
      );
      io.out(
        `matrix:\n  enabled: true\n  as_token_file: ${files.asTokenFile}\n  hs_token_file: ${files.hsTokenFile}\n`,
      );
    });

  command(
    program,
    'backup',
    "copy the database and the provider's signing key into a directory, safely while the bridge runs (PostgreSQL: the keys, and the pg_dump to run)",
  )
    .addOption(configOption())
    .requiredOption('-o, --out <dir>', 'the directory to write into (created, mode 0700)')
    .action(async (opts: ConfigOption & { out: string }) => {
      const loaded = load(opts);
      const backup = await backupState(loaded, path.resolve(opts.out));
      io.out(
        `${backup.written.map((f) => `wrote ${f}`).join('\n')}\n${backup.todo ? `${backup.todo}\n` : ''}`,
      );
    });

  // The gateway emulator: `emulator` runs it, `emulator init` / `emulator rotate` manage its keys.
  const emulatorConfigOption = () =>
    new Option(
      '-c, --config <file>',
      "the emulator's configuration file (default: $INTEROP_EMULATOR_CONFIG, else embedded defaults)",
    );
  const loadEmulator = (opts: ConfigOption, checkJwksFiles = true) =>
    loadEmulatorConfig(opts.config ?? io.env.INTEROP_EMULATOR_CONFIG, { checkJwksFiles });
  const validityDays = (value: string): number => {
    const days = Number(value);
    if (!Number.isInteger(days) || days < 1 || days > 3650) {
      throw new UsageError(
        `--validity-days: expected a whole number of days from 1 to 3650, found "${value}"`,
      );
    }
    return days;
  };
  const emulator = command(
    program,
    'emulator',
    'run the bundled interop gateway emulator (until SIGINT or SIGTERM; SIGHUP reloads rotated keys)',
  )
    .addOption(emulatorConfigOption())
    // `emulator init --config x` gives --config to init, `emulator --config x init` to emulator:
    // the subcommands read both (optsWithGlobals).
    .enablePositionalOptions()
    .option(
      '--allow-insecure-secrets',
      "start even if one of the emulator's key files (or a config file with admin.token) is open to group or others; warns instead",
    )
    .action(async (opts: ConfigOption & { allowInsecureSecrets?: boolean }) => {
      const loaded = loadEmulator(opts);
      const exposed = exposedFiles(emulatorSecretFiles(loaded));
      if (opts.allowInsecureSecrets !== true) {
        refuseExposedSecretFiles(loaded, exposed, "the emulator's user");
      }
      const logger = createLogger({
        level: loaded.config.logging.level,
        format: loaded.config.logging.format,
        ...(io.logDestination ? { destination: io.logDestination } : {}),
      });
      for (const f of exposed) {
        logger.warn(
          { file: f.file, mode: `0${f.mode.toString(8)}` },
          `INSECURE: ${describeExposed(f)} (started anyway: --allow-insecure-secrets)`,
        );
      }
      const running = await RunningEmulator.start({ loaded, logger });
      const signal = await serveUntilSignal(running, logger, { waitForStop: io.waitForStop });
      logger.info({ signal }, 'shutting down');
      await running.stop();
      logger.flush();
    });
  command(
    emulator,
    'init',
    "create the emulator's root key, certificates and Noise static key, and print what the bridge pins",
  )
    .addOption(emulatorConfigOption())
    .option(
      '--validity-days <days>',
      'leaf certificate validity (default: certificates.validity_days)',
      validityDays,
    )
    .option('--force', 'replace existing keys (bridges then need the new gateway.root_key)')
    .action((_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ConfigOption & { validityDays?: number; force?: boolean }>();
      // Keys only: the providers' JWKS files may not exist yet (the bridge writes them later).
      const loaded = loadEmulator(opts, false);
      const keys = initKeys(loaded.paths.dataDir, {
        validityDays: opts.validityDays ?? loaded.config.certificates.validity_days,
        intermediateValidityDays: loaded.config.certificates.intermediate_validity_days,
        force: opts.force === true,
      });
      io.err(
        `wrote the emulator's keys to ${loaded.paths.dataDir}/keys (leaf valid until ${isoSeconds(keys.leaf.notAfter)})\n` +
          "put these in the bridge's configuration:\n",
      );
      io.out(
        `gateway:\n  gateway_id: ${loaded.config.gateway.gateway_id}\n  root_key: ${rootKeyBase64(keys)}\n` +
          `  static_key: ${Buffer.from(keys.staticKey.publicKey).toString('base64')}\n`,
      );
    });
  command(
    emulator,
    'rotate',
    'issue a new Noise static key and leaf certificate (same root); a running emulator picks it up on SIGHUP',
  )
    .addOption(emulatorConfigOption())
    .option(
      '--validity-days <days>',
      'leaf certificate validity (default: certificates.validity_days)',
      validityDays,
    )
    .option(
      '--intermediate',
      'also re-issue the intermediate certificate from the root (when it nears expiry)',
    )
    .option(
      '--allow-insecure-secrets',
      'rotate even if a key file it reads is open to group or others (the new files are 0600)',
    )
    .action((_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<
        ConfigOption & { validityDays?: number; intermediate?: boolean; allowInsecureSecrets?: boolean }
      >();
      const loaded = loadEmulator(opts, false);
      const exposed = exposedFiles(emulatorSecretFiles(loaded));
      if (opts.allowInsecureSecrets !== true) {
        refuseExposedSecretFiles(loaded, exposed, "the emulator's user");
      }
      for (const f of exposed)
        io.err(`INSECURE: ${describeExposed(f)} (rotating anyway: --allow-insecure-secrets)\n`);
      const keys = rotateKeys(loaded.paths.dataDir, {
        validityDays: opts.validityDays ?? loaded.config.certificates.validity_days,
        intermediate: opts.intermediate === true,
        intermediateValidityDays: loaded.config.certificates.intermediate_validity_days,
      });
      io.err(
        `new Noise static key and leaf certificate (serial ${keys.leaf.serial}, valid until ${isoSeconds(keys.leaf.notAfter)}); ` +
          'the previous key is kept as noise-static.json.previous\n' +
          'send SIGHUP to a running emulator to use it; bridges that pin gateway.static_key should take the new one:\n',
      );
      io.out(`gateway:\n  static_key: ${Buffer.from(keys.staticKey.publicKey).toString('base64')}\n`);
    });

  for (const c of [program, ...commands]) {
    c.version(VERSION, '-V, --version', 'print the version');
    c.exitOverride();
    c.configureOutput({ writeOut: io.out, writeErr: io.err });
    c.showHelpAfterError('(run with --help for usage)');
  }

  try {
    await program.parseAsync(argv as string[], { from: 'user' });
  } catch (err) {
    return reportError(err, io);
  }
  return exitCode;
}

function reportError(err: unknown, io: CliIo): number {
  if (err instanceof CommanderError) {
    // Help and version are "errors" to commander; their text is already printed.
    // (`commander.help` is help shown because no command was given: a usage error.)
    return ['commander.helpDisplayed', 'commander.version'].includes(err.code) ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof ConfigError || err instanceof UsageError) {
    io.err(`${err.message}\n`);
    return EXIT.usage;
  }
  if (err instanceof InteropError) {
    io.err(`error (${err.code}): ${err.message}\n`);
    return EXIT.failure;
  }
  io.err(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.failure;
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      // A second signal while shutting down means "now".
      process.once(signal, () => process.exit(EXIT.failure));
      resolve(signal);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

const invokedDirectly = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  process.exitCode = await runCli(process.argv.slice(2));
}
