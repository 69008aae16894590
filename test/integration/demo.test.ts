/**
 * `npm run demo` as a newcomer runs it: the built demo (dist/demo/main.js, built by `npm test`
 * before the suite; run `npm run build` first when running this file alone) as a child process.
 * The check mode passes its round trip (the demo group included); the interactive mode prints
 * credentials an XMPP client can log in with, bridges a chat with the echo user, shows the demo
 * group being made, and on SIGINT stops everything it started. The same for `--matrix` (a private
 * Synapse; a Matrix client with end-to-end encryption, as Element, logging in with the printed
 * password), and `--matrix` without Synapse exits 2 saying how to install it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { client } from '@xmpp/client';
import { xml, type Element } from '@xmpp/xml';
import { pinCertificate } from '../../demo/tls.js';
import type { ClientEvent } from '../support/homeserver/index.js';
import { SdkUser } from '../support/synapse/sdk-user.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = 'dist/demo/main.js';

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}

function runDemo(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  if (!existsSync(`${ROOT}${MAIN}`)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
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
  const stopAll = async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGTERM');
        await r.exited;
      }
    }
  };
  afterEach(stopAll);

  it('--check passes a round trip of a text and a picture with receipts both ways, then the group, and exits 0', async () => {
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
      /✓ \d+\. alice@localhost got an invitation \(XEP-0249\) to the room of "Demo group"/,
      /✓ \d+\. alice@localhost joins \d+@wa\.localhost \(XEP-0045\): \+15550000002 is there/,
      /✓ \d+\. alice@localhost got \+15550000002's hello in the room/,
      /✓ \d+\. alice@localhost got \+15550000002's answer in the room/,
      /✓ \d+\. the echo user received it too, and stayed quiet in the group/,
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
    const directTlsPort = Number(out.match(/direct TLS \(XEP-0368\) on 127\.0\.0\.1 port (\d+)/)?.[1]);
    const fingerprint = out.match(/fingerprint is\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})/)?.[1] ?? '';
    const prosodyPid = Number(out.match(/Prosody: pid (\d+), files in (\S+)/)?.[1]);
    const prosodyDir = out.match(/Prosody: pid \d+, files in (\S+)/)?.[1] ?? '';
    const demoDir = out.match(/Everything is in (\S+), removed/)?.[1] ?? '';
    expect(address).toBe('alice@localhost');
    expect(out).toContain('+15550000001@wa.localhost');
    expect(out).toContain('+15550000002@wa.localhost');
    expect(existsSync(demoDir) && existsSync(prosodyDir)).toBe(true);
    // The answering contact's group with alice and the echo contact, made at start, shown after
    // the instructions.
    expect(out).toContain('+15550000002 has also made a group, "Demo group", with you and +15550000001');
    await run.waitForOutput(
      /What crosses the bridge:\n(?:.*\n)*\d\d:\d\d:\d\d {2}\[Demo group\] \+15550000002 made the group with alice@localhost and \+15550000001\n/,
    );
    await run.waitForOutput(/\[Demo group\] \+15550000002 -> alice@localhost +"Hi both!/);

    expect(fingerprint).not.toBe('');

    /** Logs in as a client that checks the certificate by `pin`, and chats with the echo user. */
    const chatOver = async (service: string, tlsPort: number, pin: string, text: string) => {
      const unpin = pinCertificate(tlsPort, pin);
      const xmpp = client({ service, domain: 'localhost', username: 'alice', password: password ?? '' });
      xmpp.reconnect.stop();
      xmpp.on('error', () => undefined);
      try {
        const raw = xmpp as unknown as { socket: { socket?: { getProtocol?: () => string | null } } | null };
        const bodies: string[] = [];
        const gotEcho = new Promise<void>((resolve) =>
          xmpp.on('stanza', (el: Element) => {
            const body = el.name === 'message' ? el.getChild('body')?.getText() : undefined;
            if (body === undefined || !(el.attrs.from ?? '').startsWith('+15550000001@wa.localhost')) return;
            bodies.push(body);
            if (body === `echo: ${text}`) resolve();
          }),
        );
        await xmpp.start();
        const protocol = raw.socket?.socket?.getProtocol?.();
        await xmpp.send(xml('presence', {}));
        await xmpp.send(
          xml(
            'message',
            { type: 'chat', to: '+15550000001@wa.localhost', id: `demo-test-${tlsPort}` },
            xml('body', {}, text),
          ),
        );
        await gotEcho;
        await xmpp.stop();
        return { protocol, bodies };
      } finally {
        unpin();
      }
    };
    // STARTTLS on the client port, then direct TLS (XEP-0368), each checking the printed fingerprint.
    expect(await chatOver(`xmpp://127.0.0.1:${port}`, port, fingerprint, 'Hi from the demo test')).toEqual({
      protocol: expect.stringMatching(/^TLSv1\.[23]$/),
      bodies: ['echo: Hi from the demo test'],
    });
    expect(
      await chatOver(`xmpps://127.0.0.1:${directTlsPort}`, directTlsPort, fingerprint, 'Hi over direct TLS'),
    ).toEqual({ protocol: expect.stringMatching(/^TLSv1\.[23]$/), bodies: ['echo: Hi over direct TLS'] });
    // A certificate with another fingerprint is refused, over both.
    const wrong = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '11' : '00');
    for (const [service, p] of [
      [`xmpp://127.0.0.1:${port}`, port],
      [`xmpps://127.0.0.1:${directTlsPort}`, directTlsPort],
    ] as const) {
      await expect(chatOver(service, p, wrong, 'never sent')).rejects.toThrow(
        `the server's certificate has SHA-256 fingerprint ${fingerprint}, not the pinned ${wrong}`,
      );
    }
    await run.waitForOutput(/alice@localhost -> \+15550000001 +"Hi from the demo test"/);
    await run.waitForOutput(/\+15550000001 -> alice@localhost +"echo: Hi from the demo test"/);
    await run.waitForOutput(/\+15550000001 -> alice@localhost +"echo: Hi over direct TLS"/);
    expect(run.output()).not.toContain('never sent');

    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('Stopped; nothing is left running');
    expect(processExists(prosodyPid)).toBe(false);
    expect(await isListening(port)).toBe(false);
    expect(existsSync(demoDir)).toBe(false);
    expect(existsSync(prosodyDir)).toBe(false);
  }, 90_000);

  describe('--matrix', () => {
    /** A TMPDIR of the test's own: the demo's temporary directory (Synapse's inside it) goes there. */
    let tmp: string;
    beforeEach(() => {
      tmp = mkdtempSync(path.join(tmpdir(), 'demo-test-'));
    });
    afterEach(async () => {
      await stopAll(); // before its TMPDIR goes
      rmSync(tmp, { recursive: true, force: true });
    });

    it('--check passes the round trip with matrix-js-sdk, exits 0 and leaves nothing behind', async () => {
      const run = runDemo(['--matrix', '--check'], { TMPDIR: tmp });
      running.push(run);
      await run.waitForOutput(/Synapse started \(pid \d+/, 60_000);
      expect(readdirSync(tmp)).toEqual([expect.stringMatching(/^interop-bridge-demo-/)]);
      const code = await run.exited;
      const out = run.output();
      expect({ code, out }).toEqual({ code: 0, out: expect.stringContaining('Demo check passed') });
      for (const step of [
        /✓ 1\. @alice:localhost logs in with the password \(m\.login\.password\) at http:\/\/127\.0\.0\.1:\d+/,
        /✓ \d+\. "login": the bot says what opting in means/,
        /✓ \d+\. "login confirm": the bot says the account is connected/,
        /✓ \d+\. "start-chat \+15550000001": @wa_15550000001:localhost invites @alice:localhost/,
        /✓ \d+\. the echo user received the text/,
        /✓ \d+\. @alice:localhost sees @wa_15550000001:localhost's read receipt for it/,
        /✓ \d+\. @alice:localhost got the echo "echo: /,
        /✓ \d+\. the echo user got a delivery receipt for its echo/,
        /✓ \d+\. @alice:localhost marks the echo read; the echo user got the read receipt/,
        /✓ \d+\. the picture the echo user decrypted is the one sent/,
        /✓ \d+\. @alice:localhost sees @wa_15550000001:localhost's read receipt for the picture/,
        /✓ \d+\. the picture that came back is the one sent, byte for byte/,
        /✓ \d+\. @alice:localhost marks the picture read; the echo user got the read receipt/,
        /✓ \d+\. @interop:localhost invites @alice:localhost to the room of the group "Demo group"/,
        /✓ \d+\. both contacts' ghosts are in it, and @wa_15550000002:localhost said hello/,
        /✓ \d+\. @alice:localhost got @wa_15550000002:localhost's answer in the room/,
        /✓ \d+\. the echo user received it too, and stayed quiet in the group/,
      ]) {
        expect(out).toMatch(step);
      }
      expect(out).not.toMatch(/✗/);
      const synapsePid = Number(out.match(/Synapse started \(pid (\d+)/)?.[1]);
      expect(processExists(synapsePid)).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    }, 120_000);

    it('prints a homeserver, user and password a Matrix client logs in with; chats; SIGINT stops everything', async () => {
      const run = runDemo(['--matrix'], { TMPDIR: tmp });
      running.push(run);
      await run.waitForOutput(/What crosses the bridge:/, 60_000);
      const out = run.output();
      const homeserver = out.match(/homeserver +(http:\/\/127\.0\.0\.1:\d+)/)?.[1] ?? '';
      const user = out.match(/ user +(\S+)/)?.[1];
      const password = out.match(/password +(\S+)/)?.[1] ?? '';
      const synapsePid = Number(out.match(/Synapse: pid (\d+)/)?.[1]);
      const demoDir = out.match(/Everything is in (\S+), removed/)?.[1] ?? '';
      expect(user).toBe('alice');
      expect(out).toContain('@interop:localhost');
      expect(out).toContain('start-chat +15550000001');
      expect(out).toContain('@wa_15550000001:localhost');
      expect(out).toContain('@wa_15550000002:localhost');
      expect(out).toContain('Once you are connected, +15550000002 makes a group, "Demo group"');
      expect(existsSync(demoDir) && processExists(synapsePid)).toBe(true);

      // A Matrix client as Element is one (matrix-js-sdk, its Rust crypto): password login, an
      // encrypted direct chat with the bot, login, confirm, start-chat, then the portal the bridge
      // made encrypted.
      const client = await SdkUser.start({
        baseUrl: homeserver,
        ...(await passwordLogin(homeserver, 'alice', password)),
        crypto: true,
      });
      try {
        const bot = '@interop:localhost';
        const echo = '@wa_15550000001:localhost';
        const fromBot = (text: RegExp) => (e: ClientEvent) =>
          e.sender === bot && e.type === 'm.room.message' && text.test(bodyOf(e));
        const management = await client.createDirectRoom(bot, ENCRYPTED);
        await client.waitFor(management, fromBot(/./));
        await client.sendText(management, 'login');
        await client.waitFor(management, fromBot(/login confirm/));
        await client.sendText(management, 'login confirm');
        await client.waitFor(management, fromBot(/You are now connected/));
        // Connected: the answering contact makes the demo group with alice and the echo contact.
        await run.waitForOutput(
          /\[Demo group\] \+15550000002 made the group with @alice:localhost and \+15550000001/,
        );
        await client.sendText(management, 'start-chat +15550000001');
        const started = await client.waitFor(management, fromBot(/Started a chat/));
        const portal = /(![A-Za-z0-9_\-+/=]+)/.exec(bodyOf(started))?.[1] ?? '';
        await client.join(portal);
        await client.waitUntil(() => client.client.isRoomEncrypted(portal), 'the portal to be encrypted');
        await client.sendText(portal, 'Hi from the Matrix demo test');
        await client.waitFor(
          portal,
          (e) =>
            e.sender === echo &&
            e.type === 'm.room.message' &&
            bodyOf(e) === 'echo: Hi from the Matrix demo test',
        );
        await run.waitForOutput(/@alice:localhost -> \+15550000001 +"Hi from the Matrix demo test"/);
        await run.waitForOutput(/\+15550000001 -> @alice:localhost +"echo: Hi from the Matrix demo test"/);
        // Both rooms hold only what the client could decrypt: the bot's answers and the echo.
        expect((await client.undecryptableAnywhere()).map((e) => e.getId())).toEqual([]);
        expect(
          (await client.messages(portal)).filter((e) => e.sender === echo && e.type === 'm.room.message'),
        ).toEqual([]);
      } finally {
        client.stop();
      }

      run.child.kill('SIGINT');
      expect(await run.exited).toBe(0);
      expect(run.output()).toContain('Stopped; nothing is left running');
      expect(processExists(synapsePid)).toBe(false);
      expect(await isListening(Number(new URL(homeserver).port))).toBe(false);
      expect(existsSync(demoDir)).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    }, 120_000);

    it('without Synapse installed, says how to install it and exits 2', async () => {
      const run = runDemo(['--matrix'], { SYNAPSE_PYTHON: path.join(tmp, 'no-synapse', 'bin', 'python') });
      running.push(run);
      expect(await run.exited).toBe(2);
      expect(run.output()).toMatch(/Synapse is not installed/);
      expect(run.output()).toContain('scripts/install-synapse.sh');
    }, 30_000);
  });
});

const bodyOf = (e: ClientEvent) => String(e.content['body'] ?? '');

/** A direct chat created encrypted, as Element creates one with a user who has encryption keys. */
const ENCRYPTED = {
  initial_state: [
    { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
  ],
};

/** `m.login.password`, as a client logs in with the printed password. */
async function passwordLogin(
  homeserver: string,
  user: string,
  password: string,
): Promise<{ userId: string; accessToken: string; deviceId: string }> {
  const res = await fetch(`${homeserver}/_matrix/client/v3/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user }, password }),
  });
  const body = (await res.json()) as { user_id?: string; access_token?: string; device_id?: string };
  if (
    !res.ok ||
    body.user_id === undefined ||
    body.access_token === undefined ||
    body.device_id === undefined
  ) {
    throw new Error(`login: ${res.status} ${JSON.stringify(body)}`);
  }
  return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
}
