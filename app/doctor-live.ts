/**
 * The doctor's network checks: each one talks to a real peer the way the bridge would, changes
 * nothing there, and turns the failure into a line that says what to fix.
 *
 * - gateway: dials, runs the Noise handshake (checking the certificate chain against
 *   `gateway.root_key`), presents a freshly minted provider token for a throwaway account with the
 *   enlistment connect reason, and waits for `<success>`; it then closes without enlisting, so the
 *   gateway keeps nothing.
 * - XMPP: authenticates the component (XEP-0114) with `xmpp.secret`, then disconnects.
 * - Matrix: the adapter's startup checks (`/versions`, `whoami` as the bot, the appservice ping
 *   both ways), one line each.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { LoadedConfig } from '../src/config/loader.js';
import type { CheckResult } from './doctor.js';
import { accountIdFor } from '../src/bridge/account.js';
import {
  AuthRejectedError,
  awaitAuthResult,
  ConnectReason,
  encodeClientPayload,
} from '../src/protocol/auth.js';
import { CertError } from '../src/protocol/cert-chain.js';
import { clientHandshake } from '../src/protocol/handshake/index.js';
import { mintClientToken } from '../src/protocol/jwt.js';
import { keyPairFromPrivateKey } from '../src/protocol/noise/dh.js';
import { readProviderKey } from '../src/provider-keys.js';
import { VERSION } from '../src/version.js';
import { checkHomeserver, type HomeserverCheck } from '../adapters/matrix/index.js';
import { ComponentLink } from '../adapters/xmpp/index.js';

const PROBE_TIMEOUT_MS = 10_000;

/** Hints for the gateway's refusal reasons (docs/PROTOCOL.md, "Authentication"). */
const AUTH_HINTS: Record<string, string> = {
  token_unknown_kid:
    'the gateway does not know the signing key: give it the JWKS ("interop-bridge keys jwks"), or publish it at bridge.http.public_url',
  token_bad_signature:
    'the gateway has a different key under this kid: give it the current JWKS ("interop-bridge keys jwks")',
  token_wrong_issuer: 'bridge.provider_id is not the provider id the gatekeeper registered for you',
  token_wrong_audience: 'gateway.gateway_id is not the id this gateway expects',
  token_expired: "this machine's clock is wrong: fix it (NTP)",
  token_not_yet_valid: "this machine's clock is wrong: fix it (NTP)",
};

/** Every network check, in order; `runChecks` (doctor.ts) covers what needs no network. */
export async function runLiveChecks(loaded: LoadedConfig): Promise<CheckResult[]> {
  return [await probeGateway(loaded), ...(await probeMatrix(loaded)), await probeXmpp(loaded)];
}

const MATRIX_STEPS: Record<HomeserverCheck['step'], { name: string; hint: string }> = {
  versions: {
    name: 'Matrix homeserver',
    hint: 'set matrix.homeserver_url to the client-server API as this machine reaches it (Synapse: http://127.0.0.1:8008)',
  },
  whoami: {
    name: 'Matrix registration',
    hint: 'install the registration on the homeserver and restart it (docs/OPERATING.md, "Plug it into your servers")',
  },
  namespace: {
    name: 'Matrix namespaces',
    hint: 'the registration the homeserver loaded must hold the ghosts\' namespace as exclusive: generate it again ("interop-bridge generate-registration --force") and give it to the homeserver',
  },
  ping: {
    name: 'Matrix appservice ping',
    hint: "the registration's url must reach matrix.listen_host:listen_port from the homeserver, with the same hs_token",
  },
};

export async function probeMatrix({ config }: LoadedConfig): Promise<CheckResult[]> {
  if (!config.matrix.enabled) {
    return [{ name: 'Matrix homeserver', status: 'ok', detail: 'disabled (matrix.enabled is false)' }];
  }
  return (await checkHomeserver(config)).map((c) => ({
    name: MATRIX_STEPS[c.step].name,
    status: c.ok ? ('ok' as const) : ('fail' as const),
    detail: c.detail,
    ...(c.ok ? {} : { hint: MATRIX_STEPS[c.step].hint }),
  }));
}

export async function probeGateway({ config, paths }: LoadedConfig): Promise<CheckResult> {
  const name = 'gateway connection';
  const g = config.gateway;
  if (!g.root_key) {
    return { name, status: 'warn', detail: 'skipped: gateway.root_key is not set' };
  }
  let signingKey;
  try {
    signingKey = readProviderKey(paths.signingKey);
  } catch (err) {
    return {
      name,
      status: 'fail',
      detail: `no provider signing key to authenticate with: ${(err as Error).message}`,
      hint: '"interop-bridge keys generate" creates it; give the printed JWKS to the gatekeeper',
    };
  }
  const noiseKey = keyPairFromPrivateKey(randomBytes(32));
  const accountId = accountIdFor('matrix', `doctor-${randomBytes(6).toString('hex')}`);
  let stream: net.Socket | undefined;
  try {
    stream = await dial(g.host, g.port);
    const hs = await clientHandshake(stream, {
      staticKey: noiseKey,
      rootPublicKey: Buffer.from(g.root_key, 'base64'),
      maxFrameSize: g.max_frame_bytes,
      timeoutMs: Math.min(PROBE_TIMEOUT_MS, g.handshake_timeout_seconds * 1000),
      payload: async () =>
        encodeClientPayload({
          accountId,
          providerId: config.bridge.provider_id,
          device: 0,
          token: await mintClientToken({
            privateKey: signingKey,
            kid: signingKey.kid,
            alg: signingKey.alg,
            issuer: config.bridge.provider_id,
            subject: accountId,
            audience: g.gateway_id,
            noiseStaticKey: noiseKey.publicKey,
          }),
          connectReason: ConnectReason.ENLISTMENT,
          userAgent: { appName: 'interop-bridge-doctor', appVersion: VERSION },
        }),
    });
    await awaitAuthResult(hs.socket);
    hs.socket.close();
    return {
      name,
      status: 'ok',
      detail: `${g.host}:${g.port}: ${hs.pattern} handshake, certificate chain valid, provider token accepted`,
    };
  } catch (err) {
    return { name, status: 'fail', ...explainGatewayFailure(err, g.host, g.port) };
  } finally {
    stream?.destroy();
  }
}

function explainGatewayFailure(err: unknown, host: string, port: number): { detail: string; hint: string } {
  const message = (err as Error).message;
  if (err instanceof CertError) {
    return {
      detail: `the gateway's certificate chain was refused (${err.code}): ${message}`,
      hint:
        err.code === 'cert_bad_signature' || err.code === 'cert_wrong_issuer'
          ? "gateway.root_key is not the root this gateway's certificates chain to: copy the right one from the gatekeeper (the emulator prints it)"
          : err.code === 'cert_expired' || err.code === 'cert_not_yet_valid'
            ? "the gateway's certificates are not valid now: check this machine's clock, then tell the gateway's operator"
            : "the gateway presents a broken certificate chain: tell the gateway's operator",
    };
  }
  if (err instanceof AuthRejectedError) {
    return {
      detail: message,
      hint: AUTH_HINTS[err.reason] ?? 'see docs/OPERATING.md, "Troubleshooting", for this reason',
    };
  }
  const code = (err as { code?: string }).code;
  if (code === 'gateway_unreachable') {
    return {
      detail: message,
      hint: `check gateway.host and gateway.port, and that ${host}:${port} is reachable`,
    };
  }
  return {
    detail: `the handshake with ${host}:${port} failed: ${message}`,
    hint: 'is this the gateway port (not an HTTP port)? check gateway.host and gateway.port',
  };
}

function dial(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        Object.assign(new Error(`cannot reach the gateway at ${host}:${port}: no answer in 10 s`), {
          code: 'gateway_unreachable',
        }),
      );
    }, PROBE_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (e: Error) => {
      clearTimeout(timer);
      reject(
        Object.assign(new Error(`cannot reach the gateway at ${host}:${port}: ${e.message}`), {
          code: 'gateway_unreachable',
        }),
      );
    };
    s.once('error', onError);
  });
}

export async function probeXmpp({ config }: LoadedConfig): Promise<CheckResult> {
  const name = 'XMPP component';
  const x = config.xmpp;
  if (!x.enabled) return { name, status: 'ok', detail: 'disabled (xmpp.enabled is false)' };
  if (x.secret === undefined) {
    return {
      name,
      status: 'fail',
      detail: 'xmpp.secret is not set',
      hint: 'set xmpp.secret or xmpp.secret_file',
    };
  }
  const link = new ComponentLink({
    host: x.server_host,
    port: x.server_port,
    domain: x.component_domain,
    secret: x.secret,
    connectTimeoutMs: PROBE_TIMEOUT_MS,
  });
  try {
    await link.start();
    return {
      name,
      status: 'ok',
      detail: `${x.component_domain} authenticated at ${x.server_host}:${x.server_port}`,
    };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = (err as Error).message;
    if (code === 'xmpp_secret_refused') {
      return {
        name,
        status: 'fail',
        detail: message,
        hint: `make xmpp.secret the component secret of ${x.component_domain} in the server's config (see config/prosody.cfg.lua.example or config/ejabberd.yml.example)`,
      };
    }
    if (code === 'xmpp_server_unreachable') {
      return {
        name,
        status: 'fail',
        detail: message,
        hint: `check xmpp.server_host and xmpp.server_port, and that the server has a component listener there (Prosody: component_ports; ejabberd: an ejabberd_service listener)`,
      };
    }
    if (/conflict/i.test(message)) {
      return {
        name,
        status: 'warn',
        detail: `${x.component_domain} is already connected to the server (the running bridge?): ${message}`,
        hint: 'stop the bridge to test the secret, or ignore this if the bridge is running',
      };
    }
    return {
      name,
      status: 'fail',
      detail: message,
      hint: `does the server know the component ${x.component_domain}? (Prosody: Component "${x.component_domain}"; ejabberd: hosts of the ejabberd_service listener)`,
    };
  } finally {
    await link.stop().catch(() => undefined);
  }
}
