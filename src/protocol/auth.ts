/**
 * Client authentication after the Noise handshake: the client's handshake payload is a
 * ClientPayload whose interop_data carries the provider-signed JWT; the server answers on the
 * encrypted channel with exactly one `<success/>` or `<failure reason=.../>` stanza, and closes
 * after a failure.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { InteropError } from '../errors.js';
import {
  ClientPayload_ConnectReason,
  ClientPayload_ConnectType,
  ClientPayloadSchema,
  type ClientPayload,
} from './gen/interop/v1/handshake_pb.js';
import {
  TokenError,
  verifyClientToken,
  type ClientTokenClaims,
  type VerifyClientTokenOptions,
} from './jwt.js';
import { decodeProto } from './proto-decode.js';
import { decodeStanza, toBytes, type FailureStanza, type SuccessStanza } from './stanza/index.js';
import type { NoiseSocket } from './transport/index.js';

export { ClientPayload_ConnectReason as ConnectReason, ClientPayload_ConnectType as ConnectType };

/** Failure reasons of the payload itself, beside the token's (AUTH_FAILURE_REASONS in jwt.ts). */
export type PayloadFailureReason = 'payload_malformed' | 'payload_account_mismatch';

export interface ClientPayloadInput {
  accountId: string;
  providerId: string;
  device: number;
  token: string;
  userAgent?: { appName: string; appVersion: string; os?: string };
  connectReason?: ClientPayload_ConnectReason;
  /** Set when a proxy connects for an end user (the reference offer asks for the user's IP). */
  endUserIp?: string | undefined;
  enableReadReceipts?: boolean;
}

export function encodeClientPayload(input: ClientPayloadInput): Uint8Array {
  return toBinary(
    ClientPayloadSchema,
    create(ClientPayloadSchema, {
      userAgent: input.userAgent ? { os: '', ...input.userAgent } : undefined,
      connectType: input.endUserIp ? ClientPayload_ConnectType.PROXY : ClientPayload_ConnectType.UNKNOWN,
      connectReason: input.connectReason ?? ClientPayload_ConnectReason.USER_ACTIVATED,
      device: input.device,
      endUserIp: input.endUserIp ?? '',
      interopData: {
        accountId: input.accountId,
        providerId: input.providerId,
        token: new TextEncoder().encode(input.token),
        enableReadReceipts: input.enableReadReceipts ?? true,
      },
    }),
  );
}

/** The gateway refused the client; `reason` is the wire's failure reason. */
export class AuthRejectedError extends InteropError {
  constructor(
    readonly reason: string,
    text: string | undefined,
  ) {
    super('auth_rejected', `the gateway refused authentication: ${reason}${text ? ` (${text})` : ''}`);
  }
}

export interface AuthenticatedClient {
  payload: ClientPayload;
  claims: ClientTokenClaims;
  account: string;
  device: number;
}

/** A gateway-side check after the token: e.g. that the account has opted in. Throw AuthFailure to refuse. */
export type AccountCheck = (client: AuthenticatedClient) => void | Promise<void>;

export class AuthFailure extends InteropError {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(reason, message);
  }
}

/**
 * Server side: decodes and verifies the client's payload, then sends `<success>` or `<failure>`.
 * On failure the connection is closed (after the failure stanza is flushed) and the AuthFailure or
 * TokenError is thrown for the caller to log and count.
 */
export async function authenticateClient(
  socket: NoiseSocket,
  payloadBytes: Uint8Array,
  clientStaticKey: Uint8Array,
  verify: Omit<VerifyClientTokenOptions, 'noiseStaticKey'>,
  check?: AccountCheck,
  now: () => number = () => Math.floor(Date.now() / 1000),
): Promise<AuthenticatedClient> {
  try {
    let payload: ClientPayload;
    try {
      payload = decodeProto(ClientPayloadSchema, payloadBytes, 'client payload', { maxBytes: 16 * 1024 });
    } catch (err) {
      throw new AuthFailure('payload_malformed', (err as Error).message);
    }
    const interop = payload.interopData;
    if (!interop || interop.token.length === 0) {
      throw new AuthFailure('payload_malformed', 'the client payload has no interop_data token');
    }
    const token = new TextDecoder('utf-8', { fatal: false }).decode(interop.token);
    const claims = await verifyClientToken(token, { ...verify, noiseStaticKey: clientStaticKey });
    if (claims.sub !== interop.accountId || claims.iss !== interop.providerId) {
      throw new AuthFailure(
        'payload_account_mismatch',
        `the payload names account ${interop.accountId} of ${interop.providerId}, the token ${claims.sub} of ${claims.iss}`,
      );
    }
    const client: AuthenticatedClient = { payload, claims, account: claims.sub, device: payload.device };
    await check?.(client);
    socket.send(toBytes({ kind: 'success', t: now(), account: client.account, device: client.device }));
    return client;
  } catch (err) {
    const reason =
      err instanceof TokenError ? err.reason : err instanceof AuthFailure ? err.reason : 'internal_error';
    const failure: FailureStanza = {
      kind: 'failure',
      reason,
      text: err instanceof InteropError ? err.message : undefined,
    };
    if (socket.isOpen) {
      socket.send(toBytes(failure));
      socket.close();
    }
    throw err;
  }
}

/** Client side: waits for the server's verdict; resolves with `<success>`, throws AuthRejectedError on `<failure>`. */
export async function awaitAuthResult(socket: NoiseSocket): Promise<SuccessStanza> {
  const stanza = decodeStanza(await socket.receive());
  if (stanza.kind === 'success') return stanza;
  socket.close();
  if (stanza.kind === 'failure') throw new AuthRejectedError(stanza.reason, stanza.text);
  throw new AuthRejectedError('protocol_error', `expected <success> or <failure>, got <${stanza.kind}>`);
}
