/**
 * The bridge's own encryption, as the Matrix user sees and checks it, on a real Synapse with the
 * user's client as Element's (matrix-js-sdk, Rust crypto, cross-signing set up as Element does at
 * first sign-in): the user verifies the bot with emojis (SAS), asked to-device of the bot's session
 * or in the direct chat with the bot as Element's "Verify" on a profile does, comparing what their
 * client shows with what the bot posts in the management room, and their client then counts the
 * bot verified; emojis that differ end it, and the bot says so; a user the bridge does not serve is
 * refused; a contact's ghost is verified the same way, in its portal or on its session (the bot
 * posts its emojis in the management room), by the user whose portal it is only, and the request
 * never reaches the contact; and the `encryption` command shows the bot's session and keys as the
 * user's client sees them.
 */
import {
  VerificationPhase,
  VerifierEvent,
  type ShowSasCallbacks,
  type VerificationRequest,
} from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { SdkUser } from '../support/synapse/sdk-user.js';
import { BOT, MatrixHarness, SERVER, bodyOf, ghostOf, replyTarget, useSynapse } from './matrix-harness.js';

const synapse = useSynapse();
const BOB = '+4915112345678';
const GHOST = ghostOf(BOB);
const ENCRYPTED = {
  initial_state: [
    { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
  ],
};

/** The key as Element shows a session key: groups of four characters. */
const grouped = (key: string) => key.replace(/(.{4})(?=.)/g, '$1 ');

describe('verifying the bridge bot', () => {
  let h: MatrixHarness | undefined;
  let alice: SdkUser;
  let management: string;

  /** The bridge, a user with Element's crypto and cross-signing, and their management room. */
  async function start(): Promise<void> {
    h = await MatrixHarness.start({ synapse: synapse(), encryption: { allow: true, default: true } });
    alice = await h.user('alice', 'Alice', { crypto: true });
    // Element sets up cross-signing at first sign-in (the first upload needs no auth, MSC3967).
    await alice.client.getCrypto()!.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => void (await makeRequest(null)),
    });
    // A direct chat with the bot, encrypted as Element makes one: its members' devices (the bot's
    // among them) are what the user's client tracks, and so can be asked to verify.
    management = await alice.createDirectRoom(BOT, ENCRYPTED);
    const crypto = alice.client.getCrypto()!;
    let known = false;
    await alice.waitUntil(() => {
      void crypto
        .getUserDeviceInfo([BOT])
        .then((d) => (known = (d.get(BOT)?.size ?? 0) > 0))
        .catch(() => undefined);
      return known;
    }, "the bot's session to be known");
  }

  /** The bot's greeting in the management room (it joined and answers there). */
  const greeted = () =>
    alice.waitFor(
      management,
      (e) => e.sender === BOT && e.type === 'm.room.message' && /help/i.test(bodyOf(e)),
    );

  afterEach(async () => {
    try {
      await h?.close();
    } finally {
      h?.assertNoViolations();
      h = undefined;
    }
  });

  /** Sends a command and resolves with the bot's answer to it, decrypted. */
  async function command(text: string): Promise<string> {
    const id = await alice.sendText(management, text);
    const answer = await alice.waitFor(
      management,
      (e) => e.sender === BOT && e.type === 'm.room.message' && replyTarget(e) === id,
    );
    return bodyOf(answer);
  }

  /** The bot's session: the device the bridge made for it (MSC4190, `PUT /devices/{id}` as the bot). */
  function botDevice(): string {
    const made = h!.proxy.requests.find(
      (r) => r.viaAppservice && r.method === 'PUT' && r.userId === BOT && r.path.includes('/devices/'),
    );
    return decodeURIComponent(made!.path.split('/').pop()!);
  }

  const phaseOf = async (request: VerificationRequest, phase: VerificationPhase, what: string) =>
    alice.waitUntil(() => request.phase === phase || request.phase === VerificationPhase.Cancelled, what);

  test.each([
    // "Verify" on the bot's session: a to-device request to it.
    ['to-device', (device: string) => alice.client.getCrypto()!.requestDeviceVerification(BOT, device)],
    // "Verify" on the bot's profile: Element asks in the direct chat with the bot.
    ['in-room', () => alice.client.getCrypto()!.requestVerificationDM(BOT, management)],
  ] as const)(
    'the user verifies the bot (%s) with emojis it posts in the management room; their client then counts the bot verified',
    async (_flow, ask) => {
      await start();
      await greeted();
      const crypto = alice.client.getCrypto()!;
      const device = botDevice();
      expect((await crypto.getUserVerificationStatus(BOT)).isCrossSigningVerified()).toBe(false);

      // The bot accepts the request.
      const request = await ask(device);
      await phaseOf(request, VerificationPhase.Ready, 'the bot to accept');
      expect(request.phase).toBe(VerificationPhase.Ready);
      const verifier = await request.startVerification('m.sas.v1');
      const shown = new Promise<ShowSasCallbacks>((resolve) => verifier.once(VerifierEvent.ShowSas, resolve));
      const done = verifier.verify();
      const sas = await shown;

      // The emojis the user's client shows are the ones the bot posted for them, in that order.
      const notice = await alice.waitFor(
        management,
        (e) => e.sender === BOT && e.type === 'm.room.message' && /Compare these emojis/.test(bodyOf(e)),
      );
      expect(notice.content['msgtype']).toBe('m.notice');
      const emoji = sas.sas.emoji!.map(([symbol, name]) => `${symbol} ${name}`).join(', ');
      expect(bodyOf(notice)).toContain(emoji);
      expect(bodyOf(notice)).toContain(`(as numbers: ${sas.sas.decimal!.join(' ')})`);
      expect(bodyOf(notice)).toContain(alice.client.getDeviceId()!);

      // They match: the user confirms, and the verification completes on both sides.
      await sas.confirm();
      await done;
      await phaseOf(request, VerificationPhase.Done, 'the verification to be done');
      expect(request.phase).toBe(VerificationPhase.Done);
      await alice.waitFor(management, (e) => e.sender === BOT && /Verification complete/.test(bodyOf(e)));

      // The user's client trusts the bot's identity (signed with the user's own), and so its session.
      let verified = false;
      await alice.waitUntil(() => {
        void crypto
          .getUserVerificationStatus(BOT)
          .then((s) => (verified = s.isCrossSigningVerified()))
          .catch(() => undefined);
        return verified;
      }, 'the bot to be verified');
      expect((await crypto.getDeviceVerificationStatus(BOT, device))?.crossSigningVerified).toBe(true);

      // The bot says so too.
      expect(await command('encryption')).toContain(
        `You verified the bot with emojis from your session ${alice.client.getDeviceId()!}`,
      );
    },
    60_000,
  );

  test('a user the bridge does not serve (no longer) is refused: the request is cancelled', async () => {
    await start();
    await greeted();
    // The operator narrows the permissions: the user is no longer served.
    await h!.stopBridge();
    await h!.startBridge({ permissions: { [`@someone-else:${SERVER}`]: 'user' } });
    const request = await alice.client.getCrypto()!.requestDeviceVerification(BOT, botDevice());
    await phaseOf(request, VerificationPhase.Ready, 'the bot to answer');
    expect(request.phase).toBe(VerificationPhase.Cancelled);
  }, 60_000);

  test('the user cancelling (the emojis differ) ends it on both sides: the bot says so, and stays unverified', async () => {
    await start();
    await greeted();
    const crypto = alice.client.getCrypto()!;
    const request = await crypto.requestDeviceVerification(BOT, botDevice());
    await phaseOf(request, VerificationPhase.Ready, 'the bot to accept');
    const verifier = await request.startVerification('m.sas.v1');
    const shown = new Promise<ShowSasCallbacks>((resolve) => verifier.once(VerifierEvent.ShowSas, resolve));
    const done = verifier.verify().then(
      () => 'verified',
      () => 'cancelled',
    );
    const sas = await shown;
    await alice.waitFor(management, (e) => e.sender === BOT && /Compare these emojis/.test(bodyOf(e)));
    sas.mismatch();
    expect(await done).toBe('cancelled');
    await alice.waitFor(management, (e) => e.sender === BOT && /verification was cancelled/.test(bodyOf(e)));
    expect((await crypto.getUserVerificationStatus(BOT)).isCrossSigningVerified()).toBe(false);
    expect(await command('encryption')).toMatch(/You have not verified the bot/);
  }, 60_000);

  /** A portal with Bob, who wrote first: his ghost has a device, which the user's client knows. */
  async function portalWithBob() {
    expect(await command('login')).toMatch(/login confirm/);
    await command('login confirm');
    await alice.waitFor(management, (e) => e.sender === BOT && /You are now connected/.test(bodyOf(e)));
    const bob = await h!.native(BOB);
    const reply = await command(`start-chat ${BOB}`);
    const portal = /(![A-Za-z0-9_\-+/=]+(?::[^\s.]+(?:\.[a-z]+)*)?)/.exec(reply)![1]!;
    await alice.join(portal);
    await bob.sendText(await h!.jidOf(alice), 'hello from bob', { devices: [0] });
    await alice.waitFor(portal, (e) => e.sender === GHOST && /hello from bob/.test(bodyOf(e)));
    const made = h!.proxy.requests.find(
      (r) => r.viaAppservice && r.method === 'PUT' && r.userId === GHOST && r.path.includes('/devices/'),
    );
    return { bob, portal, device: decodeURIComponent(made!.path.split('/').pop()!) };
  }

  test('a ghost is verified, in its portal and to its session; the request never reaches the contact', async () => {
    await start();
    await greeted();
    const { bob, portal, device } = await portalWithBob();
    const crypto = alice.client.getCrypto()!;
    expect((await crypto.getUserVerificationStatus(GHOST)).isCrossSigningVerified()).toBe(false);

    /** The ghost accepts, the bot posts the emojis in the management room, the user confirms. */
    const verify = async (request: VerificationRequest, what: string) => {
      await phaseOf(request, VerificationPhase.Ready, `the ghost to accept (${what})`);
      expect(request.phase).toBe(VerificationPhase.Ready);
      const verifier = await request.startVerification('m.sas.v1');
      const shown = new Promise<ShowSasCallbacks>((resolve) => verifier.once(VerifierEvent.ShowSas, resolve));
      const done = verifier.verify();
      const sas = await shown;
      const emoji = sas.sas.emoji!.map(([symbol, name]) => `${symbol} ${name}`).join(', ');
      const notice = await alice.waitFor(
        management,
        (e) => e.sender === BOT && e.type === 'm.room.message' && bodyOf(e).includes(emoji),
      );
      expect(notice.content['msgtype']).toBe('m.notice');
      expect(bodyOf(notice)).toContain(`Verifying ${BOB}'s session on this bridge`);
      expect(bodyOf(notice)).toContain(`(as numbers: ${sas.sas.decimal!.join(' ')})`);
      // What it verifies: the bridge's account for the contact, not the contact's phone.
      expect(bodyOf(notice)).toContain(`not ${BOB}'s phone`);
      expect(bodyOf(notice)).toContain(`\`safety ${BOB}\``);
      await sas.confirm();
      await done;
      await phaseOf(request, VerificationPhase.Done, `the verification to be done (${what})`);
      expect(request.phase).toBe(VerificationPhase.Done);
    };

    // "Verify" on the contact's profile: in the portal, their direct chat.
    await verify(await crypto.requestVerificationDM(GHOST, portal), 'in-room');
    // The user's client trusts the ghost's identity (signed with the user's own), and so its session.
    let verified = false;
    await alice.waitUntil(() => {
      void crypto
        .getUserVerificationStatus(GHOST)
        .then((s) => (verified = s.isCrossSigningVerified()))
        .catch(() => undefined);
      return verified;
    }, 'the ghost to be verified');
    expect((await crypto.getDeviceVerificationStatus(GHOST, device))?.crossSigningVerified).toBe(true);
    // "Verify" on the ghost's session: to-device, and it completes the same way.
    await verify(await crypto.requestDeviceVerification(GHOST, device), 'to-device');

    // The request's fallback text ("... is requesting to verify your key ...") is not bridged.
    await alice.sendText(portal, 'after the requests');
    await bob.waitForMessage(
      (m) => m.content.kind === 'text' && m.content.text === 'after the requests',
      20_000,
    );
    expect(
      bob.received.filter((m) => m.content.kind === 'text' && /verif/i.test(m.content.text ?? '')),
    ).toEqual([]);
  }, 120_000);

  test('a user whose portal it is not is refused: requests to the ghost are cancelled', async () => {
    await start();
    await greeted();
    const { portal, device } = await portalWithBob();
    // Carol, whom the bridge serves too, is invited into Alice's portal with Bob: she sees his ghost
    // (her client tracks its session), but the portal is not hers.
    const carol = await h!.user('carol', 'Carol', { crypto: true });
    await alice.invite(portal, carol.userId);
    await carol.join(portal);
    const crypto = carol.client.getCrypto()!;
    let known = false;
    await carol.waitUntil(() => {
      void crypto
        .getUserDeviceInfo([GHOST])
        .then((d) => (known = d.get(GHOST)?.has(device) ?? false))
        .catch(() => undefined);
      return known;
    }, "the ghost's session to be known");
    for (const ask of [
      () => crypto.requestVerificationDM(GHOST, portal),
      () => crypto.requestDeviceVerification(GHOST, device),
    ]) {
      const request = await ask();
      await carol.waitUntil(
        () => request.phase === VerificationPhase.Ready || request.phase === VerificationPhase.Cancelled,
        'the ghost to answer',
      );
      expect([request.phase, request.cancellingUserId, request.cancellationCode]).toEqual([
        VerificationPhase.Cancelled,
        GHOST,
        'm.user',
      ]);
    }
  }, 90_000);

  test('the `encryption` command shows the setting, and the bot’s session and keys as the user’s client sees them', async () => {
    await start();
    await greeted();
    const crypto = alice.client.getCrypto()!;
    const device = botDevice();
    const seen = (await crypto.getUserDeviceInfo([BOT], true)).get(BOT)?.get(device);
    expect(seen).toBeDefined();
    const published = await alice.call<{ master_keys?: Record<string, { keys: Record<string, string> }> }>(
      'POST',
      '/_matrix/client/v3/keys/query',
      { device_keys: { [BOT]: [] } },
    );
    const master = Object.values(published.master_keys?.[BOT]?.keys ?? {})[0];
    expect(master).toBeDefined();

    const answer = await command('encryption');
    expect(answer).toContain('creates new portals encrypted');
    expect(answer).toContain(`The bot's session: ${device}, key ${grouped(seen!.getFingerprint()!)}`);
    expect(answer).toContain(`The bot's cross-signing master key: ${master!}`);
    expect(answer).toMatch(/You have not verified the bot/);
    expect(await command('help')).toMatch(/`encryption`/);
  }, 60_000);
});
