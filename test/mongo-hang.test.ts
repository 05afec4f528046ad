import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { startFerretDb, StartedPeer } from '../src/peers';
import { API_KEY_CACHE_MS } from '../src/services/api-keys.service';
import {
  expectStoredAsShown,
  httpRequest,
  meetings,
  sleep,
  startTestFleet,
  TestFleet,
  UntypedJson,
  waitFor,
} from './support/fleet';

/**
 * The deployment as shipped through a MongoDB that hangs (its process stopped with SIGSTOP: connections stay
 * open, nothing answers) for longer than the readiness probe's failure window of deploy/k8s/api.yaml, with
 * the API and a worker as separate processes, as there. The probes, made as the kubelet makes them (its
 * path, period and timeout), never fail `failureThreshold` times in a row, so no pod leaves the Service;
 * running bots keep heartbeating and stay IN_CALL; a bot created meanwhile (after the API key's cache ran
 * out) is accepted, placed and completes; once MongoDB runs again it holds everything.
 * Uses a FerretDB of its own, so stopping it stalls no other test file.
 */
jest.setTimeout(300_000);

interface Probe {
  path: string;
  port: string | number;
  periodSeconds: number;
  timeoutSeconds: number;
  failureThreshold: number;
}

/** The readiness probe of a Deployment's first container, as the manifest sets it. */
function readinessProbe(file: string, deployment: string): Probe {
  const docs = yaml.loadAll(readFileSync(path.resolve(__dirname, '../deploy/k8s', file), 'utf8')) as UntypedJson[];
  const found = docs.find((doc) => doc?.kind === 'Deployment' && doc.metadata.name === deployment);
  const probe = found.spec.template.spec.containers[0].readinessProbe;
  // the kubelet's defaults for what a manifest leaves out
  return {
    periodSeconds: 10,
    timeoutSeconds: 1,
    failureThreshold: 3,
    ...probe,
    path: probe.httpGet.path,
    port: probe.httpGet.port,
  };
}

/**
 * Probes `url` every period with the probe's timeout, as the kubelet does, until stopped; records each
 * answer and the longest run of failures.
 */
function probeLikeKubelet(url: string, probe: Probe) {
  const answers: Array<{ at: number; status: number; body: UntypedJson }> = [];
  let failuresInARow = 0;
  let mostFailuresInARow = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      let status: number;
      let body: UntypedJson = null;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(probe.timeoutSeconds * 1000) });
        status = res.status;
        const text = await res.text();
        body = text.startsWith('{') ? JSON.parse(text) : text;
      } catch {
        status = 0; // timed out or refused
      }
      answers.push({ at: started, status, body });
      // the kubelet counts 200-399 as success
      failuresInARow = status >= 200 && status < 400 ? 0 : failuresInARow + 1;
      mostFailuresInARow = Math.max(mostFailuresInARow, failuresInARow);
      await sleep(Math.max(0, probe.periodSeconds * 1000 - (Date.now() - started)));
    }
  })();
  return {
    answers,
    async stop() {
      running = false;
      await loop;
      return mostFailuresInARow;
    },
  };
}

const apiProbe = readinessProbe('api.yaml', 'meeboter-api');
const workerProbe = readinessProbe('worker.yaml', 'meeboter-worker');
const apiWindowMs = apiProbe.periodSeconds * apiProbe.failureThreshold * 1000;
/** Into the hang, past the API's failure window and the API key's cache (so the key is looked up again). */
const CREATE_AFTER_MS = Math.max(apiWindowMs, API_KEY_CACHE_MS) + 1000;

let ferret: StartedPeer;
let api: TestFleet;
let worker: TestFleet;
let stopped = false;
const dir = mkdtempSync(path.join(os.tmpdir(), 'meeboter-mongo-hang-'));

beforeAll(async () => {
  ferret = await startFerretDb(dir);
  const env = {
    MONGODB_URI: ferret.url,
    PLATFORM_PRIORITY: 'sim',
    HEARTBEAT_INTERVAL_MS: '500',
    // far below the hang: bots whose heartbeats did not get through would end HEARTBEAT_TIMEOUT meanwhile
    HEARTBEAT_TIMEOUT_MS: '8000',
    SWEEP_INTERVAL_MS: '1000',
  };
  api = await startTestFleet(env, { api: true, workers: false });
  // the same fleet: its Redis prefix and database, its bots reporting to the API
  const same = {
    REDIS_PREFIX: api.env.REDIS_PREFIX,
    __DB: new URL(api.urls.mongodbUri).pathname.slice(1),
    PUBLIC_URL: api.env.PUBLIC_URL,
  };
  worker = await startTestFleet({ ...env, ...same, METRICS_PORT: '0' }, { api: false, workers: true });
});
afterAll(async () => {
  if (stopped) process.kill(ferret.pid!, 'SIGCONT');
  await worker?.fleet.shutdown.close();
  await api?.close();
  await ferret?.stop();
});

const statusOf = async (id: string) => (await api.request('GET', `/api/bots/${id}`)).body;
const create = async (durationMs: number) => {
  const res = await api.request('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': String(durationMs) } },
  });
  expect(res.status).toBe(201);
  return res.body.id as string;
};

it('a MongoDB hung for longer than the probe window takes no process out of service, and no bot down', async () => {
  expect(apiProbe.path).toBe('/readyz');
  expect(workerProbe.path).toBe('/metrics');
  const running = [await create(600_000), await create(600_000)];
  for (const id of running) await waitFor(async () => (await statusOf(id)).status === 'IN_CALL', `bot ${id} in call`);

  const apiProbes = probeLikeKubelet(`${api.url}${apiProbe.path}`, apiProbe);
  const workerProbes = probeLikeKubelet(`http://127.0.0.1:${worker.fleet.metricsPort}${workerProbe.path}`, workerProbe);
  process.kill(ferret.pid!, 'SIGSTOP');
  stopped = true;
  const hungAt = Date.now();
  const beforeHang = new Map(
    await Promise.all(running.map(async (id) => [id, (await statusOf(id)).lastHeartbeatAt as string] as const)),
  );

  // past the probe's window and the API key's cache: the key is looked up again, and MongoDB does not answer
  await sleep(Math.max(0, hungAt + CREATE_AFTER_MS - Date.now()));
  const created = await create(1000);
  const completed = await waitFor(
    async () => {
      const bot = await statusOf(created);
      return ['ENDED', 'FATAL'].includes(bot.status) ? bot : null;
    },
    'the bot created meanwhile to complete',
    60_000,
  ).catch(() => null);
  // a key this process never saw cannot be checked meanwhile: 503, not a hang and not a 401
  const unknownKey = await httpRequest(api.url, 'GET', '/api/bots', { auth: 'mbk_never-seen-key-0123456789' });
  const duringHang = await Promise.all(running.map(statusOf));
  const hangMs = Date.now() - hungAt;
  const apiFailures = await apiProbes.stop();
  const workerFailures = await workerProbes.stop();
  const readyAnswers = apiProbes.answers.filter((answer) => answer.at >= hungAt);

  process.kill(ferret.pid!, 'SIGCONT');
  stopped = false;

  expect(hangMs).toBeGreaterThan(apiWindowMs);
  // no pod would have left the Service: never failureThreshold failed probes in a row
  expect(apiFailures).toBeLessThan(apiProbe.failureThreshold);
  expect(workerFailures).toBeLessThan(workerProbe.failureThreshold);
  // and /readyz said so: ready, MongoDB unavailable, degraded
  const degraded = readyAnswers.filter(
    (answer) => answer.status === 200 && answer.body.degraded && /^unavailable/.test(answer.body.checks.mongodb),
  );
  expect(degraded.length).toBeGreaterThan(0);
  expect(readyAnswers.every((answer) => answer.status === 200 || answer.status === 0)).toBe(true);
  expect(
    workerProbes.answers.some(
      (answer) => answer.at >= hungAt && answer.status === 200 && /meeboter_mongodb_up\S* 0\b/.test(answer.body),
    ),
  ).toBe(true);
  // the running bots heartbeat through it and stay in their call
  expect(duringHang.map((bot) => bot.status)).toEqual(['IN_CALL', 'IN_CALL']);
  for (const bot of duringHang)
    expect(new Date(bot.lastHeartbeatAt).getTime()).toBeGreaterThan(new Date(beforeHang.get(bot.id)!).getTime() + 5000);
  // the bot created meanwhile was placed and completed without MongoDB
  expect(completed).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED' });
  expect([unknownKey.status, unknownKey.body.error?.code]).toEqual([503, 'UNAVAILABLE']);

  // MongoDB runs again: the changes of the hang reach it
  await waitFor(
    async () => {
      const res = await httpRequest(api.url, 'GET', '/readyz');
      return res.status === 200 && !res.body.degraded && res.body.unflushedChanges === 0;
    },
    'the flusher to catch up',
    120_000,
  );
  await expectStoredAsShown(api, [...running, created]);
});
