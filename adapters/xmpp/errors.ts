/**
 * Errors of the XMPP adapter. Those of the component link name the config key or server setting to
 * check; `XmppUserError`s are what a local user is told, as an XMPP error condition and a sentence.
 * Each has a stable code.
 */
import type { Element } from '@xmpp/xml';
import { InteropError } from '../../src/errors.js';

/** The server answered the XEP-0114 handshake with <not-authorized/>. */
export class ComponentSecretRefusedError extends InteropError {
  constructor(domain: string, detail?: string) {
    super(
      'xmpp_secret_refused',
      `the XMPP server refused the component secret for ${domain}: check xmpp.secret and the server's component config` +
        (detail ? ` (server said: ${detail})` : ''),
    );
  }
}

/** No TCP connection to the component port, or no stream opened in time. */
export class XmppServerUnreachableError extends InteropError {
  constructor(host: string, port: number, reason: string, options?: { cause?: unknown }) {
    super(
      'xmpp_server_unreachable',
      `cannot reach the XMPP server's component port at ${host}:${port} (${reason}): check xmpp.server_host and xmpp.server_port, and that the server is running with a component listener there`,
      options,
    );
  }
}

/** The server closed the component stream with a stream error other than a bad secret. */
export class ComponentStreamError extends InteropError {
  readonly condition: string;

  constructor(domain: string, condition: string, text?: string) {
    super(
      'xmpp_stream_error',
      `the XMPP server closed the component stream for ${domain} with <${condition}/>${text ? ` (${text})` : ''}: ${advice(condition, domain)}`,
    );
    this.condition = condition;
  }
}

function advice(condition: string, domain: string): string {
  switch (condition) {
    case 'host-unknown':
      return `declare the component ${domain} in the server's config (see config/*.example)`;
    case 'conflict':
      return `another process is connected as ${domain}: stop it or use another xmpp.component_domain`;
    default:
      return 'see the XMPP server log';
  }
}

/** `send()` was given something the server would disconnect the component for. */
export class InvalidStanzaError extends InteropError {
  constructor(message: string) {
    super('xmpp_invalid_stanza', message);
  }
}

/** The link was stopped before the stanza was confirmed; the caller keeps it for a later retry. */
export class ComponentStoppedError extends InteropError {
  constructor(domain: string) {
    super(
      'xmpp_component_stopped',
      `the XMPP component link for ${domain} was stopped before the stanza was confirmed: it will be retried after the next start`,
    );
  }
}

/** An iq request of ours was answered with an error. */
export class IqErrorResponse extends InteropError {
  constructor(
    readonly from: string,
    readonly condition: string,
    readonly text: string | undefined,
  ) {
    super('xmpp_iq_error', `${from} answered with <${condition}/>${text ? `: ${text}` : ''}`);
  }

  static of(el: Element): IqErrorResponse {
    const error = el.getChild('error');
    const condition =
      error?.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text')?.name ??
      'undefined-condition';
    const text = error?.getChild('text')?.getText() ?? undefined;
    return new IqErrorResponse(String(el.attrs.from ?? ''), condition, text);
  }
}

/** An iq request of ours got no answer in time. */
export class IqTimeoutError extends InteropError {
  constructor(to: string, timeoutMs: number) {
    super('xmpp_iq_timeout', `${to} did not answer within ${timeoutMs} ms`);
  }
}

/** Something the adapter tells the local user, as an XMPP error condition and a sentence. */
export class XmppUserError extends InteropError {
  constructor(
    code: string,
    readonly type: 'cancel' | 'modify' | 'auth' | 'wait',
    readonly condition: string,
    message: string,
  ) {
    super(code, message);
  }
}

// --- what the user is told ---------------------------------------------------------------------

/** The user has not opted in; `then` says what to do (`send "register" to wa.example.org first.`). */
export function notRegistered(then: string): XmppUserError {
  return new XmppUserError(
    'xmpp_not_registered',
    'auth',
    'registration-required',
    `You are not registered with the bridge: ${then}`,
  );
}

/** A contact JID that names neither a phone number nor an escaped interop JID. */
export function notAContact(contactJid: string, domain: string): XmppUserError {
  return new XmppUserError(
    'xmpp_bad_contact',
    'modify',
    'jid-malformed',
    `${contactJid} is not a contact of this gateway: contacts are +<phone number in international format>@${domain}.`,
  );
}

/** What the user typed is not a phone number. */
export function notAPhoneNumber(input: string): XmppUserError {
  return new XmppUserError(
    'xmpp_bad_phone',
    'modify',
    'bad-request',
    `"${input}" is not a phone number in international format, such as +4915112345678.`,
  );
}

/** The number is not reachable through interoperability. */
export function notOnNetwork(phone: string): XmppUserError {
  return new XmppUserError(
    'xmpp_not_on_network',
    'cancel',
    'item-not-found',
    `${phone} is not on the interop network (not a WhatsApp user, or not reachable through interoperability): the message was not sent.`,
  );
}

/** A user of a domain outside `xmpp.allowed_domains`. */
export function domainNotAllowed(domain: string, allowed: readonly string[]): XmppUserError {
  return new XmppUserError(
    'xmpp_domain_not_allowed',
    'cancel',
    'not-allowed',
    `Users of ${domain} may not use this gateway (it serves ${allowed.join(', ')}).`,
  );
}

/** What to tell the user about an error: itself if it is for them, else the core's error in their words. */
export function userErrorOf(err: unknown): XmppUserError {
  if (err instanceof XmppUserError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'bridge_not_enlisted') return notRegistered('send "register" to the gateway first.');
  if (code === 'bridge_bad_remote') {
    return new XmppUserError('xmpp_bad_contact', 'modify', 'jid-malformed', (err as Error).message);
  }
  return new XmppUserError(
    'xmpp_bridge_failed',
    'wait',
    'internal-server-error',
    `The bridge could not take the message (${(err as Error).message}): send it again.`,
  );
}
