/**
 * Native (gatekeeper) users connect like any client: Noise handshake, then a ClientPayload whose
 * JWT is signed by a provider. Their provider is the built-in `wa`, whose signing key the emulator
 * holds itself, so the native-user module mints their tokens here and uses the same protocol code
 * as a third-party client.
 */
import { encodeClientPayload, ConnectReason } from '../src/protocol/auth.js';
import {
  generateProviderKey,
  jwksKeyResolver,
  mintClientToken,
  publicJwks,
  type ProviderPrivateJwk,
  type TokenKeyResolver,
} from '../src/protocol/jwt.js';
import { nativeJid } from '../src/protocol/stanza/index.js';

/** The `iss` of native users' tokens. Reserved: no third-party provider may use it. */
export const NATIVE_PROVIDER_ID = 'wa';

export interface NativeClientPayloadInput {
  /** E.164, with or without "+". */
  phone: string;
  device: number;
  /** The client's X25519 Noise static public key (the token's `cnf`). */
  noiseStaticKey: Uint8Array;
  connectReason?: ConnectReason;
}

export class NativeTokenIssuer {
  readonly #key: ProviderPrivateJwk;
  readonly #audience: string;
  readonly keyResolver: TokenKeyResolver;

  private constructor(key: ProviderPrivateJwk, audience: string) {
    this.#key = key;
    this.#audience = audience;
    this.keyResolver = jwksKeyResolver(publicJwks([key]));
  }

  /** With `key` the tokens survive a restart; without, a fresh key per process (tokens are short-lived anyway). */
  static async create(audience: string, key?: ProviderPrivateJwk): Promise<NativeTokenIssuer> {
    return new NativeTokenIssuer(key ?? (await generateProviderKey('EdDSA', 'wa-native-1')), audience);
  }

  /** The token's `sub` for a phone number: the E.164 digits without "+". */
  static subject(phone: string): string {
    return phone.startsWith('+') ? phone.slice(1) : phone;
  }

  mintToken(phone: string, noiseStaticKey: Uint8Array): Promise<string> {
    return mintClientToken({
      privateKey: this.#key,
      kid: this.#key.kid,
      alg: 'EdDSA',
      issuer: NATIVE_PROVIDER_ID,
      subject: NativeTokenIssuer.subject(phone),
      audience: this.#audience,
      noiseStaticKey,
    });
  }

  /** The whole ClientPayload a native user's client sends in the handshake. */
  async clientPayload(input: NativeClientPayloadInput): Promise<Uint8Array> {
    nativeJid(input.phone); // validates the number
    return encodeClientPayload({
      accountId: NativeTokenIssuer.subject(input.phone),
      providerId: NATIVE_PROVIDER_ID,
      device: input.device,
      token: await this.mintToken(input.phone, input.noiseStaticKey),
      userAgent: { appName: 'interop-emulator-native', appVersion: '1' },
      connectReason: input.connectReason ?? ConnectReason.USER_ACTIVATED,
    });
  }
}
