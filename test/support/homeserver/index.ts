/**
 * The stand-in Matrix homeserver for the Matrix adapter's tests: the client-server and application
 * service APIs, checked against the specification's own OpenAPI definitions and event schemas (read
 * in place from ../shared/specs/matrix). See docs/TESTING.md, "The stand-in homeserver".
 */
export { StandInHomeserver, MatrixError } from './server.js';
export type { StandInHomeserverOptions, Violation, RecordedRequest, StoredMedia } from './server.js';
export { LocalUser, MatrixCallError } from './local-user.js';
export type { MediaToSend } from './local-user.js';
export type { Registration, Namespace, TransactionAttempt, TransactionBody } from './appservice.js';
export type { FaultMatch, FaultKind } from './faults.js';
export { Room } from './room.js';
export type { ClientEvent, Membership } from './room.js';
export { OpenApi } from './openapi.js';
export { EventSchemas } from './event-schemas.js';
export { SchemaValidator } from './json-schema.js';
export type { SchemaProblem } from './json-schema.js';
export { SpecFiles, matrixSpecDir } from './spec-files.js';

import type { Registration } from './appservice.js';

/** A registration like the bridge generates: exclusive ghost and bot namespaces, ephemeral events on. */
export function testRegistration(overrides: Partial<Registration> = {}): Registration {
  return {
    id: 'interop-bridge',
    url: null,
    as_token: 'as_token_for_tests',
    hs_token: 'hs_token_for_tests',
    sender_localpart: 'interopbot',
    namespaces: {
      users: [{ regex: '@wa_[0-9]+:example\\.test', exclusive: true }],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
    ...overrides,
  };
}
