/**
 * `npm run demo`: a working conversation with simulated WhatsApp users from any XMPP client, in one
 * command. Starts Prosody, the gateway emulator and the bridge in a temporary directory, prints how
 * to log in, and streams what crosses the bridge until Ctrl-C, which stops everything.
 *
 * `npm run demo -- --matrix`: the same with a private Synapse instead of Prosody, for any Matrix
 * client (the user talks to the bridge bot to opt in and open chats), end-to-end encryption on.
 *
 * `npm run demo -- --web`: the XMPP demo, and converse.js served on loopback, logged in as the demo
 * user, for a first chat in a browser tab (demo/web.ts).
 *
 * `--check` (with or without `--matrix`): the same set-up, one scripted round trip (text and a
 * picture, both ways, with receipts, then a message in the demo group and the answer there), then
 * exits 0 when every step passed, 1 otherwise.
 *
 * Exit codes: 0 done (or stopped by Ctrl-C / SIGTERM), 1 a failure, 2 Prosody (or, with
 * `--matrix`, Synapse) is not installed.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { CheckFailed, runCheck } from './check.js';
import { startMatrixStack, type MatrixDemoStack } from './matrix-stack.js';
import { CONTACTS, GROUP, startStack, type DemoStack } from './stack.js';
import { synapsePython } from './synapse.js';

const USAGE = `Usage: npm run demo [-- [--matrix | --web] [--check]]

  (no option)  start the demo for XMPP clients (a private Prosody) and stream what crosses the
               bridge until Ctrl-C
  --matrix     the same for Matrix clients (a private Synapse)
  --web        the XMPP demo, plus a web page (converse.js) logged in as the demo user
  --check      one scripted round trip (text and a picture, both ways, with receipts, then the
               demo group); exit 0 or 1
`;

type Stop = { what: string; stop: () => Promise<void> | void };

/** What has started, stopped in reverse order, once. */
class Shutdown {
  private readonly stops: Stop[] = [];
  private running: Promise<void> | undefined;

  /** Registers a stop; once shutting down, a part that finishes starting is stopped at once. */
  defer = (what: string, stop: () => Promise<void> | void): void => {
    if (this.running) {
      void this.running.then(() => this.runOne({ what, stop }));
      return;
    }
    this.stops.push({ what, stop });
  };

  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.stops.length > 0) await this.runOne(this.stops.pop() as Stop);
    })();
    return this.running;
  }

  private async runOne(s: Stop): Promise<void> {
    try {
      await s.stop();
    } catch (err) {
      process.stderr.write(`could not stop ${s.what}: ${(err as Error).message}\n`);
    }
  }
}

function prosodyInstalled(): boolean {
  for (const dir of ['/usr/bin', '/usr/sbin', ...(process.env['PATH'] ?? '').split(':')]) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, 'prosody'), constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

const clock = () => new Date().toTimeString().slice(0, 8);
const out = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((a) => a !== '--check' && a !== '--matrix' && a !== '--web');
  if (unknown.length > 0) {
    process.stderr.write(
      unknown.some((a) => a === '--help' || a === '-h') ? USAGE : `unknown option ${unknown[0]}\n${USAGE}`,
    );
    return unknown.some((a) => a === '--help' || a === '-h') ? 0 : 1;
  }
  const check = argv.includes('--check');
  const matrix = argv.includes('--matrix');
  const web = argv.includes('--web');
  if (matrix && web) {
    process.stderr.write(
      `--web is for the XMPP demo (converse.js speaks XMPP); leave out --matrix\n${USAGE}`,
    );
    return 1;
  }
  if (matrix && !existsSync(synapsePython())) {
    process.stderr.write(
      `The Matrix demo runs a local Synapse homeserver, and Synapse is not installed (no ${synapsePython()}).\n` +
        'Install it with:  scripts/install-synapse.sh   (or run ./scripts/quickstart.sh)\n' +
        'It goes into a virtual environment in .synapse/ in this checkout (Python 3 with venv, and the\n' +
        "network to reach Python's package index); the demo starts its own Synapse in a temporary directory.\n",
    );
    return 2;
  }
  if (!matrix && !prosodyInstalled()) {
    process.stderr.write(
      'The demo runs a local Prosody XMPP server, and Prosody is not installed.\n' +
        'Install it with:  sudo apt-get install prosody   (or run ./scripts/quickstart.sh)\n' +
        'The demo starts its own Prosody in a temporary directory; the system service can stay stopped.\n',
    );
    return 2;
  }

  const server = matrix ? 'Synapse' : 'Prosody';
  const shutdown = new Shutdown();
  let stopSignal: string | undefined;
  let wakeUp: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (wakeUp = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal !== undefined) {
      process.stderr.write(`Stopping already; one moment (${server} and the bridge are being stopped).\n`);
      return;
    }
    stopSignal = signal;
    wakeUp();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  out(
    check
      ? `Checking the ${matrix ? 'Matrix ' : ''}demo: starting ${server}, the gateway emulator and the bridge...`
      : `Starting the ${matrix ? 'Matrix ' : ''}demo...`,
  );
  // Traffic during start-up (the demo group is made as soon as the user is connected) waits until
  // the instructions are printed, under "What crosses the bridge:".
  let early: string[] | undefined = [];
  const streamTraffic = () => {
    for (const line of early ?? []) out(line);
    early = undefined;
  };
  const options = {
    defer: shutdown.defer,
    progress: (line: string) => out(`  ${check ? '✓ ' : ''}${line}`),
    traffic: check
      ? () => undefined
      : (line: string) => (early ? early.push(`${clock()}  ${line}`) : out(`${clock()}  ${line}`)),
  };
  const startup: Promise<{ xmpp: DemoStack; webUrl?: string } | { matrix: MatrixDemoStack }> = matrix
    ? startMatrixStack(options).then((s) => ({ matrix: s }))
    : startStack({ ...options, websocket: web }).then(async (s) => {
        if (!web) return { xmpp: s };
        const { startWeb } = await import('./web.js');
        const page = await startWeb({
          prosodyHttpPort: s.prosody.httpPort as number,
          xmppHost: s.prosody.host,
          jid: s.alice.jid,
          password: s.alice.password,
          preferredPort: 8080,
        });
        shutdown.defer('the web page', () => page.close());
        options.progress(`web page served at ${page.url} (converse.js, over Prosody's WebSocket)`);
        return { xmpp: s, webUrl: page.url };
      });
  let code = 0;
  try {
    const started = await Promise.race([startup, stopped.then(() => undefined)]);
    if (started === undefined) {
      out('Stopped during start-up.');
    } else if ('matrix' in started) {
      if (check) {
        const { runMatrixCheck } = await import('./matrix-check.js');
        code = await checkRoundTrip(
          (passed) => runMatrixCheck(started.matrix, passed),
          started.matrix,
          stopped,
        );
      } else {
        printMatrixInstructions(started.matrix);
        streamTraffic();
        await stopped;
      }
    } else if (check) {
      code = await checkRoundTrip((passed) => runCheck(started.xmpp, passed), started.xmpp, stopped);
    } else {
      printInstructions(started.xmpp, started.webUrl);
      streamTraffic();
      await stopped;
    }
  } catch (err) {
    process.stderr.write(`The demo could not start: ${(err as Error).message}\n`);
    code = 1;
  }
  if (stopSignal !== undefined) out(`\n${stopSignal}: stopping the bridge, the emulator and ${server}...`);
  await shutdown.run();
  // A part still starting when the signal came is stopped as soon as it is up (Shutdown.defer).
  await startup.then(
    () => shutdown.run(),
    () => undefined,
  );
  if (stopSignal !== undefined) out('Stopped; nothing is left running and the temporary files are removed.');
  return code;
}

async function checkRoundTrip(
  run: (passed: (step: string) => void) => Promise<void>,
  stack: { logFile: string },
  stopped: Promise<void>,
): Promise<number> {
  let n = 0;
  try {
    const result = await Promise.race([
      run((step) => out(`  ✓ ${++n}. ${step}`)),
      stopped.then(() => 'stopped' as const),
    ]);
    if (result === 'stopped') {
      out('Check interrupted.');
      return 1;
    }
    out(`Demo check passed: ${n} steps, text and a picture both ways with receipts, and the group.`);
    return 0;
  } catch (err) {
    const step = err instanceof CheckFailed ? err.step : 'the check';
    const reason = err instanceof CheckFailed ? err.reason : (err as Error).message;
    out(`  ✗ ${n + 1}. ${step}`);
    out(`Demo check FAILED at "${step}": ${reason}`);
    out(`(the bridge's and the emulator's warnings were in ${stack.logFile}; removed on exit)`);
    return 1;
  }
}

/** Who makes the demo group, and who else is in it (besides the user). */
const groupMaker = () => CONTACTS[GROUP.maker]?.phone ?? '';
const groupOthers = () =>
  CONTACTS.filter((_, i) => i !== GROUP.maker)
    .map((c) => c.phone)
    .join(' and ');

function printInstructions(stack: DemoStack, webUrl: string | undefined): void {
  const { alice, prosody } = stack;
  const width = Math.max(...CONTACTS.map((c) => stack.contactJid(c.phone).length));
  const lines = [
    '',
    ...(webUrl === undefined
      ? []
      : [
          'In a browser on this machine, open',
          `  ${webUrl}`,
          `a chat client (converse.js) logged in as ${alice.jid}: pick a contact and write.`,
          '',
        ]),
    'The demo is running. Log in from any XMPP client (Gajim, Dino, Profanity, ...) on this machine:',
    `  address   ${alice.jid}`,
    `  password  ${alice.password}`,
    `  server    127.0.0.1  port ${prosody.c2sPort}   (STARTTLS offered, not required: Profanity and co. may use no TLS)`,
    `            or direct TLS (XEP-0368) on 127.0.0.1 port ${stack.tls.directTlsPort}`,
    '  The certificate was made for this run; when the client asks whether to trust it, check that',
    '  its SHA-256 fingerprint is',
    `    ${stack.tls.fingerprint}`,
    'and send a message to:',
    ...CONTACTS.map((c) => `  ${stack.contactJid(c.phone).padEnd(width)}  ${c.blurb}`),
    `Both are in ${alice.jid}'s contact list already.`,
    `${groupMaker()} has also made a group, "${GROUP.subject}", with you and ${groupOthers()}: accept its`,
    'invitation in your client (or join the room it names) and write there; it answers you there.',
    `Prosody: pid ${String(prosody.pid)}, files in ${prosody.dir}`,
    `Bridge and emulator logs (warnings only): ${stack.logFile}`,
    `Everything is in ${stack.dir}, removed when the demo stops. Press Ctrl-C to stop.`,
    '',
    'What crosses the bridge:',
  ];
  for (const l of lines) out(l);
}

function printMatrixInstructions(stack: MatrixDemoStack): void {
  const { alice, synapse, bot } = stack;
  const ghosts = CONTACTS.map((c) => stack.ghostOf(c.phone));
  const width = Math.max(...ghosts.map((g) => g.length));
  const lines = [
    '',
    'The demo is running. Log in from any Matrix client (Element, Cinny, nheko, ...) on this machine:',
    `  homeserver  ${synapse.url}   (plain HTTP: this Synapse listens on loopback only)`,
    `  user        ${alice.user}   (${alice.userId})`,
    `  password    ${alice.password}`,
    `Then start a direct chat with the bridge bot ${bot} and send it:`,
    '  login              (it explains what opting in means)',
    '  login confirm      (your interop account is made; the bot says when you are connected)',
    `  start-chat ${CONTACTS[0]?.phone ?? ''}   (the contact invites you to a chat: accept it)`,
    'or, once connected, start a direct chat with (invite) a contact yourself:',
    ...CONTACTS.map((c, i) => `  ${(ghosts[i] ?? '').padEnd(width)}  ${c.phone}: ${c.blurb}`),
    `Once you are connected, ${groupMaker()} makes a group, "${GROUP.subject}", with you and ${groupOthers()}:`,
    `the bot invites you to its room; accept, and write there (${groupMaker()} answers you there).`,
    'End-to-end encryption is on, as in config.sample.yaml (matrix.encryption: allow, default): Element',
    'makes your chat with the bot encrypted, and the chats the bridge opens (start-chat, the group) are',
    'encrypted; the bot, and each contact in an encrypted chat, has a session of its own. To verify the',
    'bot, choose Verify on its profile and compare the emojis with those the bot posts in your chat with',
    'it; send it "encryption" to see its session, its key and whether you verified it.',
    `Synapse: pid ${String(synapse.pid)}, files in ${synapse.dir} (its log: ${synapse.logFile})`,
    `Bridge and emulator logs (warnings only): ${stack.logFile}`,
    `Everything is in ${stack.dir}, removed when the demo stops. Press Ctrl-C to stop.`,
    '',
    'What crosses the bridge:',
  ];
  for (const l of lines) out(l);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`The demo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
