import { z } from 'zod';
import { base64Key, bool, expecting, host, httpUrl, int, oneOf, section, str } from './fields.js';

/**
 * The configuration schema. Every leaf carries the phrase that completes "expected ...", so the
 * loader can turn any mistake into "key: expected <phrase>, found <value>".
 * Keys are snake_case as in config.sample.yaml, which documents each of them.
 */

const port = () => int(1, 65535, 'a port number from 1 to 65535');

/** Options whose value may instead be read from a file named by `<key>_file`. */
export const SECRET_KEYS = [
  'matrix.as_token',
  'matrix.hs_token',
  'matrix.double_puppet_as_token',
  'xmpp.secret',
  'bridge.database_password',
] as const;

const httpSchema = z.strictObject({
  host: host().default('127.0.0.1'),
  port: port().default(29330),
  public_url: httpUrl().optional(),
});

const bridgeSchema = z.strictObject({
  provider_id: str('a provider id such as "example.org"').default('localhost'),
  data_dir: str('a directory path').default('./data'),
  /** A SQLite file (relative to data_dir), or postgres://user@host:port/database. */
  database: str('a file path or a postgres://user@host:port/database URL').default('interop-bridge.db'),
  /** PostgreSQL's password (better: database_password_file, mode 0600). */
  database_password: str('the PostgreSQL password').optional(),
  /** PostgreSQL TLS: disable, require (encrypted, not verified) or verify-full. */
  database_sslmode: oneOf(['disable', 'require', 'verify-full'] as const).optional(),
  /** The CA certificate (PEM file) to verify the PostgreSQL server with under verify-full. */
  database_sslrootcert: str('a file path').optional(),
  at_rest_key_file: str('a file path').default('at-rest.key'),
  /** The provisioning API's shared secret, inside data_dir (created at the first start, mode 0600). */
  provisioning_secret_file: str('a file path').default('provisioning-secret'),
  queue_max_age_hours: int(1, 8760, 'a number of hours from 1 to 8760').default(168),
  lifecycle: oneOf(['always', 'presence'] as const).default('always'),
  /** `start --worker` on PostgreSQL: how long a worker's leases last unrenewed (renewed every third). */
  worker_lease_seconds: int(1, 600, 'a number of seconds from 1 to 600').default(15),
  identity_change_policy: oneOf(['trust_on_first_use', 'block_until_confirmed'] as const).default(
    'trust_on_first_use',
  ),
  http: httpSchema.default(httpSchema.parse({})),
});

const providerSchema = z.strictObject({
  signing_key_file: str('a file path').default('provider-signing-key.jwk'),
  jwt_ttl_seconds: int(30, 3600).default(300),
});

const reconnectSchema = z.strictObject({
  initial_delay_ms: int(10, 600_000).default(1000),
  max_delay_ms: int(100, 3_600_000).default(60_000),
});

const gatewaySchema = z.strictObject({
  host: host().default('127.0.0.1'),
  port: port().default(29400),
  gateway_id: str('the gateway id (the JWT audience)').default('emulator.interop'),
  root_key: base64Key(32).optional(),
  static_key: base64Key(32).optional(),
  max_frame_bytes: int(1024, 16_777_215).default(1_048_576),
  handshake_timeout_seconds: int(1, 300).default(10),
  keepalive_seconds: int(5, 3600).default(30),
  max_concurrent_handshakes: int(1, 10_000).default(128),
  max_connects_per_second: int(1, 100_000).default(400),
  reconnect: reconnectSchema.default(reconnectSchema.parse({})),
});

const signalSchema = z.strictObject({
  prekey_batch_size: int(10, 1000).default(100),
  prekey_low_water: int(1, 500).default(20),
  signed_prekey_rotation_days: int(1, 90).default(7),
});

const mediaSchema = z.strictObject({
  max_bytes: int(1024, 2 ** 40).default(100 * 1024 * 1024),
  allowed_fetch_hosts: z.array(host(), expecting('a list of host names')).default([]),
});

const permissionLevel = oneOf(['none', 'user', 'admin'] as const);

const matrixRetrySchema = z.strictObject({
  max_attempts: int(1, 1000).default(10),
  initial_delay_ms: int(1, 600_000).default(500),
  max_delay_ms: int(1, 3_600_000).default(30_000),
});

/** Matrix end-to-end encryption (docs/MATRIX.md, "Encrypted rooms"). */
const matrixEncryptionSchema = z.strictObject({
  /** Take part in encrypted rooms; off, they are declined as before (needs the registration's MSC flags). */
  allow: bool().default(false),
  /** New portals are created encrypted (only with `allow`). */
  default: bool().default(false),
  /** How long an encrypted message whose keys have not arrived is held before the user is told. */
  key_wait_seconds: int(1, 86_400).default(300),
});

const matrixSchema = z
  .strictObject({
    enabled: bool().default(false),
    homeserver_url: httpUrl().default('http://127.0.0.1:8008'),
    server_name: str('the homeserver\'s server name, such as "example.org"').default('localhost'),
    as_token: str('the application service token').optional(),
    hs_token: str('the homeserver token').optional(),
    /** The double-puppet registration's as_token (`generate-registration --double-puppet`). */
    double_puppet_as_token: str("the double-puppet registration's as_token").optional(),
    bot_localpart: str('a Matrix localpart such as "interop"').default('interop'),
    ghost_localpart_prefix: str('a localpart prefix such as "wa_"').default('wa_'),
    listen_host: host().default('127.0.0.1'),
    listen_port: port().default(29331),
    ghost_displayname: str('a display name template with {phone}, such as "{phone} (WhatsApp)"').default(
      '{phone} (WhatsApp)',
    ),
    client_retry: matrixRetrySchema.default(matrixRetrySchema.parse({})),
    encryption: section(matrixEncryptionSchema),
    permissions: z
      .record(
        z.string(),
        permissionLevel,
        expecting('a map of "*", server names or user ids to none/user/admin'),
      )
      .default({}),
  })
  .superRefine((m, ctx) => {
    if (!m.enabled) return;
    for (const key of ['as_token', 'hs_token'] as const) {
      if (m[key] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `the ${key === 'as_token' ? 'application service' : 'homeserver'} token (or ${key}_file) when matrix.enabled is true; run "interop-bridge generate-registration"`,
        });
      }
    }
  });

const xmppSchema = z
  .strictObject({
    enabled: bool().default(false),
    server_host: host().default('127.0.0.1'),
    server_port: port().default(5347),
    component_domain: str('the component\'s domain, such as "wa.example.org"').default('wa.localhost'),
    secret: str('the component secret shared with the XMPP server').optional(),
    upload_service: str('the JID of an XEP-0363 upload service').optional(),
    served_file_lifetime_hours: int(1, 8760, 'a number of hours from 1 to 8760').default(168),
    name: str("the gateway's name shown in service discovery").default('WhatsApp'),
    allowed_domains: z.array(host(), expecting('a list of XMPP domains such as ["example.org"]')).default([]),
    /** Bare JIDs allowed the `admin` commands (the XMPP side's `admin` permission level). */
    admins: z
      .array(str('a bare JID such as "admin@example.org"'), expecting('a list of bare JIDs'))
      .default([]),
  })
  .superRefine((x, ctx) => {
    if (x.enabled && x.secret === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['secret'],
        message: 'the component secret (or secret_file) when xmpp.enabled is true',
      });
    }
  });

const loggingSchema = z.strictObject({
  level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const).default('info'),
  format: oneOf(['auto', 'json', 'pretty'] as const).default('auto'),
});

export const configSchema = z.strictObject({
  bridge: section(bridgeSchema),
  provider: section(providerSchema),
  gateway: section(gatewaySchema),
  signal: section(signalSchema),
  media: section(mediaSchema),
  matrix: section(matrixSchema),
  xmpp: section(xmppSchema),
  logging: section(loggingSchema),
});

export type Config = z.infer<typeof configSchema>;
