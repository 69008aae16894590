/**
 * Interactive verification of the bridge bot by a local user (SAS, emoji), so that their client
 * trusts the bot once. The user's client asks the bot's device, to-device (as "Verify" on the bot's
 * session does) or in the direct chat with the bot (as Element's "Verify" on a profile does; the
 * events come through the inbound queue, the answers go to the room unencrypted, as the SDKs send
 * them). The bot accepts with `m.sas.v1` only, accepts the SAS the client starts, and once the keys
 * are exchanged posts the emojis (and the numbers) in the user's management room and confirms its
 * side. The bot cannot see the user's screen: the user confirming in their client, after
 * comparing, is what proves the match; their client then trusts the bot's device and its
 * cross-signing identity (the bot's MAC covers its master key).
 *
 * Requests from users the bridge does not serve (permission `none`) are cancelled, and so are
 * requests to a ghost's device (each ghost is cross-signed by its own identity; it answers none).
 * Each verification message a device receives moves its flow one step (`arrived`), one step at a
 * time; the machine keeps the flow's state, so a repeated or late message changes nothing.
 */
import * as W from '@matrix-org/matrix-sdk-crypto-wasm';
import type { Logger } from '../../../src/observability/logger.js';
import type { Device, MachineAccess, VerificationEvent } from './devices.js';

export interface BotVerificationContext {
  /** Whether the bridge serves the user (a permission other than `none`). */
  readonly allowed: (userId: string) => boolean;
  /** Posts a notice for the user in their management room. */
  readonly tell: (userId: string, text: string) => Promise<void>;
  readonly log: Logger;
}

/** What a step leaves to do outside the machine: a notice to post, then the bot's confirmation. */
interface Outcome {
  readonly notice?: string;
  readonly confirm?: boolean;
}

type VerificationMessage = W.ToDeviceRequest | W.RoomMessageRequest | undefined;

/** Sends a verification message the machine handed back, if it did. */
async function sendMessage(access: MachineAccess, r: VerificationMessage): Promise<void> {
  if (r !== undefined) await access.send(withAcceptMethod(r));
}

/**
 * The specification's schema of `m.key.verification.accept` still lists `method` among its
 * required fields (a leftover of r0.6: matrix-spec-proposals#2651), which the crypto library
 * leaves out: the bot adds `m.sas.v1`, the one method with an accept. Clients ignore it.
 */
function withAcceptMethod(
  r: W.ToDeviceRequest | W.RoomMessageRequest,
): W.ToDeviceRequest | W.RoomMessageRequest {
  if (r.event_type !== 'm.key.verification.accept') return r;
  const method = (content: object) => JSON.stringify({ method: 'm.sas.v1', ...content });
  if (r instanceof W.RoomMessageRequest)
    return new W.RoomMessageRequest(
      r.id,
      r.room_id,
      r.txn_id,
      r.event_type,
      method(JSON.parse(r.body) as object),
    );
  const body = JSON.parse(r.body) as { messages?: Record<string, Record<string, object>> };
  for (const devices of Object.values(body.messages ?? {}))
    for (const [id, content] of Object.entries(devices)) devices[id] = JSON.parse(method(content)) as object;
  return new W.ToDeviceRequest(r.id, r.event_type, r.txn_id, JSON.stringify(body));
}

/** The event types of in-room verification (the request itself is an `m.room.message`). */
export const VERIFICATION_EVENT_TYPES = [
  'm.key.verification.ready',
  'm.key.verification.start',
  'm.key.verification.accept',
  'm.key.verification.key',
  'm.key.verification.mac',
  'm.key.verification.done',
  'm.key.verification.cancel',
] as const;

/** Whether a message is an in-room verification request (`msgtype` `m.key.verification.request`). */
export const isVerificationRequest = (content: Record<string, unknown>): boolean =>
  content['msgtype'] === 'm.key.verification.request';

/** A key as Element shows a session key: groups of four characters. */
export const groupsOfFour = (key: string): string => key.replace(/(.{4})(?=.)/g, '$1 ');

/** A flow the bot takes part in: the machine's objects, which follow it (the machine forgets it once over). */
interface Flow {
  readonly request: W.VerificationRequest;
  sas?: W.Sas;
  /** The emojis were posted: the user is told how it ends. */
  shown: boolean;
}

export class BotVerifications {
  #queue: Promise<void> = Promise.resolve();
  /** The flows under way, by user and flow id. */
  readonly #flows = new Map<string, Flow>();

  constructor(
    private readonly device: Device,
    private readonly c: BotVerificationContext,
  ) {}

  /** Verification messages the bot's device received: each flow moves on, one step at a time. */
  arrived(events: readonly VerificationEvent[]): void {
    for (const e of events) {
      this.#queue = this.#queue
        .then(() => this.#step(e.sender, e.flowId))
        .catch((err: unknown) =>
          this.c.log.warn(
            { user: e.sender, flow: e.flowId, err: (err as Error).message },
            'verification step failed',
          ),
        );
    }
  }

  /** Resolves once the steps under way are done. */
  settled(): Promise<void> {
    return this.#queue;
  }

  async #step(sender: string, flowId: string): Promise<void> {
    const outcome = await this.device.withMachine((access) => this.#advance(access, sender, flowId));
    if (outcome.notice !== undefined) await this.c.tell(sender, outcome.notice);
    if (outcome.confirm === true) {
      await this.device.withMachine((access) => this.#confirm(access, sender, flowId));
      // Their confirmation may have come first: the flow may be done now.
      await this.#step(sender, flowId);
    }
  }

  /**
   * The flow's request, held from its first message on: the machine drops a flow that is over
   * when it next lists its outgoing requests, which may be before its last message is looked at.
   */
  #flow(access: MachineAccess, sender: string, flowId: string): Flow | undefined {
    const key = `${sender} ${flowId}`;
    let flow = this.#flows.get(key);
    if (flow === undefined) {
      const request = access.machine.getVerificationRequest(new W.UserId(sender), flowId);
      if (request === undefined) return undefined;
      flow = { request, shown: false };
      this.#flows.set(key, flow);
    }
    // Flows that ended unseen (timed out) are let go.
    for (const [k, f] of this.#flows)
      if (k !== key && (f.request.isDone() || f.request.isCancelled() || f.request.timedOut()))
        this.#flows.delete(k);
    return flow;
  }

  async #advance(access: MachineAccess, sender: string, flowId: string): Promise<Outcome> {
    const flow = this.#flow(access, sender, flowId);
    if (flow === undefined) return {};
    const { request } = flow;
    const phase = request.phase();
    this.c.log.debug(
      { user: sender, flow: flowId, phase: W.VerificationRequestPhase[phase] },
      'verification step',
    );
    if (!this.c.allowed(sender)) {
      this.#flows.delete(`${sender} ${flowId}`);
      if (!request.isCancelled()) {
        this.c.log.info(
          { user: sender },
          'verification request from a user the bridge does not serve: cancelled',
        );
        await sendMessage(access, request.cancel());
      }
      return {};
    }
    switch (phase) {
      case W.VerificationRequestPhase.Requested:
        if (request.weStarted()) return {};
        // The user's devices, one of which starts the SAS next, are known before it comes.
        await access.machine.updateTrackedUsers([new W.UserId(sender)]);
        await access.sendQueued();
        await sendMessage(access, request.acceptWithMethods([W.VerificationMethod.SasV1]));
        this.c.log.info({ user: sender, flow: flowId }, 'verification request accepted (SAS)');
        return {};
      case W.VerificationRequestPhase.Transitioned: {
        const sas = flow.sas ?? request.getVerification();
        if (!(sas instanceof W.Sas)) {
          await sendMessage(access, request.cancel());
          return {};
        }
        flow.sas = sas;
        if (!sas.weStarted() && !sas.hasBeenAccepted()) await sendMessage(access, sas.accept());
        if (!sas.canBePresented() || flow.shown) return {};
        flow.shown = true;
        return { notice: sasNotice(sas), confirm: true };
      }
      case W.VerificationRequestPhase.Done:
        this.#flows.delete(`${sender} ${flowId}`);
        this.c.log.info({ user: sender, flow: flowId }, 'verification done');
        if (!flow.shown) return {};
        return {
          notice: 'Verification complete: your client now counts the bot as verified.',
        };
      case W.VerificationRequestPhase.Cancelled: {
        this.#flows.delete(`${sender} ${flowId}`);
        if (!flow.shown) return {};
        const reason = request.cancelInfo?.reason();
        return { notice: `The verification was cancelled${reason ? `: ${reason}` : ''}.` };
      }
      default:
        return {};
    }
  }

  /** The bot's side of the comparison, once the emojis are posted (the user's proves the match). */
  async #confirm(access: MachineAccess, sender: string, flowId: string): Promise<void> {
    const sas = this.#flows.get(`${sender} ${flowId}`)?.sas;
    if (sas === undefined || sas.isCancelled() || sas.haveWeConfirmed()) return;
    for (const r of await sas.confirm()) await sendMessage(access, r);
  }
}

/** The notice with the short authentication string: the emojis (and the numbers) to compare. */
function sasNotice(sas: W.Sas): string {
  const emoji = sas.emoji()?.map((e) => `${e.symbol} ${e.description}`);
  const decimals = sas.decimals();
  const lines = [`Verification of the bridge bot, asked by your session ${sas.otherDeviceId.toString()}.`];
  if (emoji !== undefined && sas.supportsEmoji())
    lines.push(`Compare these emojis with what your client shows: ${emoji.join(', ')}`);
  if (decimals !== undefined) lines.push(`(as numbers: ${[...decimals].join(' ')})`);
  lines.push(
    'If they match, confirm there; if not, cancel there. The bot cannot see your screen: your confirmation is what proves the match.',
  );
  return lines.join('\n');
}

/** Cancels the verification requests a ghost's device received (ghosts answer none). */
export async function declineVerifications(
  device: Device,
  events: readonly VerificationEvent[],
  log: Logger,
): Promise<void> {
  await device.withMachine(async (access) => {
    for (const e of events) {
      const request = access.machine.getVerificationRequest(new W.UserId(e.sender), e.flowId);
      if (request === undefined || request.isCancelled() || request.isDone()) continue;
      log.info({ user: e.sender, ghost: device.userId }, 'verification request to a ghost: cancelled');
      await sendMessage(access, request.cancel());
    }
  });
}

/** What the bot's device says of itself and of a user, for the `encryption` command. */
export interface BotCryptoInfo {
  readonly deviceId: string;
  /** The device's Ed25519 key (unpadded base64). */
  readonly ed25519: string;
  /** The bot's cross-signing master key (unpadded base64), once it has one. */
  readonly masterKey: string | undefined;
  /** The user's sessions an emoji verification with the bot completed with (the bot trusts them since). */
  readonly verifiedSessions: readonly string[];
}

export function describeDevice(device: Device, userId: string): Promise<BotCryptoInfo> {
  return device.withMachine(async ({ machine }) => {
    const own = await machine.getIdentity(new W.UserId(device.userId));
    let masterKey: string | undefined;
    if (own !== undefined) {
      const keys = (JSON.parse(own.masterKey) as { keys?: Record<string, string> }).keys ?? {};
      masterKey = Object.values(keys)[0];
    }
    const theirs = await machine.getUserDevices(new W.UserId(userId));
    return {
      deviceId: device.deviceId,
      ed25519: machine.identityKeys.ed25519.toBase64(),
      masterKey,
      verifiedSessions: theirs
        .devices()
        .filter((d) => d.isLocallyTrusted())
        .map((d) => d.deviceId.toString()),
    };
  });
}
