/**
 * The daemon as the crash tests run it: `interop-bridge start` (built, dist/app/cli.js) in a child
 * process on a config file, killed with SIGKILL and started again; its output collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './wait.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/app/cli.js');

export class DaemonChild {
  /** Everything the daemon wrote to stdout and stderr, over all its starts. */
  log = '';
  starts = 0;
  private child: ChildProcess | undefined;

  constructor(private readonly config: string) {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build (npm test does)`);
  }

  /** Starts it and waits until `ready` holds (it throws if the daemon exits first). */
  async start(ready: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    const child = spawn(process.execPath, [CLI, 'start', '--config', this.config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    child.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.child = child;
    this.starts++;
    await until(
      () => {
        if (child.exitCode !== null)
          throw new Error(`the daemon exited ${child.exitCode}:\n${this.log.slice(-3000)}`);
        return ready();
      },
      what,
      timeoutMs,
    );
  }

  /** SIGTERM, as systemd stops it: it finishes what is in flight and exits; resolves with the exit code. */
  async stop(): Promise<number | null> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    return exited;
  }

  /** SIGKILL: what it had not written is lost, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
