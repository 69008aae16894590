import { readFileSync, statSync } from 'node:fs';
import { writeSecretFile } from './util/secret-file.js';
import { InteropError } from './errors.js';
import type { ProviderPrivateJwk } from './protocol/jwt.js';

/** The provider's JWT signing key on disk: one private JWK, mode 0600. */
export class ProviderKeyError extends InteropError {}

export function writeProviderKey(
  file: string,
  jwk: ProviderPrivateJwk,
  options: { force?: boolean } = {},
): void {
  try {
    writeSecretFile(file, `${JSON.stringify(jwk, null, 2)}\n`, options);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ProviderKeyError(
        'provider_key_exists',
        `${file} already exists: keep it, or pass --force to replace it (tokens signed with the old key stop working once the gatekeeper has the new JWKS)`,
      );
    }
    throw new ProviderKeyError('provider_key_unwritable', `cannot write ${file}: ${(err as Error).message}`);
  }
}

export function readProviderKey(file: string): ProviderPrivateJwk {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ProviderKeyError(
        'provider_key_missing',
        `the provider signing key ${file} does not exist: create it with "interop-bridge keys generate"`,
      );
    }
    throw new ProviderKeyError('provider_key_unreadable', `cannot read ${file}: ${(err as Error).message}`);
  }
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new ProviderKeyError('provider_key_invalid', `${file} is not JSON: expected a private JWK`);
  }
  const k = jwk as Partial<ProviderPrivateJwk>;
  const valid =
    typeof k === 'object' &&
    k !== null &&
    typeof k.kid === 'string' &&
    typeof k.d === 'string' &&
    typeof k.x === 'string' &&
    ((k.kty === 'OKP' && k.crv === 'Ed25519' && k.alg === 'EdDSA') ||
      (k.kty === 'EC' && k.crv === 'P-256' && k.alg === 'ES256' && typeof k.y === 'string'));
  if (!valid) {
    throw new ProviderKeyError(
      'provider_key_invalid',
      `${file} is not a usable signing key: expected a private Ed25519 (EdDSA) or P-256 (ES256) JWK with kid and alg`,
    );
  }
  return k as ProviderPrivateJwk;
}

/** True when group or others can read the key file. */
export function providerKeyTooOpen(file: string): boolean {
  return (statSync(file).mode & 0o077) !== 0;
}
