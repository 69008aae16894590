import { PREFACE, UnsupportedVersionError, checkPreface } from '../../src/protocol/transport/index.js';

describe('preface', () => {
  it('is ASCII "IG" followed by version 1.0', () => {
    expect(PREFACE.toString('hex')).toBe('49470100');
    expect(PREFACE.subarray(0, 2).toString('ascii')).toBe('IG');
  });

  it('is accepted with its version once all 4 bytes are in', () => {
    expect(checkPreface(PREFACE.subarray(0, 3))).toBeUndefined();
    expect(checkPreface(PREFACE)).toEqual({ major: 1, minor: 0 });
  });

  it('accepts a newer minor version of major 1', () => {
    expect(checkPreface(Buffer.from([0x49, 0x47, 1, 3]))).toEqual({ major: 1, minor: 3 });
  });

  it('turns away a stranger at its first wrong byte', () => {
    expect(() => checkPreface(Buffer.from('G'))).toThrow(
      expect.objectContaining({ code: 'transport_bad_preface' }),
    );
    expect(() => checkPreface(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(/received 47 45 54 20/);
  });

  it('names the version it cannot speak', () => {
    let thrown: unknown;
    try {
      checkPreface(Buffer.from([0x49, 0x47, 2, 5]));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(UnsupportedVersionError);
    expect(thrown).toMatchObject({ code: 'transport_unsupported_version', major: 2, minor: 5 });
    expect((thrown as Error).message).toMatch(/version 2\.5.*speaks 1\.0/);
  });
});
