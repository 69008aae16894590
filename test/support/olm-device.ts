/**
 * The parent's handle on an olm-child.ts process: start it, send it commands, kill it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { OlmChildConfig } from './olm-child.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

export interface Identity {
  curve25519: string;
  ed25519: string;
}

type Json = Record<string, unknown>;

export class OlmDevice {
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly identity: Identity,
    readonly openMs: number,
  ) {}

  /** Starts the child and waits for it to be ready; rejects with its refusal (`{error, message}`). */
  static start(config: OlmChildConfig): Promise<OlmDevice> {
    const child = spawn(
      process.execPath,
      [
        '--no-warnings',
        '--import',
        path.join(HERE, 'ts-hooks.mjs'),
        path.join(HERE, 'olm-child.ts'),
        JSON.stringify(config),
      ],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    return new Promise((resolve, reject) => {
      let device: OlmDevice | undefined;
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (device) device.stderr += d.toString();
      });
      child.on('exit', (code, signal) => {
        if (!device)
          reject(new Error(`olm-child exited (${code ?? signal}) before it was ready:\n${stderr}`));
        for (const w of device?.waiting.values() ?? [])
          w.reject(new Error(`olm-child exited (${code ?? signal})`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as Json;
        if (!device) {
          if (msg.ready === true) {
            device = new OlmDevice(child, msg.identity as Identity, msg.openMs as number);
            resolve(device);
          } else {
            const err = new Error(String(msg.message)) as Error & { code?: unknown };
            err.code = msg.error;
            reject(err);
          }
          return;
        }
        const w = device.waiting.get(msg.id as number);
        device.waiting.delete(msg.id as number);
        if (msg.ok) w?.resolve(msg.result);
        else w?.reject(new Error(`olm-child: ${String(msg.error)}\n${device.stderr}`));
      });
    });
  }

  call<T = unknown>(cmd: string, args: Json = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  /** SIGKILL: no cleanup of any kind in the child. */
  async kill(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Ends stdin: the child finishes its commands and exits. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin!.end();
    await exited;
  }
}
