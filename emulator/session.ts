/**
 * One authenticated connection: reads stanzas, answers or routes each, and delivers the device's
 * queue in order. Malformed XML or a stanza over a limit closes the connection (with a logged
 * reason); an unknown or invalid stanza is answered with an error and the connection stays up; a
 * failure inside a handler is answered with error 500, never a crash.
 */
import { InteropError } from '../src/errors.js';
import type { Logger } from '../src/observability/logger.js';
import {
  decodeStanza,
  formatJid,
  isGroupJid,
  parseJid,
  StanzaInvalidError,
  StanzaUnknownError,
  toBytes,
  type AckClass,
  type IqBody,
  type IqStanza,
  type Stanza,
  type StanzaLimits,
} from '../src/protocol/stanza/index.js';
import type { NoiseSocket } from '../src/protocol/transport/index.js';
import type { Connection, Core } from './core.js';
import { lookUp } from './directory.js';
import { enlist, unenlist } from './enlistment.js';
import { acceptGroupMessage, relayGroupReceipt } from './group-relay.js';
import { handleGroupRequest } from './groups.js';
import { countKeys, fetchBundles, uploadKeys } from './prekey-server.js';
import { handleProfileRequest } from './profiles.js';
import {
  acceptMessage,
  deliveryBytes,
  GATEWAY_JID,
  relayChatstate,
  relayPresence,
  relayReceipt,
  RelayRefusal,
} from './relay.js';

/** Stanzas an account that is not enlisted may send. */
const ENLISTMENT_OPS: ReadonlySet<IqBody['op']> = new Set(['enlist', 'ping']);

export class Session implements Connection {
  readonly accountJid: string;
  readonly device: number;
  readonly deviceJid: string;
  readonly #socket: NoiseSocket;
  readonly #core: Core;
  readonly #limits: StanzaLimits;
  readonly #log: Logger;
  #enlisted: boolean;
  /** Highest queue seq handed to this connection; everything up to it was sent (or dropped by a fault). */
  #lastSeq = 0;
  #lastDelivered: Uint8Array | undefined;
  /** Delayed sends, in order; a send waits for the ones before it. */
  #outChain: Promise<void> = Promise.resolve();
  #delayedPending = 0;

  constructor(
    core: Core,
    socket: NoiseSocket,
    account: { jid: string; device: number; enlisted: boolean },
    limits: StanzaLimits,
  ) {
    this.#core = core;
    this.#socket = socket;
    this.#limits = limits;
    this.accountJid = account.jid;
    this.device = account.device;
    const { user, server } = parseJid(account.jid);
    this.deviceJid = formatJid({ user, device: account.device, server });
    this.#enlisted = account.enlisted;
    this.#log = core.log.child({ account: this.accountJid, device: this.device });
  }

  get enlisted(): boolean {
    return this.#enlisted;
  }

  setEnlisted(enlisted: boolean): void {
    this.#enlisted = enlisted;
    if (!enlisted) this.#lastSeq = 0;
  }

  get lastDelivered(): Uint8Array | undefined {
    return this.#lastDelivered;
  }

  get closed(): Promise<unknown> {
    return this.#socket.closed;
  }

  close(reason: string): void {
    if (this.#socket.isOpen) {
      this.#log.info({ reason }, 'closing connection');
      this.#socket.close();
    }
  }

  /** Reads and handles stanzas until the connection ends. */
  async run(): Promise<void> {
    this.pump();
    try {
      for await (const frame of this.#socket) this.#onFrame(frame);
    } catch (err) {
      const code = err instanceof InteropError ? err.code : 'unexpected';
      this.#log.info({ code }, 'connection ended with an error');
    }
  }

  // --- sending ---------------------------------------------------------------------------------

  sendBytes(bytes: Uint8Array): void {
    const faults = this.#core.faults;
    if (faults.takeDrop(this.accountJid)) {
      this.#log.debug('fault: dropped an outgoing stanza');
      return;
    }
    const delay = faults.delayFor(this.accountJid);
    if (delay === 0 && this.#delayedPending === 0) {
      this.#write(bytes);
      return;
    }
    this.#delayedPending += 1;
    this.#outChain = this.#outChain
      .then(() => new Promise<void>((resolve) => setTimeout(resolve, delay)))
      .then(() => {
        this.#delayedPending -= 1;
        this.#write(bytes);
      });
  }

  #write(bytes: Uint8Array): void {
    if (!this.#socket.isOpen) return;
    try {
      this.#socket.send(bytes);
    } catch (err) {
      this.#log.warn({ code: (err as InteropError).code }, 'could not send a stanza');
    }
  }

  #send(stanza: Stanza): void {
    this.sendBytes(toBytes(stanza, this.#limits));
  }

  /** Sends queued items the device has not been sent yet, in queue order. */
  pump(): void {
    if (!this.#enlisted || !this.#socket.isOpen) return;
    const store = this.#core.store;
    for (;;) {
      const items = store.pending(this.accountJid, this.device, this.#lastSeq, this.#core.now());
      if (items.length === 0) return;
      for (const item of items) {
        this.#lastSeq = item.seq;
        const bytes = deliveryBytes(item);
        this.sendBytes(bytes);
        if (item.kind === 'message') this.#lastDelivered = bytes;
        // Receipts, like messages, stay queued until the device acks them: one written into a
        // connection that dies with the device is delivered again on its next connection.
      }
    }
  }

  // --- receiving -------------------------------------------------------------------------------

  #onFrame(frame: Buffer): void {
    let stanza: Stanza;
    try {
      stanza = decodeStanza(frame, this.#limits);
    } catch (err) {
      if (err instanceof StanzaUnknownError || err instanceof StanzaInvalidError) {
        this.#answerError(err);
        return;
      }
      // Malformed XML or over a limit: the peer is broken or hostile.
      const code = err instanceof InteropError ? err.code : 'stanza_malformed';
      this.#log.warn({ code, reason: (err as Error).message }, 'closing connection: unreadable stanza');
      this.#socket.close();
      return;
    }
    try {
      this.#handle(stanza);
    } catch (err) {
      this.#log.error({ err, kind: stanza.kind }, 'handler failed');
      this.#answerFailure(stanza, 500, 'internal error');
    }
  }

  #answerError(err: StanzaUnknownError | StanzaInvalidError): void {
    const code = err instanceof StanzaUnknownError ? 501 : 400;
    const { name, id } = err.stanza;
    this.#log.info({ code: err.code, stanza: name }, 'answering a stanza it cannot take');
    if (id === undefined) return; // nothing to reference in an answer
    if (name === 'iq') {
      this.#send({ kind: 'iq', id, body: { op: 'error', error: { code, text: err.message } } });
    } else {
      const cls: AckClass =
        name === 'receipt' ? 'receipt' : name === 'notification' ? 'notification' : 'message';
      this.#send({ kind: 'ack', class: cls, id, from: GATEWAY_JID, error: code });
    }
  }

  /** Refuses a decoded stanza with an error code. */
  #answerFailure(stanza: Stanza, code: number, text: string): void {
    switch (stanza.kind) {
      case 'iq':
        this.#send({ kind: 'iq', id: stanza.id, body: { op: 'error', error: { code, text } } });
        return;
      case 'message':
      case 'receipt':
        this.#send({ kind: 'ack', class: stanza.kind, id: stanza.id, from: GATEWAY_JID, error: code });
        return;
      case 'notification':
        this.#send({ kind: 'ack', class: 'notification', id: stanza.id, from: GATEWAY_JID, error: code });
        return;
      default:
        return; // chatstate, presence, ack: nothing to answer
    }
  }

  #handle(stanza: Stanza): void {
    if (!this.#enlisted) {
      const allowed = stanza.kind === 'iq' && ENLISTMENT_OPS.has(stanza.body.op);
      if (!allowed) {
        if (stanza.kind === 'iq' && (stanza.body.op === 'result' || stanza.body.op === 'error')) return;
        this.#answerFailure(stanza, 403, 'account_not_enlisted: enlist first (<iq xmlns="interop"><enlist>)');
        return;
      }
    }
    switch (stanza.kind) {
      case 'iq':
        this.#onIq(stanza);
        return;
      case 'message':
        this.#refusable(stanza, () => {
          const toGroup = stanza.to !== undefined && isGroupJid(stanza.to);
          const stored = toGroup
            ? acceptGroupMessage(this.#core, this, stanza)
            : acceptMessage(this.#core, this, stanza);
          this.#log.debug({ id: stanza.id, stored }, 'message accepted');
          this.#send({
            kind: 'ack',
            class: 'message',
            id: stanza.id,
            from: GATEWAY_JID,
            t: this.#core.now(),
          });
        });
        return;
      case 'receipt':
        this.#refusable(stanza, () => {
          if (stanza.to !== undefined && isGroupJid(stanza.to)) relayGroupReceipt(this.#core, this, stanza);
          else relayReceipt(this.#core, this, stanza);
          this.#send({
            kind: 'ack',
            class: 'receipt',
            id: stanza.id,
            from: GATEWAY_JID,
            t: this.#core.now(),
          });
        });
        return;
      case 'ack':
        this.#onAck(stanza.class, stanza.id);
        return;
      case 'chatstate':
        this.#refusable(stanza, () => relayChatstate(this.#core, this, stanza));
        return;
      case 'presence':
        this.#refusable(stanza, () => relayPresence(this.#core, this, stanza));
        return;
      case 'notification':
        this.#answerFailure(stanza, 501, 'clients do not send notifications');
        return;
      case 'success':
      case 'failure':
        this.#log.info({ kind: stanza.kind }, 'ignoring an authentication stanza from a client');
        return;
    }
  }

  #refusable(stanza: Stanza, act: () => void): void {
    try {
      act();
    } catch (err) {
      if (!(err instanceof RelayRefusal)) throw err;
      this.#log.info({ kind: stanza.kind, code: err.errorCode, reason: err.message }, 'stanza refused');
      this.#answerFailure(stanza, err.errorCode, err.message);
    }
  }

  /** A device's ack of something it was sent: a message, a receipt (by its message id), a notification. */
  #onAck(cls: AckClass, id: string): void {
    const store = this.#core.store;
    const seq = store.findForAck(this.accountJid, this.device, cls, id);
    // Only what this device was actually sent can be acknowledged.
    if (seq !== undefined && seq <= this.#lastSeq) store.remove(seq);
  }

  #onIq(iq: IqStanza): void {
    const core = this.#core;
    const body = iq.body;
    let answer: IqBody;
    switch (body.op) {
      case 'ping':
        answer = { op: 'result' };
        break;
      case 'prekey_upload':
        answer = uploadKeys(core, this, body);
        break;
      case 'prekey_count':
        answer = countKeys(core, this);
        break;
      case 'prekey_fetch':
        answer = fetchBundles(core, this, body.jids);
        break;
      case 'usync_query':
        answer = lookUp(core, body.contacts);
        break;
      case 'enlist':
        answer = enlist(core, this, body);
        break;
      case 'unenlist':
        answer = unenlist(core, this);
        break;
      case 'media_conn': {
        if (!core.media) {
          answer = { op: 'error', error: { code: 501, text: 'this gateway has no media service' } };
          break;
        }
        const m = core.media.issue(this.accountJid);
        answer = { op: 'media_conn_result', auth: m.auth, ttl: m.ttl, hosts: m.hosts };
        break;
      }
      case 'group_create':
      case 'group_info':
      case 'group_list':
      case 'group_participants':
      case 'group_leave':
      case 'group_subject':
      case 'group_description':
      case 'group_setting':
      case 'group_invite':
      case 'group_invite_reset':
      case 'group_invite_info':
      case 'group_invite_join':
        try {
          answer = handleGroupRequest(core, this.accountJid, iq.to, body);
        } catch (err) {
          answer = this.#refusal(err, body.op, 'group request refused');
        }
        break;
      case 'picture_get':
      case 'picture_set':
      case 'picture_remove':
      case 'profile_get':
      case 'push_name_set':
      case 'status_set':
        try {
          answer = handleProfileRequest(core, { account: this.accountJid, device: this.device }, body);
        } catch (err) {
          answer = this.#refusal(err, body.op, 'profile request refused');
        }
        break;
      default:
        // Answers (result, error, ...) to requests the gateway never sends: nothing to do.
        return;
    }
    this.#send({ kind: 'iq', id: iq.id, from: GATEWAY_JID, body: answer });
  }

  /** The iq error answering a refused request (anything else is a failure: rethrown, answered 500). */
  #refusal(err: unknown, op: IqBody['op'], what: string): IqBody {
    if (!(err instanceof RelayRefusal)) throw err;
    this.#log.info({ op, code: err.errorCode, reason: err.message }, what);
    return { op: 'error', error: { code: err.errorCode, text: err.message } };
  }
}
