import { MediaFetchError, mediaDownloadUrls } from '../../src/media/fetch.js';

const conn = { auth: 'secret', hosts: ['Media.Gateway.example:8443', 'backup.gateway.example'] };

describe('where incoming media is downloaded from', () => {
  it("resolves the directPath against every <media_conn> host, in the gateway's order", () => {
    const urls = mediaDownloadUrls({ directPath: '/media/abc', url: 'http://ignored.example/x' }, conn);
    expect(urls.map(String)).toEqual([
      'http://media.gateway.example:8443/media/abc',
      'http://backup.gateway.example/media/abc',
    ]);
    expect(mediaDownloadUrls({ directPath: '/m' }, { ...conn, scheme: 'https' })[0]?.protocol).toBe('https:');
  });

  it('uses the url when there is no directPath, if it is on a media host', () => {
    const urls = mediaDownloadUrls(
      { directPath: '', url: 'http://MEDIA.gateway.example:8443/media/abc' },
      conn,
    );
    expect(urls.map(String)).toEqual(['http://media.gateway.example:8443/media/abc']);
  });

  it.each([
    ['another host', 'http://attacker.example/media/abc'],
    ['the right host on another port', 'http://media.gateway.example:9000/media/abc'],
    ['another scheme', 'ftp://media.gateway.example:8443/media/abc'],
  ])('refuses a url on %s: the credential is never sent there', (_what, url) => {
    expect(() => mediaDownloadUrls({ url }, conn)).toThrow(
      expect.objectContaining({ code: 'media_fetch_host_not_allowed' }),
    );
  });

  it.each([
    ['a protocol-relative directPath', { directPath: '//attacker.example/x' }],
    ['a relative directPath', { directPath: 'media/abc' }],
    ['neither a directPath nor a url', { directPath: '', url: '' }],
    ['a url that is not absolute', { url: '/media/abc' }],
  ])('has no source for %s', (_what, media) => {
    let caught: unknown;
    try {
      mediaDownloadUrls(media, conn);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MediaFetchError);
    expect(caught).toMatchObject({ code: 'media_fetch_no_source' });
  });
});
