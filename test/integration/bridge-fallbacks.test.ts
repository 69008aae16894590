/**
 * The core honours what an adapter says its network can show (AdapterCapabilities): a contact's
 * edit, reaction, deletion or file that the local network cannot show reaches the user as a line
 * of text saying what happened; receipts, typing and presence it cannot show are not sent. Real
 * emulator, real native user, real Signal sessions; only the adapter is a test double.
 */
import type { AdapterCapabilities, BridgeCore } from '../../src/bridge/adapter.js';
import { Bridge } from '../../src/bridge/core.js';
import type { IncomingEvent } from '../../src/bridge/events.js';
import { accountJidOf } from '../../src/bridge/puppet.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeUser } from '../../emulator/native-user.js';
import { generateProviderKey, type ProviderPrivateJwk } from '../../src/protocol/jwt.js';
import { SqliteSignalBackend } from '../../src/signal/index.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.js';
import { TestAdapter } from '../support/test-adapter.js';
import { emulatorGateway, startEmulator } from '../support/emulator-process.js';
import { tempDir } from '../support/tmp.js';

const PROVIDER = 'testbridge';
const ALICE = '@alice:example.org';

describe('the core shows what the local network cannot as readable text', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  let signingKey: ProviderPrivateJwk;
  let store: SqliteStore | undefined;
  let bridge: Bridge | undefined;
  let adapter: TestAdapter;
  let core: BridgeCore;
  let bob: NativeUser | undefined;
  let aliceJid: string;
  /** Alice's puppet's device: native users send to it before they have heard from it. */
  let dev: { devices: number[] };

  /** A bridge whose one adapter lacks `lacks`; alice enlisted and connected, bob a native contact. */
  const start = async (lacks: Partial<AdapterCapabilities>) => {
    const opened = (store = openSqliteStore(tmp.file('bridge.db')));
    bridge = new Bridge({
      store: opened,
      signalBackend: (id) => new SqliteSignalBackend(opened.db, id),
      gateway: emulatorGateway(running.gateway, root, { id: PROVIDER, signingKey }),
      preKeys: 20,
    });
    adapter = new TestAdapter(lacks);
    core = bridge.attach(adapter);
    await bridge.start();
    await core.enlist(ALICE);
    const b = bridge;
    await adapter.until(() => b.puppet(ALICE)?.connection.isConnected === true, 'the puppet to connect');
    const puppet = (await opened.puppets.byLocalId(ALICE))!;
    aliceJid = accountJidOf(puppet.accountId, PROVIDER);
    dev = { devices: [puppet.deviceId] };
    bob = await NativeUser.connect({
      emulator: running.gateway,
      phone: '+4915112345678',
      rootPublicKey: root,
    });
    return bob;
  };

  const from = (remoteId: string): IncomingEvent => {
    const e = adapter.delivered.find((d) => d.remoteId === remoteId);
    if (!e) throw new Error(`nothing delivered for ${remoteId}`);
    return e;
  };
  /** Alice sends "hi" ($hi); bob reads it and starts typing. */
  const hiReadWhileTyping = async (b: NativeUser) => {
    await core.submit({
      localId: '$hi',
      localUser: ALICE,
      remote: b.jid,
      event: { type: 'message', body: { kind: 'text', text: 'hi' } },
    });
    const got = await b.waitForMessage((m) => m.content.kind === 'text' && m.content.text === 'hi');
    await b.sendReceipt(aliceJid, [got.id], 'read', got.fromDevice);
    await b.typing(aliceJid, true);
  };
  const delivered = (remoteId: string) =>
    adapter.until(() => adapter.delivered.some((d) => d.remoteId === remoteId), `delivery of ${remoteId}`);

  beforeEach(async () => {
    tmp = tempDir();
    signingKey = await generateProviderKey('EdDSA');
    ({ running, root } = await startEmulator(tmp, { provider: { id: PROVIDER, signingKey } }));
  });

  afterEach(async () => {
    await bob?.close();
    await bridge?.stop();
    await store?.close();
    await running.stop();
    tmp.cleanup();
    bob = undefined;
    bridge = undefined;
    store = undefined;
  });

  it('without edits, reactions and deletes, each arrives as a line replying to the message it changes', async () => {
    const b = await start({ edits: false, reactions: false, deletes: false });
    const original = await b.sendText(aliceJid, 'lunch at 12?', dev);
    await delivered(original);
    const localOfOriginal = '$local1'; // the test adapter's id of its first delivery
    const edit = await b.sendChange(aliceJid, { id: original, fromMe: true }, 'lunch at 1?', dev);
    const reaction = await b.sendChange(aliceJid, { id: original, fromMe: true }, { emoji: '👍' }, dev);
    const unreaction = await b.sendChange(aliceJid, { id: original, fromMe: true }, { emoji: '' }, dev);
    const deletion = await b.sendChange(aliceJid, { id: original, fromMe: true }, null, dev);
    await delivered(deletion);

    for (const [id, text] of [
      [edit, '✎ lunch at 1?'],
      [reaction, '(reacted 👍)'],
      [unreaction, '(took back a reaction)'],
      [deletion, '(deleted a message)'],
    ] as const) {
      expect(from(id).event).toEqual({
        type: 'message',
        body: { kind: 'text', text },
        replyTo: { id: original, localId: localOfOriginal },
      });
    }
    expect(adapter.deliveryCalls.map((d) => d.event.type)).toEqual(Array(5).fill('message'));
  });

  it('with edits, reactions and deletes, each arrives as itself', async () => {
    const b = await start({});
    const original = await b.sendText(aliceJid, 'lunch at 12?', dev);
    await delivered(original);
    const edit = await b.sendChange(aliceJid, { id: original, fromMe: true }, 'lunch at 1?', dev);
    const reaction = await b.sendChange(aliceJid, { id: original, fromMe: true }, { emoji: '👍' }, dev);
    const deletion = await b.sendChange(aliceJid, { id: original, fromMe: true }, null, dev);
    await delivered(deletion);
    expect(from(edit).event).toMatchObject({ type: 'edit', target: original, body: { text: 'lunch at 1?' } });
    expect(from(reaction).event).toMatchObject({ type: 'reaction', target: original, emoji: '👍' });
    expect(from(deletion).event).toMatchObject({ type: 'delete', target: original });
  });

  it('without replies, a reply arrives as its text alone, and an edit without a link', async () => {
    const b = await start({ replies: false, edits: false });
    const original = await b.sendText(aliceJid, 'lunch at 12?', dev);
    const reply = await b.sendText(aliceJid, 'or at 1?', { ...dev, replyTo: original });
    const edit = await b.sendChange(aliceJid, { id: original, fromMe: true }, 'lunch at 1?', dev);
    await delivered(edit);
    expect(from(reply).event).toEqual({ type: 'message', body: { kind: 'text', text: 'or at 1?' } });
    expect(from(edit).event).toEqual({ type: 'message', body: { kind: 'text', text: '✎ lunch at 1?' } });
  });

  it('without files, an image arrives as a notice naming it, with its caption', async () => {
    const b = await start({ media: false });
    const bytes = new Uint8Array(3000).fill(7);
    const id = await b.sendMedia(
      aliceJid,
      { kind: 'image', bytes, mimetype: 'image/png', caption: 'the view' },
      dev,
    );
    await delivered(id);
    expect(from(id).event).toEqual({
      type: 'message',
      body: { kind: 'text', text: '(sent an image (2.9 KB), which this chat cannot show: the view)' },
    });
  });

  it('a file larger than the network takes arrives as a notice that says so', async () => {
    const b = await start({ maxMediaBytes: 1024 });
    const id = await b.sendMedia(
      aliceJid,
      {
        kind: 'document',
        bytes: new Uint8Array(5000).fill(1),
        mimetype: 'application/pdf',
        fileName: 'minutes.pdf',
      },
      dev,
    );
    await delivered(id);
    expect(from(id).event).toEqual({
      type: 'message',
      body: {
        kind: 'text',
        text: '(sent a file "minutes.pdf" (4.9 KB), larger than this chat takes (1 KB))',
      },
    });
  });

  it('without read receipts and typing, the user sees sent but no ticks and no typing', async () => {
    const b = await start({ readReceipts: false, typing: false });
    await hiReadWhileTyping(b);
    // Stanzas of one connection are handled in order: once this arrives, the receipt and the typing have.
    const marker = await b.sendText(aliceJid, 'marker', dev);
    await delivered(marker);
    await adapter.until(() => adapter.statesOf('$hi').includes('sent'), 'the sent state');
    expect(adapter.statesOf('$hi')).not.toContain('delivered');
    expect(adapter.statesOf('$hi')).not.toContain('read');
    expect(adapter.ephemeral).toEqual([]);
  });

  it('with read receipts and typing, the same receipt and typing are shown', async () => {
    await hiReadWhileTyping(await start({}));
    await adapter.until(() => adapter.statesOf('$hi').includes('read'), 'the read tick');
    await adapter.until(() => adapter.ephemeral.some((e) => e.event.type === 'typing'), 'the typing');
  });
});
