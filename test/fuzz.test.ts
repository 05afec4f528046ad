import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ROUTES } from '../src/api/routes';
import { botToken } from '../src/auth/bot-token';
import {
  baseEnv,
  cleanup,
  FleetProcess,
  httpRequest,
  meetings,
  peerUrls,
  spawnFleetProcess,
  testDatabaseUri,
  uniqueName,
  waitFor,
} from './support/fleet';
import { fleetS3Env, Moto, motoS3Client, startMoto } from './support/moto';
import { PeerUrls } from './support/peers-file';

/**
 * Schemathesis (PyPI, pinned in scripts/provision.sh, in .venv-schemathesis) against a started fleet (API and
 * workers in one process, the sim platform, real Redis and FerretDB, moto's S3): every operation of the served OpenAPI
 * document, client and admin routes with their keys, bot routes with a bot's own token (test/schemathesis.toml
 * says which bot each gets). Its examples, coverage, fuzzing and stateful phases run bounded (FUZZ_MAX_EXAMPLES
 * cases per operation and phase, default 50) with a fixed seed (FUZZ_SEED). It fails on any 5xx and on any answer
 * whose status code, content type or body the document does not describe, and when an operation never got a 2xx
 * answer (so the credentials and ids really reached the routes' logic). Every generated callbackUrl is sent as
 * this test's own webhook receiver (test/schemathesis-hooks.py), so the fleet delivers nothing off this machine.
 */
jest.setTimeout(20 * 60_000);

const ROOT = path.resolve(__dirname, '..');
const SCHEMATHESIS = path.join(ROOT, '.venv-schemathesis/bin/schemathesis');
const MAX_EXAMPLES = process.env.FUZZ_MAX_EXAMPLES ?? '50';
const SEED = process.env.FUZZ_SEED ?? '20261201';
const CHECKS = [
  'not_a_server_error',
  'status_code_conformance',
  'content_type_conformance',
  'response_schema_conformance',
];

const API_KEY = `fuzz-${randomBytes(12).toString('hex')}`;
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;

let fleet: FleetProcess;
let moto: Moto;
const BUCKET = 'meeboter-fuzz';
let sink: http.Server;
let webhooks = 0;
let env: Record<string, string>;
let urls: PeerUrls;
let url: string;

beforeAll(async () => {
  moto = await startMoto();
  const s3 = motoS3Client(moto.url);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  s3.destroy();
  sink = http.createServer((req, res) => {
    webhooks += 1;
    req.resume();
    req.on('end', () => res.end());
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const peers = peerUrls();
  env = await baseEnv({
    PLATFORM_PRIORITY: 'sim',
    // the bots below plus one: what the fuzz creates mostly waits in the global queue
    SIM_BOT_LIMIT: '5',
    BOOTSTRAP_API_KEY: API_KEY,
    ADMIN_API_KEY: ADMIN_KEY,
    // moto's S3: screenshots are kept and listed there (recording links are signed here, without a call)
    ...fleetS3Env(moto.url, BUCKET),
    // the bot asked to leave stays LEAVING for the whole run
    LEAVE_GRACE_MS: '3600000',
    // the one webhook destination (see test/schemathesis-hooks.py)
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    LOG_LEVEL: 'error',
  });
  urls = { redisUrl: peers.redisUrl, mongodbUri: testDatabaseUri(peers.mongodbUri, uniqueName('meeboter_test_fuzz')) };
  env.REDIS_URL = urls.redisUrl;
  env.MONGODB_URI = urls.mongodbUri;
  url = `http://127.0.0.1:${env.PORT}`;
  fleet = spawnFleetProcess('all', env);
  await waitFor(async () => (await fetch(`${url}/readyz`)).ok, `the fleet on ${url}: ${fleet.output()}`);
});

afterAll(async () => {
  await fleet?.kill();
  await moto?.stop();
  await new Promise((resolve) => sink?.close(resolve));
  if (urls) await cleanup(urls, env.REDIS_PREFIX);
});

const call = (method: string, route: string, options: Parameters<typeof httpRequest>[3] = {}) =>
  httpRequest(url, method, route, { auth: API_KEY, ...options });

/** A bot of the API key's owner in a call that lasts an hour, once it is IN_CALL. */
async function liveBot(metadata: Record<string, string> = {}): Promise<string> {
  const created = await call('POST', '/api/bots', {
    body: { meeting: meetings.zoom, metadata: { 'sim.durationMs': '3600000', ...metadata } },
  });
  expect(created.status).toBe(201);
  const id = created.body.id as string;
  await waitFor(async () => (await call('GET', `/api/bots/${id}`)).body.status === 'IN_CALL', `bot ${id} IN_CALL`);
  return id;
}

interface Figures {
  cases: number;
  checks: Record<string, { passed: number; failed: number }>;
  /** operation label → answer status → count */
  answers: Record<string, Record<string, number>>;
}

/** Per check and per operation, from schemathesis' NDJSON event stream (one ScenarioFinished per scenario). */
function readFigures(ndjson: string): Figures {
  const figures: Figures = { cases: 0, checks: {}, answers: {} };
  for (const line of ndjson.split('\n')) {
    if (!line.includes('"ScenarioFinished"')) continue;
    const recorder = JSON.parse(line).ScenarioFinished.recorder;
    if (!recorder) continue;
    for (const results of Object.values<Array<{ name: string; status: string }>>(recorder.checks ?? {})) {
      figures.cases += 1;
      for (const { name, status } of results) {
        figures.checks[name] ??= { passed: 0, failed: 0 };
        figures.checks[name][status === 'success' ? 'passed' : 'failed'] += 1;
      }
    }
    for (const interaction of Object.values<{
      request: { method: string; uri: string };
      response?: { status_code: number };
    }>(recorder.interactions ?? {})) {
      if (!interaction.response) continue;
      // requests off the document (schemathesis tries unexpected methods) count as `other`
      const operation = operationOf(interaction.request.method, new URL(interaction.request.uri).pathname) ?? 'other';
      figures.answers[operation] ??= {};
      const status = String(interaction.response.status_code);
      figures.answers[operation][status] = (figures.answers[operation][status] ?? 0) + 1;
    }
  }
  return figures;
}

/** The route-table entry a request went to, as `METHOD /path/:param`. */
function operationOf(method: string, pathname: string): string | undefined {
  const route = ROUTES.find(
    ([m, p]) =>
      m.toUpperCase() === method &&
      new RegExp(`^${p.replace(/:\w+/g, '[^/]+')}$`).test(pathname) &&
      !(p.endsWith('/:id') && pathname.endsWith('/pool-stats')),
  );
  return route && `${route[0].toUpperCase()} ${route[1]}`;
}

it('finds no 5xx and no answer the OpenAPI document does not describe, for client, admin and bot routes', async () => {
  if (!existsSync(SCHEMATHESIS)) throw new Error(`${SCHEMATHESIS} not found: run scripts/provision.sh`);
  const [bot, statusBot, clientBot] = [await liveBot(), await liveBot(), await liveBot()];
  // told to leave, a sim bot would end at once: this one stays LEAVING, so every leave finds it live
  const leaveBot = await liveBot({ 'sim.behavior': 'ignore-leave' });
  // a recording for the client bot, so GET /recording answers a link (and the bot JSON carries one)
  const reported = await call('POST', `/api/bots/${clientBot}/status`, {
    auth: botToken(env.BOT_TOKEN_SECRET, clientBot),
    body: { status: 'LEAVING', recordingKey: `recordings/${clientBot}.mp4` },
  });
  expect(reported.status).toBe(200);
  expect((await call('GET', `/api/bots/${clientBot}/recording`)).status).toBe(200);

  const reports = mkdtempSync(path.join(os.tmpdir(), 'meeboter-fuzz-'));
  const args = [
    '--config-file',
    path.join(__dirname, 'schemathesis.toml'),
    'run',
    `${url}/api/openapi.json`,
    '--max-examples',
    MAX_EXAMPLES,
    '--seed',
    SEED,
    // one worker: schemathesis 4.32 errs internally with more on this Python, and the order stays the same
    '--workers',
    '1',
    '--request-timeout',
    '10',
    '--no-color',
    '--report-json-path',
    path.join(reports, 'run.json'),
    '--report-ndjson-path',
    path.join(reports, 'events.ndjson'),
  ];
  const runEnv = {
    ...process.env,
    MEEBOTER_API_KEY: API_KEY,
    MEEBOTER_ADMIN_KEY: ADMIN_KEY,
    MEEBOTER_BOT_ID: bot,
    MEEBOTER_BOT_TOKEN: botToken(env.BOT_TOKEN_SECRET, bot),
    MEEBOTER_STATUS_BOT_ID: statusBot,
    MEEBOTER_STATUS_BOT_TOKEN: botToken(env.BOT_TOKEN_SECRET, statusBot),
    MEEBOTER_CLIENT_BOT_ID: clientBot,
    MEEBOTER_LEAVE_BOT_ID: leaveBot,
    MEEBOTER_WEBHOOK_SINK: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/hook`,
    SCHEMATHESIS_HOOKS: path.join(__dirname, 'schemathesis-hooks.py'),
  };
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    let text = '';
    const child = spawn(SCHEMATHESIS, args, { cwd: reports, env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk) => (text += chunk));
    child.stderr.on('data', (chunk) => (text += chunk));
    child.on('error', reject);
    child.on('exit', (exitCode) => resolve({ code: exitCode, output: text }));
  });
  try {
    if (!existsSync(path.join(reports, 'run.json')))
      throw new Error(`schemathesis wrote no report (exit ${code}):\n${output}`);
    const run = JSON.parse(readFileSync(path.join(reports, 'run.json'), 'utf8'));
    const figures = readFigures(readFileSync(path.join(reports, 'events.ndjson'), 'utf8'));
    process.stdout.write(
      `schemathesis ${run.schemathesis_version}, seed ${run.seed}, ${MAX_EXAMPLES} examples: ${run.operations.tested}/${run.operations.total} operations, ` +
        `${run.test_cases.generated} cases generated, ${run.test_cases.with_failures} with failures, ${run.errors.length} errors, ` +
        `${Math.round(run.running_time)} s; checks ${CHECKS.map((name) => `${name} ${figures.checks[name]?.passed ?? 0} passed / ${figures.checks[name]?.failed ?? 0} failed`).join(', ')}; ` +
        `webhooks received ${webhooks}; answers ${JSON.stringify(figures.answers)}\n`,
    );
    if (code !== 0) process.stdout.write(output);
    expect({ code, failures: run.failures, errors: run.errors }).toEqual({ code: 0, failures: [], errors: [] });
    expect(run.operations.tested).toBe(ROUTES.length);
    for (const name of CHECKS)
      expect([name, figures.checks[name]?.failed, (figures.checks[name]?.passed ?? 0) > ROUTES.length]).toEqual([
        name,
        0,
        true,
      ]);
    const withoutSuccess = ROUTES.map(([method, route]) => `${method.toUpperCase()} ${route}`).filter(
      (operation) => !Object.keys(figures.answers[operation] ?? {}).some((status) => status.startsWith('2')),
    );
    expect(withoutSuccess).toEqual([]);
  } finally {
    rmSync(reports, { recursive: true, force: true });
  }
});
