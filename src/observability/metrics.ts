/**
 * Prometheus metrics, served at `/metrics` on the bridge's HTTP listener. One registry per daemon
 * (not prom-client's global one), so tests and benchmarks can run several bridges in one process.
 *
 * What an operator watches (docs/OPERATING.md, "Metrics"):
 * - `interop_bridge_messages_total{direction,outcome}`: outgoing queued/sent/delivered/read/failed,
 *   incoming received/delivered/undecryptable;
 * - `interop_bridge_outbox_queued`, `interop_bridge_inbox_pending`: work waiting (read at scrape time);
 * - `interop_bridge_gateway_connections{state}`, `interop_bridge_puppets`: connection states now;
 * - `interop_bridge_gateway_failures_total{reason}`: failed handshakes and connections by reason code;
 * - `interop_bridge_outbox_oldest_age_seconds` and `interop_bridge_queue_max_age_seconds`: how long
 *   the oldest queued outgoing message has waited, and `bridge.queue_max_age_hours`, when it fails;
 * - `interop_bridge_local_server_up{network}`: 1 when the homeserver (matrix) or the XMPP server
 *   (xmpp) answers the bridge, 0 when not (read at scrape time);
 * - `interop_bridge_message_latency_seconds{direction}`: outgoing from accepted to acknowledged by
 *   the gateway, incoming from received from the gateway to accepted by the local server;
 * - process metrics (memory, CPU, event loop lag) under `interop_bridge_process_*` / `nodejs_*`.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type MessageDirection = 'outgoing' | 'incoming';
export type OutgoingOutcome = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';
export type IncomingOutcome = 'received' | 'delivered' | 'undecryptable';

/** What the metrics read at scrape time from the running bridge. */
export interface MetricsSources {
  outboxQueued(): Promise<number>;
  inboxPending(): Promise<number>;
  puppets(): Promise<number>;
  /** Count of puppets per gateway connection state. */
  connectionStates(): Record<string, number>;
  /** When the oldest queued outgoing message was written (ms), undefined when none waits. */
  oldestQueuedAt?(): Promise<number | undefined>;
  /** Per enabled local network (`matrix`, `xmpp`): whether its server answers the bridge now. */
  localServers?(): Promise<Record<string, boolean>>;
  /** With `start --worker`: this worker's id, how many puppets it holds, whether it is the front. */
  worker?(): { id: string; puppets: number; front: boolean } | undefined;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class BridgeMetrics {
  readonly registry = new Registry();
  private readonly messages: Counter<'direction' | 'outcome'>;
  private readonly failures: Counter<'reason'>;
  private readonly latency: Histogram<'direction'>;
  private sources: MetricsSources | undefined;

  constructor(options: { processMetrics?: boolean; queueMaxAgeSeconds?: number } = {}) {
    const registers = [this.registry];
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: 'interop_bridge_' });
    }
    this.messages = new Counter({
      name: 'interop_bridge_messages_total',
      help: 'Messages by direction and outcome (outgoing: queued, sent, delivered, read, failed; incoming: received, delivered, undecryptable).',
      labelNames: ['direction', 'outcome'],
      registers,
    });
    this.failures = new Counter({
      name: 'interop_bridge_gateway_failures_total',
      help: 'Failed gateway handshakes and connections, by reason code (for example cert_untrusted_root, auth_rejected, connect_timeout).',
      labelNames: ['reason'],
      registers,
    });
    this.latency = new Histogram({
      name: 'interop_bridge_message_latency_seconds',
      help: 'Outgoing: from accepted by the bridge to acknowledged by the gateway. Incoming: from received from the gateway to accepted by the local server.',
      labelNames: ['direction'],
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60],
      registers,
    });
    const read = (f: (s: MetricsSources) => Promise<number>) => () =>
      this.sources ? f(this.sources) : Promise.resolve(0);
    const outbox = read((s) => s.outboxQueued());
    const inbox = read((s) => s.inboxPending());
    const puppets = read((s) => s.puppets());
    new Gauge({
      name: 'interop_bridge_outbox_queued',
      help: 'Outgoing messages and receipts waiting to be sent to the gateway.',
      registers,
      async collect() {
        this.set(await outbox());
      },
    });
    new Gauge({
      name: 'interop_bridge_inbox_pending',
      help: 'Incoming messages received and decrypted but not yet accepted by the local server.',
      registers,
      async collect() {
        this.set(await inbox());
      },
    });
    new Gauge({
      name: 'interop_bridge_puppets',
      help: 'Enlisted puppets (local users who opted in).',
      registers,
      async collect() {
        this.set(await puppets());
      },
    });
    const oldest = async () => {
      const at = await this.sources?.oldestQueuedAt?.();
      return at === undefined ? 0 : Math.max(0, Date.now() - at) / 1000;
    };
    new Gauge({
      name: 'interop_bridge_outbox_oldest_age_seconds',
      help: 'How long the oldest queued outgoing message has waited (0 when none waits); it fails at interop_bridge_queue_max_age_seconds.',
      registers,
      async collect() {
        this.set(await oldest());
      },
    });
    if (options.queueMaxAgeSeconds !== undefined) {
      new Gauge({
        name: 'interop_bridge_queue_max_age_seconds',
        help: 'bridge.queue_max_age_hours in seconds: an outgoing message not sent within it fails.',
        registers,
      }).set(options.queueMaxAgeSeconds);
    }
    const servers = async () => (await this.sources?.localServers?.()) ?? {};
    new Gauge({
      name: 'interop_bridge_local_server_up',
      help: 'Whether the local server answers the bridge (1) or not (0), by network: matrix (the homeserver), xmpp (the XMPP server).',
      labelNames: ['network'],
      registers,
      async collect() {
        this.reset();
        for (const [network, up] of Object.entries(await servers())) this.set({ network }, up ? 1 : 0);
      },
    });
    const worker = () => this.sources?.worker?.();
    new Gauge({
      name: 'interop_bridge_worker_puppets',
      help: 'With start --worker: the puppets this worker holds leases on (runs), by worker id.',
      labelNames: ['worker'],
      registers,
      collect() {
        this.reset();
        const w = worker();
        if (w) this.set({ worker: w.id }, w.puppets);
      },
    });
    new Gauge({
      name: 'interop_bridge_worker_front',
      help: 'With start --worker: whether this worker holds the front lease and runs the adapters (1) or stands by (0).',
      labelNames: ['worker'],
      registers,
      collect() {
        this.reset();
        const w = worker();
        if (w) this.set({ worker: w.id }, w.front ? 1 : 0);
      },
    });
    const states = () => this.sources?.connectionStates() ?? {};
    new Gauge({
      name: 'interop_bridge_gateway_connections',
      help: 'Puppet gateway connections by state (idle, connecting, handshaking, connected, waiting, refused, stopped).',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(states())) this.set({ state }, n);
      },
    });
  }

  /** Where the gauges read from; set once the bridge is running. */
  observe(sources: MetricsSources): void {
    this.sources = sources;
  }

  outgoing(outcome: OutgoingOutcome, acceptedAtMs?: number): void {
    this.messages.inc({ direction: 'outgoing', outcome });
    if (outcome === 'sent' && acceptedAtMs !== undefined) {
      this.latency.observe({ direction: 'outgoing' }, Math.max(0, Date.now() - acceptedAtMs) / 1000);
    }
  }

  incoming(outcome: IncomingOutcome, receivedAtMs?: number): void {
    this.messages.inc({ direction: 'incoming', outcome });
    if (outcome === 'delivered' && receivedAtMs !== undefined) {
      this.latency.observe({ direction: 'incoming' }, Math.max(0, Date.now() - receivedAtMs) / 1000);
    }
  }

  gatewayFailure(reason: string): void {
    this.failures.inc({ reason });
  }

  /** The exposition text for `GET /metrics`. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
