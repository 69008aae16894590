/**
 * The test harness itself: real Prosody and ejabberd start on loopback with a generated config,
 * users can be created and log in, and stop() leaves nothing listening.
 */
import net from 'node:net';
import {
  connectUser,
  startXmppServer,
  type XmppServer,
  type XmppServerKind,
} from '../support/xmpp-servers.js';

const KINDS: XmppServerKind[] = ['prosody', 'ejabberd'];

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe.each(KINDS)('%s test server', (kind) => {
  let server: XmppServer | undefined;

  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  test('a registered user logs in with @xmpp/client and gets a full JID on the virtual host', async () => {
    server = await startXmppServer(kind, { componentDomain: 'wa.localhost', componentSecret: 's3cret' });
    await server.register('alice', 'alice-pw');

    const alice = await connectUser(server, 'alice', 'alice-pw');
    const jid = alice.client.jid?.toString() ?? '';
    await alice.stop();

    expect(jid.startsWith('alice@localhost/')).toBe(true);
  });

  test('a wrong password is refused', async () => {
    server = await startXmppServer(kind, { componentDomain: 'wa.localhost', componentSecret: 's3cret' });
    await server.register('bob', 'right');

    await expect(connectUser(server, 'bob', 'wrong')).rejects.toThrow(/not-authorized/);
  });

  test('stop() leaves none of its ports listening', async () => {
    server = await startXmppServer(kind, {
      componentDomain: 'wa.example.test',
      componentSecret: 's3cret',
      host: 'example.test',
      httpFileShare: true,
    });
    const ports = [server.c2sPort, server.componentPort, server.httpPort!];
    expect(await Promise.all(ports.map(refused))).toEqual([false, false, false]);

    await server.stop();
    server = undefined;

    expect(await Promise.all(ports.map(refused))).toEqual([true, true, true]);
  });

  test('the upload service is announced in disco when asked for', async () => {
    server = await startXmppServer(kind, {
      componentDomain: 'wa.localhost',
      componentSecret: 's3cret',
      httpFileShare: true,
    });
    await server.register('carol', 'pw');
    const carol = await connectUser(server, 'carol', 'pw');
    const { xml } = await import('@xmpp/xml');
    const replies: string[] = [];
    carol.client.on('stanza', (el) => {
      if (el.name === 'iq' && el.attrs.id === 'disco1') replies.push(el.toString());
    });
    await carol.client.send(
      xml(
        'iq',
        { type: 'get', id: 'disco1', to: server.uploadService },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }),
      ),
    );
    await waitFor(() => replies.length > 0);
    await carol.stop();

    expect(replies[0]).toContain('urn:xmpp:http:upload:0');
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
