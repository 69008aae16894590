/**
 * `npm run demo -- --web` as a newcomer without an XMPP client uses it: the built demo
 * (dist/demo/main.js; `npm run build` first when running this file alone) as a child process, and
 * the page it prints opened in Debian's Chromium (/usr/bin/chromium) through playwright-core. The
 * page (converse.js) logs in as the demo user by itself and joins the demo group's room (its
 * invitation accepted by itself): the answering contact's hello is there, and its answer to the
 * user's message. Then the user opens the echo contact, sends a text, sees the echo and the
 * delivery receipt for the text, sends a picture and sees it come back (the same bytes).
 * Screenshots of the room and of the chat are written to test-artifacts/demo-web-group.png and
 * test-artifacts/demo-web.png.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = 'dist/demo/main.js';
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const PICTURE = path.join(ROOT, 'node_modules/converse.js/dist/images/logo/conversejs-filled-192.png');

if (!existsSync(CHROMIUM)) {
  process.stderr.write(
    `demo-web.test.ts: ${CHROMIUM} is not installed (apt-get install chromium, or scripts/install-system-deps.sh): the browser demo test is skipped\n`,
  );
}
const withChromium = existsSync(CHROMIUM) ? it : it.skip;

describe('npm run demo -- --web', () => {
  let child: ChildProcess | undefined;
  let browser: Browser | undefined;
  afterEach(async () => {
    await browser?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
    }
  });

  withChromium(
    'serves converse.js logged in as the demo user, in the demo group; a text and a picture to the echo user come back, with receipts',
    async () => {
      if (!existsSync(path.join(ROOT, MAIN)))
        throw new Error(`${MAIN} is missing: run "npm run build" first`);
      const demo = spawn(process.execPath, [MAIN, '--web'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      child = demo;
      let out = '';
      demo.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      demo.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
      const deadline = Date.now() + 45_000;
      while (!out.includes('What crosses the bridge:')) {
        if (demo.exitCode !== null || Date.now() > deadline) {
          throw new Error(`the demo did not start; it printed:\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      const url = /In a browser on this machine, open\n\s+(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
      expect(url).toBeDefined();

      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(url!);

      // Logged in by itself, and in the demo group's room: the answering contact said hello there,
      // and answers the user.
      const room = page.locator('converse-muc');
      await room.locator('.chat-msg', { hasText: 'I made this group' }).waitFor({ timeout: 20_000 });
      const roomBox = room.locator('textarea.chat-textarea');
      await roomBox.fill('Hello, group!');
      await roomBox.press('Enter');
      await room
        .locator('.chat-msg[data-from$="/+15550000002"]', {
          hasText: /Good to hear from you|made me laugh|on the train|sounds good|Tell me more/,
        })
        .waitFor({ timeout: 15_000 });
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'demo-web-group.png') });

      // The roster shows the demo contacts.
      await page.getByText('Echo (demo)').click({ timeout: 20_000 });
      const box = page.locator('converse-chat textarea.chat-textarea');
      await box.fill('Hello from a browser');
      await box.press('Enter');
      const sent = page.locator('.chat-msg', { hasText: 'Hello from a browser' }).first();
      const echo = page.locator('.chat-msg[data-from^="+15550000001@wa.localhost"]', {
        hasText: 'echo: Hello from a browser',
      });
      await echo.waitFor({ timeout: 15_000 });
      // The echo user's delivery receipt (XEP-0184), shown as a tick on the text sent.
      await sent.locator('.chat-msg__receipt').waitFor({ timeout: 15_000 });
      expect(await sent.getAttribute('data-from')).toMatch(/^alice@localhost\//);

      // A picture through the upload service (XEP-0363); the echo user sends the same bytes back.
      await page.setInputFiles('converse-chat input.fileupload', PICTURE);
      const mine = page.locator('.chat-msg[data-from^="alice@localhost"]', {
        has: page.locator('img.chat-image'),
      });
      const back = page.locator('.chat-msg[data-from^="+15550000001@wa.localhost"] img.chat-image');
      await back.waitFor({ timeout: 20_000 });
      await mine.locator('.chat-msg__receipt').waitFor({ timeout: 15_000 });
      const src = await back.getAttribute('src');
      const came = Buffer.from(await (await fetch(src!)).arrayBuffer());
      expect(came.equals(readFileSync(PICTURE))).toBe(true);
      // Both pictures shown (loaded), for the screenshot.
      await page.waitForFunction(
        "[...document.querySelectorAll('img.chat-image')].every((i) => i.complete && i.naturalWidth > 0)",
        undefined,
        { timeout: 10_000 },
      );

      await page.screenshot({ path: path.join(ARTIFACTS, 'demo-web.png') });
      expect(pageErrors).toEqual([]);
      expect(out).toMatch(/alice@localhost -> \+15550000001 +"Hello from a browser"/);
      expect(out).toMatch(/alice@localhost -> \+15550000001 +\[image, image\/png/);
      expect(out).toMatch(/\[Demo group\] alice@localhost -> \+15550000002 +"Hello, group!"/);
    },
    60_000,
  );
});
