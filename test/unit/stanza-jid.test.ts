import fc from 'fast-check';

import {
  GROUP_SERVER,
  JidError,
  groupJid,
  isGroupJid,
  NATIVE_SERVER,
  formatJid,
  nativeJid,
  parseJid,
  providerOf,
  providerServer,
  toUserJid,
} from '../../src/protocol/stanza/index.js';

describe('JIDs', () => {
  test('a native user is its E.164 number without "+" at wa.interop', () => {
    expect(nativeJid('+4915112345678')).toBe('4915112345678@wa.interop');
    expect(parseJid('4915112345678:2@wa.interop')).toEqual({
      user: '4915112345678',
      device: 2,
      server: NATIVE_SERVER,
    });
  });

  test('a third-party account lives at <provider-id>.interop', () => {
    expect(formatJid({ user: 'alice.example', server: providerServer('matrixbridge') })).toBe(
      'alice.example@matrixbridge.interop',
    );
    expect(providerOf(parseJid('alice.example:1@matrixbridge.interop').server)).toBe('matrixbridge');
    expect(providerOf(NATIVE_SERVER)).toBeUndefined();
  });

  test('the gateway itself is the bare server', () => {
    expect(parseJid('wa.interop')).toEqual({ server: 'wa.interop' });
  });

  test('a group lives at g.wa.interop, and the bare g.wa.interop is the group server', () => {
    expect(parseJid('120363025246125486@g.wa.interop')).toEqual({
      user: '120363025246125486',
      server: GROUP_SERVER,
    });
    expect(parseJid('g.wa.interop')).toEqual({ server: GROUP_SERVER });
    expect(groupJid('120363025246125486')).toBe('120363025246125486@g.wa.interop');
    expect(isGroupJid('120363025246125486@g.wa.interop')).toBe(true);
    expect(isGroupJid('g.wa.interop')).toBe(false);
    expect(isGroupJid('4915112345678@wa.interop')).toBe(false);
    expect(providerOf(GROUP_SERVER)).toBeUndefined();
  });

  test('dropping the device gives the user JID', () => {
    expect(toUserJid('4915112345678:7@wa.interop')).toBe('4915112345678@wa.interop');
  });

  test.each([
    ['+4915112345678@wa.interop', 'a "+" in a native JID'],
    ['015112345678@wa.interop', 'a national number'],
    ['491@wa.interop', 'too few digits'],
    ['alice@wa.interop', 'letters in a native JID'],
    ['Alice@matrixbridge.interop', 'an upper-case account'],
    ['alice@example.org', 'a server outside .interop'],
    ['alice@-bad.interop', 'a bad provider id'],
    ['alice:01@matrixbridge.interop', 'a device with a leading zero'],
    ['alice:65536@matrixbridge.interop', 'a device above 65535'],
    ['a@b@matrixbridge.interop', 'two "@"'],
    ['@wa.interop', 'an empty user'],
    ['', 'the empty string'],
    ['120363025246125486:1@g.wa.interop', 'a device of a group'],
    ['hiking@g.wa.interop', 'letters in a group id'],
    ['0123@g.wa.interop', 'a group id with a leading zero'],
  ])('%s is refused (%s)', (jid) => {
    expect(() => parseJid(jid)).toThrow(JidError);
  });

  test('"wa" cannot be a provider id', () => {
    expect(() => providerServer('wa')).toThrow(JidError);
  });

  test('formatting then parsing gives the same JID', () => {
    const jid = fc.record({
      user: fc.oneof(
        fc.stringMatching(/^[1-9][0-9]{6,14}$/).map((user) => ({ user, server: NATIVE_SERVER })),
        fc
          .tuple(fc.stringMatching(/^[a-z0-9][a-z0-9._=-]{0,20}$/), fc.stringMatching(/^[a-z0-9]{3,10}$/))
          .map(([user, provider]) => ({ user, server: `${provider}.interop` })),
      ),
      device: fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(jid, ({ user: { user, server }, device }) => {
        const parsed = parseJid(formatJid({ user, device, server }));
        expect(parsed).toEqual(device === undefined ? { user, server } : { user, device, server });
      }),
    );
  });
});
