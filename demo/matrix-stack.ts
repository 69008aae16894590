/**
 * `npm run demo -- --matrix`: the same gateway emulator, contacts and bridge as the XMPP demo, with
 * a private Synapse (server name `localhost`) as the homeserver. Set up as an operator does it: the
 * bridge's config names its token files, `writeRegistration` makes the registration and the
 * tokens, Synapse loads the registration, the bridge starts; then a local account `alice` is made
 * through Synapse's shared registration secret. The user opts in from the client (a direct chat
 * with the bridge bot: `login`, `login confirm`), as every Matrix user of the bridge does.
 * End-to-end encryption is on (`matrix.encryption`: `allow` and `default`, as in
 * config.sample.yaml): the bot and the ghosts have devices, and portals are created encrypted.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { loadConfig } from '../src/config/loader.js';
import { startDaemon, type Daemon } from '../app/daemon.js';
import { writeRegistration } from '../adapters/matrix/registration.js';
import type { StartedEmulator } from '../test/support/emulator-process.js';
import type { DemoContact } from './contacts.js';
import { bridgeYaml, startBase, startContacts, ALICE, type StartStackOptions } from './stack.js';
import { freePort, startSynapse, type DemoSynapse } from './synapse.js';

export const SERVER_NAME = 'localhost';
export const BOT_LOCALPART = 'interop';
export const GHOST_PREFIX = 'wa_';

export interface MatrixDemoStack {
  readonly dir: string;
  readonly logFile: string;
  readonly synapse: DemoSynapse;
  readonly emulator: StartedEmulator;
  readonly daemon: Daemon;
  readonly alice: { user: string; userId: string; password: string };
  /** The bridge bot, `@interop:localhost`. */
  readonly bot: string;
  readonly contacts: DemoContact[];
  /** The ghost of a contact: `@wa_15550000001:localhost`. */
  ghostOf(phone: string): string;
}

export interface StartMatrixStackOptions extends Omit<StartStackOptions, 'preferredC2sPort'> {
  /** The homeserver port to ask for when free (default 8008, Synapse's usual one). */
  preferredPort?: number;
}

export async function startMatrixStack(o: StartMatrixStackOptions): Promise<MatrixDemoStack> {
  const base = await startBase(o);
  const listenPort = await freePort();
  const matrixDir = path.join(base.dataDir, 'matrix');
  const synapseDir = path.join(base.tmp.dir, 'synapse');
  const lines = (homeserverUrl: string, tokens: boolean) =>
    bridgeYaml(base, [
      'matrix:',
      '  enabled: true',
      `  homeserver_url: ${homeserverUrl}`,
      `  server_name: ${SERVER_NAME}`,
      `  bot_localpart: ${BOT_LOCALPART}`,
      `  ghost_localpart_prefix: ${GHOST_PREFIX}`,
      '  listen_host: 127.0.0.1',
      `  listen_port: ${listenPort}`,
      ...(tokens
        ? [
            `  as_token_file: ${JSON.stringify(path.join(matrixDir, 'as_token'))}`,
            `  hs_token_file: ${JSON.stringify(path.join(matrixDir, 'hs_token'))}`,
          ]
        : []),
      // End-to-end encryption as config.sample.yaml has it: Element creates direct chats
      // encrypted, and the bridge creates its portals encrypted.
      '  encryption:',
      '    allow: true',
      '    default: true',
      '  permissions:',
      `    ${SERVER_NAME}: user`,
    ]);
  // The registration first (Synapse reads it at start), from the config without the tokens, as
  // `interop-bridge generate-registration` does.
  const configFile = base.tmp.file('bridge.yaml', lines('http://127.0.0.1:8008', false), 0o600);
  const draft = loadConfig({ path: configFile, env: { INTEROP_BRIDGE_MATRIX__ENABLED: 'false' } });
  const files = writeRegistration(draft.config, matrixDir);

  const synapse = await startSynapse({
    dir: synapseDir,
    serverName: SERVER_NAME,
    appserviceFiles: [files.registration],
    preferredPort: o.preferredPort ?? 8008,
  });
  o.defer('Synapse', () => synapse.stop());
  o.progress(`Synapse started (pid ${synapse.pid}, ${synapse.url}, server name ${SERVER_NAME})`);

  base.tmp.file('bridge.yaml', lines(synapse.url, true), 0o600);
  const daemon = await startDaemon(loadConfig({ path: configFile, env: {} }), base.logger);
  o.defer('the bridge', () => daemon.stop());
  const bot = `@${BOT_LOCALPART}:${SERVER_NAME}`;
  o.progress(`bridge started (bot ${bot}, appservice port ${listenPort}, HTTP port ${base.httpPort})`);

  const password = randomBytes(9).toString('base64url');
  const userId = await synapse.register(ALICE, password);
  o.progress(`${userId} registered on Synapse`);

  const contacts = await startContacts(base, daemon, o);
  return {
    dir: base.tmp.dir,
    logFile: base.logFile,
    synapse,
    emulator: base.emulator,
    daemon,
    alice: { user: ALICE, userId, password },
    bot,
    contacts,
    ghostOf: (phone) => `@${GHOST_PREFIX}${phone.replace(/^\+/, '')}:${SERVER_NAME}`,
  };
}
