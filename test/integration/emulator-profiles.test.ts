/**
 * Profiles through the emulator (docs/PROTOCOL.md 5.8), end to end over real TCP: native users'
 * push names travel with their messages as `notify`, their contacts read and are told of their
 * names, about texts and pictures, and download pictures from the media service with their media
 * auth; strangers hear nothing. A restart keeps it all, and emulator.yaml sets it.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadEmulatorConfig } from '../../emulator/config.js';
import { initKeys } from '../../emulator/keys.js';
import { RunningEmulator } from '../../emulator/main.js';
import { NativeProfileError } from '../../emulator/native-profile.js';
import { NativeUser } from '../../emulator/native-user.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { adminApi } from '../support/admin-api.js';
import { tempDir } from '../support/tmp.js';

const PHONES = { a: '+4915100000001', b: '+4915100000002', c: '+4915100000003', s: '+4915100000009' };

/** Bytes that pass for a JPEG (the gateway checks the FF D8 FF start and the size only). */
const jpeg = (size = 2048) =>
  Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 6), Buffer.from([0xff, 0xd9])]);

function writeConfig(tmp: ReturnType<typeof tempDir>, extra: string[] = []): string {
  return tmp.file(
    'emulator.yaml',
    [
      'gateway:',
      '  port: 0',
      'emulator:',
      '  data_dir: data',
      'media:',
      '  port: 0',
      'admin:',
      '  port: 0',
      ...extra,
      '',
    ].join('\n'),
  );
}

describe('profiles through the emulator', () => {
  let tmp: ReturnType<typeof tempDir>;
  let running: RunningEmulator;
  let root: Uint8Array;
  const users: NativeUser[] = [];

  const user = async (phone: string) => {
    const u = await NativeUser.connect({ emulator: running.gateway, phone, rootPublicKey: root });
    users.push(u);
    return u;
  };
  const admin = (method: string, pathname: string, body?: unknown) =>
    adminApi(running.admin?.port ?? 0, method, pathname, body);
  const start = async (extra: string[] = []) => {
    const loaded = loadEmulatorConfig(writeConfig(tmp, extra));
    root = initKeys(loaded.paths.dataDir, { validityDays: 30, intermediateValidityDays: 365 }).rootPublicKey;
    running = await RunningEmulator.start({
      loaded,
      logger: createLogger({
        level: 'trace',
        format: 'json',
        destination: createWriteStream(path.join(tmp.dir, 'emulator.log')) as never,
      }),
    });
  };
  /** Two users who talked (a wrote to b, b answered), and a stranger who talked to neither. */
  const contactsAndStranger = async () => {
    const [a, b, s] = [await user(PHONES.a), await user(PHONES.b), await user(PHONES.s)];
    const id = await a.sendText(b.jid, 'hello');
    await b.waitForMessage((m) => m.id === id);
    const back = await b.sendText(a.jid, 'hi');
    await a.waitForMessage((m) => m.id === back);
    return { a, b, s };
  };
  /** What a media host answers to `GET url` with this bearer auth (none when undefined). */
  const download = async (url: string, auth?: string) => {
    const res = await fetch(url, auth === undefined ? {} : { headers: { authorization: `Bearer ${auth}` } });
    return {
      status: res.status,
      type: res.headers.get('content-type'),
      bytes: Buffer.from(await res.arrayBuffer()),
    };
  };
  const mediaAuth = (jid: string) => running.mediaTokens.issue(jid).auth;

  beforeEach(() => {
    tmp = tempDir('emulator-profiles-');
  });

  afterEach(async () => {
    await Promise.all(users.splice(0).map((u) => u.close()));
    await running?.stop();
    tmp.cleanup();
  });

  describe('with a running emulator', () => {
    beforeEach(() => start());

    it("carries the sender's push name as notify on 1:1 and group messages, and none without one", async () => {
      const [a, b, c] = [await user(PHONES.a), await user(PHONES.b), await user(PHONES.c)];
      await a.profile.setName('Alice ☀');
      const direct = await a.sendText(b.jid, 'hello');
      expect((await b.waitForMessage((m) => m.id === direct)).notify).toBe('Alice ☀');

      const { group } = await a.groups.create('Picnic', [b.jid, c.jid]);
      await c.groups.waitForEvent((e) => e.group === group.jid && e.event.event === 'group_created');
      const inGroup = await a.send(group.jid, { kind: 'text', text: 'to everyone' });
      const got = await c.waitForMessage((m) => m.id === inGroup);
      expect(got).toMatchObject({ group: group.jid, from: a.jid, notify: 'Alice ☀' });

      const fromC = await c.sendText(b.jid, 'no name here');
      expect((await b.waitForMessage((m) => m.id === fromC)).notify).toBeUndefined();
    });

    it('answers a profile look-up with name, about and picture id, and 404 for an unknown user', async () => {
      const [a, b] = [await user(PHONES.a), await user(PHONES.b)];
      await a.profile.setName('Alice');
      await a.profile.setAbout('At the gym');
      const pictureId = await a.profile.setPicture(jpeg());
      const unknown = '4917000000000@wa.interop';
      expect(await b.profile.getProfiles([a.jid, b.jid, unknown])).toEqual([
        { jid: a.jid, name: 'Alice', status: 'At the gym', pictureId },
        { jid: b.jid },
        { jid: unknown, error: { code: 404, text: 'no such user' } },
      ]);
      await a.profile.setAbout('');
      expect((await b.profile.getProfiles([a.jid]))[0]).toEqual({ jid: a.jid, name: 'Alice', pictureId });
    });

    it('tells a contact it talked with of a name change through the admin API, and not a stranger', async () => {
      const { a, b, s } = await contactsAndStranger();
      const changed = await admin('POST', '/admin/native-users/profile', {
        phone: PHONES.a,
        name: 'Alice A.',
      });
      expect(changed).toEqual({ status: 200, body: { jid: a.jid, name: 'Alice A.' } });
      const told = await b.profile.waitForEvent((e) => e.from === a.jid);
      expect(told).toMatchObject({
        type: 'profile',
        event: { event: 'push_name_changed', name: 'Alice A.' },
      });
      await a.profile.waitForEvent((e) => e.from === a.jid); // its own device hears of it too
      await admin('POST', '/admin/native-users/profile', { phone: PHONES.a, about: 'Back at 6' });
      await b.profile.waitForEvent((e) => e.event.event === 'status_changed');
      expect(s.profile.events).toEqual([]);
      expect(running.gateway.queued(s.jid).filter((q) => q.kind === 'notification')).toEqual([]);
      expect((await admin('GET', `/admin/profiles?account=${encodeURIComponent(PHONES.a)}`)).body).toEqual({
        jid: a.jid,
        name: 'Alice A.',
        about: 'Back at 6',
      });
    });

    it('announces a new picture, which a contact downloads with its media auth; a bad auth is refused', async () => {
      const { a, b, s } = await contactsAndStranger();
      const image = jpeg(40_000);
      const changed = await admin('POST', '/admin/native-users/profile', {
        phone: PHONES.a,
        picture_base64: image.toString('base64'),
      });
      expect(changed.status).toBe(200);
      const told = await b.profile.waitForEvent((e) => e.type === 'picture' && e.from === a.jid);
      expect(told.event).toEqual({ event: 'picture_set', id: changed.body.pictureId });
      const fetched = await b.profile.getPicture(a.jid);
      expect(fetched?.id).toBe(changed.body.pictureId);
      expect(fetched?.bytes.equals(image)).toBe(true);

      const url = `http://${running.media.hosts[0]}/pp/${String(changed.body.pictureId)}`;
      const direct = await download(url, mediaAuth(b.jid));
      expect(direct).toMatchObject({ status: 200, type: 'image/jpeg' });
      expect(direct.bytes.equals(image)).toBe(true);
      expect((await download(url, 'not-a-real-auth-token-x')).status).toBe(401);
      expect((await download(url)).status).toBe(401);
      expect(
        (await download(`http://${running.media.hosts[0]}/pp/no-such-picture`, mediaAuth(b.jid))).status,
      ).toBe(404);
      expect(s.profile.events).toEqual([]);
    });

    it('announces a removed picture; its old id is then no longer served', async () => {
      const { a, b } = await contactsAndStranger();
      const id = await a.profile.setPicture(jpeg());
      await b.profile.waitForEvent((e) => e.event.event === 'picture_set');
      await a.profile.removePicture();
      const told = await b.profile.waitForEvent((e) => e.event.event === 'picture_removed');
      expect(told).toMatchObject({ from: a.jid, type: 'picture' });
      expect(await b.profile.getPicture(a.jid)).toBeUndefined();
      expect((await download(`http://${running.media.hosts[0]}/pp/${id}`, mediaAuth(b.jid))).status).toBe(
        404,
      );
    });

    it('refuses an oversize picture with 413 and one that is not a JPEG with 406, changing nothing', async () => {
      const a = await user(PHONES.a);
      const refusal = (p: Promise<unknown>) =>
        p.then(
          () => undefined,
          (err: NativeProfileError) => err.status,
        );
      expect(await refusal(a.profile.setPicture(jpeg(262_145)))).toBe(413);
      expect(await refusal(a.profile.setPicture(Buffer.from('\x89PNG\r\n\x1a\nnot a jpeg', 'binary')))).toBe(
        406,
      );
      expect(await refusal(a.profile.setName('x'.repeat(26)))).toBe(406);
      const viaAdmin = await admin('POST', '/admin/native-users/profile', {
        phone: PHONES.a,
        name: 'Fine',
        picture_base64: Buffer.from('GIF89a').toString('base64'),
      });
      expect(viaAdmin).toMatchObject({ status: 406, body: { error: 'admin_profile_refused' } });
      expect(running.gateway.profile(a.jid)).toEqual({});
      const unknown = await admin('POST', '/admin/native-users/profile', {
        phone: '+4917000000000',
        name: 'X',
      });
      expect(unknown).toMatchObject({ status: 404, body: { error: 'admin_user_not_found' } });
    });

    it("shows a group's picture to its participants only", async () => {
      const [a, b, s] = [await user(PHONES.a), await user(PHONES.b), await user(PHONES.s)];
      const { group } = await a.groups.create('Picnic', [b.jid]);
      const image = jpeg();
      const id = await b.profile.setPicture(image, group.jid);
      const told = await a.profile.waitForEvent((e) => e.from === group.jid);
      expect(told).toMatchObject({ type: 'picture', participant: b.jid, version: 2, event: { id } });
      expect((await a.profile.getPicture(group.jid))?.bytes.equals(image)).toBe(true);
      const outsider = await download(`http://${running.media.hosts[0]}/pp/${id}`, mediaAuth(s.jid));
      expect(outsider.status).toBe(403);
      await expect(s.profile.getPicture(group.jid)).rejects.toMatchObject({ status: 403 });
    });

    it('keeps names, about texts and pictures over a restart', async () => {
      const { a, b } = await contactsAndStranger();
      await a.profile.setName('Alice');
      await a.profile.setAbout('Here');
      const image = jpeg();
      const id = await a.profile.setPicture(image);
      await Promise.all([a.disconnect(), b.disconnect()]);
      expect((await admin('POST', '/admin/restart')).status).toBe(200);
      await Promise.all([a.reconnect(), b.reconnect()]);
      const after = await b.profile.getProfiles([a.jid]);
      expect(after).toEqual([{ jid: a.jid, name: 'Alice', status: 'Here', pictureId: id }]);
      expect((await b.profile.getPicture(a.jid))?.bytes.equals(image)).toBe(true);
      const next = await a.sendText(b.jid, 'still me');
      expect((await b.waitForMessage((m) => m.id === next)).notify).toBe('Alice');
    });
  });

  it('sets the name, about and picture of native_users from emulator.yaml', async () => {
    const image = jpeg();
    writeFileSync(tmp.file('echo.jpg'), image);
    await start([
      'native_users:',
      `  - phone: '${PHONES.c}'`,
      '    behaviour: silent',
      '    name: Echo',
      '    about: I answer everything',
      '    picture: echo.jpg',
    ]);
    const jid = `${PHONES.c.slice(1)}@wa.interop`;
    const held = running.gateway.profile(jid);
    expect(held).toMatchObject({ name: 'Echo', about: 'I answer everything' });
    const a = await user(PHONES.a);
    expect((await a.profile.getPicture(jid))?.bytes.equals(image)).toBe(true);
    expect((await a.profile.getProfiles([jid]))[0]).toEqual({
      jid,
      name: 'Echo',
      status: 'I answer everything',
      pictureId: held.pictureId,
    });
  });

  it('refuses a native user picture that is missing or not a JPEG, and a name over 25 characters', () => {
    const problemsOf = (lines: string[]) => {
      try {
        loadEmulatorConfig(writeConfig(tmp, ['native_users:', ...lines]));
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      return [];
    };
    tmp.file('not.jpg', 'GIF89a, not a jpeg');
    expect(
      problemsOf([
        `  - phone: '${PHONES.a}'`,
        '    picture: missing.jpg',
        `  - phone: '${PHONES.b}'`,
        '    picture: not.jpg',
      ]),
    ).toEqual([
      expect.stringMatching(
        /^native_users\.0\.picture: cannot read the picture .*missing\.jpg: no such file$/,
      ),
      expect.stringMatching(/^native_users\.1\.picture: .*not\.jpg: a picture is a JPEG/),
    ]);
    expect(
      problemsOf([`  - phone: '${PHONES.a}'`, `    name: '${'n'.repeat(26)}'`, "    about: ''"]),
    ).toEqual([expect.stringMatching(/^native_users\.0\.name: expected a push name: 1 to 25 characters/)]);
  });
});
