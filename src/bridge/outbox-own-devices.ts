/**
 * The outbox and the account's other devices (multi-device sync, docs/PROTOCOL.md): the copy of a
 * message sent from here for them, and the receipts for a message the user sent from one of them.
 */
import { create } from '@bufbuild/protobuf';
import { encodeContent } from '../protocol/content.js';
import { DeviceSentMessageSchema, MessageSchema } from '../protocol/gen/interop/v1/message_pb.js';
import type { Enc } from '../protocol/stanza/index.js';
import { signalAddress } from '../signal/address.js';
import type { OutboxEntry } from '../store/repositories.js';
import type { BuiltContent } from './content.js';
import type { PuppetContext } from './context.js';
import { showsDelivery } from './fallbacks.js';
import type { RemoteDevices } from './sessions.js';

/**
 * Copies for the account's other devices: the user's other device shows what they sent from here.
 * Sent to the devices this puppet has a session with (the ones that wrote to it), never to itself.
 * Best effort: a copy that cannot be made is logged, the message itself has gone.
 */
export async function sendCopies(
  ctx: PuppetContext,
  remoteDevices: RemoteDevices,
  entry: OutboxEntry,
  remote: string,
  built: BuiltContent,
): Promise<void> {
  const own = ctx.accountJid;
  try {
    // The device list is cached (and told of a device that writes): no lookup per message.
    const devices = (await remoteDevices.devicesOf(own)).filter((d) => d !== ctx.puppet.deviceId);
    if (devices.length === 0) return;
    const copy = encodeContent(
      create(MessageSchema, {
        deviceSentMessage: create(DeviceSentMessageSchema, {
          destinationJid: remote,
          message: built.content,
          messageId: entry.id,
        }),
      }),
    );
    const encs: Enc[] = [];
    for (const device of devices) {
      const enc = await ctx.signal.encrypt(signalAddress(own, device), copy);
      encs.push({
        type: enc.type,
        device,
        ciphertext: enc.body,
        ...(built.mediaType ? { mediaType: built.mediaType } : {}),
      });
    }
    await ctx.sessionGate.flushed();
    ctx.connection.send({
      kind: 'message',
      id: `${entry.id}.SYNC`,
      to: own,
      type: built.type,
      t: Math.floor(entry.createdAt / 1000),
      encs,
    });
  } catch (err) {
    ctx.log?.info({ id: entry.id, err: (err as Error).message }, "no copy for the account's other devices");
  }
}

/**
 * A delivery or read receipt for a message the user sent from another of their devices (in the
 * message map as the account's own, not in the outbox): shown, nothing to advance.
 */
export async function receiptForOtherDevice(
  ctx: PuppetContext,
  id: string,
  state: 'delivered' | 'read',
  from: string,
  by: string | undefined,
): Promise<{ shown?: Promise<void> }> {
  const { store, puppet } = ctx;
  const portal = await store.portals.byRemote(puppet.id, from);
  if (!portal) return {};
  const mapped = await store.messages.byRemote(portal.id, id);
  if (!mapped || mapped.sender !== ctx.accountJid) return {};
  const adapter = ctx.adapter();
  if (!adapter || !showsDelivery(adapter.capabilities, state)) return {};
  try {
    const shown = adapter.updateDelivery({
      localId: mapped.localId,
      localUser: puppet.localId,
      remote: portal.remoteJid,
      state,
      ...(by !== undefined ? { by } : {}),
    });
    if (!shown) return {};
    shown.catch(() => undefined);
    return { shown };
  } catch (err) {
    ctx.log?.warn({ err: (err as Error).message }, 'adapter.updateDelivery threw');
    return {};
  }
}
