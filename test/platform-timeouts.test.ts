import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AwsSettings, KubernetesSettings } from '../src/config';
import { createAwsPlatform } from '../src/platforms/aws/aws.platform';
import { createK8sPlatform } from '../src/platforms/k8s/k8s.platform';
import { deploymentName, DeploySpec, PlatformError } from '../src/platforms/platform';
import { sleep } from './support/fleet';
import { collectGarbage } from './support/gc';
import { awsSdkEnv } from './support/moto';

/**
 * The k8s and aws adapters against an API server that accepts every request and never answers: each call
 * is abandoned after the adapter's request timeout, also across a garbage collection, and reaches the
 * fleet as a PlatformError naming the call (k8s: transient, so a deploy retries it; aws: the SDK's
 * TimeoutError, which its retry mode counts as transient), instead of holding its occupy job forever.
 */
let server: http.Server;
let baseUrl: string;
const received: string[] = [];
const held: http.ServerResponse[] = [];
const savedEnv = { ...process.env };
let dir: string;

beforeAll(async () => {
  server = http.createServer((request, response) => {
    received.push(`${request.method} ${String(request.headers['x-amz-target'] ?? request.url)}`);
    held.push(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'silent-api-'));
});
afterAll(async () => {
  process.env = savedEnv;
  held.forEach((response) => response.destroy());
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  received.length = 0;
});

/**
 * The outcome of `call`, or a string saying it still hung after 10 s. The adapters get 2 s: the forced
 * collection of a long jest run's heap can block the event loop for longer than a shorter timeout, which
 * then fires before the request was even sent.
 */
async function outcomeOf(call: Promise<unknown>): Promise<unknown> {
  const outcome = call.then(
    () => 'answered',
    (error: unknown) => error,
  );
  await sleep(50);
  collectGarbage();
  return Promise.race([outcome, sleep(10_000).then(() => 'still waiting after 10 s')]);
}

const spec = (botId: string): DeploySpec => ({
  botId,
  name: deploymentName(botId, 'test'),
  attempt: 0,
  meetingPlatform: 'zoom',
  maxDurationMs: null,
  env: {},
});

it('k8s: every call to a silent API server fails after the request timeout as a transient error naming it', async () => {
  const kubeconfig = path.join(dir, 'kubeconfig');
  fs.writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'silent', cluster: { server: baseUrl, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'c', context: { cluster: 'silent', user: 'u' } }],
      'current-context': 'c',
    }),
  );
  const settings: KubernetesSettings = {
    namespace: 'meeboter',
    credentials: { kubeconfig },
    imageRegistry: 'registry.example',
    imageTag: 'latest',
    cpuRequest: '500m',
    cpuLimit: '1',
    memoryRequest: '1Gi',
    memoryLimit: '2Gi',
    imagePullLockEnabled: false,
    imagePullSecret: 'pull',
  };
  const platform = createK8sPlatform({
    name: 'k8s',
    settings,
    fleetId: 'f1',
    startTimeoutMs: 60_000,
    requestTimeoutMs: 2000,
  });
  // list() sends its two lists side by side: whichever is abandoned first names the failure.
  const calls: [string, () => Promise<unknown>, RegExp][] = [
    ['deploy', () => platform.deploy(spec('00000000000000000000000a')), /^create Job: /],
    ['list', () => platform.list(), /^list (Jobs|pods): /],
    ['stop', () => platform.stop('mb-x-k8s-0'), /^read Job: /],
  ];
  for (const [name, call, operation] of calls) {
    const outcome = await outcomeOf(call());
    expect([name, outcome]).toEqual([name, expect.any(PlatformError)]);
    const { message, transient } = outcome as PlatformError;
    expect([name, message.replace(operation, ''), transient]).toEqual([
      name,
      'no answer within the request timeout',
      true,
    ]);
    expect(message).toMatch(operation);
  }
  expect(received).toEqual(
    expect.arrayContaining([
      'POST /apis/batch/v1/namespaces/meeboter/jobs',
      'GET /apis/batch/v1/namespaces/meeboter/jobs/mb-x-k8s-0',
    ]),
  );
  await platform.close();
});

it('aws: a call to a silent ECS endpoint is abandoned after the request timeout and fails naming it', async () => {
  // One attempt: whether and when the SDK retries a timeout is its retry mode's business, not this test's.
  Object.assign(process.env, awsSdkEnv(baseUrl), { AWS_MAX_ATTEMPTS: '1' });
  const settings: AwsSettings = {
    region: 'eu-west-1',
    cluster: 'bots',
    subnets: ['subnet-1'],
    securityGroups: ['sg-1'],
    assignPublicIp: false,
    taskDefinitions: { 'google-meet': 'meet', 'microsoft-teams': 'teams', zoom: 'zoom' },
    launchOptions: [{ launchType: 'FARGATE' }],
  };
  const platform = createAwsPlatform({ name: 'aws', settings, fleetId: 'f1', requestTimeoutMs: 2000 });
  const outcome = await outcomeOf(platform.list());
  expect(outcome).toBeInstanceOf(PlatformError);
  expect((outcome as PlatformError).message).toMatch(/^ListTasks: TimeoutError/);
  // Sent once, never again (one attempt). On a loaded machine the timeout can fire before the request left the
  // SDK (its timers run from the socket's creation): then it was abandoned unsent, named all the same.
  expect(received.filter((call) => call !== 'POST AmazonEC2ContainerServiceV20141113.ListTasks')).toEqual([]);
  expect(received.length).toBeLessThanOrEqual(1);
  await platform.close();
});
