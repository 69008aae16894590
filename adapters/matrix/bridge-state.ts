/**
 * The bridge's state as mautrix bridges report it (the `com.beeper.bridge_state` format that
 * integration managers and Beeper's clients read): the bridge itself, and each user's connection
 * to the gatekeeper. Answered on `POST /_matrix/app/com.beeper.bridge_state` (hs_token), and
 * posted to the user's management room when the connection is lost, comes back, or is refused.
 */
import type { PuppetStatus } from '../../src/bridge/adapter.js';

/** mautrix's state events: the ones this bridge can be in. */
export type RemoteStateEvent =
  'UNCONFIGURED' | 'CONNECTING' | 'CONNECTED' | 'TRANSIENT_DISCONNECT' | 'BAD_CREDENTIALS' | 'LOGGED_OUT';

export interface BridgeStateReport {
  readonly state_event: RemoteStateEvent | 'RUNNING';
  readonly timestamp: number;
  /** Seconds the state holds before the reader should ask again. */
  readonly ttl: number;
  readonly source: 'bridge';
  readonly user_id?: string;
  readonly remote_id?: string;
  readonly remote_name?: string;
  readonly error?: string;
  readonly message?: string;
}

/** A puppet's status as a state event. */
export function remoteStateOf(status: PuppetStatus): RemoteStateEvent {
  if (!status.enlisted) return 'UNCONFIGURED';
  switch (status.connection) {
    case 'connected':
      return 'CONNECTED';
    case 'refused':
      return 'BAD_CREDENTIALS';
    case 'waiting':
    case 'disconnected':
      return 'TRANSIENT_DISCONNECT';
    case 'stopped':
      return 'LOGGED_OUT';
    default:
      return 'CONNECTING';
  }
}

const MESSAGES: Record<RemoteStateEvent, string> = {
  UNCONFIGURED: 'not opted in',
  CONNECTING: 'connecting to the gateway',
  CONNECTED: 'connected',
  TRANSIENT_DISCONNECT: 'the connection to the gateway was lost; reconnecting',
  BAD_CREDENTIALS: 'the gateway refused the connection',
  LOGGED_OUT: 'opted out',
};

/** The global state for one user (`remoteState` keyed by the user's interop account). */
export function globalState(
  userId: string | undefined,
  status: PuppetStatus | undefined,
  now = Date.now(),
): { bridgeState: BridgeStateReport; remoteState: Record<string, BridgeStateReport> } {
  const bridgeState: BridgeStateReport = {
    state_event: 'RUNNING',
    timestamp: Math.floor(now / 1000),
    ttl: 240,
    source: 'bridge',
  };
  if (userId === undefined || status === undefined) return { bridgeState, remoteState: {} };
  const event = remoteStateOf(status);
  const report: BridgeStateReport = {
    state_event: event,
    timestamp: Math.floor(now / 1000),
    ttl: event === 'CONNECTED' ? 3600 : 240,
    source: 'bridge',
    user_id: userId,
    remote_id: userId,
    remote_name: userId,
    message: MESSAGES[event],
    ...(event === 'BAD_CREDENTIALS' || event === 'TRANSIENT_DISCONNECT'
      ? { error: event.toLowerCase() }
      : {}),
  };
  return { bridgeState, remoteState: { [userId]: report } };
}
