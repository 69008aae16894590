/**
 * The provisioning API (`/_matrix/provision/v3/...`), in the shape of mautrix-go bridgev2's where it
 * fits, for integration managers, admin panels and provisioning scripts: whoami, the opt-in login
 * (with the same confirmation as the bots' `login` / `register`), logout, resolving a phone number,
 * opening a direct chat, contacts, chats, capabilities, and for the shared secret's holder (or a
 * Matrix admin) the admin commands. docs/provisioning.openapi.yaml is its definition; every answer
 * is JSON, a refusal `{errcode, error}` with a 4xx that says what was wrong.
 *
 * The work is what the chat commands do: src/bridge/commands.ts for the core's part, each
 * adapter's `provisioning` hooks for its network's (a portal, a roster contact).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type {
  AdapterCapabilities,
  BridgeCore,
  Network,
  ProvisioningHooks,
  PuppetReport,
  LocalContact,
} from '../bridge/adapter.js';
import { lookUpContact, optIn, optOut } from '../bridge/commands.js';
import { InteropError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { redactUrl } from '../observability/redact.js';
import { ProvisioningAuth, type Caller } from './auth.js';
import { ProvisioningError, readJsonObject, sendError, sendJson } from './http.js';

export const PROVISIONING_PREFIX = '/_matrix/provision/';

/** One network the API serves: its core, its adapter's hooks (once attached) and capabilities. */
export interface ProvisionedNetwork {
  readonly network: Network;
  readonly core: BridgeCore;
  readonly hooks: () => ProvisioningHooks | undefined;
  readonly capabilities: AdapterCapabilities;
}

export interface ProvisioningOptions {
  readonly networks: readonly ProvisionedNetwork[];
  readonly auth: ProvisioningAuth;
  readonly log?: Logger | undefined;
  /** How long a started login waits for its confirmation. Default 10 minutes. */
  readonly loginTtlMs?: number;
}

export const OPT_IN_FLOW = {
  id: 'opt-in',
  name: 'Opt in to interoperability',
  description:
    'Creates an interoperability account at the gatekeeper (WhatsApp) for you; WhatsApp users can then message you and you them, by phone number.',
};

const OPT_IN_TERMS = [
  'Opting in creates an interoperability account for you at the gatekeeper (WhatsApp):',
  "- this bridge makes encryption keys for you and registers your address with WhatsApp's interop gateway;",
  '- WhatsApp users who know your address can then message you, and you can message them by phone number;',
  "- messages are end-to-end encrypted between this bridge and their phones: the bridge (run by your server's operator) can read them;",
  '- WhatsApp sees who talks to whom and when, as for its own users.',
  'Submit {"confirm": "yes"} to opt in.',
].join('\n');

const CONFIRM_STEP = 'net.interop.opt_in.confirm';
const COMPLETE_STEP = 'net.interop.opt_in.complete';

/** Who the request acts for, on which network. */
interface Acting {
  readonly user: string;
  readonly net: ProvisionedNetwork;
  readonly hooks: ProvisioningHooks;
  readonly permission: 'user' | 'admin';
}

interface Request {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly caller: Caller;
  readonly query: URLSearchParams;
  readonly params: readonly string[];
}

type Handler = (r: Request) => Promise<unknown>;

export class ProvisioningApi {
  readonly #routes: { method: string; pattern: RegExp; name: string; handler: Handler }[] = [];
  readonly #logins = new Map<string, { user: string; network: Network; until: number }>();

  constructor(private readonly o: ProvisioningOptions) {
    const route = (method: string, path: string, handler: Handler) => {
      const pattern = new RegExp(`^${path.replace(/\{[a-z_]+\}/g, '([^/]+)')}$`);
      this.#routes.push({ method, pattern, name: path, handler });
    };
    route('GET', '/v3/whoami', (r) => this.whoami(r));
    route('GET', '/v3/capabilities', (r) => this.capabilities(r));
    route('GET', '/v3/login/flows', async () => ({ flows: [OPT_IN_FLOW] }));
    route('POST', '/v3/login/start/{flow}', (r) => this.loginStart(r));
    route('POST', '/v3/login/step/{login_id}/{step_id}/{step_type}', (r) => this.loginStep(r));
    route('POST', '/v3/logout/{login_id}', (r) => this.logout(r));
    route('GET', '/v3/resolve_identifier/{identifier}', (r) => this.resolve(r, false));
    route('POST', '/v3/create_dm/{identifier}', (r) => this.resolve(r, true));
    route('GET', '/v3/contacts', (r) => this.contacts(r, false));
    route('GET', '/v3/chats', (r) => this.contacts(r, true));
    route('GET', '/v3/admin/puppets', (r) => this.adminPuppets(r));
    route('GET', '/v3/admin/puppets/{user}', (r) => this.adminPuppets(r));
    route('POST', '/v3/admin/logout/{user}', (r) => this.adminUser(r, 'logout'));
    route('POST', '/v3/admin/reconnect/{user}', (r) => this.adminUser(r, 'reconnect'));
    route('POST', '/v3/admin/broadcast', (r) => this.adminBroadcast(r));
  }

  /** The HTTP handler, for every path under `/_matrix/provision/`. Never throws. */
  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = (q >= 0 ? target.slice(0, q) : target).slice(PROVISIONING_PREFIX.length - 1);
    const query = new URLSearchParams(q >= 0 ? target.slice(q + 1) : '');
    const method = req.method ?? 'GET';
    let routeName = '(none)';
    try {
      if (method === 'OPTIONS') {
        res.writeHead(204, {
          'access-control-allow-origin': '*',
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers': 'authorization, content-type',
        });
        res.end();
        return;
      }
      const candidates = this.#routes.filter((r) => r.pattern.test(path));
      const route = candidates.find((r) => r.method === method);
      if (!route) {
        throw candidates.length > 0
          ? new ProvisioningError(405, 'M_UNRECOGNIZED', `${method} is not allowed on ${candidates[0]!.name}`)
          : new ProvisioningError(404, 'M_UNRECOGNIZED', `there is no provisioning endpoint ${path}`);
      }
      routeName = route.name;
      // Authenticated before a byte of the body is read.
      const caller = await this.o.auth.caller(req);
      const params = (route.pattern.exec(path) ?? []).slice(1).map((p) => decodeSegment(p));
      const body = await route.handler({ req, res, caller, query, params });
      sendJson(res, 200, body);
    } catch (err) {
      const refusal = toRefusal(err);
      // The route's template and the errcode, never the path, query or message (a user id, a
      // phone number); the bridge's own failures with their message, for the operator.
      const fields = { method, route: routeName, status: refusal.status, errcode: refusal.errcode };
      if (refusal.status >= 500)
        this.o.log?.warn({ ...fields, err: refusal.message }, 'provisioning request failed');
      else this.o.log?.debug(fields, 'provisioning request refused');
      if (!res.headersSent) sendError(res, refusal);
      else res.destroy();
    }
  };

  // ---------------------------------------------------------------------------------------------
  // Who

  /** The user the request acts for: `?user_id=` for the shared secret, the token's owner otherwise. */
  private acting(r: Request): Acting {
    const asked = r.query.get('user_id') ?? undefined;
    let user: string;
    if (r.caller.kind === 'secret') {
      if (asked === undefined || asked === '') {
        throw new ProvisioningError(
          400,
          'M_MISSING_PARAM',
          'the shared secret acts for the user named in ?user_id=',
        );
      }
      user = asked;
    } else {
      if (asked !== undefined && asked !== r.caller.userId) {
        throw new ProvisioningError(403, 'M_FORBIDDEN', 'a Matrix access token acts only for its own user');
      }
      user = r.caller.userId;
    }
    for (const net of this.o.networks) {
      const hooks = net.hooks();
      if (!hooks?.owns(user)) continue;
      if (r.caller.kind === 'matrix' && net.network !== 'matrix') continue;
      const permission = hooks.permissionOf(user);
      if (permission === 'none') {
        throw new ProvisioningError(
          403,
          'M_FORBIDDEN',
          `${user} may not use this bridge (see its permissions)`,
        );
      }
      return { user, net, hooks, permission };
    }
    throw new ProvisioningError(
      400,
      'M_INVALID_PARAM',
      `"${user}" is not a user of a network this bridge serves (a Matrix ID such as @alice:example.org, or an XMPP address such as alice@example.org)`,
    );
  }

  /** Admin endpoints: the shared secret, or a Matrix admin's own token. */
  private admin(r: Request): BridgeCore {
    const core = this.o.networks[0]?.core;
    if (!core) throw new ProvisioningError(404, 'M_NOT_FOUND', 'no network is enabled on this bridge');
    if (r.caller.kind === 'secret') return core;
    const hooks = this.o.networks.find((n) => n.network === 'matrix')?.hooks();
    if (hooks?.permissionOf(r.caller.userId) !== 'admin') {
      throw new ProvisioningError(
        403,
        'M_FORBIDDEN',
        "the admin endpoints are for the bridge's administrators",
      );
    }
    return core;
  }

  // ---------------------------------------------------------------------------------------------
  // Endpoints

  private async whoami(r: Request): Promise<unknown> {
    const a = this.acting(r);
    const [puppet] = await a.net.core.puppets(a.user);
    return {
      user_id: a.user,
      network: a.net.network,
      permission: a.permission,
      command_room: (await a.hooks.commandRoom?.(a.user)) ?? null,
      login_flows: [OPT_IN_FLOW],
      puppet: puppet ? puppetJson(puppet) : null,
      logins: puppet?.enlisted
        ? [{ id: puppet.address, name: puppet.address, state: puppet.connection }]
        : [],
    };
  }

  private async capabilities(r: Request): Promise<unknown> {
    const a = this.acting(r);
    const c = a.net.capabilities;
    return {
      network: a.net.network,
      login_flows: [OPT_IN_FLOW],
      resolve_identifier: { types: ['phone'], create_dm: true, contact_list: true },
      features: {
        media: c.media,
        replies: c.replies,
        edits: c.edits,
        deletes: c.deletes,
        reactions: c.reactions,
        read_receipts: c.readReceipts,
        typing: c.typing,
        presence: c.presence,
      },
      max_media_bytes: c.maxMediaBytes,
      admin: a.permission === 'admin' || r.caller.kind === 'secret',
    };
  }

  private async loginStart(r: Request): Promise<unknown> {
    const a = this.acting(r);
    if (r.params[0] !== OPT_IN_FLOW.id) {
      throw new ProvisioningError(
        404,
        'M_NOT_FOUND',
        `there is no login flow "${r.params[0]}": the one flow is "opt-in"`,
      );
    }
    const loginId = randomBytes(12).toString('hex');
    if (await a.net.core.isEnlisted(a.user)) return this.complete(a, loginId, true);
    this.#expireLogins();
    this.#logins.set(loginId, {
      user: a.user,
      network: a.net.network,
      until: Date.now() + (this.o.loginTtlMs ?? 600_000),
    });
    return {
      login_id: loginId,
      type: 'user_input',
      step_id: CONFIRM_STEP,
      instructions: OPT_IN_TERMS,
      user_input: {
        fields: [
          {
            type: 'select',
            id: 'confirm',
            name: 'Opt in',
            description: 'Send "yes" to opt in on the terms above.',
            options: ['yes'],
          },
        ],
      },
    };
  }

  private async loginStep(r: Request): Promise<unknown> {
    const a = this.acting(r);
    const [loginId, stepId, stepType] = r.params as [string, string, string];
    this.#expireLogins();
    const login = this.#logins.get(loginId);
    if (!login || login.user !== a.user || login.network !== a.net.network) {
      throw new ProvisioningError(
        404,
        'M_NOT_FOUND',
        'no such login in progress (it may have expired): start again',
      );
    }
    if (stepId !== CONFIRM_STEP || stepType !== 'user_input') {
      throw new ProvisioningError(404, 'M_NOT_FOUND', `this login's next step is ${CONFIRM_STEP}/user_input`);
    }
    const body = await readJsonObject(r.req);
    if (body['confirm'] !== 'yes') {
      throw new ProvisioningError(400, 'M_INVALID_PARAM', 'the "confirm" field must be "yes" to opt in');
    }
    this.#logins.delete(loginId);
    const result = await optIn(a.net.core, a.user);
    return this.complete(a, loginId, result === 'already');
  }

  private async complete(a: Acting, loginId: string, already: boolean): Promise<unknown> {
    const [puppet] = await a.net.core.puppets(a.user);
    return {
      login_id: loginId,
      type: 'complete',
      step_id: COMPLETE_STEP,
      instructions: already ? 'You were opted in already.' : 'You are opted in.',
      complete: { user_login_id: puppet?.address ?? '' },
    };
  }

  private async logout(r: Request): Promise<unknown> {
    const a = this.acting(r);
    const [puppet] = await a.net.core.puppets(a.user);
    const loginId = r.params[0];
    if (!puppet || (loginId !== 'all' && loginId !== puppet.address)) {
      throw new ProvisioningError(
        404,
        'M_NOT_FOUND',
        `${a.user} has no login "${loginId}": nothing to log out of`,
      );
    }
    await optOut(a.net.core, a.user);
    return {};
  }

  private async resolve(r: Request, open: boolean): Promise<unknown> {
    const a = this.acting(r);
    const input = r.params[0] ?? '';
    const found = await lookUpContact(a.net.core, a.user, input);
    if (!found.ok) {
      switch (found.reason) {
        case 'not_a_number':
          throw new ProvisioningError(
            400,
            'M_INVALID_PARAM',
            `"${input}" is not a phone number: give it with the country code, such as +4915112345678`,
          );
        case 'not_enlisted':
          throw notOptedIn(a.user);
        case 'not_reachable':
          throw new ProvisioningError(
            404,
            'M_NOT_FOUND',
            `${found.phone} cannot be reached through interoperability (not on WhatsApp, or not accepting interop chats)`,
          );
      }
    }
    if (!open) return contactJson(a.net.network, await a.hooks.contact(a.user, found.remote), true);
    const chat = await a.hooks.startChat(a.user, found.remote, found.phone);
    return { ...contactJson(a.net.network, chat, true), existed: chat.existed };
  }

  private async contacts(r: Request, chatsOnly: boolean): Promise<unknown> {
    const a = this.acting(r);
    if (!(await a.net.core.isEnlisted(a.user))) throw notOptedIn(a.user);
    const all = await a.hooks.contacts(a.user);
    const list = (chatsOnly ? all.filter((c) => c.dm !== undefined) : all).map((c) =>
      contactJson(a.net.network, c, undefined),
    );
    return chatsOnly ? { chats: list } : { contacts: list };
  }

  private async adminPuppets(r: Request): Promise<unknown> {
    const core = this.admin(r);
    const user = r.params[0];
    const puppets = await core.puppets(user);
    if (user !== undefined) {
      const [p] = puppets;
      if (!p) throw new ProvisioningError(404, 'M_NOT_FOUND', `${user} has no puppet`);
      return puppetJson(p);
    }
    return { puppets: puppets.map(puppetJson) };
  }

  private async adminUser(r: Request, what: 'logout' | 'reconnect'): Promise<unknown> {
    const core = this.admin(r);
    const user = r.params[0] ?? '';
    const [p] = await core.puppets(user);
    if (!p) throw new ProvisioningError(404, 'M_NOT_FOUND', `${user} has no puppet`);
    // The core's own opt-out (any network's user), not the network-bound `optOut` check.
    if (what === 'reconnect') await core.reconnect(user);
    else await core.optOut(user);
    return {};
  }

  private async adminBroadcast(r: Request): Promise<unknown> {
    const core = this.admin(r);
    const body = await readJsonObject(r.req);
    const text = body['text'];
    if (typeof text !== 'string' || text.trim() === '') {
      throw new ProvisioningError(
        400,
        'M_BAD_JSON',
        'the body must be {"text": "<the notice>"} with a text that is not empty',
      );
    }
    return { sent_to: await core.broadcast(text.trim()) };
  }

  #expireLogins(): void {
    const now = Date.now();
    for (const [id, l] of this.#logins) if (l.until <= now) this.#logins.delete(id);
  }
}

function notOptedIn(user: string): ProvisioningError {
  return new ProvisioningError(
    400,
    'NET.INTEROP.NOT_OPTED_IN',
    `${user} has not opted in: log in (POST /v3/login/start/opt-in) first`,
  );
}

function puppetJson(p: PuppetReport): Record<string, unknown> {
  return {
    user_id: p.localUser,
    network: p.network,
    state: p.state,
    address: p.address,
    connection: p.connection,
    outbox_queued: p.queued,
    inbox_pending: p.inboxPending,
    last_error: p.lastError ?? null,
  };
}

/** A contact in mautrix's ResolvedIdentifier shape, plus its network-neutral fields. */
function contactJson(
  network: Network,
  c: LocalContact,
  reachable: boolean | undefined,
): Record<string, unknown> {
  return {
    id: c.remote,
    name: c.name,
    phone: c.phone,
    identifiers: [`tel:${c.phone}`],
    ...(reachable !== undefined ? { reachable } : {}),
    local_id: c.localId,
    dm: c.dm ?? null,
    ...(network === 'matrix' ? { mxid: c.localId, dm_room_mxid: c.dm ?? null } : {}),
  };
}

/** A path segment, percent-decoded; a malformed escape is the caller's mistake. */
function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ProvisioningError(400, 'M_INVALID_PARAM', 'a path segment has a malformed percent escape');
  }
}

/** The core's and the adapters' user-facing failures (their stable codes), as refusals. */
const KNOWN_FAILURES: Record<string, [number, string]> = {
  bridge_not_enlisted: [400, 'NET.INTEROP.NOT_OPTED_IN'],
  xmpp_not_registered: [400, 'NET.INTEROP.NOT_OPTED_IN'],
  xmpp_bad_phone: [400, 'M_INVALID_PARAM'],
  xmpp_bad_contact: [400, 'M_INVALID_PARAM'],
  xmpp_not_on_network: [404, 'M_NOT_FOUND'],
  xmpp_domain_not_allowed: [403, 'M_FORBIDDEN'],
  matrix_contact_unsupported: [400, 'M_INVALID_PARAM'],
};

/** Any failure as the answer it gets: the core's and the gateway's as 4xx/503, the unforeseen as 500. */
function toRefusal(err: unknown): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const code = err instanceof InteropError ? err.code : undefined;
  const message = err instanceof Error ? err.message : String(err);
  const known = code === undefined ? undefined : KNOWN_FAILURES[code];
  if (known) return new ProvisioningError(known[0], known[1], message);
  if (code === 'bridge_bad_local_user') return new ProvisioningError(400, 'M_INVALID_PARAM', message);
  if (
    code !== undefined &&
    (code.startsWith('gateway_') ||
      ['bridge_not_connected', 'bridge_enlist_failed', 'bridge_opt_out_failed'].includes(code))
  ) {
    return new ProvisioningError(503, 'NET.INTEROP.GATEWAY_UNAVAILABLE', message);
  }
  if (code !== undefined && code.startsWith('matrix_'))
    return new ProvisioningError(502, 'M_UNKNOWN', message);
  return new ProvisioningError(500, 'M_UNKNOWN', `internal error (${redactUrl(message).slice(0, 200)})`);
}
