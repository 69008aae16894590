/**
 * Interactive verification of the bridge's devices by a local user (SAS, emoji), so that their
 * client trusts them once: the bot's, and a contact's ghost's. The user's client asks the device,
 * to-device (as "Verify" on a session does) or in a room (as Element's "Verify" on a profile does:
 * in the direct chat with the bot, the management room, or with the ghost, its portal; the events
 * come through the inbound queue, the answers go to the room unencrypted, as the SDKs send them).
 * The device accepts with `m.sas.v1` only, accepts the SAS the client starts, and once the keys
 * are exchanged the bot posts the emojis (and the numbers) in the user's management room, and the
 * device confirms its side. The bridge cannot see the user's screen: the user confirming in their
 * client, after comparing, is what proves the match; their client then trusts the device and its
 * user's cross-signing identity (the MAC covers the user's master key). Bot and ghosts share the
 * flow (`Verifications`, one per device); only who may ask and what the notices say differ.
 *
 * Who may ask: for the bot, a user the bridge serves (permission other than `none`); for a ghost,
 * such a user with a portal with its contact. Other requests are cancelled. Verifying a ghost
 * proves that its session is the bridge's for that contact (the bridge holds its keys), not the
 * contact's phone: that is the Signal safety number (`safety +number`).
 * Each verification message a device receives moves its flow one step (`arrived`), one step at a
 * time; the machine keeps the flow's state, so a repeated or late message changes nothing.
 */
import * as W from '@matrix-org/matrix-sdk-crypto-wasm';
import type { Logger } from '../../../src/observability/logger.js';
import type { Device, MachineAccess, VerificationEvent } from './devices.js';

export interface VerificationContext {
  /** Whether the bridge serves the user (a permission other than `none`). */
  readonly allowed: (userId: string) => boolean;
  /** Whether the user has a portal with the ghost's contact (the portal is theirs). */
  readonly sharesPortal: (userId: string, ghostId: string) => Promise<boolean>;
  /** Posts a notice for the user in their management room. */
  readonly tell: (userId: string, text: string) => Promise<void>;
  readonly log: Logger;
}

/** Whose device is verified: the bot's, or a ghost's (its contact's phone number, `+4915...`). */
export type Verified = { readonly bot: true } | { readonly bot?: false; readonly phone: string };

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

/**
 * Makes the device know the devices of users asking it to verify: the machine looks at a request
 * from a device it knows only (one whose user it never encrypted for would go unanswered, not even
 * refused). Done before the machine is given the request.
 */
export async function knowAsking(device: Device, senders: readonly string[]): Promise<void> {
  await device.withMachine(async ({ machine, sendQueued }) => {
    // Only users the device does not follow yet: for the others (the bot and its users, always)
    // there is nothing to ask, and nothing to send beside the device's own sending.
    const tracked = new Set([...(await machine.trackedUsers())].map((u) => u.toString()));
    const unknown = senders.filter((s) => !tracked.has(s));
    if (unknown.length === 0) return;
    await machine.updateTrackedUsers(unknown.map((s) => new W.UserId(s)));
    await sendQueued();
  });
}

/** A key as Element shows a session key: groups of four characters. */
export const groupsOfFour = (key: string): string => key.replace(/(.{4})(?=.)/g, '$1 ');

/** A flow the device takes part in: the machine's objects, which follow it (the machine forgets it once over). */
interface Flow {
  readonly request: W.VerificationRequest;
  sas?: W.Sas;
  /** The emojis were posted: the user is told how it ends. */
  shown: boolean;
}

/** The verifications of one of the bridge's devices (the bot's, a ghost's). */
export class Verifications {
  #queue: Promise<void> = Promise.resolve();
  /** The flows under way, by user and flow id. */
  readonly #flows = new Map<string, Flow>();

  constructor(
    private readonly device: Device,
    private readonly verified: Verified,
    private readonly c: VerificationContext,
  ) {}

  /** Verification messages the device received: each flow moves on, one step at a time. */
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

  /** Whether the user may verify this device (asked at each step: permissions may change). */
  async #allowed(userId: string): Promise<boolean> {
    if (!this.c.allowed(userId)) return false;
    return this.verified.bot === true || (await this.c.sharesPortal(userId, this.device.userId));
  }

  async #step(sender: string, flowId: string): Promise<void> {
    const allowed = await this.#allowed(sender);
    const outcome = await this.device.withMachine((access) => this.#advance(access, sender, flowId, allowed));
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

  async #advance(access: MachineAccess, sender: string, flowId: string, allowed: boolean): Promise<Outcome> {
    const flow = this.#flow(access, sender, flowId);
    if (flow === undefined) return {};
    const { request } = flow;
    const phase = request.phase();
    const log = { user: sender, device: this.device.userId, flow: flowId };
    this.c.log.debug({ ...log, phase: W.VerificationRequestPhase[phase] }, 'verification step');
    if (!allowed) {
      this.#flows.delete(`${sender} ${flowId}`);
      if (!request.isCancelled()) {
        this.c.log.info(
          log,
          this.verified.bot === true
            ? 'verification request from a user the bridge does not serve: cancelled'
            : 'verification request from a user without a portal with the contact: cancelled',
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
        this.c.log.info(log, 'verification request accepted (SAS)');
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
        return { notice: sasNotice(sas, this.verified), confirm: true };
      }
      case W.VerificationRequestPhase.Done:
        this.#flows.delete(`${sender} ${flowId}`);
        this.c.log.info(log, 'verification done');
        if (!flow.shown) return {};
        return {
          notice:
            this.verified.bot === true
              ? 'Verification complete: your client now counts the bot as verified.'
              : `Verification complete: your client now counts ${this.verified.phone}'s session on this bridge as verified (not their phone: \`safety ${this.verified.phone}\` is for that).`,
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

  /** The device's side of the comparison, once the emojis are posted (the user's proves the match). */
  async #confirm(access: MachineAccess, sender: string, flowId: string): Promise<void> {
    const sas = this.#flows.get(`${sender} ${flowId}`)?.sas;
    if (sas === undefined || sas.isCancelled() || sas.haveWeConfirmed()) return;
    for (const r of await sas.confirm()) await sendMessage(access, r);
  }
}

/** The notice with the short authentication string: the emojis (and the numbers) to compare. */
function sasNotice(sas: W.Sas, verified: Verified): string {
  const emoji = sas.emoji()?.map((e) => `${e.symbol} ${e.description}`);
  const decimals = sas.decimals();
  const asked = `asked by your session ${sas.otherDeviceId.toString()}`;
  const lines = [
    verified.bot === true
      ? `Verification of the bridge bot, ${asked}.`
      : `Verifying ${verified.phone}'s session on this bridge, ${asked}.`,
  ];
  if (emoji !== undefined && sas.supportsEmoji())
    lines.push(`Compare these emojis with what your client shows: ${emoji.join(', ')}`);
  if (decimals !== undefined) lines.push(`(as numbers: ${[...decimals].join(' ')})`);
  lines.push(
    'If they match, confirm there; if not, cancel there. The bot cannot see your screen: your confirmation is what proves the match.',
  );
  if (verified.bot !== true)
    lines.push(
      `This verifies that the session is the bridge's account for ${verified.phone} (the bridge holds its keys), not ${verified.phone}'s phone: their own identity is the Signal safety number, \`safety ${verified.phone}\`.`,
    );
  return lines.join('\n');
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
