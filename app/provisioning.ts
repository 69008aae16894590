/**
 * Wires the provisioning API (src/provisioning) into the daemon: its shared secret from
 * `bridge.provisioning_secret_file` (created at the first start), Matrix users' tokens checked
 * against the homeserver when Matrix is enabled, served on the bridge's HTTP listener under
 * `/_matrix/provision/` (and, through the context's handler, on the appservice listener).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/observability/logger.js';
import { ProvisioningApi, PROVISIONING_PREFIX, type ProvisionedNetwork } from '../src/provisioning/api.js';
import { ProvisioningAuth } from '../src/provisioning/auth.js';
import { ensureProvisioningSecret } from '../src/provisioning/secret.js';
import type { HttpListener } from '../src/util/http-listener.js';

export class DaemonProvisioning {
  #api: ProvisioningApi | undefined;
  readonly #auth: ProvisioningAuth;
  readonly #log: Logger;

  constructor(config: Config, secretFile: string, log: Logger) {
    const { secret, created } = ensureProvisioningSecret(secretFile);
    if (created) {
      log.info(
        { file: secretFile },
        'created the provisioning API shared secret (mode 0600): give it only to the programs that provision users',
      );
    }
    this.#auth = new ProvisioningAuth({
      secret,
      ...(config.matrix.enabled ? { homeserverUrl: config.matrix.homeserver_url } : {}),
    });
    this.#log = log;
  }

  /** The handler, before the networks are known (it answers 503 until `serve`). */
  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (this.#api) return this.#api.handle(req, res);
    const body = JSON.stringify({ errcode: 'M_UNKNOWN', error: 'the bridge is starting: try again' });
    res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  /** Serves the API for these networks on the listener. */
  serve(http: HttpListener, networks: readonly ProvisionedNetwork[]): void {
    this.#api = new ProvisioningApi({ networks, auth: this.#auth, log: this.#log });
    http.routePrefix(PROVISIONING_PREFIX, this.handle);
  }
}
