/**
 * Loopback ports for servers the tests start, chosen where nothing else can take them meanwhile.
 *
 * A test names a port in a config before its server listens on it. A port the kernel handed out
 * with `listen(0)` and then freed lies in the ephemeral range, so until the server binds it the
 * kernel can give it to any outgoing connection on the machine as its source port: CI saw
 * ejabberd's c2s port and the Matrix adapter's listener fail with EADDRINUSE that way. Ports
 * below the ephemeral range are never handed out by the kernel, so here each Jest worker takes
 * its ports from its own slice of that range, in turn, and checks each is free by binding it.
 */
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

const LOWEST = 10_000;
const SLICE = 1_500;

/** The first port of the kernel's ephemeral range (Linux), or 32768 where it cannot be read. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

interface Slice {
  readonly first: number;
  /** Offset of the next port to try, 0 to SLICE - 1. */
  next: number;
}

/** This worker's slice, entered at a random place (a worker runs one test file after another). */
function ownSlice(): Slice | undefined {
  const slices = Math.floor((ephemeralLow() - LOWEST) / SLICE);
  if (slices < 1) return undefined;
  const worker = Number(process.env['JEST_WORKER_ID'] ?? '0');
  const index = (Number.isInteger(worker) && worker > 0 ? worker - 1 : process.pid) % slices;
  const first = LOWEST + index * SLICE;
  return { first, next: Math.floor(Math.random() * SLICE) };
}

const slice = ownSlice();

function tryBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The first port of the kernel's ephemeral range, for tests. */
export const ephemeralRangeStart = ephemeralLow;

/** A loopback port nobody listens on now and that nothing on the machine will take meanwhile. */
export async function freePort(): Promise<number> {
  if (slice === undefined) return kernelPort();
  for (let tried = 0; tried < SLICE; tried++) {
    const port = slice.first + slice.next;
    slice.next = (slice.next + 1) % SLICE;
    if (await tryBind(port)) return port;
  }
  throw new Error(`no free loopback port in ${slice.first}-${slice.first + SLICE - 1}`);
}

/** `n` distinct free ports (each taken in turn, so no two are the same). */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  return ports;
}
