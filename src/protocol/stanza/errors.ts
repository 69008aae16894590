import { InteropError } from '../../errors.js';

/**
 * Errors of the stanza layer. Each failure has its own stable code so the connection can decide:
 * limit and syntax errors close the connection (the peer is broken or hostile), `stanza_unknown`
 * and `stanza_invalid` are answered with an error and the connection stays up.
 */

/** Which parser limit a stanza exceeded; see `StanzaLimits` in codec.ts. */
export type StanzaLimitCode =
  | 'stanza_too_large'
  | 'stanza_too_deep'
  | 'stanza_too_many_attributes'
  | 'stanza_too_many_elements'
  | 'stanza_text_too_long';

/** The stanza exceeds one of the configured limits; it was rejected before it was built. */
export class StanzaLimitError extends InteropError {
  declare readonly code: StanzaLimitCode;
  readonly limit: number;

  constructor(code: StanzaLimitCode, limit: number, message: string) {
    super(code, message);
    this.limit = limit;
  }
}

/**
 * The bytes are not a well-formed XML document in the profile the gateway protocol allows
 * (`stanza_malformed`), or use markup the protocol forbids because of what it can do to a parser:
 * DOCTYPE, entity declarations, processing instructions, comments, CDATA (`stanza_markup_forbidden`).
 */
export class StanzaMalformedError extends InteropError {
  declare readonly code: 'stanza_malformed' | 'stanza_markup_forbidden';

  constructor(
    code: 'stanza_malformed' | 'stanza_markup_forbidden',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** What a stanza-level error knows about the offending stanza, so the receiver can answer it. */
export interface StanzaContext {
  /** Root element name, e.g. `iq`. */
  readonly name: string;
  /** The root's `id` attribute, when it had one: answer `<iq type="error" id=..>` or `<ack error>`. */
  readonly id?: string | undefined;
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

/**
 * Well-formed XML, but not a stanza (or iq request, or notification type) this codec knows.
 * Answer with an error (`<iq type="error"><error code="501"/>` for an iq, `<ack error="501">` else)
 * and keep the connection.
 */
export class StanzaUnknownError extends InteropError {
  declare readonly code: 'stanza_unknown';
  readonly stanza: StanzaContext;

  constructor(stanza: StanzaContext, message: string) {
    super('stanza_unknown', message);
    this.stanza = stanza;
  }
}

/**
 * A known stanza with a missing or invalid attribute or child. `field` names it as a path from the
 * root, e.g. `type`, `enc[1].v`, `list.key[3].value`. Answer with a 400 error; keep the connection.
 */
export class StanzaInvalidError extends InteropError {
  declare readonly code: 'stanza_invalid';
  readonly stanza: StanzaContext;
  readonly field: string;

  constructor(stanza: StanzaContext, field: string, message: string) {
    super('stanza_invalid', message);
    this.stanza = stanza;
    this.field = field;
  }
}

/**
 * The caller asked to encode something the protocol cannot carry (a 31-byte key, a prekey id above
 * 2^24-1, an invalid element name). A bug in the calling layer: nothing was sent.
 */
export class StanzaUnencodableError extends InteropError {
  declare readonly code: 'stanza_unencodable';
  readonly field: string;

  constructor(field: string, message: string) {
    super('stanza_unencodable', message);
    this.field = field;
  }
}
