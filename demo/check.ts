/**
 * `npm run demo -- --check`: one scripted round trip through the running demo, as a user of an XMPP
 * client would make it. Alice (a real XMPP client) sends a text to the echo contact and gets the
 * echo back, then a picture (uploaded through Prosody's XEP-0363 service and sent with OOB, as
 * Conversations and Gajim send pictures) and gets the same picture back; receipts both ways. Then
 * the group: the answering contact's XEP-0249 invitation to the demo group's room, the join
 * (XEP-0045), its hello there, and its answer to what Alice says in the room.
 */
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { xml, type Element } from '@xmpp/xml';
import type { ReceivedMessage } from '../emulator/native-user.js';
import type { DemoContact } from './contacts.js';
import { bareOf, CONTACTS, GROUP, loginAlice, type DemoStack } from './stack.js';
import type { TestUser } from '../test/support/xmpp-servers.js';

/** A step that did not pass: which, and why. */
export class CheckFailed extends Error {
  readonly reason: string;
  constructor(
    readonly step: string,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`${step}: ${reason}`);
    this.name = 'CheckFailed';
    this.reason = reason;
  }
}

const TIMEOUT_MS = 20_000;

/** Runs the steps in order; `passed` is called after each. Throws CheckFailed at the first failure. */
export async function runCheck(stack: DemoStack, passed: (step: string) => void): Promise<void> {
  const echo = stack.contacts[0];
  if (!echo) throw new CheckFailed('find the echo contact', new Error('the demo has no contacts'));
  const echoJid = stack.contactJid(CONTACTS[0]?.phone ?? '');
  const step = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    let value: T;
    try {
      value = await run();
    } catch (err) {
      throw new CheckFailed(name, err);
    }
    passed(name);
    return value;
  };

  const alice = await step(`${stack.alice.jid} logs in (127.0.0.1:${stack.prosody.c2sPort})`, () =>
    loginAlice(stack),
  );
  try {
    // --- text ---
    const textId = `check-text-${randomBytes(4).toString('hex')}`;
    const text = 'Hello from the demo check';
    await step(`${stack.alice.jid} sends "${text}" to ${echoJid}`, () =>
      alice.client.send(chatMessage(echoJid, textId, text)),
    );
    await step(`the echo user received the text`, () =>
      echo.user.waitForMessage((m) => m.content.kind === 'text' && m.content.text === text, TIMEOUT_MS),
    );
    await step(`${stack.alice.jid} got a delivery receipt (XEP-0184) for it`, () =>
      alice.waitForStanza((s) => isReceipt(s, echoJid, textId), TIMEOUT_MS),
    );
    const echoed = await step(`${stack.alice.jid} got the echo "echo: ${text}"`, () =>
      alice.waitForStanza(
        (s) => isChat(s, echoJid) && s.getChild('body')?.getText() === `echo: ${text}`,
        TIMEOUT_MS,
      ),
    );
    await step('the echo user got a delivery receipt for its echo', () =>
      waitForSentReceipt(echo, (what) => what === JSON.stringify(echoed.getChild('body')?.getText())),
    );

    // --- an image ---
    const image = demoPng();
    const service = stack.prosody.uploadService;
    if (service === undefined) throw new CheckFailed('find the upload service', new Error('none configured'));
    const url = await step(`${stack.alice.jid} uploads a picture (${image.length} bytes) to ${service}`, () =>
      alice.upload(service, image, 'demo-check.png', 'image/png'),
    );
    const imageId = `check-image-${randomBytes(4).toString('hex')}`;
    await step(`${stack.alice.jid} sends the picture to ${echoJid}`, () =>
      alice.client.send(
        chatMessage(echoJid, imageId, url, [xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url))]),
      ),
    );
    const got = await step('the echo user received the picture', () =>
      echo.user.waitForMessage((m) => m.content.kind === 'image', TIMEOUT_MS),
    );
    await step('the picture the echo user decrypted is the one sent', async () => {
      const bytes = await echo.user.downloadMedia(got);
      if (!bytes.equals(image)) throw new Error(`got ${bytes.length} different bytes`);
    });
    await step(`${stack.alice.jid} got a delivery receipt (XEP-0184) for the picture`, () =>
      alice.waitForStanza((s) => isReceipt(s, echoJid, imageId), TIMEOUT_MS),
    );
    const back = await step(`${stack.alice.jid} got a picture back`, () =>
      alice.waitForStanza((s) => isChat(s, echoJid) && oobUrl(s) !== undefined, TIMEOUT_MS),
    );
    await step('the picture that came back is the one sent, byte for byte', async () => {
      const res = await fetch(oobUrl(back) ?? '');
      if (res.status !== 200) throw new Error(`downloading it answered HTTP ${res.status}`);
      const bytes = Buffer.from(await res.arrayBuffer());
      if (!bytes.equals(image)) throw new Error(`got ${bytes.length} bytes that differ`);
    });
    await step('the echo user got a delivery receipt for the picture it sent', () =>
      waitForSentReceipt(echo, (what) => what.startsWith('[image')),
    );

    await checkGroup(stack, alice, step);
  } finally {
    await alice.stop();
  }
}

type Step = <T>(name: string, run: () => Promise<T>) => Promise<T>;

const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';

/**
 * The demo group as an XMPP client sees it: the invitation, the join (the answering contact among
 * the occupants, the subject), the contact's hello, and its answer to a message in the room; the
 * echo contact gets the message and says nothing.
 */
async function checkGroup(stack: DemoStack, alice: TestUser, step: Step): Promise<void> {
  const [echo, sam] = [stack.contacts[0], stack.contacts[GROUP.maker]];
  const samSpec = CONTACTS[GROUP.maker];
  if (!echo || !sam || !samSpec)
    throw new CheckFailed('find the contacts', new Error('the demo has no contacts'));
  const samJid = stack.contactJid(samSpec.phone);
  const me = stack.alice.jid;
  const invitation = await step(`${me} got an invitation (XEP-0249) to the room of "${GROUP.subject}"`, () =>
    alice.waitForStanza(
      (s) =>
        s.name === 'message' &&
        (s.getChild('x', 'jabber:x:conference')?.attrs.reason ?? '').includes(`"${GROUP.subject}"`),
      TIMEOUT_MS,
    ),
  );
  const room = String(invitation.getChild('x', 'jabber:x:conference')?.attrs.jid);
  const nick = stack.alice.user;
  const samNick = await step(
    `${me} joins ${room} (XEP-0045): ${samSpec.phone} is there, the subject is "${GROUP.subject}"`,
    async () => {
      await alice.client.send(xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: MUC })));
      await alice.waitForStanza(
        (s) => s.name === 'presence' && s.attrs.from === `${room}/${nick}` && s.attrs.type === undefined,
        TIMEOUT_MS,
      );
      const occupant = alice.stanzas.find(
        (s) =>
          s.name === 'presence' &&
          (s.attrs.from ?? '').startsWith(`${room}/`) &&
          bareOf(s.getChild('x', MUC_USER)?.getChild('item')?.attrs.jid) === samJid,
      );
      if (!occupant) throw new Error(`no occupant presence for ${samJid}`);
      const subject = await alice.waitForStanza(
        (s) => s.name === 'message' && bareOf(s.attrs.from) === room && s.getChild('subject') !== undefined,
        TIMEOUT_MS,
      );
      if (subject.getChild('subject')?.getText() !== GROUP.subject)
        throw new Error(`the subject is ${subject.toString()}`);
      return String(occupant.attrs.from).slice(room.length + 1);
    },
  );
  const inRoom = (s: Element, from: string, body: (b: string) => boolean) =>
    s.name === 'message' &&
    s.attrs.type === 'groupchat' &&
    s.attrs.from === `${room}/${from}` &&
    body(s.getChild('body')?.getText() ?? '');
  await step(`${me} got ${samSpec.phone}'s hello in the room`, () =>
    alice.waitForStanza((s) => inRoom(s, samNick, (b) => b === GROUP.hello), TIMEOUT_MS),
  );
  const text = 'Hello from the demo check, everyone';
  const id = `check-group-${randomBytes(4).toString('hex')}`;
  await step(`${me} says "${text}" in the room; the room reflects it`, async () => {
    await alice.client.send(
      xml(
        'message',
        { type: 'groupchat', to: room, id },
        xml('body', {}, text),
        xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id }),
      ),
    );
    await alice.waitForStanza((s) => inRoom(s, nick, (b) => b === text), TIMEOUT_MS);
  });
  const isIt = (m: ReceivedMessage) =>
    m.group !== undefined && m.content.kind === 'text' && m.content.text === text;
  await step(`${samSpec.phone} received it in the group`, () => sam.user.waitForMessage(isIt, TIMEOUT_MS));
  await step(`${me} got ${samSpec.phone}'s answer in the room`, () =>
    alice.waitForStanza((s) => inRoom(s, samNick, (b) => samSpec.answers.includes(b)), TIMEOUT_MS),
  );
  await step('the echo user received it too, and stayed quiet in the group', async () => {
    await echo.user.waitForMessage(isIt, TIMEOUT_MS);
    if (echo.sentInGroups.length > 0)
      throw new Error(`it sent ${echo.sentInGroups.length} message(s) into the group`);
  });
}

function chatMessage(to: string, id: string, body: string, extra: Element[] = []): Element {
  return xml(
    'message',
    { type: 'chat', to, id },
    xml('body', {}, body),
    xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id }),
    xml('request', { xmlns: 'urn:xmpp:receipts' }),
    xml('markable', { xmlns: 'urn:xmpp:chat-markers:0' }),
    ...extra,
  );
}

function isChat(s: Element, from: string): boolean {
  return s.name === 'message' && s.attrs.type !== 'error' && bareOf(s.attrs.from) === from;
}

function isReceipt(s: Element, from: string, id: string): boolean {
  return isChat(s, from) && s.getChild('received', 'urn:xmpp:receipts')?.attrs.id === id;
}

function oobUrl(s: Element): string | undefined {
  return s.getChild('x', 'jabber:x:oob')?.getChild('url')?.getText() ?? undefined;
}

/** Waits for the delivery (or read) receipt of a message the contact sent (found by what it was). */
export async function waitForSentReceipt(
  contact: DemoContact,
  sent: (what: string) => boolean,
  type: 'delivery' | 'read' = 'delivery',
): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const ids = [...contact.sent.entries()].filter(([, what]) => sent(what)).map(([id]) => id);
    if (contact.user.receipts.some((r) => r.type === type && ids.includes(r.id))) return;
    if (Date.now() > deadline) {
      throw new Error(
        ids.length === 0
          ? `the contact sent no such message within ${TIMEOUT_MS} ms`
          : `no ${type} receipt within ${TIMEOUT_MS} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A small PNG (64x64, random noise) so that every run sends different bytes. */
export function demoPng(): Buffer {
  const w = 64;
  const h = 64;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  const noise = randomBytes(w * 3 * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0; // filter: none
    noise.copy(raw, y * (w * 3 + 1) + 1, y * w * 3, (y + 1) * w * 3);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}
