/**
 * The XEP-0114 component link against real Prosody and ejabberd: handshake, typed failures,
 * messages both ways, and the delivery policy across a server restart and a cut connection.
 */
import net from 'node:net';
import { xml, type Element } from '@xmpp/xml';
import { ComponentLink, type ComponentLinkOptions } from '../../adapters/xmpp/component.js';
import {
  ComponentSecretRefusedError,
  InvalidStanzaError,
  XmppServerUnreachableError,
} from '../../adapters/xmpp/errors.js';
import {
  connectUser,
  startXmppServer,
  type TestUser,
  type XmppServer,
  type XmppServerKind,
} from '../support/xmpp-servers.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];
const DOMAIN = 'wa.localhost';
const SECRET = 'component-s3cret';

describe.each(KINDS)('component link on %s', (kind) => {
  let server: XmppServer;
  const links: ComponentLink[] = [];
  const users: TestUser[] = [];
  const proxies: CuttableProxy[] = [];

  beforeAll(async () => {
    server = await startXmppServer(kind, { componentDomain: DOMAIN, componentSecret: SECRET });
    await server.register('alice', 'alice-pw');
  });

  afterAll(async () => {
    await server.stop();
  });

  afterEach(async () => {
    for (const u of users.splice(0)) await u.stop();
    for (const l of links.splice(0)) await l.stop();
    for (const p of proxies.splice(0)) await p.close();
  });

  function link(overrides: Partial<ComponentLinkOptions> = {}): ComponentLink {
    const l = new ComponentLink({
      host: '127.0.0.1',
      port: server.componentPort,
      domain: DOMAIN,
      secret: SECRET,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
      ...overrides,
    });
    links.push(l);
    return l;
  }

  async function alice(): Promise<TestUser> {
    const u = await connectUser(server, 'alice', 'alice-pw');
    users.push(u);
    return u;
  }

  function chat(to: string, body: string, from = `+4915100000001@${DOMAIN}`): Element {
    return xml('message', { type: 'chat', to, from }, xml('body', {}, body));
  }

  const bodies = (messages: Element[]) => messages.map((m) => m.getChild('body')?.getText() ?? '');

  test('connects with the right secret', async () => {
    const l = link();
    await l.start();

    expect(l.status).toBe('online');
  });

  test('a wrong secret is refused with a typed error naming the domain and the config key', async () => {
    const l = link({ secret: 'not-the-secret' });

    const failure = l.start();

    await expect(failure).rejects.toBeInstanceOf(ComponentSecretRefusedError);
    await expect(failure).rejects.toMatchObject({
      code: 'xmpp_secret_refused',
      message: expect.stringContaining(
        `the XMPP server refused the component secret for ${DOMAIN}: check xmpp.secret and the server's component config`,
      ),
    });
    expect(l.status).toBe('offline');
  });

  test('a port with nothing listening is reported as an unreachable server', async () => {
    const port = await closedPort();
    const l = link({ port });

    await expect(l.start()).rejects.toBeInstanceOf(XmppServerUnreachableError);
    await expect(link({ port }).start()).rejects.toMatchObject({ code: 'xmpp_server_unreachable' });
  });

  test('a stanza outside the component domain is refused before it reaches the server', async () => {
    const l = link();

    expect(() => l.send(chat('alice@localhost', 'hi', 'someone@elsewhere.example'))).toThrow(
      InvalidStanzaError,
    );
  });

  test('stop() rejects the stanzas not yet confirmed, so the caller keeps them for a retry', async () => {
    const l = link();
    const queued = l.send(chat('alice@localhost', 'never sent'));

    await l.stop();

    await expect(queued).rejects.toMatchObject({ code: 'xmpp_component_stopped' });
  });

  test("a user's message to a contact JID reaches the component", async () => {
    const l = link();
    const received: Element[] = [];
    l.on('stanza', (el) => received.push(el));
    await l.start();
    const a = await alice();

    await a.client.send(
      xml(
        'message',
        { type: 'chat', to: `+4915112345678@${DOMAIN}`, id: 'u1' },
        xml('body', {}, 'hello gateway'),
      ),
    );
    await waitFor(() => received.some((el) => el.name === 'message'));

    const msg = received.find((el) => el.name === 'message')!;
    expect(msg.attrs.to).toBe(`+4915112345678@${DOMAIN}`);
    expect(msg.attrs.from?.startsWith('alice@localhost/')).toBe(true);
    expect(msg.getChild('body')?.getText()).toBe('hello gateway');
  });

  test("the component's message reaches the user, from the contact JID", async () => {
    const l = link();
    await l.start();
    const a = await alice();

    await l.send(chat('alice@localhost', 'hello from WhatsApp'));
    const [msg] = await a.waitForMessages((m) => m.length >= 1);

    expect(msg!.attrs.from).toBe(`+4915100000001@${DOMAIN}`);
    expect(bodies([msg!])).toEqual(['hello from WhatsApp']);
  });

  test('stanzas whose confirmation may wait are written at once and confirmed by the next ping other writes need', async () => {
    const l = link();
    await l.start();
    const a = await alice();
    const confirmed: string[] = [];
    const ticks = [1, 2, 3].map((i) =>
      l
        .send(chat('alice@localhost', `tick ${i}`), { confirmWithinMs: 60_000 })
        .then(() => confirmed.push(`tick ${i}`)),
    );
    // Written at once: the user has them while their confirmation still waits.
    await a.waitForMessages((m) => m.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a ping's round trip, many times over
    expect(confirmed).toEqual([]);
    // A write that needs its confirmation now sends the ping, which confirms the waiting ones too.
    await l.send(chat('alice@localhost', 'now')).then(() => confirmed.push('now'));
    await Promise.all(ticks);
    expect(confirmed).toEqual(['tick 1', 'tick 2', 'tick 3', 'now']);
  });

  test('stanzas queued while the server restarts arrive after the reconnect, in order, each once', async () => {
    const l = link();
    await l.start();
    const wentOffline = once(l, 'offline');
    await server.shutdown();
    await wentOffline;

    const sent = Array.from({ length: 10 }, (_, i) => l.send(chat('alice@localhost', `queued ${i}`)));
    expect(l.pending).toBe(10);
    await server.start();
    await Promise.all(sent); // confirmed by the server after the reconnect
    // alice was offline: the server's offline storage hands them over when she logs in.
    const a = await alice();
    await l.send(chat('alice@localhost', 'end'));
    await a.waitForMessages((m) => bodies(m).includes('end'));

    // ejabberd hands offline messages over asynchronously, so the live 'end' may overtake them.
    const got = bodies(a.messages);
    expect(got.filter((b) => b !== 'end')).toEqual(Array.from({ length: 10 }, (_, i) => `queued ${i}`));
    expect(got.filter((b) => b === 'end')).toHaveLength(1);
  });

  test('a connection cut mid-stream loses nothing: after id dedupe every stanza arrives once, in order', async () => {
    const proxy = await cuttableProxy(server.componentPort);
    proxies.push(proxy);
    const l = link({ port: proxy.port });
    await l.start();
    const a = await alice();
    const n = 300;

    const sent = Array.from({ length: n }, (_, i) => l.send(chat('alice@localhost', `m${i}`)));
    // Cut once alice has some: by then the server has taken stanzas not yet confirmed by a ping.
    await a.waitForMessages((m) => m.length >= 20);
    proxy.cut();
    await Promise.all(sent);
    await a.waitForMessages((m) => dedupe(m).length >= n);

    // A resend after the cut reuses the id, so a receiver's dedupe removes any duplicate.
    expect(bodies(dedupe(a.messages))).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(proxy.connections).toBeGreaterThanOrEqual(2);
  });

  test('a connection that stops answering is dropped by the ping timeout, and what was sent on it arrives', async () => {
    const proxy = await cuttableProxy(server.componentPort);
    proxies.push(proxy);
    const l = link({ port: proxy.port, pingTimeoutMs: 300 });
    await l.start();
    const a = await alice();
    const dropped = once(l, 'offline');

    proxy.freeze(); // TCP stays up; nothing gets through any more
    const sent = l.send(chat('alice@localhost', 'through the silence'));
    await dropped;
    // The server would notice the dead peer in time; until then it answers <conflict/> to the
    // reconnect, and the link retries.
    proxy.cut();
    await sent;
    await a.waitForMessages((m) => bodies(m).includes('through the silence'));

    expect(bodies(dedupe(a.messages))).toEqual(['through the silence']);
  });
});

// --- helpers ------------------------------------------------------------------------------------

/** Keeps the first message of each id, as XMPP clients do. */
function dedupe(messages: Element[]): Element[] {
  const seen = new Set<string>();
  return messages.filter((m) => {
    const id = m.attrs.id ?? '';
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function once(l: ComponentLink, event: 'offline' | 'online'): Promise<void> {
  return new Promise((resolve) => l.once(event, () => resolve()));
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

interface CuttableProxy {
  port: number;
  /** How many connections the proxy has accepted. */
  connections: number;
  /** Destroys every open connection on both sides, as a network failure would. */
  cut(): void;
  /** Stops relaying on the open connections without closing them, as a dead link would. */
  freeze(): void;
  close(): Promise<void>;
}

/** A TCP relay to the server's component port that a test can cut. */
async function cuttableProxy(targetPort: number): Promise<CuttableProxy> {
  const open = new Set<net.Socket>();
  const pairs: [net.Socket, net.Socket][] = [];
  let connections = 0;
  const srv = net.createServer((inbound) => {
    connections++;
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [inbound, outbound]) {
      open.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        open.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    pairs.push([inbound, outbound]);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    cut() {
      for (const s of open) s.destroy();
    },
    freeze() {
      for (const [inbound, outbound] of pairs.splice(0)) {
        inbound.unpipe(outbound);
        outbound.unpipe(inbound);
        inbound.pause();
        outbound.pause();
      }
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}
