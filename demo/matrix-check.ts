/**
 * `npm run demo -- --matrix --check`: one scripted round trip through the running Matrix demo, as
 * a user of Element makes it, with matrix-js-sdk (the engine of Element Web) and its Rust crypto,
 * end-to-end encryption on as in Element: log in with the password (`m.login.password`), set up
 * the session's encryption keys, open an encrypted direct chat with the bridge bot (as Element
 * opens one with a user who has encryption keys), `login`, `login confirm`, `start-chat` with the
 * echo contact, join the portal (encrypted by the bridge), then a text and a picture (an encrypted
 * attachment) both ways with read receipts both ways and the contact's delivery receipts. Then the
 * group: the bot's invitation to the demo group's portal (encrypted too), the answering contact's
 * hello there, and its answer to the user. Every message read is one the client decrypted.
 *
 * matrix-js-sdk is a devDependency: this module is loaded only for `--matrix --check` (the demo
 * runs from a dev checkout, `npm ci` installs it).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  ClientEvent,
  createClient,
  Direction,
  EventType,
  MatrixEvent,
  MsgType,
  Preset,
  ReceiptType,
  RoomEvent,
  SyncState,
  type MatrixClient,
} from 'matrix-js-sdk';
import { logger as sdkLogger } from 'matrix-js-sdk/lib/logger.js';
import loglevel from 'loglevel';
import { CheckFailed, demoPng, waitForSentReceipt } from './check.js';
import { decryptAttachment, encryptAttachment, type EncryptedFile } from './encrypted-file.js';
import type { ReceivedMessage } from '../emulator/native-user.js';
import type { DemoContact } from './contacts.js';
import type { MatrixDemoStack } from './matrix-stack.js';
import { CONTACTS, GROUP } from './stack.js';

const TIMEOUT_MS = 20_000;
const MEGOLM = 'm.megolm.v1.aes-sha2';

/** The SDK logs every sync step; the check prints what the user sees instead. */
function quietSdk(): void {
  loglevel.setLevel('silent');
  for (const l of Object.values(loglevel.getLoggers())) l.setLevel('silent');
  // The SDK's child loggers (one per encrypted room) are made later, at debug level, with their
  // parent's method factory: this one says nothing.
  const root = sdkLogger as unknown as loglevel.Logger;
  root.methodFactory = () => () => undefined;
  root.rebuild();
}

/**
 * The SDK turns its crypto's tracing on at debug level (to the console): errors only. The crypto
 * module is the SDK's own copy (found as Node finds it from the SDK), so the same instance.
 */
async function quietRustCrypto(): Promise<void> {
  let dir = path.dirname(fileURLToPath(import.meta.resolve('matrix-js-sdk')));
  for (;;) {
    const wasm = path.join(dir, 'node_modules', '@matrix-org', 'matrix-sdk-crypto-wasm', 'node.mjs');
    if (existsSync(wasm)) {
      const W = (await import(pathToFileURL(wasm).href)) as {
        Tracing: new (level: unknown) => { turnOn(): void };
        LoggerLevel: { Error: unknown };
      };
      new W.Tracing(W.LoggerLevel.Error).turnOn();
      return;
    }
    if (path.dirname(dir) === dir) return;
    dir = path.dirname(dir);
  }
}

type Content = Record<string, unknown>;

export async function runMatrixCheck(stack: MatrixDemoStack, passed: (step: string) => void): Promise<void> {
  const echo = stack.contacts[0];
  const phone = CONTACTS[0]?.phone;
  if (!echo || phone === undefined) {
    throw new CheckFailed('find the echo contact', new Error('the demo has no contacts'));
  }
  const ghost = stack.ghostOf(phone);
  const me = stack.alice.userId;
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

  quietSdk();
  const client = await step(
    `${me} logs in with the password (m.login.password) at ${stack.synapse.url}`,
    async () => {
      const login = await createClient({ baseUrl: stack.synapse.url }).loginRequest({
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: stack.alice.user },
        password: stack.alice.password,
        initial_device_display_name: 'interop-bridge demo check',
      });
      quietSdk();
      return createClient({
        baseUrl: stack.synapse.url,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
      });
    },
  );
  try {
    await step(
      `its session ${client.getDeviceId() ?? ''} sets up end-to-end encryption (Rust crypto) and publishes its keys`,
      async () => {
        // In memory: the SDK's IndexedDB store needs a browser. The SDK turns its crypto's tracing
        // on at debug level (console.debug and console.info) as it starts it: silent until
        // quietRustCrypto has it say errors only.
        const { debug, info } = console;
        console.debug = console.info = () => undefined;
        try {
          await client.initRustCrypto({ useIndexedDB: false });
          await quietRustCrypto();
        } finally {
          console.debug = debug;
          console.info = info;
        }
        quietSdk();
        await startSyncing(client);
        // The session's keys on the homeserver before any chat, so that the bot encrypts its first
        // message for this session too.
        await until(async () => {
          const keys = await client.downloadKeysForUsers([me]);
          return keys.device_keys?.[me]?.[client.getDeviceId() ?? ''] !== undefined;
        }, "the session's keys on the homeserver");
      },
    );
    await runRoundTrip(stack, client, step, { echo, phone, ghost });
    await checkGroup(stack, client, step);
    await step(
      `every message in ${me}'s rooms came encrypted (m.room.encrypted), and its client decrypted each`,
      () => everythingDecrypted(client),
    );
  } finally {
    client.stopClient();
  }
}

type Step = <T>(name: string, run: () => Promise<T>) => Promise<T>;

/** The bot's direct chat, the commands, and a text and a picture both ways with the echo contact. */
async function runRoundTrip(
  stack: MatrixDemoStack,
  client: MatrixClient,
  step: Step,
  { echo, phone, ghost }: { echo: DemoContact; phone: string; ghost: string },
): Promise<void> {
  const { bot } = stack;
  const me = stack.alice.userId;
  /** `${eventId} ${userId}` of every read receipt the client has seen. */
  const receipts = new Set<string>();
  client.on(RoomEvent.Receipt, (ev: MatrixEvent) => {
    for (const [eventId, types] of Object.entries(ev.getContent() as Record<string, Content>)) {
      for (const userId of Object.keys((types[ReceiptType.Read] ?? {}) as Content)) {
        receipts.add(`${eventId} ${userId}`);
      }
    }
  });

  // --- the bridge bot ---
  const management = await step(
    `${me} opens an encrypted direct chat with the bridge bot ${bot} (${MEGOLM}, as Element does); it greets`,
    async () => {
      const { room_id } = await client.createRoom({
        preset: Preset.TrustedPrivateChat,
        is_direct: true,
        invite: [bot],
        initial_state: [{ type: EventType.RoomEncryption, state_key: '', content: { algorithm: MEGOLM } }],
      });
      await client.setAccountData(EventType.Direct, { [bot]: [room_id] });
      await encrypted(client, room_id);
      await decryptedIn(client, room_id, (e) => e.getSender() === bot && e.getType() === 'm.room.message');
      return room_id;
    },
  );
  const command = async (text: string): Promise<string> => {
    const { event_id } = await client.sendTextMessage(management, text);
    const reply = await decryptedIn(
      client,
      management,
      (e) => e.getSender() === bot && replyTo(e) === event_id,
    );
    return String(reply.getContent()['body'] ?? '');
  };
  await step('"login": the bot says what opting in means and asks for "login confirm"', async () => {
    const reply = await command('login');
    if (!reply.includes('login confirm')) throw new Error(`the bot answered: ${reply}`);
  });
  await step('"login confirm": the bot says the account is connected to WhatsApp', async () => {
    await command('login confirm');
    await decryptedIn(
      client,
      management,
      (e) => e.getSender() === bot && /You are now connected/.test(String(e.getContent()['body'])),
    );
  });
  const portal = await step(
    `"start-chat ${phone}": ${ghost} invites ${me} to a chat, which it joins`,
    async () => {
      const reply = await command(`start-chat ${phone}`);
      // Room ids of room version 12 (Synapse's default) have no `:server` part.
      const roomId = /(![A-Za-z0-9_\-+/=]+(?::[A-Za-z0-9.-]+[A-Za-z0-9])?)/.exec(reply)?.[1];
      if (roomId === undefined) throw new Error(`no room in the bot's answer: ${reply}`);
      await until(
        () => client.getRoom(roomId)?.getMyMembership() === 'invite',
        `the invitation to ${roomId}`,
      );
      await client.joinRoom(roomId);
      return roomId;
    },
  );
  await step(`the chat is end-to-end encrypted (m.room.encryption, ${MEGOLM}), made so by the bridge`, () =>
    encrypted(client, portal),
  );

  // --- text ---
  const text = 'Hello from the demo check';
  const textId = await step(`${me} sends "${text}" to ${ghost}, encrypted`, () =>
    sendEncrypted(client, portal, { msgtype: MsgType.Text, body: text }),
  );
  await step('the echo user received the text', () =>
    echo.user.waitForMessage((m) => m.content.kind === 'text' && m.content.text === text, TIMEOUT_MS),
  );
  await step(`${me} sees ${ghost}'s read receipt for it`, () =>
    until(() => receipts.has(`${textId} ${ghost}`), "the contact's read receipt"),
  );
  const echoed = await step(`${me} got the echo "echo: ${text}" from ${ghost}, and decrypted it`, () =>
    decryptedIn(client, portal, (e) => e.getSender() === ghost && e.getContent()['body'] === `echo: ${text}`),
  );
  const echoedText = JSON.stringify(`echo: ${text}`);
  await step('the echo user got a delivery receipt for its echo', () =>
    waitForSentReceipt(echo, (what) => what === echoedText),
  );
  await step(`${me} marks the echo read; the echo user got the read receipt`, async () => {
    await client.sendReadReceipt(echoed, ReceiptType.Read);
    await waitForSentReceipt(echo, (what) => what === echoedText, 'read');
  });

  // --- a picture, as an encrypted attachment ---
  const image = demoPng();
  const attachment = encryptAttachment(image);
  const mxc = await step(
    `${me} encrypts a picture (${image.length} bytes, AES-256-CTR) and uploads the ciphertext to Synapse's media repository`,
    async () =>
      (
        await client.uploadContent(attachment.ciphertext, {
          type: 'application/octet-stream',
          includeFilename: false,
        })
      ).content_uri,
  );
  const imageId = await step(`${me} sends the picture (m.image, an encrypted attachment) to ${ghost}`, () =>
    sendEncrypted(client, portal, {
      msgtype: MsgType.Image,
      body: 'demo-check.png',
      file: attachment.file(mxc),
      info: { mimetype: 'image/png', size: image.length, w: 64, h: 64 },
    }),
  );
  const got = await step('the echo user received the picture', () =>
    echo.user.waitForMessage((m) => m.content.kind === 'image', TIMEOUT_MS),
  );
  await step('the picture the echo user decrypted is the one sent', async () => {
    const bytes = await echo.user.downloadMedia(got);
    if (!bytes.equals(image)) throw new Error(`got ${bytes.length} different bytes`);
  });
  await step(`${me} sees ${ghost}'s read receipt for the picture`, () =>
    until(() => receipts.has(`${imageId} ${ghost}`), "the contact's read receipt"),
  );
  const back = await step(`${me} got a picture (m.image) back from ${ghost}, and decrypted the event`, () =>
    decryptedIn(
      client,
      portal,
      (e) => e.getSender() === ghost && e.getContent()['msgtype'] === MsgType.Image,
    ),
  );
  await step(
    'the picture that came back is the one sent, byte for byte (an encrypted attachment: ciphertext through authenticated media, its hash checked, decrypted)',
    async () => {
      const content = back.getContent();
      const file = content['file'] as EncryptedFile | undefined;
      if (file === undefined || content['url'] !== undefined) {
        throw new Error(`not an encrypted attachment (file instead of url): ${JSON.stringify(content)}`);
      }
      const url = client.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
      if (url === null) throw new Error(`not an mxc URI: ${file.url}`);
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${client.getAccessToken() ?? ''}` },
      });
      if (res.status !== 200) throw new Error(`downloading it answered HTTP ${res.status}`);
      const bytes = decryptAttachment(Buffer.from(await res.arrayBuffer()), file);
      if (!bytes.equals(image)) throw new Error(`got ${bytes.length} bytes that differ`);
    },
  );
  await step('the echo user got a delivery receipt for the picture it sent', () =>
    waitForSentReceipt(echo, (what) => what.startsWith('[image')),
  );
  await step(`${me} marks the picture read; the echo user got the read receipt`, async () => {
    await client.sendReadReceipt(back, ReceiptType.Read);
    await waitForSentReceipt(echo, (what) => what.startsWith('[image'), 'read');
  });
}

/**
 * The demo group as a Matrix user sees it: the bot's invitation to its portal (made once the user
 * was connected), both contacts' ghosts in it, the answering contact's hello, and its answer to a
 * message in the room; the echo contact gets the message and says nothing.
 */
async function checkGroup(stack: MatrixDemoStack, client: MatrixClient, step: Step): Promise<void> {
  const [echo, sam] = [stack.contacts[0], stack.contacts[GROUP.maker]];
  const [echoSpec, samSpec] = [CONTACTS[0], CONTACTS[GROUP.maker]];
  if (!echo || !sam || !echoSpec || !samSpec) {
    throw new CheckFailed('find the contacts', new Error('the demo has no contacts'));
  }
  const me = stack.alice.userId;
  const samGhost = stack.ghostOf(samSpec.phone);
  const echoGhost = stack.ghostOf(echoSpec.phone);
  const portal = await step(
    `${stack.bot} invites ${me} to the room of the group "${GROUP.subject}", which it joins`,
    async () => {
      let room: string | undefined;
      await until(() => {
        room = client
          .getRooms()
          .find((r) => r.getMyMembership() === 'invite' && r.name === GROUP.subject)?.roomId;
        return room !== undefined;
      }, `the invitation to "${GROUP.subject}"`);
      const inviter = client
        .getRoom(room as string)
        ?.getMember(me)
        ?.events.member?.getSender();
      if (inviter !== stack.bot) throw new Error(`${String(inviter)} invited ${me}, not the bot`);
      await client.joinRoom(room as string);
      return room as string;
    },
  );
  await step(`the group's room is end-to-end encrypted (m.room.encryption, ${MEGOLM})`, () =>
    encrypted(client, portal),
  );
  await step(`both contacts' ghosts are in it, and ${samGhost} said hello`, async () => {
    await until(() => {
      const joined =
        client
          .getRoom(portal)
          ?.getJoinedMembers()
          .map((m) => m.userId) ?? [];
      return joined.includes(samGhost) && joined.includes(echoGhost);
    }, 'the ghosts in the room');
    // Said before the user joined: read back from the room's history, as a client scrolls back,
    // and decrypted (the room key came to the user's session with the invitation).
    await until(async () => {
      const { chunk } = await client.createMessagesRequest(portal, null, 50, Direction.Backward);
      for (const raw of chunk) {
        if (raw.sender !== samGhost || raw.type !== EventType.RoomMessageEncrypted) continue;
        const ev = new MatrixEvent({ ...raw, room_id: portal });
        await client.decryptEventIfNeeded(ev);
        if (ev.getType() === 'm.room.message' && ev.getContent()['body'] === GROUP.hello) return true;
      }
      return false;
    }, `${samGhost}'s hello, decrypted`);
  });
  const text = 'Hello from the demo check, everyone';
  await step(`${me} says "${text}" in the room, encrypted`, () =>
    sendEncrypted(client, portal, { msgtype: MsgType.Text, body: text }),
  );
  const isIt = (m: ReceivedMessage) =>
    m.group !== undefined && m.content.kind === 'text' && m.content.text === text;
  await step(`${samSpec.phone} received it in the group`, () => sam.user.waitForMessage(isIt, TIMEOUT_MS));
  await step(`${me} got ${samGhost}'s answer in the room, and decrypted it`, () =>
    decryptedIn(
      client,
      portal,
      (e) => e.getSender() === samGhost && samSpec.answers.includes(String(e.getContent()['body'])),
    ),
  );
  await step('the echo user received it too, and stayed quiet in the group', async () => {
    await echo.user.waitForMessage(isIt, TIMEOUT_MS);
    if (echo.sentInGroups.length > 0) {
      throw new Error(`it sent ${echo.sentInGroups.length} message(s) into the group`);
    }
  });
}

async function startSyncing(client: MatrixClient): Promise<void> {
  const ready = new Promise<void>((resolve, reject) => {
    const onSync = (state: SyncState): void => {
      if (state === SyncState.Prepared || state === SyncState.Syncing) {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        client.off(ClientEvent.Sync, onSync);
        reject(new Error('the first sync failed'));
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  await client.startClient({ initialSyncLimit: 20 });
  await ready;
}

/**
 * Resolves once the room is encrypted in the client's view: its m.room.encryption state names
 * Megolm and the client's crypto has taken it up (so what the client sends there is encrypted).
 */
async function encrypted(client: MatrixClient, roomId: string): Promise<void> {
  const crypto = client.getCrypto();
  if (crypto === undefined) throw new Error('the client has no crypto');
  await until(async () => {
    const state = client.getRoom(roomId)?.currentState.getStateEvents(EventType.RoomEncryption, '');
    return state?.getContent()['algorithm'] === MEGOLM && (await crypto.isEncryptionEnabledInRoom(roomId));
  }, `m.room.encryption (${MEGOLM}) in ${roomId}`);
}

/** Sends an m.room.message the SDK encrypts; checks that the homeserver holds it encrypted. */
async function sendEncrypted(client: MatrixClient, roomId: string, content: Content): Promise<string> {
  await encrypted(client, roomId);
  const { event_id } = await client.sendMessage(roomId, content as never);
  const stored = await client.fetchRoomEvent(roomId, event_id);
  if (stored.type !== EventType.RoomMessageEncrypted) {
    throw new Error(`the homeserver holds it as ${String(stored.type)}, not m.room.encrypted`);
  }
  return event_id;
}

function replyTo(e: MatrixEvent): string | undefined {
  type Rel = { 'm.in_reply_to'?: { event_id?: string } } | undefined;
  const rel = (e.getContent()['m.relates_to'] ?? e.getWireContent()['m.relates_to']) as Rel;
  return rel?.['m.in_reply_to']?.event_id;
}

/**
 * The first event of the room's live timeline (as the client synced and decrypted it) that
 * satisfies `match`; it must have come encrypted (m.room.encrypted on the wire).
 */
async function decryptedIn(
  client: MatrixClient,
  roomId: string,
  match: (e: MatrixEvent) => boolean,
): Promise<MatrixEvent> {
  let found: MatrixEvent | undefined;
  const events = () => client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
  // An encrypted event is matched once decrypted (before, its content is the ciphertext's).
  const readable = (e: MatrixEvent) =>
    !e.isEncrypted() || (e.getClearContent() !== null && !e.isDecryptionFailure());
  try {
    await until(() => {
      found = events().find((e) => readable(e) && match(e));
      return found !== undefined;
    }, `the event in ${roomId}`);
  } catch (err) {
    const failed = events().filter((e) => e.isDecryptionFailure()).length;
    if (failed === 0) throw err;
    throw new Error(`${(err as Error).message}; ${failed} event(s) there could not be decrypted`, {
      cause: err,
    });
  }
  const event = found as MatrixEvent;
  if (!event.isEncrypted()) {
    throw new Error(
      `${String(event.getId())} came unencrypted (${event.getWireType()}) into an encrypted room`,
    );
  }
  return event;
}

/**
 * Every room of the client: no message came unencrypted, and none is one the client could not
 * decrypt (once the decryptions under way have finished).
 */
async function everythingDecrypted(client: MatrixClient): Promise<void> {
  const events = () => client.getRooms().flatMap((r) => r.getLiveTimeline().getEvents());
  await until(() => events().every((e) => !e.isBeingDecrypted()), 'the decryptions under way');
  const failed = events().filter((e) => e.isDecryptionFailure());
  const clear = events().filter((e) => e.getWireType() === 'm.room.message');
  const problems = [
    ...failed.map(
      (e) => `${String(e.getId())} from ${String(e.getSender())}: ${String(e.decryptionFailureReason)}`,
    ),
    ...clear.map((e) => `${String(e.getId())} from ${String(e.getSender())} came unencrypted`),
  ];
  if (problems.length > 0) throw new Error(problems.join('; '));
  if (!events().some((e) => e.isEncrypted())) throw new Error('no encrypted message at all');
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come within ${TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
