/** `interop-bridge <args>` run in-process (runCli), its standard output and error captured together. */
import { runCli } from '../../app/cli.js';

export async function cliOutput(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (out += t), env });
  return { code, out };
}
