/**
 * An emulator started in-process from a generated emulator.yaml (as an operator would configure
 * it), with fresh keys: the common set-up of the tests that run the bridge or native users against it.
 */
import { writeFileSync } from 'node:fs';
import { loadEmulatorConfig, type LoadedEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { publicJwks, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import type { GatewaySettings } from '../../src/bridge/puppet.js';
import type { tempDir } from './tmp.js';

export interface EmulatorSetup {
  /** A provider whose JWKS the emulator reads from a file (the bridge's signing key). */
  provider?: { id: string; signingKey: ProviderPrivateJwk; allowedMediaHosts?: string[] };
  /** More YAML lines, appended as they are (native_users:, logging:, ...). */
  extraYaml?: string[];
  logger?: Logger;
}

export interface StartedEmulator {
  running: RunningEmulator;
  /** The root key a client pins. */
  root: Uint8Array;
  loaded: LoadedEmulatorConfig;
}

export async function startEmulator(
  tmp: ReturnType<typeof tempDir>,
  setup: EmulatorSetup = {},
): Promise<StartedEmulator> {
  const lines = [
    'gateway:',
    '  port: 0',
    'emulator:',
    '  data_dir: data',
    'media:',
    '  port: 0',
    'admin:',
    '  enabled: false',
  ];
  if (setup.provider) {
    const jwks = tmp.file(`${setup.provider.id}-jwks.json`);
    writeFileSync(jwks, JSON.stringify(publicJwks([setup.provider.signingKey])));
    lines.push('providers:', `  - id: ${setup.provider.id}`, `    jwks_file: ${jwks}`);
    const hosts = setup.provider.allowedMediaHosts;
    if (hosts) lines.push(`    allowed_media_hosts: [${hosts.map((h) => `"${h}"`).join(', ')}]`);
  }
  const loaded = loadEmulatorConfig(
    tmp.file('emulator.yaml', [...lines, ...(setup.extraYaml ?? []), ''].join('\n')),
  );
  const root = initKeys(loaded.paths.dataDir, {
    validityDays: 30,
    intermediateValidityDays: 365,
  }).rootPublicKey;
  const running = await RunningEmulator.start({
    loaded,
    logger: setup.logger ?? createLogger({ level: 'silent' }),
  });
  return { running, root, loaded };
}

/**
 * How a bridge in a test reaches the emulator: its address and root key, the provider's signing
 * key, and reconnect delays short enough for tests (`connection` adds to them).
 */
export function emulatorGateway(
  gateway: { readonly host: string; readonly port: number },
  root: Uint8Array,
  provider: { readonly id: string; readonly signingKey: ProviderPrivateJwk },
  connection: NonNullable<GatewaySettings['connection']> = {},
): GatewaySettings {
  return {
    host: gateway.host,
    port: gateway.port,
    rootPublicKey: root,
    gatewayId: 'emulator.interop',
    providerId: provider.id,
    signingKey: provider.signingKey,
    connection: { reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, ...connection },
  };
}
