/**
 * Everything the demo runs, started in one temporary directory: a Prosody with a local account and
 * the bridge's component (plus its XEP-0363 upload service), the gateway emulator with two native
 * users, and the bridge daemon from a generated config. The local account is then registered with
 * the bridge the way a user does it from a client (XEP-0077), and given the two contacts.
 *
 * Each part hands its stop function to `defer` as soon as it runs, so a failure or a Ctrl-C in the
 * middle of start-up stops exactly what had started.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { xml, type Element } from '@xmpp/xml';
import { loadConfig } from '../src/config/loader.js';
import { startDaemon, type Daemon } from '../app/daemon.js';
import { createLogger, type Logger } from '../src/observability/logger.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../src/protocol/jwt.js';
import { writeProviderKey } from '../src/provider-keys.js';
import { startEmulator, type StartedEmulator } from '../test/support/emulator-process.js';
import { tempDir, type TempDir } from '../test/support/tmp.js';
import { connectUser, startProsody, type TestUser, type XmppServer } from '../test/support/xmpp-servers.js';
import type { NativeUser } from '../emulator/native-user.js';
import { accountJidOf } from '../src/bridge/puppet.js';
import { DemoContact, type ContactBehaviour } from './contacts.js';
import { makeCertificate, pinCertificate, type DemoCertificate } from './tls.js';

export const PROVIDER = 'demo';
export const COMPONENT = 'wa.localhost';
export const ALICE = 'alice';

export interface ContactSpec {
  phone: string;
  name: string;
  behaviour: ContactBehaviour;
  delayMs: number;
  answers: string[];
  /** What the login instructions say about it. */
  blurb: string;
}

export const CONTACTS: readonly ContactSpec[] = [
  {
    phone: '+15550000001',
    name: 'Echo (demo)',
    behaviour: 'echo',
    delayMs: 0,
    answers: [],
    blurb: 'echoes what you send: text, pictures and files',
  },
  {
    phone: '+15550000002',
    name: 'Sam (demo)',
    behaviour: 'answer',
    delayMs: 1500,
    answers: [
      'Hi! Good to hear from you 😊',
      'Ha, that made me laugh.',
      "Sorry, I'm on the train, can I call you later?",
      'Sure, sounds good to me.',
      'Really? Tell me more!',
    ],
    blurb: 'answers like a person, after a moment',
  },
];

/**
 * The group the answering contact makes, once the local user is connected, with the user and the
 * echo contact; it says hello in it and answers the user there (the echo contact stays quiet).
 */
export const GROUP = {
  subject: 'Demo group',
  /** The contact that makes the group and answers in it (an index into CONTACTS). */
  maker: 1,
  hello: 'Hi both! I made this group for the three of us.',
} as const;

export interface DemoStack {
  /** The demo's temporary directory (bridge data, emulator data, logs). */
  readonly dir: string;
  /** The bridge's and the emulator's log (warnings and errors, JSON lines). */
  readonly logFile: string;
  readonly prosody: XmppServer;
  /** Prosody's certificate, made for the run (STARTTLS on the client port, direct TLS on its own). */
  readonly tls: DemoCertificate & { directTlsPort: number };
  readonly emulator: StartedEmulator;
  readonly daemon: Daemon;
  readonly alice: { user: string; jid: string; password: string };
  readonly contacts: DemoContact[];
  contactJid(phone: string): string;
}

export interface StartStackOptions {
  /** Registers a stop function; called for each part as soon as it has started. */
  defer: (what: string, stop: () => Promise<void> | void) => void;
  /** Progress, one short line per part. */
  progress: (line: string) => void;
  /** Where the contacts' traffic lines go. */
  traffic: (line: string) => void;
  /** The client port to ask for when free (default 5222, the port every client tries first). */
  preferredC2sPort?: number;
  /** Prosody also serves XMPP over WebSocket (for the browser demo). */
  websocket?: boolean;
}

/** What both demos share: the temporary directory, the log, the emulator, the bridge's data dir and key. */
export interface DemoBase {
  readonly tmp: TempDir;
  readonly logFile: string;
  readonly logger: Logger;
  readonly emulator: StartedEmulator;
  readonly signingKey: ProviderPrivateJwk;
  /** The bridge's HTTP port (media host, health, metrics). */
  readonly httpPort: number;
  readonly dataDir: string;
}

/** The temporary directory and the log file, then the gateway emulator with the demo's native users. */
export async function startBase(o: Pick<StartStackOptions, 'defer' | 'progress'>): Promise<DemoBase> {
  const tmp = tempDir('interop-bridge-demo-');
  o.defer('the temporary directory', () => tmp.cleanup());
  mkdirSync(path.join(tmp.dir, 'logs'));
  const logFile = path.join(tmp.dir, 'logs', 'bridge-and-emulator.log');
  const logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  o.defer('the log file', () => new Promise<void>((resolve) => logStream.end(() => resolve())));
  // Warnings and errors only; the emulator only ever sees ciphertext, and neither logs message text.
  const logger: Logger = createLogger({ level: 'warn', format: 'json', destination: logStream });

  const signingKey = await generateProviderKey('EdDSA');
  const httpPort = await freePort();
  const natives = CONTACTS.map((c) => [`  - phone: '${c.phone}'`, '    behaviour: silent']).flat();
  const emulator = await startEmulator(tmp, {
    provider: { id: PROVIDER, signingKey, allowedMediaHosts: [`127.0.0.1:${httpPort}`] },
    extraYaml: ['native_users:', ...natives],
    logger,
  });
  o.defer('the emulator', () => emulator.running.stop());
  o.progress(
    `gateway emulator started (port ${emulator.running.gateway.port}, ${CONTACTS.length} native users)`,
  );

  const dataDir = path.join(tmp.dir, 'bridge');
  mkdirSync(dataDir, { mode: 0o700 });
  writeProviderKey(path.join(dataDir, 'provider-signing-key.jwk'), signingKey);
  return { tmp, logFile, logger, emulator, signingKey, httpPort, dataDir };
}

/** The bridge's config: the gateway (the emulator) and the data dir, then the adapter's own lines. */
export function bridgeYaml(base: DemoBase, adapterLines: string[]): string {
  return [
    '# Generated by the demo (demo/stack.ts).',
    'bridge:',
    `  provider_id: ${PROVIDER}`,
    `  data_dir: ${JSON.stringify(base.dataDir)}`,
    '  http:',
    `    port: ${base.httpPort}`,
    'gateway:',
    `  port: ${base.emulator.running.gateway.port}`,
    `  root_key: ${Buffer.from(base.emulator.root).toString('base64')}`,
    '  reconnect: { initial_delay_ms: 100, max_delay_ms: 2000 }',
    'signal:',
    '  prekey_batch_size: 20',
    ...adapterLines,
    '',
  ].join('\n');
}

/**
 * The simulated users, driven from here; the log names local users by their puppets' local ids.
 * Once a local user's puppet is connected, the answering contact makes the demo group with them
 * and the echo contact (GROUP).
 */
export async function startContacts(
  base: DemoBase,
  daemon: Daemon,
  o: Pick<StartStackOptions, 'defer' | 'traffic'>,
): Promise<DemoContact[]> {
  const names = new Map<string, string>();
  const nameOf = (interopJid: string) => names.get(interopJid) ?? interopJid;
  const users = CONTACTS.map((spec, i) => {
    const user = base.emulator.running.natives[i];
    if (!user) throw new Error(`the emulator did not start native user ${spec.phone}`);
    names.set(user.jid, spec.phone);
    return user;
  });
  const isContact = (interopJid: string) => users.some((u) => u.jid === interopJid);
  const contacts = CONTACTS.map(
    (spec, i) =>
      new DemoContact({ user: users[i] as NativeUser, ...spec, nameOf, isContact, log: o.traffic }),
  );
  const maker = contacts[GROUP.maker];
  const others = contacts.filter((c) => c !== maker).map((c) => c.user.jid);
  /** Local users with a group (or one on the way), and attempts made per user (three at most). */
  const grouped = new Set<string>();
  const attempts = new Map<string, number>();
  const makeGroupFor = (localId: string, jid: string) => {
    const n = (attempts.get(localId) ?? 0) + 1;
    if (!maker || n > 3) return;
    attempts.set(localId, n);
    grouped.add(localId);
    void maker.makeGroup(GROUP.subject, [jid, ...others], GROUP.hello).then((made) => {
      if (made === undefined) grouped.delete(localId); // tried again at the next look
    });
  };
  // Local users opt in while the demo runs (the Matrix demo's user does it from the client): the
  // names are read again five times a second (a message can follow the opt-in within a second).
  const refresh = async () => {
    for (const p of await daemon.store.puppets.list()) {
      const jid = accountJidOf(p.accountId, PROVIDER);
      names.set(jid, p.localId);
      if (!grouped.has(p.localId) && daemon.bridge?.puppet(p.localId)?.connection.isConnected === true)
        makeGroupFor(p.localId, jid);
    }
  };
  await refresh();
  const timer = setInterval(() => void refresh().catch(() => undefined), 200);
  o.defer('the name lookup', () => clearInterval(timer));
  for (const c of contacts) c.start();
  o.defer('the demo contacts', async () => {
    for (const c of contacts) await c.stop();
  });
  return contacts;
}

export async function startStack(o: StartStackOptions): Promise<DemoStack> {
  const secret = randomBytes(24).toString('hex');
  const preferred = o.preferredC2sPort ?? 5222;
  const c2sPort = (await portIsFree(preferred)) ? preferred : undefined;
  const base = await startBase(o);
  const tlsDir = path.join(base.tmp.dir, 'tls');
  mkdirSync(tlsDir, { mode: 0o700 });
  const cert = await makeCertificate(tlsDir);
  const prosodyOptions = {
    componentDomain: COMPONENT,
    componentSecret: secret,
    httpFileShare: true,
    tls: { certificate: cert.certificate, key: cert.key },
    websocket: o.websocket === true,
  };
  let prosody: XmppServer;
  try {
    prosody = await startProsody({ ...prosodyOptions, ...(c2sPort !== undefined ? { c2sPort } : {}) });
  } catch (err) {
    // Someone took the port between the check and Prosody's start: any free port will do.
    if (c2sPort === undefined || !/did not open ports|exited/.test((err as Error).message)) throw err;
    prosody = await startProsody(prosodyOptions);
  }
  const server = prosody;
  o.defer('Prosody', () => server.stop());
  const directTlsPort = server.directTlsPort as number;
  // The demo's own client connections (registering alice, --check) check the certificate too.
  const unpin = [
    pinCertificate(server.c2sPort, cert.fingerprint),
    pinCertificate(directTlsPort, cert.fingerprint),
  ];
  o.defer('the certificate pins', () => unpin.forEach((u) => u()));
  o.progress(
    `Prosody started (pid ${String(server.pid)}, client port ${server.c2sPort} with STARTTLS, direct TLS port ${directTlsPort})`,
  );

  const yaml = bridgeYaml(base, [
    'media:',
    // Prosody's upload service serves on 127.0.0.1:<port>.
    `  allowed_fetch_hosts: ["127.0.0.1:${String(server.httpPort)}"]`,
    'xmpp:',
    '  enabled: true',
    `  server_port: ${server.componentPort}`,
    `  component_domain: ${COMPONENT}`,
    `  secret: ${secret}`,
    `  upload_service: ${String(server.uploadService)}`,
    `  allowed_domains: [${server.host}]`,
  ]);
  const configFile = base.tmp.file('bridge.yaml', yaml, 0o600); // it holds the component secret
  const daemon = await startDaemon(loadConfig({ path: configFile, env: {} }), base.logger);
  o.defer('the bridge', () => daemon.stop());
  o.progress(`bridge started (component ${COMPONENT}, HTTP port ${base.httpPort})`);

  const password = randomBytes(9).toString('base64url');
  const jid = `${ALICE}@${server.host}`;
  await server.register(ALICE, password);
  await registerWithBridge(server, password, daemon);
  o.progress(`${jid} registered with the bridge and has the demo contacts in its roster`);

  const contacts = await startContacts(base, daemon, o);

  return {
    dir: base.tmp.dir,
    logFile: base.logFile,
    prosody: server,
    tls: { ...cert, directTlsPort },
    emulator: base.emulator,
    daemon,
    alice: { user: ALICE, jid, password },
    contacts,
    contactJid: (phone) => `${phone}@${COMPONENT}`,
  };
}

/**
 * What a user does in a client: log in, register with the gateway (XEP-0077), accept the gateway's
 * presence subscription, add the two contacts (named) and accept theirs, then log out.
 */
async function registerWithBridge(server: XmppServer, password: string, daemon: Daemon): Promise<void> {
  const alice = await connectUser(server, ALICE, password);
  try {
    const approve = (el: Element) => {
      const from = el.attrs.from ?? '';
      if (el.name === 'presence' && el.attrs.type === 'subscribe' && from.endsWith(COMPONENT)) {
        void alice.client.send(xml('presence', { to: from, type: 'subscribed' }));
      }
    };
    alice.client.on('stanza', approve);
    const answer = await alice.iq(
      xml('iq', { type: 'set', to: COMPONENT }, xml('query', { xmlns: 'jabber:iq:register' })),
      30_000,
    );
    if (answer.attrs.type !== 'result') {
      throw new Error(`the bridge refused the registration: ${answer.toString()}`);
    }
    const bare = `${ALICE}@${server.host}`;
    await until(() => daemon.bridge?.puppet(bare)?.connection.isConnected === true, 20_000);
    for (const c of CONTACTS) {
      const contact = `${c.phone}@${COMPONENT}`;
      await alice.iq(
        xml(
          'iq',
          { type: 'set' },
          xml(
            'query',
            { xmlns: 'jabber:iq:roster' },
            xml('item', { jid: contact, name: c.name }, xml('group', {}, 'WhatsApp demo')),
          ),
        ),
      );
      await alice.client.send(xml('presence', { to: contact, type: 'subscribe' }));
      await alice.waitForStanza(
        (s) => s.name === 'presence' && s.attrs.type === 'subscribed' && bareOf(s.attrs.from) === contact,
        20_000,
      );
      await alice.waitForStanza(
        (s) => s.name === 'presence' && s.attrs.type === 'subscribe' && bareOf(s.attrs.from) === contact,
        20_000,
      );
    }
  } finally {
    await alice.stop();
  }
}

export const bareOf = (jid: string | undefined): string => (jid ?? '').split('/')[0] ?? '';

/** Logs in as the demo's local user with a real XMPP client (@xmpp/client). */
export function loginAlice(stack: DemoStack): Promise<TestUser> {
  return connectUser(stack.prosody, stack.alice.user, stack.alice.password);
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('the puppet did not connect to the gateway in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
