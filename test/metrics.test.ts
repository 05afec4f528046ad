import { readFileSync } from 'node:fs';
import path from 'node:path';
import parsePrometheusTextFormat, { type MetricFamily as Family } from 'parse-prometheus-text-format';
import { freePort } from '../src/peers';
import { meetings, spawnFleetProcess, startTestFleet, TestFleet, waitFor } from './support/fleet';

/** /metrics: Prometheus text that a parser reads, whose figures agree with what the API reports. */
jest.setTimeout(120_000);

const scrape = async (url: string): Promise<Family[]> => parsePrometheusTextFormat(await (await fetch(url)).text());
const value = (families: Family[], name: string, labels: Record<string, string> = {}) => {
  const family = families.find((f) => f.name === name);
  const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample ? Number(sample.value ?? sample.count) : undefined;
};

let t: TestFleet;
beforeAll(async () => {
  t = await startTestFleet({ PLATFORM_PRIORITY: 'sim,sim-b', SIM_BOT_LIMIT: '3', SIM_B_BOT_LIMIT: '4' });
});
afterAll(() => t.close());

it('after a scripted run its gauges and counters equal what the API reports', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push(
      (
        await t.request('POST', '/api/bots', {
          body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '300' } },
        })
      ).body.id,
    );
  }
  const bots = await waitFor(async () => {
    const list = await Promise.all(ids.map(async (id) => (await t.request('GET', `/api/bots/${id}`)).body));
    return list.every((b) => b.status === 'ENDED') ? list : null;
  }, 'the bots to end');
  await waitFor(async () => {
    const { platforms } = (await t.request('GET', '/api/platforms')).body;
    return platforms.every((p: { active: number; queued: number }) => p.active === 0 && p.queued === 0);
  }, 'every container stopped');
  // a lowered limit shows in the gauge as in the API
  await t.fleet.placement.control('sim-b', { limit: 2 });

  const families = await scrape(`${t.url}/metrics`);
  const platforms = (await t.request('GET', '/api/platforms')).body.platforms as Array<{
    name: string;
    limit: number;
    active: number;
    queued: number;
    draining: boolean;
  }>;
  for (const platform of platforms) {
    expect([platform.name, value(families, 'meeboter_platform_limit', { platform: platform.name })]).toEqual([
      platform.name,
      platform.limit,
    ]);
    expect(value(families, 'meeboter_platform_occupied', { platform: platform.name })).toBe(platform.active);
    expect(value(families, 'meeboter_platform_queued', { platform: platform.name })).toBe(platform.queued);
    expect(value(families, 'meeboter_platform_draining', { platform: platform.name })).toBe(platform.draining ? 1 : 0);
  }
  expect(platforms.map((p) => p.limit)).toEqual([3, 2]);
  expect(value(families, 'meeboter_global_queue_length')).toBe(
    (await t.request('GET', '/api/platforms')).body.globalQueue.length,
  );

  const byPlatform = (name: string) => bots.filter((b) => b.platform === name).length;
  expect(value(families, 'meeboter_bot_ends_total', { status: 'ENDED', reason: 'COMPLETED' })).toBe(5);
  expect(value(families, 'meeboter_deploy_attempts_total', { platform: 'sim' }) ?? 0).toBe(byPlatform('sim'));
  expect(value(families, 'meeboter_deploy_attempts_total', { platform: 'sim-b' }) ?? 0).toBe(byPlatform('sim-b'));
  expect(value(families, 'meeboter_create_to_in_call_seconds')).toBe(5);
  expect(value(families, 'meeboter_http_requests_total', { method: 'POST', route: '/api/bots', status: '201' })).toBe(
    5,
  );
  expect(value(families, 'meeboter_heartbeats_total')).toBeGreaterThan(0);
  expect(families.map((f) => f.name)).toContain('process_cpu_user_seconds_total');
  // MongoDB's state beside readiness: up, the changes written
  expect(value(families, 'meeboter_mongodb_up')).toBe(1);
  expect(value(families, 'meeboter_flusher_lagging')).toBe(0);
  const unflushed = value(families, 'meeboter_unflushed_changes');
  expect(Number.isInteger(unflushed) && unflushed! >= 0).toBe(true);
});

it('a worker-only process serves its own /metrics, labelled with its role', async () => {
  const port = await freePort();
  const worker = spawnFleetProcess('worker', { ...t.env, METRICS_PORT: String(port), LOG_LEVEL: 'info' });
  try {
    await waitFor(() => worker.output().includes('workers started'), 'the worker to start');
    const families = await waitFor(
      async () => scrape(`http://127.0.0.1:${port}/metrics`).catch(() => null),
      'its metrics',
    );
    // per-process figures carry the role; the fleet's gauges are the same from every process
    expect(families.find((f) => f.name === 'process_cpu_user_seconds_total')!.metrics[0].labels).toEqual({
      role: 'worker',
    });
    expect(value(families, 'meeboter_platform_limit', { platform: 'sim' })).toBe(3);
  } finally {
    await worker.kill('SIGTERM');
  }
});

it('the Grafana dashboard in deploy/ queries only metrics this fleet serves', async () => {
  const dashboard = JSON.parse(
    readFileSync(path.resolve(__dirname, '../deploy/grafana/meeboter-dashboard.json'), 'utf8'),
  );
  const served = new Set((await scrape(`${t.url}/metrics`)).map((f) => f.name));
  const queried = new Set<string>();
  for (const panel of dashboard.panels) {
    for (const target of panel.targets)
      for (const name of target.expr.match(/meeboter_[a-z_]+/g) ?? []) queried.add(name.replace(/_bucket$/, ''));
  }
  expect(queried.size).toBeGreaterThanOrEqual(12);
  expect([...queried].filter((name) => !served.has(name))).toEqual([]);
});
