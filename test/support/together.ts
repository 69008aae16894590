/**
 * Runs a few lines of ESM against the built code in several Node processes at once, as a bridge's
 * workers start together on one data_dir; resolves with what each wrote to stdout. `script` gets
 * `file` (a JSON string literal) to work on.
 */
import { execFile } from 'node:child_process';

export function inProcessesAtOnce(
  count: number,
  script: (file: string) => string,
  file: string,
): Promise<string[]> {
  const one = () =>
    new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script(JSON.stringify(file))],
        (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)),
      );
    });
  return Promise.all(Array.from({ length: count }, one));
}
