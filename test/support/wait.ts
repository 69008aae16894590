/** Small helpers the integration tests share: polling for a condition, and a free loopback port. */
export { freePort } from './ports.js';

/** Resolves once `check()` holds, polling every 20 ms; rejects naming `what` after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The value of one sample (`name{labels}` exactly) in Prometheus text, or undefined. */
export function metricSample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length).trim());
}

/** A check's line in an `interop-bridge doctor` report, with the hint line under it if any. */
export function doctorLine(out: string, check: string): string {
  const lines = out.split('\n');
  const i = lines.findIndex((l) => l.includes(`  ${check}  `));
  if (i < 0) throw new Error(`no "${check}" line in:\n${out}`);
  return lines[i + 1]?.includes('->') ? `${lines[i]}\n${lines[i + 1]}` : lines[i]!;
}
