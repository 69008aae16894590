/**
 * Crash safety of the bridge core, end to end: the bridge runs in a child process
 * (test/support/bridge-child.ts, with a durable adapter) against the emulator in this process,
 * whose native users write to and read from the bridged users, 1:1 and in a group per user. The
 * bridge is killed with SIGKILL at random moments and started again, or its connections are dropped
 * at random; afterwards every message has arrived exactly once and in order per conversation (per
 * sender in a group), on both sides.
 *
 * The child runs the built core from dist/ (`npm test` builds first); its own entry point is
 * compiled here with SWC into dist/test/support/, so its relative imports land on dist/src.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { transformFile } from '@swc/core';
import { accountIdFor } from '../../src/bridge/account.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import type { ChildConfig } from '../support/bridge-child.js';
import { startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD_SOURCE = path.join(ROOT, 'test/support/bridge-child.ts');
const CHILD_BUILT = path.join(ROOT, 'dist/test/support/bridge-child.js');

const PROVIDER = 'testbridge';
/** 4 local users with 5 native contacts each: 20 conversations on 4 puppet connections. */
const USERS = 4;
const CONTACTS = 5;
const PER_CONVERSATION = 50;
const CONVERSATIONS = USERS * CONTACTS;
/** Each user is also in a group with their first two contacts: this many texts from each member. */
const PER_GROUP = 20;
const GROUP_MEMBERS = 2;
/** Both directions, 1:1 and groups (the user's texts reach each member). */
const TOTAL_MOVES = 2 * CONVERSATIONS * PER_CONVERSATION + USERS * GROUP_MEMBERS * 2 * PER_GROUP;
const TOTAL = CONVERSATIONS * PER_CONVERSATION;
/** Pause between two messages of one conversation, each side (ms): traffic lasts a few seconds. */
const PACE = { min: 20, max: 80 };
/** Everything must be through within this long after the last disturbance. */
const SETTLE_MS = 90_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = (min: number, max: number) => min + Math.random() * (max - min);

/**
 * The built core the child imports: refuses to run without it; warns when a source file is newer
 * than its build (then the child would run older code than the source shows).
 */
function checkBuild(): void {
  const stale: string[] = [];
  for (const dir of ['src/bridge', 'src/signal', 'src/store', 'src/gateway']) {
    for (const name of readdirTs(path.join(ROOT, dir))) {
      const built = path.join(ROOT, 'dist', dir, name.replace(/\.ts$/, '.js'));
      if (!existsSync(built)) {
        throw new Error(
          `${built} is missing: the crash test runs the built bridge; run "npm run build" first`,
        );
      }
      if (statSync(built).mtimeMs < statSync(path.join(ROOT, dir, name)).mtimeMs)
        stale.push(`${dir}/${name}`);
    }
  }
  if (stale.length > 0) {
    process.stderr.write(
      `[bridge-crash] dist/ is older than ${stale.join(', ')}: the child runs the last build; run "npm run build" (npm test does)\n`,
    );
  }
}

function readdirTs(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.ts') && !n.endsWith('.d.ts'));
}

async function compileChild(): Promise<void> {
  const out = await transformFile(CHILD_SOURCE, {
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
  });
  mkdirSync(path.dirname(CHILD_BUILT), { recursive: true });
  writeFileSync(CHILD_BUILT, out.code);
}

/** One run of the bridge process. */
class BridgeProcess {
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  readonly startedAt = Date.now();
  stderr = '';
  alive = true;
  isReady = false;

  constructor(configFile: string) {
    this.child = spawn(process.execPath, [CHILD_BUILT, configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        this.alive = false;
        resolve(code);
      }),
    );
    this.ready = new Promise<void>((resolve, reject) => {
      let buffered = '';
      this.child.stdout?.on('data', (d: Buffer) => {
        buffered += d.toString();
        if (buffered.includes('"event":"ready"')) {
          this.isReady = true;
          resolve();
        }
      });
      void this.exited.then((code) =>
        reject(new Error(`the bridge process exited (${code}) before it was ready: ${this.stderr}`)),
      );
    });
    this.ready.catch(() => undefined);
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Graceful stop (SIGTERM), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

interface Conversation {
  user: number;
  contact: number;
  localUser: string;
  puppetJid: string;
  native: NativeUser;
  sent: number;
  /** For the first GROUP_MEMBERS contacts: the user's group, once the bridge made it. */
  group?: string;
  groupSent: number;
}

describe('bridge core crash safety (bridge in a child process, emulator in this one)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let signingKey: ProviderPrivateJwk;
  let conversations: Conversation[] = [];
  let bridgeProcess: BridgeProcess | undefined;
  let configFile: string;

  beforeAll(async () => {
    checkBuild();
    await compileChild();
  });

  beforeEach(async () => {
    tmp = tempDir('interop-crash-');
    signingKey = await generateProviderKey('EdDSA');
    ({ running, root } = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey } }));

    conversations = [];
    const users: ChildConfig['users'] = [];
    for (let u = 0; u < USERS; u++) {
      const localUser = `@user${u}:example.org`;
      const puppetJid = accountJidOf(accountIdFor('matrix', localUser), PROVIDER);
      const contacts: string[] = [];
      for (let c = 0; c < CONTACTS; c++) {
        const phone = `+49151000${String(u * CONTACTS + c).padStart(4, '0')}`;
        const native = await NativeUser.connect({ emulator: running.gateway, phone, rootPublicKey: root });
        contacts.push(native.jid);
        conversations.push({ user: u, contact: c, localUser, puppetJid, native, sent: 0, groupSent: 0 });
      }
      users.push({
        localUser,
        contacts,
        group: { subject: `group ${u}`, members: contacts.slice(0, GROUP_MEMBERS) },
      });
    }
    const config: ChildConfig = {
      storeFile: tmp.file('bridge.db'),
      adapterFile: tmp.file('adapter.db'),
      logFile: tmp.file('bridge.log'),
      gateway: {
        host: running.gateway.host,
        port: running.gateway.port,
        rootPublicKey: Buffer.from(root).toString('base64'),
        gatewayId: 'emulator.interop',
        providerId: PROVIDER,
        signingKey,
      },
      users,
      perConversation: PER_CONVERSATION,
      perGroup: PER_GROUP,
      pace: PACE,
    };
    configFile = tmp.file('child.json', JSON.stringify(config));
  });

  afterEach(async () => {
    await bridgeProcess?.kill();
    bridgeProcess = undefined;
    await Promise.all(conversations.map((c) => c.native.close()));
    await running?.stop();
    // BRIDGE_CRASH_KEEP=1 keeps the databases and the bridge's log for a look after a failure.
    if (process.env.BRIDGE_CRASH_KEEP) process.stderr.write(`[bridge-crash] kept ${tmp.dir}\n`);
    else tmp?.cleanup();
  });

  const startBridge = (): BridgeProcess => (bridgeProcess = new BridgeProcess(configFile));

  /** Once the first run is ready, each user's group (the child made it): its members learn its JID. */
  const learnGroups = () => {
    const db = new Database(tmp.file('adapter.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT local_user, group_jid FROM groups').all() as {
        local_user: string;
        group_jid: string;
      }[];
      const groups = new Map(rows.map((r) => [r.local_user, r.group_jid]));
      for (const c of conversations) if (c.contact < GROUP_MEMBERS) c.group = groups.get(c.localUser);
      expect(groups.size).toBe(USERS);
    } finally {
      db.close();
    }
  };

  /** Each group member sends its texts into the user's group, one after the other. */
  const membersSend = () =>
    Promise.all(
      conversations
        .filter((c) => c.group !== undefined)
        .map(async (c) => {
          for (let i = 0; i < PER_GROUP; i++) {
            await c.native.send(c.group!, { kind: 'text', text: `c${c.contact}u${c.user}g #${i}` });
            c.groupSent++;
            await sleep(between(PACE.min, PACE.max));
          }
        }),
    );

  const receivedInGroup = (c: Conversation) =>
    c.group === undefined
      ? []
      : c.native.received.filter((m) => m.group === c.group && m.from === c.puppetJid);
  const inGroupRows = (rows: Map<string, { remoteId: string; text: string }[]>, c: Conversation) =>
    (c.group === undefined ? [] : (rows.get(c.group) ?? [])).filter((r) =>
      r.text.startsWith(`c${c.contact}u${c.user}g #`),
    );

  /** Each native user sends its messages to its bridged contact, one after the other. */
  const nativesSend = () =>
    Promise.all(
      conversations.map(async (c) => {
        for (let i = 0; i < PER_CONVERSATION; i++) {
          await c.native.sendText(c.puppetJid, `c${c.contact}u${c.user} #${i}`, { devices: [0] });
          c.sent++;
          await sleep(between(PACE.min, PACE.max));
        }
      }),
    );

  const receivedByNative = (c: Conversation) =>
    c.native.received.filter((m) => m.from === c.puppetJid && m.group === undefined);

  /** Rows the child's adapter stored, per native contact, in arrival order. */
  const adapterRows = (): Map<string, { remoteId: string; text: string }[]> => {
    const db = new Database(tmp.file('adapter.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT remote, remote_id, text FROM delivered ORDER BY seq').all() as {
        remote: string;
        remote_id: string;
        text: string;
      }[];
      const by = new Map<string, { remoteId: string; text: string }[]>();
      for (const r of rows) {
        const list = by.get(r.remote) ?? [];
        list.push({ remoteId: r.remote_id, text: r.text });
        by.set(r.remote, list);
      }
      return by;
    } finally {
      db.close();
    }
  };

  const adapterCounters = (): Record<string, number> => {
    const db = new Database(tmp.file('adapter.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT name, n FROM counters').all() as { name: string; n: number }[];
      return Object.fromEntries(rows.map((r) => [r.name, r.n]));
    } finally {
      db.close();
    }
  };

  /** Progress of both directions, 0..1: what natives sent plus what they received. */
  const progress = () =>
    conversations.reduce(
      (n, c) => n + c.sent + receivedByNative(c).length + c.groupSent + receivedInGroup(c).length,
      0,
    ) / TOTAL_MOVES;

  const isThrough = (): boolean => {
    if (!conversations.every((c) => receivedByNative(c).length >= PER_CONVERSATION)) return false;
    if (!existsSync(tmp.file('adapter.db'))) return false;
    const rows = adapterRows();
    return conversations.every(
      (c) =>
        (rows.get(c.native.jid)?.length ?? 0) >= PER_CONVERSATION &&
        (c.group === undefined ||
          (receivedInGroup(c).length >= PER_GROUP && inGroupRows(rows, c).length >= PER_GROUP)),
    );
  };

  const waitUntil = async (check: () => boolean, timeoutMs: number, what: () => string): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
      await sleep(200);
    }
  };

  const summary = (): string => {
    const rows = existsSync(tmp.file('adapter.db')) ? adapterRows() : new Map();
    const lines = conversations.map(
      (c) =>
        `u${c.user}c${c.contact}: native sent ${c.sent}, native received ${receivedByNative(c).length}, adapter has ${rows.get(c.native.jid)?.length ?? 0}` +
        (c.group
          ? `; group: sent ${c.groupSent}, received ${receivedInGroup(c).length}, adapter has ${inGroupRows(rows, c).length}`
          : ''),
    );
    let log = '';
    try {
      log = readFileSync(tmp.file('bridge.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"level":40') || l.includes('"level":50'))
        .slice(-15)
        .join('\n');
    } catch {
      // no log yet
    }
    return `everything to be through:\n${lines.join('\n')}\nlast warnings of the bridge:\n${log}\n${bridgeProcess?.stderr ?? ''}`;
  };

  /** Exactly once and in order per conversation, at the natives and at the adapter. */
  const expectExactlyOnceInOrder = () => {
    const rows = adapterRows();
    for (const c of conversations) {
      const got = receivedByNative(c);
      expect(new Set(got.map((m) => m.id)).size).toBe(got.length);
      expect(got.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual(
        Array.from({ length: PER_CONVERSATION }, (_, i) => `u${c.user}c${c.contact} #${i}`),
      );
      const incoming = rows.get(c.native.jid) ?? [];
      expect(new Set(incoming.map((r) => r.remoteId)).size).toBe(incoming.length);
      expect(incoming.map((r) => r.text)).toEqual(
        Array.from({ length: PER_CONVERSATION }, (_, i) => `c${c.contact}u${c.user} #${i}`),
      );
      if (c.group === undefined) continue;
      // In the group: the user's texts reach each member once, in order; each member's reach the user.
      const fromUser = receivedInGroup(c);
      expect(new Set(fromUser.map((m) => m.id)).size).toBe(fromUser.length);
      expect(fromUser.map((m) => (m.content.kind === 'text' ? m.content.text : ''))).toEqual(
        Array.from({ length: PER_GROUP }, (_, i) => `u${c.user}c${CONTACTS} #${i}`),
      );
      const fromMember = inGroupRows(rows, c);
      expect(new Set(fromMember.map((r) => r.remoteId)).size).toBe(fromMember.length);
      expect(fromMember.map((r) => r.text)).toEqual(
        Array.from({ length: PER_GROUP }, (_, i) => `c${c.contact}u${c.user}g #${i}`),
      );
    }
    const bridge = new Database(tmp.file('bridge.db'), { readonly: true, fileMustExist: true });
    try {
      const failed = bridge.prepare("SELECT id, error FROM outbox WHERE state = 'failed'").all();
      expect(failed).toEqual([]);
      return bridge
        .prepare(
          "SELECT coalesce(sum(attempts - 1), 0) AS n FROM outbox WHERE kind = 'message' AND attempts > 1",
        )
        .get() as { n: number };
    } finally {
      bridge.close();
    }
  };

  it('delivers every message exactly once and in order per conversation while the bridge is SIGKILLed three times', async () => {
    const started = Date.now();
    await startBridge().ready;
    learnGroups();
    const sending = Promise.all([nativesSend(), membersSend()]);
    // Three random moments while the traffic flows, as points of its progress (plus a random lag):
    // a kill may land mid-send, mid-receive, or while the previous restart is still recovering.
    const moments = [between(0.1, 0.35), between(0.35, 0.6), between(0.6, 0.85)];
    const killedWhile: string[] = [];
    for (const [k, moment] of moments.entries()) {
      const run = bridgeProcess as BridgeProcess;
      await waitUntil(
        () => progress() >= moment,
        SETTLE_MS,
        () => `progress ${moment} (kill ${k + 1})`,
      );
      // The natives go on sending while the bridge is down, so a restarted bridge may already be
      // past the next moment: it then runs a random while (recovery, or still starting) first.
      await sleep(Math.max(0, run.startedAt + between(0, 1500) - Date.now()) + between(0, 250));
      killedWhile.push(run.isReady ? 'running' : 'starting');
      await run.kill();
      startBridge();
    }
    await sending;
    await waitUntil(isThrough, SETTLE_MS, summary);
    await bridgeProcess?.stop();
    const resends = expectExactlyOnceInOrder();
    const counters = adapterCounters();
    process.stdout.write(
      `[bridge-crash] SIGKILL x3 (while ${killedWhile.join(', ')}): ${TOTAL} each way 1:1 and ${USERS * GROUP_MEMBERS * PER_GROUP} each way in groups in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `adapter redeliveries absorbed: ${counters.redelivered ?? 0}; resubmissions absorbed: ${counters.resubmitted ?? 0}; ` +
        `outgoing resends (gateway dedupe): ${resends.n}\n`,
    );
  }, 170_000);

  it('delivers every message exactly once and in order per conversation while the emulator drops connections at random', async () => {
    const started = Date.now();
    await startBridge().ready;
    learnGroups();
    const sending = Promise.all([nativesSend(), membersSend()]);
    const puppets = [...new Set(conversations.map((c) => c.puppetJid))];
    let drops = 0;
    let done = false;
    // Until everything is through: every 100-400 ms one puppet's connection is closed by the
    // gateway (sometimes after a short delay was put on what it receives, so stanzas are in the
    // air when it closes).
    const faults = (async () => {
      while (!done) {
        await sleep(between(100, 400));
        const jid = puppets[Math.floor(Math.random() * puppets.length)] as string;
        const f = running.gateway.faults;
        f.delay(jid, Math.random() < 0.5 ? Math.floor(between(1, 20)) : 0);
        drops += f.disconnect(jid);
      }
    })();
    try {
      await sending;
      await waitUntil(isThrough, SETTLE_MS, summary);
    } finally {
      done = true;
      await faults;
    }
    await bridgeProcess?.stop();
    const resends = expectExactlyOnceInOrder();
    const counters = adapterCounters();
    expect(drops).toBeGreaterThan(0);
    process.stdout.write(
      `[bridge-crash] ${drops} dropped connections: ${TOTAL} each way 1:1 and ${USERS * GROUP_MEMBERS * PER_GROUP} each way in groups in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `adapter redeliveries absorbed: ${counters.redelivered ?? 0}; outgoing resends (gateway dedupe): ${resends.n}\n`,
    );
  }, 170_000);
});
