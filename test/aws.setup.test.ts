import { spawn } from 'node:child_process';
import path from 'node:path';
import { DescribeTasksCommand, ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { playBots } from './support/aws';
import { startEcsFaultProxy } from './support/ecs-fault-proxy';
import { awsSdkEnv, Moto, startMoto } from './support/moto';
import { meetings, startTestFleet, TestFleet, waitFor } from './support/fleet';

/** `npm run aws:setup` against moto: it creates everything once, changes nothing the second time, and its output runs a fleet. */
jest.setTimeout(180_000);

let moto: Moto;
let t: TestFleet | undefined;
beforeAll(async () => {
  moto = await startMoto();
});
afterAll(async () => {
  await t?.close();
  await moto?.stop();
});

function setup(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.resolve(__dirname, '../dist/scripts/aws-setup.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...awsSdkEnv(moto.url) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code) => resolve({ code, output }));
  });
}

const variables = (output: string) =>
  Object.fromEntries(
    output
      .split('\n')
      .filter((line) => /^AWS_[A-Z_]+=/.test(line))
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );

it('creates everything, then changes nothing, and prints variables that make PLATFORM_PRIORITY=aws work', async () => {
  const dry = await setup(['--region', 'us-east-2', '--dry-run']);
  expect(dry.code).toBe(0);
  expect(dry.output).toContain('would create VPC meeboter-bots');
  expect(dry.output).not.toMatch(/^\s+created/m);

  const first = await setup(['--region', 'us-east-2']);
  expect(first.code).toBe(0);
  for (const what of [
    'VPC meeboter-bots',
    'subnet meeboter-bots-public-1',
    'subnet meeboter-bots-public-2',
    'internet gateway meeboter-bots',
    'route table meeboter-bots-public',
    'security group meeboter-bots',
    'log group /ecs/meeboter-bots',
    'IAM role meeboter-bots-task-execution',
    'IAM role meeboter-bots-task',
    'ECS cluster meeboter-bots',
    'task definition meeboter-google-meet-bot',
    'task definition meeboter-microsoft-teams-bot',
    'task definition meeboter-zoom-bot',
  ]) {
    expect([what, first.output]).toEqual([what, expect.stringContaining(`created  ${what}`)]);
  }
  const made = /aws:setup made (\d+) change/.exec(first.output)![1];

  const second = await setup(['--region', 'us-east-2']);
  expect(second.code).toBe(0);
  expect(second.output).toContain('aws:setup made 0 change(s) in us-east-2');
  expect(second.output).not.toMatch(/^\s+(created|updated)/m);
  const env = variables(second.output);
  expect(env).toEqual(variables(first.output));
  expect(env).toMatchObject({
    AWS_REGION: 'us-east-2',
    AWS_ECS_CLUSTER: 'meeboter-bots',
    AWS_ECS_SUBNETS: expect.stringMatching(/^subnet-[0-9a-f]+,subnet-[0-9a-f]+$/),
    AWS_ECS_SECURITY_GROUPS: expect.stringMatching(/^sg-[0-9a-f]+$/),
    AWS_ECS_TASK_DEF_ZOOM: 'meeboter-zoom-bot',
  });
  process.stdout.write(
    `aws:setup: first run ${made} changes, second run 0; variables: ${Object.keys(env).join(', ')}\n`,
  );

  // A fleet with exactly the printed variables, against the same moto.
  const proxy = await startEcsFaultProxy(moto.url);
  Object.assign(process.env, awsSdkEnv(proxy.url));
  t = await startTestFleet({ ...env, ...awsSdkEnv(proxy.url), PLATFORM_PRIORITY: 'aws' });
  const ecs = new ECSClient({
    region: 'us-east-2',
    endpoint: moto.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  const player = playBots({ ecs, proxy, region: 'us-east-2', cluster: env.AWS_ECS_CLUSTER });
  try {
    const id = (await t.request('POST', '/api/bots', { body: { meeting: meetings.zoom } })).body.id as string;
    const ended = await waitFor(async () => {
      const bot = (await t!.request('GET', `/api/bots/${id}`)).body;
      return ['ENDED', 'FATAL'].includes(bot.status) && bot;
    }, 'the bot to end');
    expect(ended).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: 'aws' });
    // Its holder stops the task right after the bot's end.
    const arns = await waitFor(async () => {
      const stopped = (await ecs.send(new ListTasksCommand({ cluster: 'meeboter-bots', desiredStatus: 'STOPPED' })))
        .taskArns!;
      return stopped.length > 0 && stopped;
    }, 'the task to be stopped');
    const [task] = (
      await ecs.send(new DescribeTasksCommand({ cluster: 'meeboter-bots', tasks: arns, include: ['TAGS'] }))
    ).tasks!;
    expect(task.taskDefinitionArn).toMatch(/task-definition\/meeboter-zoom-bot:1$/);
  } finally {
    await player.stop();
    ecs.destroy();
    await t.close();
    t = undefined;
    await proxy.close();
  }
});
