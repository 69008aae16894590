import {
  enlistmentStatement,
  EnlistmentError,
  ENLISTMENT_MAX_AGE_SECONDS,
  verifyEnlistment,
} from '../../src/protocol/enlistment.js';
import { identityKeyPair, xeddsaSign, xeddsaVerify } from '../support/emulator-client.js';

const T = 1767225600;

describe('enlistment statement', () => {
  it('is the documented bytes: tag, account, time, each on a line, then the raw identity key', () => {
    const statement = enlistmentStatement('alice@matrixbridge.interop', T, new Uint8Array(32).fill(9));
    expect(Buffer.from(statement).toString('hex')).toBe(
      Buffer.from('interop-enlist-v1\nalice@matrixbridge.interop\n1767225600\n').toString('hex') +
        '09'.repeat(32),
    );
    expect(statement.length).toBe(18 + 27 + 11 + 32);
  });

  it('refuses what it cannot state unambiguously', () => {
    const key = new Uint8Array(32);
    expect(() => enlistmentStatement('alice@x.interop', 1.5, key)).toThrow(EnlistmentError);
    expect(() => enlistmentStatement('alice@x.interop', T, new Uint8Array(33))).toThrow(EnlistmentError);
    expect(() => enlistmentStatement('ali\nce@x.interop', T, key)).toThrow(EnlistmentError);
    expect(() => enlistmentStatement('alice', T, key)).toThrow(EnlistmentError);
  });
});

describe('verifyEnlistment', () => {
  const identity = identityKeyPair();
  const account = 'alice@matrixbridge.interop';
  const signed = (t: number) => ({
    accountJid: account,
    t,
    identityKey: identity.publicKey,
    signature: xeddsaSign(identity.privateKey, enlistmentStatement(account, t, identity.publicKey)),
  });

  it('accepts a fresh proof signed by the identity key', () => {
    expect(() => verifyEnlistment(signed(T), xeddsaVerify, T + 10)).not.toThrow();
  });

  it('refuses a proof older or newer than the limit with enlistment_stale', () => {
    expect(() => verifyEnlistment(signed(T), xeddsaVerify, T + ENLISTMENT_MAX_AGE_SECONDS + 1)).toThrow(
      expect.objectContaining({ code: 'enlistment_stale' }),
    );
    expect(() => verifyEnlistment(signed(T), xeddsaVerify, T - ENLISTMENT_MAX_AGE_SECONDS - 1)).toThrow(
      expect.objectContaining({ code: 'enlistment_stale' }),
    );
  });

  it('refuses a proof for another account, another key, or a verifier that throws', () => {
    const proof = signed(T);
    expect(() =>
      verifyEnlistment({ ...proof, accountJid: 'bob@matrixbridge.interop' }, xeddsaVerify, T),
    ).toThrow(expect.objectContaining({ code: 'enlistment_bad_signature' }));
    expect(() =>
      verifyEnlistment({ ...proof, identityKey: identityKeyPair().publicKey }, xeddsaVerify, T),
    ).toThrow(expect.objectContaining({ code: 'enlistment_bad_signature' }));
    const throwing = () => {
      throw new Error('bad point');
    };
    expect(() => verifyEnlistment(proof, throwing, T)).toThrow(
      expect.objectContaining({ code: 'enlistment_bad_signature' }),
    );
  });
});
