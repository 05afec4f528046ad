import { botToken } from '../src/auth/bot-token';
import { loadConfig } from '../src/config';
import { botEnv } from '../src/platforms/bot-env';
import { buildJob } from '../src/platforms/k8s/job-spec';
import { createK8sPlatform } from '../src/platforms/k8s/k8s.platform';
import { deploymentName, DeploySpec, Platform } from '../src/platforms/platform';
import { runPlatformContract } from './platform-contract';
import { OUTCOME_LABEL } from './support/kwok-stages';
import { K8sPeer, NAMESPACE, startK8sPeer } from './support/k8s';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/** The k8s adapter against a real control plane (kwok fakes the node), with the deploy/k8s ServiceAccount. */
jest.setTimeout(180_000);

let peer: K8sPeer;
let t: TestFleet;
const S3 = {
  S3_ENDPOINT: 'http://127.0.0.1:9000',
  S3_ACCESS_KEY: 'ak',
  S3_SECRET_KEY: 'sk',
  S3_BUCKET_NAME: 'recordings',
};

beforeAll(async () => {
  peer = await startK8sPeer();
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'k8s', K8S_BOT_LIMIT: '10', K8S_IMAGE_PULL_LOCK_ENABLED: 'false', ...peer.env, ...S3 },
    { api: true, workers: false },
  );
}, 300_000);
afterAll(async () => {
  await t?.close();
  await peer?.close();
});

const config = (env: Record<string, string> = {}) => loadConfig({ ...t.env, ...env });
const make = (fleetId = t.fleet.fleetId, env: Record<string, string> = {}) =>
  createK8sPlatform({ name: 'k8s', settings: config(env).k8s!, fleetId, startTimeoutMs: 60_000, stopWaitMs: 60_000 });

async function newSpec(
  meetingPlatform: DeploySpec['meetingPlatform'] = 'zoom',
  maxDurationMs: number | null = null,
): Promise<DeploySpec> {
  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  const botId = created.body.id as string;
  return {
    botId,
    name: deploymentName(botId, 'k8s'),
    attempt: 0,
    meetingPlatform,
    maxDurationMs,
    env: botEnv(config(), botId),
  };
}

const jobsNamed = async (name: string) =>
  (await peer.batch.listNamespacedJob({ namespace: NAMESPACE, labelSelector: `meeboter.io/deployment=${name}` })).items;
const podsOf = (job: string) => peer.pods(`batch.kubernetes.io/job-name=${job}`);

runPlatformContract('k8s', () => ({
  platform: make(),
  otherFleet: make('another-fleet'),
  newSpec: () => newSpec(),
  // Every fleet's Jobs not being deleted: a double deploy by either would show.
  containersNamed: async (name) => (await jobsNamed(name)).filter((job) => !job.metadata?.deletionTimestamp).length,
}));

describe('k8s adapter', () => {
  let platform: Platform;
  beforeAll(() => {
    platform = make();
  });
  afterAll(() => platform.close());

  it('the Job read back from the API server has every field; the pod env resolves to the bot env, secrets only by reference', async () => {
    const spec = await newSpec('google-meet', 3_600_000);
    const deployment = await platform.deploy(spec);
    expect(deployment.identifier).toBe(`${spec.name}-0`);
    const job = await peer.batch.readNamespacedJob({ name: deployment.identifier, namespace: NAMESPACE });
    const labels = {
      app: 'meeboter-bot',
      'meeboter.io/fleet': t.fleet.fleetId,
      'meeboter.io/bot-id': spec.botId,
      'meeboter.io/deployment': spec.name,
      'meeboter.io/meeting-platform': 'google-meet',
      'meeboter.io/attempt': '0',
    };
    expect(job.metadata!.labels).toEqual(labels);
    expect(job.spec).toMatchObject({
      suspend: false,
      backoffLimit: 0,
      ttlSecondsAfterFinished: 300,
      activeDeadlineSeconds: 3600 + 60 + 600,
    });
    expect(job.spec!.template.metadata!.labels).toMatchObject(labels);
    const pod = job.spec!.template.spec!;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.imagePullSecrets).toEqual([{ name: 'ghcr-secret' }]);
    expect(pod.volumes).toEqual([{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '512Mi' } }]);
    const [container] = pod.containers;
    expect(container.image).toBe('registry.test/meeboter/meeboter-google-meet-bot:latest');
    expect(container.resources).toEqual({
      requests: { cpu: '500m', memory: '1Gi' },
      limits: { cpu: '1', memory: '2Gi' },
    });
    expect(container.volumeMounts).toEqual([{ name: 'dshm', mountPath: '/dev/shm' }]);
    const plain = Object.fromEntries(
      (container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]),
    );
    expect(Object.keys(plain)).not.toEqual(expect.arrayContaining(['MILO_AUTH_TOKEN']));
    expect(JSON.stringify(job)).not.toContain(spec.env.MILO_AUTH_TOKEN);
    expect(JSON.stringify(job)).not.toContain('"sk"');
    expect((container.env ?? []).filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom!.secretKeyRef])).toEqual([
      ['MILO_AUTH_TOKEN', { name: deployment.identifier, key: 'MILO_AUTH_TOKEN' }],
      ['S3_SECRET_KEY', { name: deployment.identifier, key: 'S3_SECRET_KEY' }],
    ]);
    // The Secret is owned by the Job, so the garbage collector deletes it with the Job.
    const secret = await peer.core.readNamespacedSecret({ name: deployment.identifier, namespace: NAMESPACE });
    expect(secret.metadata!.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: deployment.identifier, uid: job.metadata!.uid }),
    ]);
    const [running] = await waitFor(async () => {
      const pods = await podsOf(deployment.identifier);
      return pods[0]?.status?.phase === 'Running' ? pods : null;
    }, 'the pod to run');
    const env = await peer.podEnv(running);
    expect(env).toEqual(spec.env);
    expect(env).toMatchObject({
      BOT_ID: spec.botId,
      MILO_URL: t.env.PUBLIC_URL,
      MILO_AUTH_TOKEN: botToken(t.env.BOT_TOKEN_SECRET, spec.botId),
      S3_ENDPOINT: S3.S3_ENDPOINT,
      S3_ACCESS_KEY: 'ak',
      S3_SECRET_KEY: 'sk',
      S3_BUCKET_NAME: 'recordings',
      S3_REGION: 'us-east-1',
      NODE_ENV: 'production',
    });
    // kubectl, a client we did not write, sees the same Job.
    const viaKubectl = JSON.parse(
      peer.plane.kubectl(['-n', NAMESPACE, 'get', 'job', deployment.identifier, '-o', 'json']),
    );
    expect(viaKubectl.spec.template.spec.containers[0].image).toBe(container.image);
    await platform.stop(deployment.identifier);
    await waitFor(
      async () =>
        !(await peer.core
          .readNamespacedSecret({ name: deployment.identifier, namespace: NAMESPACE })
          .catch(() => null)),
      'the Secret to be collected',
    );
    expect(await podsOf(deployment.identifier)).toEqual([]);
  });

  it('a pod with ImagePullBackOff is starting with that reason; an unschedulable one names the scheduler reason', async () => {
    const pulling = make(t.fleet.fleetId, { K8S_IMAGE_TAG: 'pull-fails-1' });
    const stuck = await pulling.deploy(await newSpec());
    expect(stuck.state).toBe('starting');
    const status = await waitFor(async () => {
      const current = await pulling.status(stuck.identifier);
      return current.detail?.startsWith('ImagePullBackOff') ? current : null;
    }, 'ImagePullBackOff');
    expect(status).toEqual({
      state: 'starting',
      detail: expect.stringContaining('Back-off pulling image "registry.test/meeboter/meeboter-zoom-bot:pull-fails-1"'),
    });
    await pulling.stop(stuck.identifier);

    const huge = make(t.fleet.fleetId, { K8S_BOT_CPU_REQUEST: '64', K8S_BOT_CPU_LIMIT: '64' });
    const pending = await huge.deploy(await newSpec());
    const unschedulable = await waitFor(async () => {
      const current = await huge.status(pending.identifier);
      return current.detail?.startsWith('Unschedulable') ? current : null;
    }, 'Unschedulable');
    expect(unschedulable).toEqual({
      state: 'starting',
      detail: expect.stringMatching(/^Unschedulable: 0\/1 nodes are available: .*Insufficient cpu/),
    });
    await huge.stop(pending.identifier);
  });

  it('a pod that succeeds or fails makes the Job gone, with the Job condition and the exit code', async () => {
    const [ok, bad] = await Promise.all([platform.deploy(await newSpec()), platform.deploy(await newSpec())]);
    await waitFor(
      async () =>
        (await platform.status(ok.identifier)).state === 'running' &&
        (await platform.status(bad.identifier)).state === 'running',
      'both running',
    );
    for (const [deployment, outcome] of [
      [ok, 'succeed'],
      [bad, 'fail'],
    ] as const) {
      const [pod] = await podsOf(deployment.identifier);
      peer.plane.kubectl(['-n', NAMESPACE, 'label', 'pod', pod.metadata!.name!, `${OUTCOME_LABEL}=${outcome}`]);
    }
    const done = await waitFor(async () => {
      const current = await platform.status(ok.identifier);
      return current.state === 'gone' && current.detail?.startsWith('Complete') ? current : null;
    }, 'the Job to complete');
    expect(done.detail).toMatch(/exit code 0 \(Completed\)/);
    const failed = await waitFor(async () => {
      const current = await platform.status(bad.identifier);
      return current.state === 'gone' && /^Failed/.test(current.detail ?? '') ? current : null;
    }, 'the Job to fail');
    expect(failed.detail).toMatch(/BackoffLimitExceeded.*exit code 1 \(Error\)/);
    expect((await platform.list()).map((c) => c.identifier)).not.toEqual(expect.arrayContaining([ok.identifier]));
    expect(await platform.adopt(ok.identifier.replace(/-0$/, ''))).toBeNull();
    await platform.stop(ok.identifier);
    await platform.stop(bad.identifier);
  });

  it('a Job left suspended by a deploy that died before resuming it is starting, and the next deploy resumes it', async () => {
    const spec = await newSpec();
    // What a deploy killed between its create and its resume leaves: a suspended Job and no Secret.
    await peer.batch.createNamespacedJob({
      namespace: NAMESPACE,
      body: buildJob(spec, config().k8s!, t.fleet.fleetId, 60_000),
    });
    expect(await platform.adopt(spec.name)).toMatchObject({ identifier: `${spec.name}-0`, state: 'starting' });
    const deployment = await platform.deploy(spec);
    expect(deployment.identifier).toBe(`${spec.name}-0`);
    const jobs = await jobsNamed(spec.name);
    expect(jobs.map((job) => job.spec?.suspend)).toEqual([false]);
    await waitFor(async () => (await podsOf(deployment.identifier)).length === 1, 'its pod');
    expect((await platform.adopt(spec.name))?.identifier).toBe(deployment.identifier);
    await platform.stop(deployment.identifier);
  });

  it('a later attempt of the same bot is a new Job; a retry of an attempt adopts its Job', async () => {
    const spec = await newSpec();
    const first = await platform.deploy(spec);
    expect((await platform.deploy(spec)).identifier).toBe(first.identifier);
    await platform.stop(first.identifier);
    const second = await platform.deploy({ ...spec, attempt: 1 });
    expect(second.identifier).toBe(`${spec.name}-1`);
    expect((await platform.adopt(spec.name))?.identifier).toBe(second.identifier);
    await platform.stop(second.identifier);
  });
});
