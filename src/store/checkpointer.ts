/**
 * The WAL checkpointed from a thread of its own, so the event loop seldom waits for it.
 *
 * In WAL mode SQLite copies the log back into the database (a checkpoint) inside the commit that
 * takes the log past `wal_autocheckpoint` pages (1000): that one commit copies up to a thousand
 * pages and, with synchronous=NORMAL, waits for two fsyncs, milliseconds during which the bridge's
 * event loop handles nothing (in the end-to-end benchmark about one commit in 45 took over 1 ms,
 * two thirds of the time spent committing). Here a worker thread with its own connection runs a
 * PASSIVE checkpoint every 20 ms (it never waits for a lock and never blocks a writer),
 * so that when the bridge's own commit reaches the threshold most of the log is already copied:
 * its checkpoint copies only the rest, and none of it when the thread has caught up (then there is
 * no fsync either). The bridge's checkpoint stays, unchanged: it is what lets the log restart from
 * its start while writes never pause, and it is the backstop if the thread stalls or dies.
 *
 * The thread runs plain JavaScript given as a string (no compiled file to find: the same code runs
 * from dist/ and under the tests' TypeScript loader) and loads better-sqlite3 from the path this
 * module resolves.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';


const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let db;
try {
  db = new Database(workerData.file, { fileMustExist: true });
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 0');
} catch (err) {
  parentPort.postMessage({ kind: 'failed', error: String(err && err.message || err) });
  process.exit(0);
}
let stopping = false;
let checkpoints = 0;
let frames = 0;
parentPort.on('message', (m) => { if (m === 'stop') stopping = true; });
parentPort.postMessage({ kind: 'ready' });
const tick = () => {
  if (stopping) {
    db.close();
    parentPort.postMessage({ kind: 'stopped', checkpoints, frames });
    return;
  }
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    if (r && r.checkpointed > 0) { checkpoints++; frames += r.checkpointed; }
  } catch {
    // busy or gone for a moment: the next tick tries again
  }
  setTimeout(tick, workerData.intervalMs);
};
tick();
`;

type FromWorker =
  | { kind: 'ready' }
  | { kind: 'failed'; error: string }
  | { kind: 'stopped'; checkpoints: number; frames: number };

export interface CheckpointerStats {
  /** Checkpoints that copied something. */
  checkpoints: number;
  /** Pages copied back into the database. */
  frames: number;
}

export class WalCheckpointer {
  #stopped: Promise<CheckpointerStats> | undefined;

  private constructor(private readonly worker: Worker) {}

  /**
   * Starts the thread on `file`, once it has opened the file; rejects if it cannot. `onFailure`
   * hears of a thread that died later (the bridge's commits then checkpoint alone, as without it).
   */
  static async start(
    file: string,
    options: { intervalMs?: number; onFailure?: (err: Error) => void } = {},
  ): Promise<WalCheckpointer> {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module, file, intervalMs: options.intervalMs ?? 20 },
    });
    worker.unref();
    const first = await new Promise<FromWorker>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (first.kind !== 'ready') {
      await worker.terminate();
      throw new Error(`the WAL checkpoint thread could not open ${file}: ${'error' in first ? first.error : ''}`);
    }
    const checkpointer = new WalCheckpointer(worker);
    const failed = (err: Error) => {
      if (!checkpointer.#stopped) options.onFailure?.(err);
    };
    worker.on('error', failed);
    worker.on('exit', (code) => failed(new Error(`the WAL checkpoint thread exited (${code})`)));
    return checkpointer;
  }

  /** Stops the thread (after its current checkpoint); what it did, for the log. */
  stop(): Promise<CheckpointerStats> {
    this.#stopped ??= new Promise<CheckpointerStats>((resolve) => {
      const done = (stats: CheckpointerStats) => {
        void this.worker.terminate();
        resolve(stats);
      };
      this.worker.on('message', (m: FromWorker) => {
        if (m.kind === 'stopped') done({ checkpoints: m.checkpoints, frames: m.frames });
      });
      this.worker.once('exit', () => done({ checkpoints: 0, frames: 0 }));
      this.worker.postMessage('stop');
    });
    return this.#stopped;
  }
}
