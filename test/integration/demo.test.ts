/**
 * `npm run demo` as a newcomer runs it: the built demo (dist/demo/main.js, built by `npm test`
 * before the suite; run `npm run build` first when running this file alone) as a child process.
 * The check mode passes its round trip; the interactive mode prints credentials an XMPP client can
 * log in with, bridges a chat with the echo user, and on SIGINT stops everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { client } from '@xmpp/client';
import { xml, type Element } from '@xmpp/xml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = 'dist/demo/main.js';

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}

function runDemo(args: string[]): Run {
  if (!existsSync(`${ROOT}${MAIN}`)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const l of [...listeners]) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    waitForOutput: (pattern, timeoutMs = 45_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (!m) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(
              `the demo did not print ${String(pattern)} within ${timeoutMs} ms; it printed:\n${out}`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        void exited.then(() => {
          if (!listeners.has(check)) return;
          listeners.delete(check);
          clearTimeout(timer);
          reject(new Error(`the demo exited before printing ${String(pattern)}; it printed:\n${out}`));
        });
        check();
      }),
  };
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run demo', () => {
  const running: Run[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGTERM');
        await r.exited;
      }
    }
  });

  it('--check passes a round trip of a text and a picture with receipts both ways, and exits 0', async () => {
    const run = runDemo(['--check']);
    running.push(run);
    const code = await run.exited;
    const out = run.output();
    expect({ code, out }).toEqual({ code: 0, out: expect.stringContaining('Demo check passed') });
    for (const step of [
      /✓ 1\. alice@localhost logs in/,
      /✓ \d+\. the echo user received the text/,
      /✓ \d+\. alice@localhost got a delivery receipt \(XEP-0184\) for it/,
      /✓ \d+\. alice@localhost got the echo "echo: /,
      /✓ \d+\. the echo user got a delivery receipt for its echo/,
      /✓ \d+\. alice@localhost uploads a picture .* to upload\.localhost/,
      /✓ \d+\. the picture the echo user decrypted is the one sent/,
      /✓ \d+\. alice@localhost got a delivery receipt \(XEP-0184\) for the picture/,
      /✓ \d+\. the picture that came back is the one sent, byte for byte/,
      /✓ \d+\. the echo user got a delivery receipt for the picture it sent/,
    ]) {
      expect(out).toMatch(step);
    }
    expect(out).not.toMatch(/✗/);
  }, 90_000);

  it('prints credentials an XMPP client logs in with, bridges a chat, and stops everything on SIGINT', async () => {
    const run = runDemo([]);
    running.push(run);
    await run.waitForOutput(/What crosses the bridge:/);
    const out = run.output();
    const address = out.match(/address +(\S+)/)?.[1];
    const password = out.match(/password +(\S+)/)?.[1];
    const port = Number(out.match(/server +127\.0\.0\.1 +port (\d+)/)?.[1]);
    const prosodyPid = Number(out.match(/Prosody: pid (\d+), files in (\S+)/)?.[1]);
    const prosodyDir = out.match(/Prosody: pid \d+, files in (\S+)/)?.[1] ?? '';
    const demoDir = out.match(/Everything is in (\S+), removed/)?.[1] ?? '';
    expect(address).toBe('alice@localhost');
    expect(out).toContain('+15550000001@wa.localhost');
    expect(out).toContain('+15550000002@wa.localhost');
    expect(existsSync(demoDir) && existsSync(prosodyDir)).toBe(true);

    const xmpp = client({
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'alice',
      password: password ?? '',
    });
    xmpp.reconnect.stop();
    xmpp.on('error', () => undefined);
    const bodies: string[] = [];
    const gotEcho = new Promise<void>((resolve) =>
      xmpp.on('stanza', (el: Element) => {
        const body = el.name === 'message' ? el.getChild('body')?.getText() : undefined;
        if (body === undefined || !(el.attrs.from ?? '').startsWith('+15550000001@wa.localhost')) return;
        bodies.push(body);
        if (body === 'echo: Hi from the demo test') resolve();
      }),
    );
    await xmpp.start();
    await xmpp.send(xml('presence', {}));
    await xmpp.send(
      xml(
        'message',
        { type: 'chat', to: '+15550000001@wa.localhost', id: 'demo-test-1' },
        xml('body', {}, 'Hi from the demo test'),
      ),
    );
    await gotEcho;
    await xmpp.stop();
    expect(bodies).toEqual(['echo: Hi from the demo test']);
    await run.waitForOutput(/alice@localhost -> \+15550000001 +"Hi from the demo test"/);
    await run.waitForOutput(/\+15550000001 -> alice@localhost +"echo: Hi from the demo test"/);

    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('Stopped; nothing is left running');
    expect(processExists(prosodyPid)).toBe(false);
    expect(await isListening(port)).toBe(false);
    expect(existsSync(demoDir)).toBe(false);
    expect(existsSync(prosodyDir)).toBe(false);
  }, 90_000);
});
