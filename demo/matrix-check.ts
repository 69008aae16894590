/**
 * `npm run demo -- --matrix --check`: one scripted round trip through the running Matrix demo, as
 * a user of Element makes it, with matrix-js-sdk (the engine of Element Web): log in with the
 * password (`m.login.password`), open a direct chat with the bridge bot, `login`, `login confirm`,
 * `start-chat` with the echo contact, join the portal, then a text and a picture both ways with
 * read receipts both ways and the contact's delivery receipts. Then the group: the bot's invitation
 * to the demo group's portal, the answering contact's hello there, and its answer to the user.
 *
 * matrix-js-sdk is a devDependency: this module is loaded only for `--matrix --check` (the demo
 * runs from a dev checkout, `npm ci` installs it).
 */
import {
  ClientEvent,
  createClient,
  Direction,
  EventType,
  MsgType,
  Preset,
  ReceiptType,
  RoomEvent,
  SyncState,
  type MatrixClient,
  type MatrixEvent,
} from 'matrix-js-sdk';
import loglevel from 'loglevel';
import { CheckFailed, demoPng, waitForSentReceipt } from './check.js';
import type { ReceivedMessage } from '../emulator/native-user.js';
import type { MatrixDemoStack } from './matrix-stack.js';
import { CONTACTS, GROUP } from './stack.js';

const TIMEOUT_MS = 20_000;

/** The SDK logs every sync step; the check prints what the user sees instead. */
function quietSdk(): void {
  loglevel.setLevel('silent');
  for (const l of Object.values(loglevel.getLoggers())) l.setLevel('silent');
}

type Content = Record<string, unknown>;

export async function runMatrixCheck(stack: MatrixDemoStack, passed: (step: string) => void): Promise<void> {
  const echo = stack.contacts[0];
  const phone = CONTACTS[0]?.phone;
  if (!echo || phone === undefined) {
    throw new CheckFailed('find the echo contact', new Error('the demo has no contacts'));
  }
  const ghost = stack.ghostOf(phone);
  const { bot } = stack;
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
      const c = createClient({
        baseUrl: stack.synapse.url,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
      });
      await startSyncing(c);
      return c;
    },
  );
  /** `${eventId} ${userId}` of every read receipt the client has seen. */
  const receipts = new Set<string>();
  client.on(RoomEvent.Receipt, (ev: MatrixEvent) => {
    for (const [eventId, types] of Object.entries(ev.getContent() as Record<string, Content>)) {
      for (const userId of Object.keys((types[ReceiptType.Read] ?? {}) as Content)) {
        receipts.add(`${eventId} ${userId}`);
      }
    }
  });

  try {
    // --- the bridge bot ---
    const management = await step(
      `${me} opens a direct chat with the bridge bot ${bot}; it greets`,
      async () => {
        const { room_id } = await client.createRoom({
          preset: Preset.TrustedPrivateChat,
          is_direct: true,
          invite: [bot],
        });
        await client.setAccountData(EventType.Direct, { [bot]: [room_id] });
        await eventIn(client, room_id, (e) => e.getSender() === bot && e.getType() === 'm.room.message');
        return room_id;
      },
    );
    const command = async (text: string): Promise<string> => {
      const { event_id } = await client.sendTextMessage(management, text);
      const reply = await eventIn(
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
      await eventIn(
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

    // --- text ---
    const text = 'Hello from the demo check';
    const textId = await step(
      `${me} sends "${text}" to ${ghost}`,
      async () => (await client.sendTextMessage(portal, text)).event_id,
    );
    await step('the echo user received the text', () =>
      echo.user.waitForMessage((m) => m.content.kind === 'text' && m.content.text === text, TIMEOUT_MS),
    );
    await step(`${me} sees ${ghost}'s read receipt for it`, () =>
      until(() => receipts.has(`${textId} ${ghost}`), "the contact's read receipt"),
    );
    const echoed = await step(`${me} got the echo "echo: ${text}" from ${ghost}`, () =>
      eventIn(client, portal, (e) => e.getSender() === ghost && e.getContent()['body'] === `echo: ${text}`),
    );
    const echoedText = JSON.stringify(`echo: ${text}`);
    await step('the echo user got a delivery receipt for its echo', () =>
      waitForSentReceipt(echo, (what) => what === echoedText),
    );
    await step(`${me} marks the echo read; the echo user got the read receipt`, async () => {
      await client.sendReadReceipt(echoed, ReceiptType.Read);
      await waitForSentReceipt(echo, (what) => what === echoedText, 'read');
    });

    // --- a picture ---
    const image = demoPng();
    const mxc = await step(
      `${me} uploads a picture (${image.length} bytes) to Synapse's media repository`,
      async () =>
        (await client.uploadContent(image, { type: 'image/png', name: 'demo-check.png' })).content_uri,
    );
    const imageId = await step(
      `${me} sends the picture (m.image) to ${ghost}`,
      async () =>
        (
          await client.sendMessage(portal, {
            msgtype: MsgType.Image,
            body: 'demo-check.png',
            url: mxc,
            info: { mimetype: 'image/png', size: image.length, w: 64, h: 64 },
          })
        ).event_id,
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
    const back = await step(`${me} got a picture (m.image) back from ${ghost}`, () =>
      eventIn(client, portal, (e) => e.getSender() === ghost && e.getContent()['msgtype'] === MsgType.Image),
    );
    await step(
      'the picture that came back is the one sent, byte for byte (authenticated media)',
      async () => {
        const url = client.mxcUrlToHttp(
          String(back.getContent()['url']),
          undefined,
          undefined,
          undefined,
          false,
          true,
          true,
        );
        if (url === null) throw new Error(`not an mxc URI: ${String(back.getContent()['url'])}`);
        const res = await fetch(url, {
          headers: { authorization: `Bearer ${client.getAccessToken() ?? ''}` },
        });
        if (res.status !== 200) throw new Error(`downloading it answered HTTP ${res.status}`);
        const bytes = Buffer.from(await res.arrayBuffer());
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

    await checkGroup(stack, client, step);
  } finally {
    client.stopClient();
  }
}

type Step = <T>(name: string, run: () => Promise<T>) => Promise<T>;

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
  await step(`both contacts' ghosts are in it, and ${samGhost} said hello`, async () => {
    await until(() => {
      const joined =
        client
          .getRoom(portal)
          ?.getJoinedMembers()
          .map((m) => m.userId) ?? [];
      return joined.includes(samGhost) && joined.includes(echoGhost);
    }, 'the ghosts in the room');
    // Said before the user joined: read back from the room's history, as a client scrolls back.
    await until(async () => {
      const { chunk } = await client.createMessagesRequest(portal, null, 50, Direction.Backward);
      return chunk.some(
        (e) => e.sender === samGhost && e.type === 'm.room.message' && e.content['body'] === GROUP.hello,
      );
    }, `${samGhost}'s hello`);
  });
  const text = 'Hello from the demo check, everyone';
  await step(`${me} says "${text}" in the room`, () => client.sendTextMessage(portal, text));
  const isIt = (m: ReceivedMessage) =>
    m.group !== undefined && m.content.kind === 'text' && m.content.text === text;
  await step(`${samSpec.phone} received it in the group`, () => sam.user.waitForMessage(isIt, TIMEOUT_MS));
  await step(`${me} got ${samGhost}'s answer in the room`, () =>
    eventIn(
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

function replyTo(e: MatrixEvent): string | undefined {
  const rel = e.getContent()['m.relates_to'] as { 'm.in_reply_to'?: { event_id?: string } } | undefined;
  return rel?.['m.in_reply_to']?.event_id;
}

/** The first event of the room's live timeline (as the client synced it) that satisfies `match`. */
async function eventIn(
  client: MatrixClient,
  roomId: string,
  match: (e: MatrixEvent) => boolean,
): Promise<MatrixEvent> {
  let found: MatrixEvent | undefined;
  await until(() => {
    found = client.getRoom(roomId)?.getLiveTimeline().getEvents().find(match);
    return found !== undefined;
  }, `the event in ${roomId}`);
  return found as MatrixEvent;
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come within ${TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
