/**
 * `npm run demo -- --web`: the demo in a browser. A small HTTP server on 127.0.0.1 serves
 * converse.js (the npm package's built files) and a page that starts it logged in as the demo user,
 * and passes `/xmpp-websocket` through to Prosody's mod_websocket (RFC 7395), so the page and its
 * XMPP stream share one origin. The page holds the demo user's generated password: it is served on
 * loopback only, for the demo's own throwaway account.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';

export const WEBSOCKET_PATH = '/xmpp-websocket';

export interface DemoWeb {
  /** The page's address, http://127.0.0.1:<port>/. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface DemoWebOptions {
  /** Prosody's HTTP port (mod_websocket) and the virtual host the stream is for. */
  prosodyHttpPort: number;
  xmppHost: string;
  jid: string;
  password: string;
  /** The port to ask for when free; any free port otherwise. */
  preferredPort?: number;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
  '.map': 'application/json',
};

/** converse.js's `dist/` directory, from the installed npm package. */
export function converseDist(): string {
  let file: string;
  try {
    file = createRequire(import.meta.url).resolve('converse.js/dist/converse.min.js');
  } catch {
    throw new Error('converse.js is not installed: run npm ci (or npm install) in the checkout');
  }
  return path.dirname(file);
}

function page(o: DemoWebOptions): string {
  const settings = {
    assets_path: '/converse/',
    websocket_url: `ws://127.0.0.1:PORT${WEBSOCKET_PATH}`,
    discover_connection_methods: false,
    authentication: 'login',
    auto_login: true,
    jid: o.jid,
    password: o.password,
    view_mode: 'fullscreen',
    show_images_inline: true,
    allow_non_roster_messaging: true,
    // The demo group's invitation (XEP-0249) is accepted by itself, under the nick "alice": the
    // room is listed and joined.
    auto_join_on_invite: true,
    muc_nickname_from_jid: true,
    play_sounds: false,
    // The bridge is the end of XMPP here: no OMEMO (it would need the contact's devices).
    omemo_default: false,
    blacklisted_plugins: ['converse-omemo'],
    show_client_info: false,
    muc_domain: undefined,
    i18n: 'en',
    loglevel: 'warn',
  };
  const json = JSON.stringify(settings).replaceAll('<', '\\u003c');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>interop-bridge demo: ${o.jid}</title>
<link rel="stylesheet" href="/converse/converse.min.css">
</head>
<body class="converse-fullscreen">
<noscript>The demo's chat is converse.js, which needs JavaScript.</noscript>
<script type="module">
import converse from '/converse/converse.min.js';
const settings = ${json};
settings.websocket_url = settings.websocket_url.replace('PORT', location.port);
converse.initialize(settings);
</script>
</body>
</html>
`;
}

export async function startWeb(o: DemoWebOptions): Promise<DemoWeb> {
  const dist = converseDist();
  const html = page(o);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
        .end(html);
      return;
    }
    if (url.pathname.startsWith('/converse/')) {
      const rel = path.normalize(decodeURIComponent(url.pathname.slice('/converse/'.length)));
      const file = path.join(dist, rel);
      if (!rel.startsWith('..') && !path.isAbsolute(rel) && existsSync(file) && statSync(file).isFile()) {
        res.writeHead(200, {
          'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
          'content-length': statSync(file).size,
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  // The WebSocket upgrade goes to Prosody as it came, with the Host Prosody serves the stream on.
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname !== WEBSOCKET_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: o.prosodyHttpPort });
    upstream.once('connect', () => {
      const lines = [`${req.method ?? 'GET'} ${req.url ?? WEBSOCKET_PATH} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i] ?? '';
        lines.push(`${name}: ${name.toLowerCase() === 'host' ? o.xmppHost : (req.rawHeaders[i + 1] ?? '')}`);
      }
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    upstream.once('error', close);
    upstream.once('close', close);
    socket.once('error', close);
    socket.once('close', close);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await listen(o.preferredPort ?? 0);
  } catch {
    await listen(0);
  }
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
