/**
 * The provisioning API's shared secret (`bridge.provisioning_secret_file`, inside data_dir): a random
 * token, mode 0600, created at the first start or by `interop-bridge keys generate`. Its holder may
 * act for any permitted user and use the admin endpoints: treat it as a password.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeSecretFile } from '../util/secret-file.js';
import { InteropError } from '../errors.js';

/**
 * Reads the secret (the file's first line); creates the file when missing. The file appears whole
 * or not at all (written aside, then hard-linked into place, which fails if it exists), so workers
 * starting together on one data_dir all read the one secret the first of them made.
 */
export function ensureProvisioningSecret(file: string): { secret: string; created: boolean } {
  let created = false;
  try {
    writeSecretFile(file, `${randomBytes(32).toString('base64url')}\n`);
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new InteropError(
        'provisioning_secret_unwritable',
        `cannot create the provisioning secret ${file}: ${(err as Error).message}`,
      );
    }
  }
  let secret: string;
  try {
    secret = (readFileSync(file, 'utf8').split('\n')[0] ?? '').trim();
  } catch (err) {
    throw new InteropError(
      'provisioning_secret_unreadable',
      `cannot read the provisioning secret ${file}: ${(err as Error).message}`,
    );
  }
  if (secret.length < 16) {
    throw new InteropError(
      'provisioning_secret_short',
      `the provisioning secret in ${file} is shorter than 16 characters: delete the file and restart (a new one is made), or write a longer one`,
    );
  }
  return { secret, created };
}
