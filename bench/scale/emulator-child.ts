/**
 * The gateway emulator in a child process (`interop-bridge emulator --config <file>`), so that the
 * bridge process's memory is measured alone and the two share the machine's cores as a bridge and
 * a gateway would. Keys and configuration are written into a directory of the caller's; the
 * gateway and admin ports are chosen once, so a restart listens where the bridge reconnects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadEmulatorConfig } from '../../emulator/config.js';
import { rssOf } from '../proc.js';
import { freePort } from '../../test/support/ports.js';
import { initKeys } from '../../emulator/keys.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * A built file by its path under dist/ (such as `app/cli.js`): relative to this file once compiled
 * (dist/bench/scale/..), or in dist/ when this file runs as TypeScript (the test suite).
 */
export function builtFile(rel: string): string {
  const candidates = [path.resolve(here, '..', '..', rel), path.resolve(here, '..', '..', 'dist', rel)];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`${rel} is not built (looked for ${candidates.join(', ')}): run npm run build`);
  return found;
}

export interface EmulatorChildOptions {
  /** A fresh directory for the configuration, keys, database and log. */
  dir: string;
  providerId: string;
  /** The provider's public JWKS (JSON). */
  jwks: unknown;
}

export interface GatewayStats {
  accounts: number;
  connections: number;
  queued: number;
}

export class EmulatorChild {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly configFile: string,
    readonly port: number,
    readonly adminPort: number,
    readonly rootPublicKey: Uint8Array,
    readonly staticKey: Uint8Array,
    readonly gatewayId: string,
  ) {}

  /** Writes the configuration and keys, starts the child and waits until its admin API answers. */
  static async launch(options: EmulatorChildOptions): Promise<EmulatorChild> {
    const jwksFile = path.join(options.dir, 'provider-jwks.json');
    writeFileSync(jwksFile, JSON.stringify(options.jwks));
    const port = await freePort();
    const adminPort = await freePort();
    const configFile = path.join(options.dir, 'emulator.yaml');
    writeFileSync(
      configFile,
      [
        'gateway:',
        '  host: 127.0.0.1',
        `  port: ${port}`,
        'emulator:',
        '  data_dir: data',
        // Set-up publishes few one-time prekeys; nobody fetches them, so no prekey_low either way.
        '  prekey_low_water: 1',
        'media:',
        '  port: 0',
        'admin:',
        '  host: 127.0.0.1',
        `  port: ${adminPort}`,
        'providers:',
        `  - id: ${options.providerId}`,
        `    jwks_file: ${jwksFile}`,
        'logging:',
        '  level: error',
        '  format: json',
        '',
      ].join('\n'),
    );
    const loaded = loadEmulatorConfig(configFile);
    const keys = initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 });
    const child = new EmulatorChild(
      options.dir,
      configFile,
      port,
      adminPort,
      keys.rootPublicKey,
      keys.staticKey.publicKey,
      loaded.config.gateway.gateway_id,
    );
    await child.start();
    return child;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Spawns the process and resolves once the admin API (started after the gateway) answers. */
  async start(): Promise<void> {
    if (this.#child) throw new Error('the emulator child is already running');
    const log = openSync(path.join(this.dir, 'emulator.log'), 'a');
    const child = spawn(
      process.execPath,
      [builtFile('app/cli.js'), 'emulator', '--config', this.configFile],
      {
        stdio: ['ignore', log, log],
      },
    );
    closeSync(log);
    this.#child = child;
    this.#exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`the emulator exited with ${child.exitCode} at start; see ${this.dir}/emulator.log`);
      }
      if (await this.#answers()) return;
      if (Date.now() > deadline)
        throw new Error(`the emulator did not start within 30 s; see ${this.dir}/emulator.log`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async #answers(): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.adminPort}/admin/stats`);
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The gateway's own count of accounts and live connections (reads every account row: not in a timed loop). */
  async stats(): Promise<GatewayStats> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}/admin/stats`);
    return (await res.json()) as GatewayStats;
  }

  /** The child's resident memory in bytes (Linux /proc), or NaN elsewhere. */
  rss(): number {
    return rssOf(this.#child?.pid);
  }

  /** SIGTERM (the emulator closes every connection and its database) and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(killer);
    this.#child = undefined;
  }
}
