import http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Readiness } from './readiness';

/**
 * The one metrics registry of this process (prom-client), served at /metrics in Prometheus text format.
 * Counters and histograms count what this process did and carry its role as a label (`all`, `api`,
 * `worker`); the fleet-wide gauges (limits, occupancy, queues) are read from Redis at scrape time by
 * `fleetGauges`, so every process answers the same for them. Labels are platform names, statuses, reasons
 * and route patterns: never a bot id, a key or anything secret.
 */
export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry });

const registers = [metricsRegistry];
const SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

export const metrics = {
  deployAttempts: new Counter({
    name: 'meeboter_deploy_attempts_total',
    help: 'Deploy calls made to a platform (each retry counts)',
    labelNames: ['platform'],
    registers,
  }),
  deployFailures: new Counter({
    name: 'meeboter_deploy_failures_total',
    help: 'Attempts handed back to the global queue, by platform and outcome (failed, timed-out, full)',
    labelNames: ['platform', 'outcome'],
    registers,
  }),
  botEnds: new Counter({
    name: 'meeboter_bot_ends_total',
    help: 'Bots that reached ENDED or FATAL, by end reason',
    labelNames: ['status', 'reason'],
    registers,
  }),
  heartbeats: new Counter({ name: 'meeboter_heartbeats_total', help: 'Heartbeats received from bots', registers }),
  heartbeatsExpired: new Counter({
    name: 'meeboter_heartbeats_expired_total',
    help: 'Bots ended FATAL HEARTBEAT_TIMEOUT by the heartbeat sweep',
    registers,
  }),
  sweepSeconds: new Histogram({
    name: 'meeboter_sweep_duration_seconds',
    help: 'Duration of each sweep run (heartbeat expiry, deploy timeout, leave grace, reconciliation, recovery)',
    labelNames: ['sweep'],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers,
  }),
  webhookDeliveries: new Counter({
    name: 'meeboter_webhook_deliveries_total',
    help: 'Webhook requests by outcome (delivered, failed: retried later, abandoned)',
    labelNames: ['outcome'],
    registers,
  }),
  httpRequests: new Counter({
    name: 'meeboter_http_requests_total',
    help: 'HTTP requests by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'],
    registers,
  }),
  queueWaitSeconds: new Histogram({
    name: 'meeboter_queue_wait_seconds',
    help: 'From queued to claimed for a deploy on a platform',
    labelNames: ['platform'],
    buckets: SECONDS,
    registers,
  }),
  createToDeploySeconds: new Histogram({
    name: 'meeboter_create_to_deploy_seconds',
    help: 'From the create request to the platform accepting the deploy call',
    labelNames: ['platform'],
    buckets: SECONDS,
    registers,
  }),
  createToInCallSeconds: new Histogram({
    name: 'meeboter_create_to_in_call_seconds',
    help: 'From the create request to the bot reporting IN_CALL',
    buckets: SECONDS,
    registers,
  }),
};

export const secondsSince = (start: Date | undefined, now = Date.now()) =>
  start ? Math.max(0, now - start.getTime()) / 1000 : 0;

/** Times `run` into the sweep-duration histogram. */
export async function timedSweep<T>(sweep: string, run: () => Promise<T>): Promise<T> {
  const end = metrics.sweepSeconds.startTimer({ sweep });
  try {
    return await run();
  } finally {
    end();
  }
}

/** What the fleet's gauges read: placement's stats and, where it is known, this process's readiness. */
export interface FleetGaugeSource {
  stats(): Promise<{
    platforms: Array<{ name: string; limit: number; active: number; queued: number; draining: boolean }>;
    globalQueue: { length: number };
  }>;
}

/**
 * A registry of gauges read from Redis at each scrape (through placement's stats), for one fleet, and of this
 * process's readiness (MongoDB's state, the changes waiting for it); merged with the process registry when
 * served. A scrape fails while Redis does not answer, so a probe on /metrics means "Redis answers", as
 * /readyz does; MongoDB away only shows in the gauges.
 */
export function fleetGauges(source: FleetGaugeSource, readiness: () => Promise<Readiness>): Registry {
  const registry = new Registry();
  // One read of Redis (and one readiness check) serves all of a scrape's gauges.
  const latestOnce = <T>(read: () => Promise<T>) => {
    let latest: { at: number; value: Promise<T> } | undefined;
    return () => {
      if (!latest || Date.now() - latest.at > 500) latest = { at: Date.now(), value: read() };
      return latest.value;
    };
  };
  const stats = latestOnce(() => source.stats());
  const health = latestOnce(readiness);
  const perPlatform = (
    name: string,
    help: string,
    pick: (p: Awaited<ReturnType<FleetGaugeSource['stats']>>['platforms'][number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['platform'],
      registers: [registry],
      async collect() {
        for (const platform of (await stats()).platforms) this.set({ platform: platform.name }, pick(platform));
      },
    });
  perPlatform(
    'meeboter_platform_limit',
    'Bots the platform may hold at once (a lowered limit included)',
    (p) => p.limit,
  );
  perPlatform(
    'meeboter_platform_occupied',
    'Bots occupying the platform (deploying or running there)',
    (p) => p.active,
  );
  perPlatform(
    'meeboter_platform_queued',
    'Bots assigned to the platform, waiting for their deploy to start',
    (p) => p.queued,
  );
  perPlatform('meeboter_platform_draining', '1 while the platform takes no new bots', (p) => (p.draining ? 1 : 0));
  new Gauge({
    name: 'meeboter_global_queue_length',
    help: 'Bots waiting in the global queue for any platform',
    registers: [registry],
    async collect() {
      this.set((await stats()).globalQueue.length);
    },
  });
  new Gauge({
    name: 'meeboter_mongodb_up',
    help: '1 while MongoDB answers this process (within a second); the fleet serves without it, degraded',
    registers: [registry],
    async collect() {
      this.set((await health()).checks.mongodb === 'ok' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meeboter_flusher_lagging',
    help: "1 while this process's flusher cannot write bot changes to MongoDB",
    registers: [registry],
    async collect() {
      this.set((await health()).checks.flusher.startsWith('lagging') ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meeboter_unflushed_changes',
    help: 'Bot changes kept in Redis, not yet written to MongoDB (the whole fleet)',
    registers: [registry],
    async collect() {
      const { unflushedChanges } = await health();
      if (unflushedChanges === null) throw new Error('Redis does not answer');
      this.set(unflushedChanges);
    },
  });
  return registry;
}

let processLabels: Record<string, string> = {};

/** Labels every figure this process serves (its role); main() sets them once. */
export function labelProcess(labels: Record<string, string>): void {
  processLabels = labels;
}

/** The text a scrape gets: this process's metrics and the fleet's gauges. */
export async function scrape(fleet: Registry): Promise<{ contentType: string; body: string }> {
  const merged = Registry.merge([metricsRegistry, fleet]);
  merged.setDefaultLabels(processLabels);
  return { contentType: merged.contentType, body: await merged.metrics() };
}

/** A worker-only process has no API: it answers /metrics alone, on METRICS_PORT. */
export function metricsOnlyHandler(fleet: Registry): http.RequestListener {
  return (req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    scrape(fleet).then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  };
}
