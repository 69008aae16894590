import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { MediaHost } from '../../src/media/host.js';
import { tempDir } from '../support/tmp.js';

describe('the media host store on disk', () => {
  let tmp: ReturnType<typeof tempDir>;
  let host: MediaHost;
  let clock: number;
  let dir: string;

  beforeEach(async () => {
    tmp = tempDir();
    clock = 1_000_000;
    dir = path.join(tmp.dir, 'media');
    host = await MediaHost.open({
      dir,
      publicUrl: 'https://bridge.example/prefix/',
      maxBytes: 1024,
      now: () => clock,
      sweepIntervalSeconds: 0,
    });
  });

  afterEach(() => {
    host.close();
    tmp.cleanup();
  });

  const blobs = () =>
    readdirSync(dir)
      .filter((n) => n !== '.incoming')
      .sort();

  it('builds URLs on the public URL, keeping its path', async () => {
    const hosted = await host.host(Readable.from([Buffer.from('x')]), 'image');
    expect(hosted.url).toBe(`https://bridge.example/prefix${hosted.directPath}`);
    expect(hosted.expiresAt).toBe(clock + 7 * 24 * 3600 * 1000);
  });

  it('the sweep removes orphans left by a crash: a blob without its record, a record without its blob', async () => {
    const kept = await host.host(Readable.from([Buffer.from('kept')]), 'image');
    writeFileSync(path.join(dir, 'aa.bin'), 'blob whose record was never written');
    writeFileSync(path.join(dir, 'bb.json'), JSON.stringify({ v: 1, expiresAt: clock + 1e9 }));
    writeFileSync(path.join(dir, 'cc.json'), 'not json');
    writeFileSync(path.join(dir, 'cc.bin'), 'blob with an unreadable record');
    expect(await host.sweep()).toBe(3);
    expect(blobs()).toHaveLength(2);
    expect(blobs().every((n) => n.length === 64 + '.json'.length || n.length === 64 + '.bin'.length)).toBe(
      true,
    );
    expect(kept.token).toHaveLength(43);
  });
});
