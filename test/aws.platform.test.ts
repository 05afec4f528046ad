import { StopTaskCommand } from '@aws-sdk/client-ecs';
import { botToken } from '../src/auth/bot-token';
import { loadConfig } from '../src/config';
import { botEnv } from '../src/platforms/bot-env';
import { createAwsPlatform } from '../src/platforms/aws/aws.platform';
import { deploymentName, DeploySpec, Platform, PlatformError } from '../src/platforms/platform';
import { runPlatformContract } from './platform-contract';
import { AwsPeer, overridesOf, startAwsPeer } from './support/aws';
import { meetings, startTestFleet, TestFleet } from './support/fleet';

/** The aws adapter against moto, with the faults moto cannot make injected by the proxy in front of it. */
jest.setTimeout(120_000);

let peer: AwsPeer;
let t: TestFleet;
const S3 = {
  S3_ENDPOINT: 'http://127.0.0.1:9000',
  S3_ACCESS_KEY: 'ak',
  S3_SECRET_KEY: 'sk',
  S3_BUCKET_NAME: 'recordings',
};

beforeAll(async () => {
  peer = await startAwsPeer();
  t = await startTestFleet(
    { PLATFORM_PRIORITY: 'aws', AWS_BOT_LIMIT: '10', ...peer.env, ...S3 },
    { api: true, workers: false },
  );
});
afterAll(async () => {
  await t?.close();
  await peer?.close();
});

const config = () => loadConfig(t.env);
const make = (fleetId = t.fleet.fleetId, settings = config().aws!) =>
  createAwsPlatform({ name: 'aws', settings, fleetId, stopWaitMs: 30_000 });

async function newSpec(meetingPlatform: DeploySpec['meetingPlatform'] = 'zoom'): Promise<DeploySpec> {
  const created = await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } });
  const botId = created.body.id as string;
  return {
    botId,
    name: deploymentName(botId, 'aws'),
    attempt: 0,
    meetingPlatform,
    maxDurationMs: null,
    env: botEnv(config(), botId),
  };
}

runPlatformContract('aws', () => ({
  platform: make(),
  otherFleet: make('another-fleet'),
  newSpec: () => newSpec(),
  // Every fleet's tasks: a double deploy by either would show.
  containersNamed: async (name) => (await peer.tasks('RUNNING', name)).length,
}));

describe('aws adapter', () => {
  let platform: Platform;
  beforeAll(() => {
    platform = make();
  });
  afterAll(() => platform.close());
  beforeEach(() => peer.proxy.reset());

  it("RunTask carries the bot env in the container overrides, startedBy, the fleet's tags and the network", async () => {
    const spec = await newSpec('google-meet');
    const deployment = await platform.deploy(spec);
    const [task] = await peer.tasks('RUNNING', spec.name);
    expect(task.taskArn).toBe(deployment.identifier);
    const env = overridesOf(task);
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
    // The container name comes from the task definition (aws:setup names it after the meeting platform).
    expect(task.overrides?.containerOverrides?.[0]?.name).toBe('google-meet-bot');
    expect(task.startedBy).toBe(spec.name);
    expect(task.tags).toEqual(
      expect.arrayContaining([
        { key: 'meeboter:fleet', value: t.fleet.fleetId },
        { key: 'meeboter:bot', value: spec.botId },
      ]),
    );
    const [request] = peer.proxy.requests('RunTask');
    expect(request).toMatchObject({
      cluster: 'meeboter-bots',
      taskDefinition: 'meeboter-google-meet-bot',
      capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }],
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: peer.env.AWS_ECS_SUBNETS.split(','),
          securityGroups: [peer.env.AWS_ECS_SECURITY_GROUPS],
          assignPublicIp: 'ENABLED',
        },
      },
    });
    expect(request.clientToken).toMatch(/^[0-9a-f]{64}$/);
    expect(request.launchType).toBeUndefined();
    await platform.stop(deployment.identifier);
  });

  it('the clientToken is the same for a retried attempt and new for the next attempt; a retry finds the task first', async () => {
    const spec = await newSpec();
    const first = await platform.deploy(spec);
    expect((await platform.deploy(spec)).identifier).toBe(first.identifier);
    expect(peer.proxy.calls('RunTask')).toBe(1); // the retry found it by startedBy
    await platform.stop(first.identifier);
    await platform.stop((await platform.deploy(spec)).identifier);
    await platform.stop((await platform.deploy({ ...spec, attempt: 1 })).identifier);
    const tokens = peer.proxy.requests('RunTask').map((request) => request.clientToken);
    expect(tokens[1]).toBe(tokens[0]);
    expect(tokens[2]).not.toBe(tokens[0]);
  });

  it('a capacity failure on Fargate Spot is retried on on-demand Fargate at once; on both, the platform is full', async () => {
    const spec = await newSpec();
    peer.proxy.inject('RunTask', { kind: 'failures', reason: 'RESOURCE:MEMORY' });
    const deployment = await platform.deploy(spec);
    const strategies = peer.proxy
      .requests('RunTask')
      .map((request) => request.capacityProviderStrategy[0].capacityProvider);
    expect(strategies).toEqual(['FARGATE_SPOT', 'FARGATE']);
    await platform.stop(deployment.identifier);

    peer.proxy.inject('RunTask', { kind: 'failures', reason: 'RESOURCE:MEMORY' }, 2);
    const full = await platform.deploy(await newSpec()).catch((error) => error);
    expect(full).toBeInstanceOf(PlatformError);
    expect(full).toMatchObject({ full: true, transient: false });
    expect(full.message).toContain('RESOURCE:MEMORY');
  });

  it('plain FARGATE launch type works for clusters without capacity providers', async () => {
    const fargate = make(
      t.fleet.fleetId,
      loadConfig({ ...t.env, AWS_ECS_CAPACITY_PROVIDERS: '', AWS_ECS_LAUNCH_TYPE: 'FARGATE' }).aws,
    );
    const spec = await newSpec();
    const deployment = await fargate.deploy(spec);
    const [request] = peer.proxy.requests('RunTask');
    expect(request.launchType).toBe('FARGATE');
    expect(request.capacityProviderStrategy).toBeUndefined();
    await fargate.stop(deployment.identifier);
    await fargate.close();
  });

  it('another failure fails the attempt with its reason and is not full', async () => {
    peer.proxy.inject('RunTask', { kind: 'failures', reason: 'ATTRIBUTE' });
    const error = await platform.deploy(await newSpec()).catch((e) => e);
    expect(error).toMatchObject({ full: false, transient: false });
    expect(error.message).toContain('ATTRIBUTE');
    expect(peer.proxy.calls('RunTask')).toBe(1);
  });

  it('ThrottlingException twice then success: the SDK retries and one task is started', async () => {
    const spec = await newSpec();
    peer.proxy.inject('RunTask', { kind: 'throttle' }, 2);
    const deployment = await platform.deploy(spec);
    expect(peer.proxy.calls('RunTask')).toBe(3);
    expect((await peer.tasks('RUNNING', spec.name)).map((task) => task.taskArn)).toEqual([deployment.identifier]);
    await platform.stop(deployment.identifier);
  });

  it('a 500 is retried by the SDK; once its attempts are spent the error is not transient (no second loop)', async () => {
    const spec = await newSpec();
    peer.proxy.inject('RunTask', { kind: 'server-error' });
    await platform.stop((await platform.deploy(spec)).identifier);
    expect(peer.proxy.calls('RunTask')).toBe(2);
    peer.proxy.reset();
    peer.proxy.inject('RunTask', { kind: 'throttle' }, 3);
    const error = await platform.deploy(await newSpec()).catch((e) => e);
    expect(error).toMatchObject({ transient: false, full: false });
    expect(error.message).toContain('ThrottlingException');
    expect(peer.proxy.calls('RunTask')).toBe(3); // AWS_MAX_ATTEMPTS' default, not 3 x our retries
  });

  it('a 4xx (an unknown task definition) fails the attempt with its reason', async () => {
    const broken = make(t.fleet.fleetId, loadConfig({ ...t.env, AWS_ECS_TASK_DEF_ZOOM: 'no-such-family' }).aws);
    const error = await broken.deploy(await newSpec()).catch((e) => e);
    expect(error).toMatchObject({ transient: false, full: false });
    expect(error.message).toMatch(/ClientException/);
    await broken.close();
  });

  it('status of many tasks costs one DescribeTasks per 100 tasks', async () => {
    const deployments = await Promise.all(
      [newSpec(), newSpec(), newSpec()].map(async (spec) => platform.deploy(await spec)),
    );
    peer.proxy.reset();
    const states = await Promise.all(deployments.map((d) => platform.status(d.identifier)));
    expect(states.map((s) => s.state)).toEqual(['running', 'running', 'running']);
    expect(peer.proxy.calls('DescribeTasks')).toBe(1);
    const unknown = Array.from(
      { length: 150 },
      (_, i) => `arn:aws:ecs:${peer.region}:123456789012:task/meeboter-bots/${i.toString(16).padStart(32, '0')}`,
    );
    const gone = await Promise.all(
      [...unknown, ...deployments.map((d) => d.identifier)].map((arn) => platform.status(arn)),
    );
    expect(gone.filter((s) => s.state === 'gone')).toHaveLength(150);
    expect(
      peer.proxy
        .requests('DescribeTasks')
        .slice(1)
        .map((request) => request.tasks.length),
    ).toEqual([100, 53]);
    for (const deployment of deployments) await platform.stop(deployment.identifier);
  });

  it('list() reads every page of ListTasks', async () => {
    const deployments = await Promise.all([1, 2, 3, 4, 5].map(async () => platform.deploy(await newSpec())));
    peer.proxy.pageListTasks(2);
    const listed = (await platform.list()).map((container) => container.identifier);
    expect(listed).toEqual(expect.arrayContaining(deployments.map((d) => d.identifier)));
    expect(peer.proxy.calls('ListTasks')).toBeGreaterThanOrEqual(3);
    peer.proxy.pageListTasks(null);
    for (const deployment of deployments) await platform.stop(deployment.identifier);
  });

  it('a task still PROVISIONING is starting; a STOPPED one is gone with its stopCode, reason and exit code', async () => {
    peer.proxy.inject('RunTask', { kind: 'provisioning' });
    const starting = await platform.deploy(await newSpec());
    expect(starting.state).toBe('starting');
    expect(await platform.status(starting.identifier)).toEqual({ state: 'starting', detail: 'PROVISIONING' });
    await platform.stop(starting.identifier);

    const deployment = await platform.deploy(await newSpec());
    await peer.ecs.send(
      new StopTaskCommand({ cluster: 'meeboter-bots', task: deployment.identifier, reason: 'interrupted' }),
    );
    peer.proxy.patchTask(deployment.identifier, {
      stopCode: 'SpotInterruption',
      stoppedReason: 'Your Spot Task was interrupted.',
      containers: [{ name: 'zoom-bot', exitCode: 143, lastStatus: 'STOPPED' }],
    });
    expect(await platform.status(deployment.identifier)).toEqual({
      state: 'gone',
      detail: 'SpotInterruption: Your Spot Task was interrupted.; container zoom-bot exit code 143',
    });
  });

  it('a task just started that DescribeTasks does not show yet is starting, not gone, and a stop still stops it', async () => {
    const deployment = await platform.deploy(await newSpec());
    peer.proxy.inject('DescribeTasks', { kind: 'unseen' }, 2);
    expect(await platform.status(deployment.identifier)).toMatchObject({ state: 'starting' });
    await platform.stop(deployment.identifier);
    expect(peer.proxy.calls('StopTask')).toBe(1);
    expect((await peer.tasks('RUNNING')).map((task) => task.taskArn)).not.toContain(deployment.identifier);
    // Only for a task this process started moments ago: otherwise MISSING is gone (ECS forgets stopped tasks).
    peer.proxy.inject('DescribeTasks', { kind: 'unseen' });
    expect(await make().status(deployment.identifier)).toMatchObject({ state: 'gone' });
  });

  it('StopTask of a missing task is fine', async () => {
    await expect(
      platform.stop(`arn:aws:ecs:${peer.region}:123456789012:task/meeboter-bots/${'f'.repeat(32)}`),
    ).resolves.toBeUndefined();
  });
});
