/**
 * Files holding secrets must be readable by their owner only, as ssh and Synapse expect of keys:
 * the `<secret>_file`s, a configuration file with a secret inline, the provider's signing key and
 * the at-rest key.
 * `start` refuses to run with one whose mode gives group or others any access (unless
 * `--allow-insecure-secrets`), and `doctor` lists each as a failed check; both give the chmod to run.
 * The emulator's command line does the same for its own key files (emulator/config.ts).
 */
import { statSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { LoadedConfig, SecretFile } from './loader.js';

export interface ExposedSecretFile extends SecretFile {
  /** The permission bits, such as 0o644. */
  mode: number;
}

/** The secret files (that exist) whose mode allows group or other access. */
export function exposedSecretFiles(loaded: LoadedConfig): ExposedSecretFile[] {
  return exposedFiles([
    ...loaded.secretFiles,
    { file: loaded.paths.signingKey, what: 'provider.signing_key_file' },
    { file: loaded.paths.atRestKey, what: 'bridge.at_rest_key_file' },
    { file: loaded.paths.provisioningSecret, what: 'bridge.provisioning_secret_file' },
  ]);
}

/** Of these files (those that exist), the ones whose mode allows group or other access. */
export function exposedFiles(candidates: readonly SecretFile[]): ExposedSecretFile[] {
  const exposed: ExposedSecretFile[] = [];
  for (const c of candidates) {
    let mode: number;
    try {
      mode = statSync(c.file).mode & 0o777;
    } catch {
      continue; // missing: reported elsewhere (or created 0600 at start)
    }
    if ((mode & 0o077) !== 0) exposed.push({ ...c, mode });
  }
  return exposed;
}

/** "matrix.hs_token_file: /etc/x is readable by group and others (mode 0644): run "chmod 600 /etc/x"". */
export function describeExposed(f: ExposedSecretFile): string {
  const who = [f.mode & 0o070 ? 'its group' : '', f.mode & 0o007 ? 'other users' : '']
    .filter(Boolean)
    .join(' and ');
  return `${f.what}: ${f.file} is open to ${who} (mode 0${f.mode.toString(8)}): run "chmod 600 ${f.file}"`;
}

/**
 * Throws a ConfigError naming each exposed secret file and its chmod (exit 2 at the command line).
 * `who` is whose files they are ("the bridge user").
 */
export function refuseExposedSecretFiles(
  loaded: Pick<LoadedConfig, 'source'>,
  files: ExposedSecretFile[],
  who = 'the bridge user',
): void {
  if (files.length === 0) return;
  throw new ConfigError(
    [
      ...files.map(describeExposed),
      `secret files must be readable by ${who} only; to start anyway, pass --allow-insecure-secrets`,
    ],
    loaded.source,
  );
}
