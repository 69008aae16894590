/**
 * Real XMPP servers for integration tests: Prosody 0.12 and ejabberd 23.01 (Debian packages), each
 * started in a fresh temporary directory with a generated configuration, on free loopback ports,
 * as the current user (root in CI), with one virtual host and one external component (XEP-0114).
 * No s2s, and no TLS unless asked for (`tls`, the demo): c2s on loopback offers SASL SCRAM without STARTTLS.
 *
 * How each server is run (see docs/XMPP.md for the why):
 * - Prosody: `prosody --config <dir>/prosody.cfg.lua -F` with `run_as_root = true` and
 *   `daemonize = false`; users through `prosodyctl --config <file> register user host password`.
 * - ejabberd: `erl` directly (the ejabberdctl wrapper insists on the `ejabberd` user and a fixed node
 *   name), with `ERL_LIBS=/usr/lib/x86_64-linux-gnu`, `EJABBERD_CONFIG_PATH`, `EJABBERD_LOG_PATH`,
 *   a unique `-sname` and `-setcookie`, `-mnesia dir <spool>`, and Erlang distribution without epmd
 *   (`-start_epmd false -erl_epmd_port <port>`, bound to 127.0.0.1); users through a second `erl`
 *   running `ejabberd_ctl` against that node, the way ejabberdctl itself does it.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { client, type Client } from '@xmpp/client';
import { xml, type Element } from '@xmpp/xml';
import { freePorts } from './ports.js';
import { tempDir } from './tmp.js';

export type XmppServerKind = 'prosody' | 'ejabberd';

export interface XmppServerOptions {
  /** The component's domain, e.g. `wa.localhost`. */
  componentDomain: string;
  /** The component secret (XEP-0114 handshake). */
  componentSecret: string;
  /** The virtual host users live on; default `localhost`. */
  host?: string;
  /** Enable the server's XEP-0363 upload service (Prosody http_file_share, ejabberd mod_http_upload). */
  httpFileShare?: boolean;
  /** The client (c2s) port; default a free loopback port. The demo asks for 5222 when it is free. */
  c2sPort?: number;
  /**
   * Prosody only: serve TLS with this certificate and key (PEM files): STARTTLS offered (not
   * required) on the c2s port, and direct TLS (XEP-0368) on a port of its own.
   */
  tls?: { certificate: string; key: string };
  /** Prosody only: XMPP over WebSocket (mod_websocket, RFC 7395) at `/xmpp-websocket` on the HTTP port. */
  websocket?: boolean;
}

export interface XmppServer {
  readonly kind: XmppServerKind;
  /** The virtual host (domain of user JIDs). */
  readonly host: string;
  readonly componentDomain: string;
  readonly c2sPort: number;
  /** The direct TLS (XEP-0368) client port, when `tls` was asked for. */
  readonly directTlsPort: number | undefined;
  readonly componentPort: number;
  /** The HTTP port of the upload service, when `httpFileShare` was asked for. */
  readonly httpPort: number | undefined;
  /** The JID of the XEP-0363 upload service, when `httpFileShare` was asked for. */
  readonly uploadService: string | undefined;
  /** The temporary directory holding config, data and logs. */
  readonly dir: string;
  /** The server process's id (also its process group's), while it runs. */
  readonly pid: number | undefined;
  /** `xmpp://127.0.0.1:<c2s port>`, for @xmpp/client's `service`. */
  readonly c2sService: string;
  /** Creates a user account `<user>@<host>`. */
  register(user: string, password: string): Promise<void>;
  /** Stops the server process but keeps its directory, ports and data, for `start()`. */
  shutdown(): Promise<void>;
  /** Starts the server again after `shutdown()`, on the same ports with the same data. */
  start(): Promise<void>;
  /** `shutdown()` then `start()`. */
  restart(): Promise<void>;
  /** Stops the server (the whole process group) and removes its directory. */
  stop(): Promise<void>;
  /** The server's output so far, for failure messages. */
  log(): string;
}

export class XmppServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XmppServerError';
  }
}

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export function startProsody(opts: XmppServerOptions): Promise<XmppServer> {
  return startServer('prosody', opts);
}

export function startEjabberd(opts: XmppServerOptions): Promise<XmppServer> {
  return startServer('ejabberd', opts);
}

export function startXmppServer(kind: XmppServerKind, opts: XmppServerOptions): Promise<XmppServer> {
  return startServer(kind, opts);
}

// ---------------------------------------------------------------------------------------------

interface Ports {
  c2s: number;
  directTls: number;
  component: number;
  http: number;
  dist: number;
}

interface Recipe {
  /** Writes the config files and returns how to spawn the server. */
  command: { file: string; args: string[]; env: NodeJS.ProcessEnv };
  /** Extra readiness condition beyond open ports (ejabberd opens ports before it is ready). */
  ready?: (log: string) => boolean;
  register: (user: string, password: string) => Promise<void>;
}

/**
 * Starts the server on free ports, again on others when one was taken between choosing it and the
 * server binding it. `ports.ts` chooses them below the kernel's ephemeral range, where no outgoing
 * connection takes them (seen once in a CI run before that: ejabberd's c2s `eaddrinuse`); the retry
 * stays for anything else on the machine that binds a fixed port.
 */
async function startServer(kind: XmppServerKind, opts: XmppServerOptions): Promise<XmppServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServerOnce(kind, opts);
    } catch (err) {
      const taken = err instanceof XmppServerError && /eaddrinuse|address already in use/i.test(err.message);
      if (!taken || opts.c2sPort !== undefined || attempt >= 3) throw err;
    }
  }
}

async function startServerOnce(kind: XmppServerKind, opts: XmppServerOptions): Promise<XmppServer> {
  const host = opts.host ?? 'localhost';
  const tmp = tempDir(`interop-bridge-${kind}-`);
  const ports = await freeServerPorts();
  if (opts.c2sPort !== undefined) ports.c2s = opts.c2sPort;
  const recipe =
    kind === 'prosody'
      ? prosodyRecipe(tmp.dir, host, ports, opts)
      : ejabberdRecipe(tmp.dir, host, ports, opts);
  const logFile = path.join(tmp.dir, 'server.log');
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const http = opts.httpFileShare === true || opts.websocket === true;
  const waitPorts = [
    ports.c2s,
    ports.component,
    ...(http ? [ports.http] : []),
    ...(opts.tls ? [ports.directTls] : []),
  ];

  let child: ChildProcess | undefined;

  const launch = async () => {
    // Readiness is read from this run's output only (a restart appends to the same log).
    const logStart = readLog().length;
    const fd = openSync(logFile, 'a');
    try {
      // detached: its own process group, so stop() can kill the server and every helper it forked.
      child = spawn(recipe.command.file, recipe.command.args, {
        cwd: tmp.dir,
        env: recipe.command.env,
        detached: true,
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const proc = child;
    let exited: string | undefined;
    proc.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${String(code)}`}`;
    });
    proc.once('error', (err) => {
      exited = `could not be spawned: ${err.message}`;
    });
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      if (exited !== undefined) {
        throw new XmppServerError(`${kind} ${exited} during start-up; its log:\n${readLog()}`);
      }
      if (Date.now() > deadline) {
        await kill(proc);
        throw new XmppServerError(
          `${kind} did not open ports ${waitPorts.join(', ')} within ${STARTUP_TIMEOUT_MS} ms; its log:\n${readLog()}`,
        );
      }
      const logReady = recipe.ready === undefined || recipe.ready(readLog().slice(logStart));
      if (logReady && (await allListening(waitPorts))) return;
      await delay(50);
    }
  };

  const stopChild = async () => {
    if (child !== undefined) await kill(child);
    child = undefined;
  };

  try {
    await launch();
  } catch (err) {
    await stopChild();
    tmp.cleanup();
    throw err;
  }

  return {
    kind,
    host,
    componentDomain: opts.componentDomain,
    c2sPort: ports.c2s,
    directTlsPort: opts.tls ? ports.directTls : undefined,
    componentPort: ports.component,
    httpPort: http ? ports.http : undefined,
    uploadService: opts.httpFileShare ? `upload.${host}` : undefined,
    dir: tmp.dir,
    get pid() {
      return child?.pid;
    },
    c2sService: `xmpp://127.0.0.1:${ports.c2s}`,
    register: recipe.register,
    shutdown: stopChild,
    async start() {
      if (child !== undefined) throw new XmppServerError(`${kind} is already running`);
      await launch();
    },
    async restart() {
      await stopChild();
      await launch();
    },
    async stop() {
      await stopChild();
      tmp.cleanup();
    },
    log: readLog,
  };
}

// --- Prosody ----------------------------------------------------------------------------------

function prosodyRecipe(dir: string, host: string, ports: Ports, opts: XmppServerOptions): Recipe {
  const prosody = requireBinary('prosody', 'prosody');
  const prosodyctl = requireBinary('prosodyctl', 'prosody');
  mkdirSync(path.join(dir, 'data'));
  mkdirSync(path.join(dir, 'certs'));
  const configFile = path.join(dir, 'prosody.cfg.lua');
  const lua = (s: string) => JSON.stringify(s); // a JSON string is a valid Lua string literal here
  const snippet = prosodySnippet(ports.component, opts);
  const privilege = prosodyModuleDir('privilege');
  const lines = [
    '-- Generated by test/support/xmpp-servers.ts',
    'run_as_root = true',
    'daemonize = false',
    `pidfile = ${lua(path.join(dir, 'prosody.pid'))}`,
    `data_path = ${lua(path.join(dir, 'data'))}`,
    `certificates = ${lua(path.join(dir, 'certs'))}`,
    'log = { { levels = { min = "info" }, to = "console" } }',
    // pep: the users' PEP service (XEP-0163), where the bridge writes XEP-0402 bookmarks; privilege:
    // XEP-0356 (prosody-modules), which lets the component do so (privileged_entities below).
    `modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "offline"; "pep"${privilege ? '; "privilege"' : ''}${opts.tls ? '; "tls"' : ''}${opts.websocket ? '; "websocket"' : ''} }`,
    ...(privilege ? [`plugin_paths = { ${lua(privilege)} }`] : []),
    'modules_disabled = { "s2s" }',
    'c2s_require_encryption = false',
    'allow_unencrypted_plain_auth = true',
    'authentication = "internal_hashed"',
    'storage = "internal"',
    'interfaces = { "127.0.0.1" }',
    `c2s_ports = { ${ports.c2s} }`,
    `c2s_direct_tls_ports = { ${opts.tls ? ports.directTls : ''} }`,
    ...(opts.tls ? [`ssl = { certificate = ${lua(opts.tls.certificate)}; key = ${lua(opts.tls.key)} }`] : []),
    // The page that uses it is served from another port (the demo's web server, which proxies it).
    ...(opts.websocket ? ['cross_domain_websocket = true'] : []),
    'legacy_ssl_ports = { }',
    's2s_ports = { }',
    '-- From config/prosody.cfg.lua.example (global part):',
    snippet.globals,
    `http_ports = { ${opts.httpFileShare || opts.websocket ? ports.http : ''} }`,
    'http_interfaces = { "127.0.0.1" }',
    'https_ports = { }',
    `http_external_url = ${lua(`http://127.0.0.1:${ports.http}/`)}`,
    // Requests arrive for Host 127.0.0.1, which names no Prosody host: route them to the upload
    // component (otherwise they go to the first VirtualHost and every PUT is a 404).
    ...(opts.httpFileShare ? [`http_default_host = ${lua(`upload.${host}`)}`] : []),
    '',
    `VirtualHost ${lua(host)}`,
    // XEP-0356: the component may publish into (and retract from) its users' PEP nodes, for the
    // XEP-0402 bookmarks of group rooms (adapters/xmpp/bookmarks.ts).
    ...(privilege
      ? [
          `  privileged_entities = { [${lua(opts.componentDomain)}] = { iq = { ["http://jabber.org/protocol/pubsub"] = "set" } } }`,
        ]
      : []),
    '',
    '-- From config/prosody.cfg.lua.example (component part):',
    snippet.component,
    // mod_privilege on the component too: its connection is what makes the server announce the
    // granted permissions to it.
    ...(privilege ? ['    modules_enabled = { "privilege" }'] : []),
  ];
  if (opts.httpFileShare) {
    lines.push(
      '',
      `Component ${lua(`upload.${host}`)} "http_file_share"`,
      '  http_file_share_size_limit = 16 * 1024 * 1024',
    );
  }
  writeConfig(configFile, lines.join('\n') + '\n');
  return {
    command: { file: prosody, args: ['--config', configFile, '-F'], env: { ...process.env } },
    register: (user, password) => run(prosodyctl, ['--config', configFile, 'register', user, host, password]),
  };
}

/** Where Prosody's community modules are (Debian's prosody-modules puts them beside Prosody's own). */
const PROSODY_MODULE_DIRS = ['/usr/lib/prosody/modules', '/usr/local/lib/prosody/modules'];

/**
 * The directory holding the community module `mod_<name>` (from prosody-modules, which
 * scripts/install-system-deps.sh installs), or undefined when it is not installed: then the config
 * leaves it out, and the tests that need it say so (xmpp-bookmarks.test.ts).
 */
export function prosodyModuleDir(name: string): string | undefined {
  return PROSODY_MODULE_DIRS.find((dir) => existsSync(path.join(dir, `mod_${name}`, `mod_${name}.lua`)));
}

// --- ejabberd ---------------------------------------------------------------------------------

function ejabberdRecipe(dir: string, host: string, ports: Ports, opts: XmppServerOptions): Recipe {
  requireBinary('ejabberdctl', 'ejabberd');
  const erl = requireBinary('erl', 'erlang-base');
  const erlLibs = '/usr/lib/x86_64-linux-gnu';
  if (!readdirSync(erlLibs).some((d) => d.startsWith('ejabberd-'))) {
    throw new XmppServerError(
      `ejabberd's Erlang application is not under ${erlLibs}: install ejabberd with apt-get`,
    );
  }
  const spool = path.join(dir, 'spool');
  const logs = path.join(dir, 'logs');
  const upload = path.join(dir, 'upload');
  for (const d of [spool, logs, upload]) mkdirSync(d);
  const configFile = path.join(dir, 'ejabberd.yml');
  const q = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
  const http = opts.httpFileShare
    ? [
        '  -',
        `    port: ${ports.http}`,
        '    ip: "127.0.0.1"',
        '    module: ejabberd_http',
        '    request_handlers:',
        '      /upload: mod_http_upload',
      ]
    : [];
  const upload_ = ejabberdUploadAccess(opts);
  const uploadModule = opts.httpFileShare
    ? [
        '  mod_http_upload:',
        `    host: ${q(`upload.${host}`)}`,
        `    put_url: ${q(`http://127.0.0.1:${ports.http}/upload`)}`,
        `    docroot: ${q(upload)}`,
        '    max_size: 16777216',
        `    access: ${upload_.ruleName}`,
      ]
    : [];
  const yml = [
    '# Generated by test/support/xmpp-servers.ts',
    `hosts: [${q(host)}]`,
    'loglevel: info',
    'certfiles: []',
    'listen:',
    '  -',
    `    port: ${ports.c2s}`,
    '    ip: "127.0.0.1"',
    '    module: ejabberd_c2s',
    '    starttls_required: false',
    '  # From config/ejabberd.yml.example:',
    `  - ${JSON.stringify(ejabberdListener(ports.component, opts))}`,
    ...http,
    'auth_method: internal',
    'auth_password_format: scram',
    's2s_access: none',
    'acl:',
    '  local:',
    '    user_regexp: ""',
    '  # From config/ejabberd.yml.example:',
    `  ${upload_.aclName}: ${JSON.stringify(upload_.acl)}`,
    'access_rules:',
    '  local:',
    '    allow: local',
    `  ${upload_.ruleName}: ${JSON.stringify(upload_.rule)}`,
    '  c2s:',
    '    allow: all',
    'modules:',
    '  mod_disco: {}',
    '  mod_ping: {}',
    '  mod_roster: {}',
    '  mod_offline: {}',
    ...uploadModule,
  ];
  writeConfig(configFile, yml.join('\n') + '\n');

  const id = randomBytes(6).toString('hex');
  const node = `ib${id}@localhost`;
  const cookie = randomBytes(16).toString('hex');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir, // erl looks for ~/.erlang.cookie; keep it away from the real home
    ERL_LIBS: erlLibs,
    EJABBERD_CONFIG_PATH: configFile,
    EJABBERD_LOG_PATH: path.join(logs, 'ejabberd.log'),
    ERL_CRASH_DUMP: path.join(logs, 'erl_crash.dump'),
  };
  // Distribution without epmd: the node listens on a fixed loopback port that every peer dials.
  const dist = [
    '-setcookie',
    cookie,
    '-start_epmd',
    'false',
    '-erl_epmd_port',
    String(ports.dist),
    '-kernel',
    'inet_dist_use_interface',
    '{127,0,0,1}',
  ];
  let ctlCount = 0;
  return {
    command: {
      file: erl,
      args: ['-sname', node, ...dist, '-noinput', '-mnesia', 'dir', q(spool), '-s', 'ejabberd'],
      env,
    },
    // The listeners open before ejabberd has finished starting; this line comes last.
    ready: (log) => log.includes(`is started in the node ${node}`),
    register: (user, password) =>
      run(
        erl,
        [
          '-sname',
          `ctl${id}x${ctlCount++}@localhost`,
          ...dist,
          '-dist_listen',
          'false',
          '-hidden',
          '-noinput',
          '-s',
          'ejabberd_ctl',
          '-extra',
          node,
          'register',
          user,
          host,
          password,
        ],
        env,
      ),
  };
}

// --- the operator snippets in config/, used as they are -----------------------------------------

// config/ from test/support/; from dist/test/support/ (the demo) dist/config/ or else the repository's.
const CONFIG_DIR =
  ['../../config/', '../../../config/']
    .map((rel) => fileURLToPath(new URL(rel, import.meta.url)))
    .find((dir) => existsSync(path.join(dir, 'prosody.cfg.lua.example'))) ??
  fileURLToPath(new URL('../../config/', import.meta.url));
const EXAMPLE_DOMAIN = 'wa.example.org';
const EXAMPLE_SECRET = 'REPLACE-WITH-A-LONG-RANDOM-SECRET';
const EXAMPLE_PORT = 5347;

/** config/prosody.cfg.lua.example with the test's domain, secret and port, split at `Component`. */
function prosodySnippet(port: number, opts: XmppServerOptions): { globals: string; component: string } {
  const text = readExample('prosody.cfg.lua.example')
    .replaceAll(`"${EXAMPLE_DOMAIN}"`, JSON.stringify(opts.componentDomain))
    .replaceAll(`"${EXAMPLE_SECRET}"`, JSON.stringify(opts.componentSecret))
    .replace(`component_ports = { ${EXAMPLE_PORT} }`, `component_ports = { ${port} }`);
  const at = text.search(/^Component /m);
  if (at < 0) throw new XmppServerError('config/prosody.cfg.lua.example has no Component line');
  return { globals: text.slice(0, at), component: text.slice(at) };
}

/** The ejabberd_service listener of config/ejabberd.yml.example with the test's values. */
function ejabberdListener(port: number, opts: XmppServerOptions): Record<string, unknown> {
  const doc: unknown = parseYaml(readExample('ejabberd.yml.example'));
  const listeners = (doc as { listen?: Record<string, unknown>[] } | null)?.listen ?? [];
  const service = listeners.find((l) => l.module === 'ejabberd_service');
  const hosts = service?.hosts as Record<string, { password?: string }> | undefined;
  if (!service || hosts?.[EXAMPLE_DOMAIN]?.password !== EXAMPLE_SECRET || service.port !== EXAMPLE_PORT) {
    throw new XmppServerError(
      `config/ejabberd.yml.example has no ejabberd_service listener on ${EXAMPLE_PORT} for ${EXAMPLE_DOMAIN}`,
    );
  }
  return { ...service, port, hosts: { [opts.componentDomain]: { password: opts.componentSecret } } };
}

/**
 * The ACL and access rule of config/ejabberd.yml.example that let the bridge's domain ask
 * mod_http_upload for slots, with the test's domain.
 */
function ejabberdUploadAccess(opts: XmppServerOptions): {
  aclName: string;
  acl: unknown;
  ruleName: string;
  rule: unknown;
} {
  const doc = parseYaml(readExample('ejabberd.yml.example')) as {
    acl?: Record<string, { server?: string }>;
    access_rules?: Record<string, unknown>;
    modules?: { mod_http_upload?: { access?: string } };
  } | null;
  const ruleName = doc?.modules?.mod_http_upload?.access;
  const aclEntry = Object.entries(doc?.acl ?? {}).find(([, v]) => v.server === EXAMPLE_DOMAIN);
  if (!ruleName || !doc?.access_rules?.[ruleName] || !aclEntry) {
    throw new XmppServerError(
      `config/ejabberd.yml.example has no upload access rule (modules.mod_http_upload.access) with an ACL for ${EXAMPLE_DOMAIN}`,
    );
  }
  return {
    aclName: aclEntry[0],
    acl: { server: opts.componentDomain },
    ruleName,
    rule: doc.access_rules[ruleName],
  };
}

function readExample(name: string): string {
  return readFileSync(path.join(CONFIG_DIR, name), 'utf8');
}

// --- helpers ----------------------------------------------------------------------------------

function writeConfig(file: string, contents: string): void {
  // 0600: the config holds the component secret.
  writeFileSync(file, contents, { mode: 0o600 });
}

function requireBinary(name: string, pkg: string): string {
  for (const dir of ['/usr/bin', '/usr/sbin', ...(process.env.PATH ?? '').split(':')]) {
    if (dir === '') continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  throw new XmppServerError(`${name} is not installed: install ${pkg} with apt-get (apt-get install ${pkg})`);
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new XmppServerError(
            `${path.basename(file)} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`,
          ),
        );
      } else {
        resolve();
      }
    });
  });
}

/** Sends SIGTERM to the process group, SIGKILL after a grace period, and waits for the exit. */
async function kill(child: ChildProcess): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  const exited =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalGroup(pid, 'SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => {
    const t = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
    t.unref();
  });
  if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
    signalGroup(pid, 'SIGKILL');
    await exited;
  }
  // Helpers the server forked (erl_child_setup, inet_gethost) go with the group.
  signalGroup(pid, 'SIGKILL');
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone
  }
}

async function freeServerPorts(): Promise<Ports> {
  const [c2s, component, http, dist, directTls] = (await freePorts(5)) as [number, number, number, number, number];
  return { c2s, component, http, dist, directTls };
}

function allListening(ports: number[]): Promise<boolean> {
  return Promise.all(ports.map(isListening)).then((r) => r.every(Boolean));
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A stanza for a failure message: long ones cut in the middle. */
function short(el: Element): string {
  const s = el.toString();
  return s.length <= 600 ? s : `${s.slice(0, 300)} …(${s.length - 600} characters)… ${s.slice(-300)}`;
}

// --- users --------------------------------------------------------------------------------------

export interface TestUser {
  readonly jid: string;
  readonly client: Client;
  /** Every message stanza received so far, in order. */
  readonly messages: Element[];
  /** Every stanza received so far (messages, presences, iq), in order. */
  readonly stanzas: Element[];
  /** Resolves with the first received stanza (already received ones count) matching `predicate`. */
  waitForStanza(predicate: (stanza: Element) => boolean, timeoutMs?: number): Promise<Element>;
  /** Sends an iq get/set and resolves with the answer (result or error). */
  iq(iq: Element, timeoutMs?: number): Promise<Element>;
  /** Uploads a file through the server's XEP-0363 service; resolves with its GET URL. */
  upload(service: string, bytes: Buffer, fileName: string, contentType: string): Promise<string>;
  /** Resolves with the received messages once `predicate` holds (checked on each arrival). */
  waitForMessages(predicate: (messages: Element[]) => boolean, timeoutMs?: number): Promise<Element[]>;
  stop(): Promise<void>;
}

/**
 * mod_privilege (prosody-modules 2023-02) tells every client at its initial presence that it has no
 * XEP-0356 privileges: a `<message from="<host>">` with an empty `<privilege/>`. No client shows it;
 * it is kept out of `messages` (still in `stanzas`).
 */
const isPrivilegeNotice = (el: Element): boolean =>
  el.getChild('privilege', 'urn:xmpp:privilege:2') !== undefined &&
  !String(el.attrs.from ?? '').includes('@');

/**
 * Logs `user` in with @xmpp/client (as Conversations would: SCRAM, resource binding), sends
 * initial presence, and records incoming messages. xmpp.js's automatic reconnect is off.
 */
export async function connectUser(server: XmppServer, user: string, password: string): Promise<TestUser> {
  const c = client({ service: server.c2sService, domain: server.host, username: user, password });
  c.reconnect.stop();
  // As in the component link: xmpp.js decodes TCP chunks one by one and would garble a multi-byte
  // character split between two of them; a string decoder on the socket keeps it whole.
  const raw = c as unknown as { socket: net.Socket | null; on(event: 'connect', listener: () => void): void };
  raw.on('connect', () => raw.socket?.setEncoding('utf8'));
  const messages: Element[] = [];
  const stanzas: Element[] = [];
  const waiters = new Set<() => void>();
  let nextIq = 1;
  c.on('error', () => undefined); // a failed start rejects start(); later errors end in offline
  c.on('stanza', (el) => {
    stanzas.push(el);
    if (el.name === 'message' && !isPrivilegeNotice(el)) messages.push(el);
    for (const w of [...waiters]) w();
  });
  const waitForStanza = (predicate: (stanza: Element) => boolean, timeoutMs = 10_000) =>
    new Promise<Element>((resolve, reject) => {
      const check = () => {
        const found = stanzas.find(predicate);
        if (!found) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(
          new Error(
            `${user} did not receive the expected stanza within ${timeoutMs} ms; got:\n` +
              stanzas.map(short).join('\n'),
          ),
        );
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const iq = async (el: Element, timeoutMs = 10_000) => {
    const id = `t${nextIq++}`;
    el.attrs.id = id;
    const answer = waitForStanza(
      (s) => s.name === 'iq' && s.attrs.id === id && (s.attrs.type === 'result' || s.attrs.type === 'error'),
      timeoutMs,
    );
    await c.send(el);
    return answer;
  };
  await c.start();
  // Clients fetch the roster before going online; servers send roster pushes and subscription
  // approvals only to resources that did (Prosody's "interested resources").
  await c.send(xml('iq', { type: 'get', id: 'roster-1' }, xml('query', { xmlns: 'jabber:iq:roster' })));
  // The server reflects the initial presence back once it has made the session available: until
  // then a message for the user goes to offline storage (seen on ejabberd under load), so wait.
  const self = c.jid?.toString();
  const online = waitForStanza(
    (s) => s.name === 'presence' && s.attrs.from === self && s.attrs.type === undefined,
  );
  await c.send(xml('presence', {}));
  await online;
  return {
    jid: `${user}@${server.host}`,
    client: c,
    messages,
    stanzas,
    waitForStanza,
    iq,
    async upload(service, bytes, fileName, contentType) {
      const answer = await iq(
        xml(
          'iq',
          { type: 'get', to: service },
          xml('request', {
            xmlns: 'urn:xmpp:http:upload:0',
            filename: fileName,
            size: String(bytes.length),
            'content-type': contentType,
          }),
        ),
      );
      const slot = answer.getChild('slot');
      const put = slot?.getChild('put');
      const get = slot?.getChild('get');
      if (!put?.attrs.url || !get?.attrs.url) throw new Error(`no upload slot: ${answer.toString()}`);
      const headers: Record<string, string> = { 'content-type': contentType };
      for (const h of put.getChildren('header')) headers[h.attrs.name ?? ''] = h.getText();
      const res = await fetch(put.attrs.url, { method: 'PUT', headers, body: bytes });
      if (res.status !== 200 && res.status !== 201) throw new Error(`upload failed: HTTP ${res.status}`);
      return get.attrs.url;
    },
    waitForMessages(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate(messages)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `${user} did not receive the expected messages within ${timeoutMs} ms; got:\n` +
                messages.map(short).join('\n'),
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      await c.stop().catch(() => undefined);
    },
  };
}
