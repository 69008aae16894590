import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface OptionalCrypto {
  available: boolean;
  unavailableReason?: string;
  UserId: new (id: string) => unknown;
  OlmMachine: { initialize: (...args: unknown[]) => Promise<unknown> };
}

describe('matrix-bot-sdk without the native Matrix crypto library', () => {
  it('imports and can build an appservice and a client', async () => {
    const sdk = await import('matrix-bot-sdk');
    const client = new sdk.MatrixClient('http://127.0.0.1:1', 'token');
    expect(client.homeserverUrl).toBe('http://127.0.0.1:1');
    expect(typeof sdk.Appservice).toBe('function');
  });

  it('fails with a clear error only when encryption is used', () => {
    const sdkDir = require.resolve('matrix-bot-sdk');
    const crypto = createRequire(sdkDir)('@matrix-org/matrix-sdk-crypto-nodejs') as OptionalCrypto;
    if (crypto.available) return; // the native library is installed here: real encryption works
    expect(crypto.unavailableReason).toMatch(/matrix-sdk-crypto/);
    expect(() => new crypto.UserId('@alice:example.org')).toThrow(
      /Matrix end-to-end encryption is unavailable \(UserId was used\)/,
    );
    expect(() => crypto.OlmMachine.initialize()).toThrow(
      expect.objectContaining({ code: 'matrix_encryption_unavailable' }) as Error,
    );
  });
});
