import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs';
import { AwsPeer, playBots, startAwsPeer } from './support/aws';
import { BotPlayer } from './support/bot-player';
import {
  attemptsOf as attempts,
  createBot,
  eventsOf as events,
  startTestFleet,
  TestFleet,
  waitFor,
  waitForStatus as waitStatus,
} from './support/fleet';

/**
 * The aws platform inside a fleet (API and workers in this process) against moto: full is not failed,
 * the SDK's retries are the only ones, starting is bounded, and reconciliation works both ways.
 */
jest.setTimeout(180_000);

let peer: AwsPeer;
let player: BotPlayer | undefined;
const fleets: TestFleet[] = [];
beforeAll(async () => {
  peer = await startAwsPeer();
});
afterAll(() => peer?.close());
beforeEach(() => peer.proxy.reset());
afterEach(async () => {
  await player?.stop();
  player = undefined;
  await Promise.all(fleets.splice(0).map((t) => t.close()));
});

/** aws first, then local (the sim bot as a real process); each fleet has its own FLEET_ID, so its own tasks. */
async function fleet(env: Record<string, string> = {}) {
  const t = await startTestFleet({
    PLATFORM_PRIORITY: 'aws,local',
    AWS_BOT_LIMIT: '5',
    LOCAL_RUN_DIR: mkdtempSync(path.join(os.tmpdir(), 'meeboter-aws-')),
    GLOBAL_QUEUE_TIMEOUT_MS: '600000',
    ...peer.env,
    ...env,
  });
  fleets.push(t);
  return t;
}

it('failures[] RESOURCE:MEMORY on every capacity provider sends the bot to local at once; aws is full, not failed', async () => {
  const t = await fleet();
  peer.proxy.inject('RunTask', { kind: 'failures', reason: 'RESOURCE:MEMORY' }, 2);
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('local');
  expect(await attempts(t, id)).toEqual([
    'attempt.assigned:aws',
    'attempt.full:aws',
    'attempt.assigned:local',
    'attempt.deployed:local',
  ]);
  const full = (await events(t, id)).find((e) => e.type === 'attempt.full');
  expect(full.reason).toContain('RESOURCE:MEMORY');
  expect(peer.proxy.calls('RunTask')).toBe(2); // Spot, then on-demand Fargate, then no more
  expect((await t.fleet.repo.findById(id))!.excludedPlatforms).toEqual([]);
});

it('ThrottlingException twice then success: the SDK retries, one task is started, the bot completes on aws', async () => {
  const t = await fleet();
  player = playBots(peer);
  peer.proxy.inject('RunTask', { kind: 'throttle' }, 2);
  const id = await createBot(t);
  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: 'aws' });
  expect(peer.proxy.calls('RunTask')).toBe(3);
  // The bot ended; its holder then stops the task and records how it ended.
  const stopped = await waitFor(
    async () => (await events(t, id)).find((e) => e.type === 'container.stopped'),
    'the task to be stopped',
  );
  const tasks = [...(await peer.tasks('RUNNING', `mb-${id}-aws`)), ...(await peer.tasks('STOPPED', `mb-${id}-aws`))];
  expect(tasks.map((task) => task.lastStatus)).toEqual(['STOPPED']);
  expect(stopped.data).toMatchObject({
    platform: 'aws',
    identifier: tasks[0].taskArn,
    detail: expect.stringContaining('Stopped by meeboter'),
  });
});

it('throttled past the SDK attempts on every try: each try fails once, with the reason, and the bot moves on', async () => {
  const t = await fleet();
  peer.proxy.inject('RunTask', { kind: 'throttle' }, 9);
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('local');
  // The SDK's 3 attempts per try, for the first try and AWS_START_RETRIES (2) retries: no loop of ours around the SDK's.
  expect(peer.proxy.calls('RunTask')).toBe(9);
  const all = await events(t, id);
  expect(all.filter((e) => e.type === 'attempt.start-failed').map((e) => e.reason)).toEqual(
    Array(3).fill(expect.stringContaining('ThrottlingException')),
  );
  const failed = all.find((e) => e.type === 'attempt.failed');
  expect(failed).toMatchObject({ data: { platform: 'aws' } });
  expect(failed.reason).toContain('ThrottlingException');
  expect(await peer.tasks('RUNNING', `mb-${id}-aws`)).toEqual([]);
});

it("a task that stops before it runs is retried as a new task under the next try's name, and the bot completes on aws", async () => {
  // Reconciliation runs often: a DEPLOYING bot's stopped task is its occupy job's to judge, not CONTAINER_LOST.
  const t = await fleet({ SWEEP_INTERVAL_MS: '300' });
  player = playBots(peer);
  peer.proxy.inject('RunTask', { kind: 'provisioning' }); // the first task never gets past PROVISIONING
  const id = await createBot(t);
  const deployed = await waitFor(
    async () => (await events(t, id)).find((e) => e.type === 'attempt.deployed'),
    'the first task',
  );
  const firstArn = deployed.data.identifier as string;
  // ECS gives up on it before it ran, as when its image cannot be pulled.
  await peer.ecs.send(
    new StopTaskCommand({
      cluster: peer.env.AWS_ECS_CLUSTER,
      task: firstArn,
      reason: 'CannotPullContainerError: pull image manifest has been retried 5 time(s)',
    }),
  );
  peer.proxy.patchTask(firstArn, { stopCode: 'TaskFailedToStart' });

  const ended = await waitStatus(t, id, ['ENDED', 'FATAL']);
  expect(ended).toMatchObject({ status: 'ENDED', endReason: 'COMPLETED', platform: 'aws' });
  expect(peer.proxy.calls('RunTask')).toBe(2);
  const all = await events(t, id);
  expect(await attempts(t, id)).toEqual([
    'attempt.assigned:aws',
    'attempt.deployed:aws',
    'attempt.start-failed:aws',
    'attempt.retried:aws',
    'attempt.deployed:aws',
  ]);
  const failed = all.find((e) => e.type === 'attempt.start-failed');
  expect(failed.data).toEqual({ platform: 'aws', try: 0, identifier: firstArn });
  expect(failed.reason).toMatch(
    new RegExp(`^container ${firstArn} stopped before it ran: TaskFailedToStart: CannotPullContainerError`),
  );
  expect(all.find((e) => e.type === 'attempt.retried').data).toEqual({
    platform: 'aws',
    try: 1,
    name: `mb-${id}-aws--1`,
  });
  // Two tasks, one per try, each under its own startedBy: the second is the one that ran the bot.
  const secondArn = all.filter((e) => e.type === 'attempt.deployed')[1].data.identifier;
  expect(secondArn).not.toBe(firstArn);
  expect((await peer.tasks('STOPPED', `mb-${id}-aws`)).map((task) => task.taskArn)).toEqual([firstArn]);
  await waitFor(
    async () => (await peer.tasks('STOPPED', `mb-${id}-aws--1`)).map((task) => task.taskArn).join() === secondArn,
    'the second task to be stopped',
  );
  expect([
    ...(await peer.tasks('RUNNING', `mb-${id}-aws`)),
    ...(await peer.tasks('RUNNING', `mb-${id}-aws--1`)),
  ]).toEqual([]);
});

it('a task stuck in PROVISIONING past the start timeout is stopped and the bot falls back to local', async () => {
  const t = await fleet({ AWS_START_TIMEOUT_MS: '1500' });
  peer.proxy.inject('RunTask', { kind: 'provisioning' });
  const id = await createBot(t);
  expect((await waitStatus(t, id, ['IN_CALL'])).platform).toBe('local');
  expect(await attempts(t, id)).toEqual([
    'attempt.assigned:aws',
    'attempt.deployed:aws',
    'attempt.timed-out:aws',
    'attempt.assigned:local',
    'attempt.deployed:local',
  ]);
  const timedOut = (await events(t, id)).find((e) => e.type === 'attempt.timed-out');
  expect(timedOut.reason).toBe('still starting after 1500 ms (PROVISIONING)');
  expect(await peer.tasks('RUNNING', `mb-${id}-aws`)).toEqual([]);
  expect((await peer.tasks('STOPPED', `mb-${id}-aws`)).map((task) => task.stoppedReason)).toEqual([
    'Stopped by meeboter',
  ]);
});

it('reconciliation: a task stopped behind our back, or by a Spot interruption, ends its live bot CONTAINER_LOST with the reason', async () => {
  const t = await fleet({ SWEEP_INTERVAL_MS: '500', PLATFORM_PRIORITY: 'aws' });
  player = playBots(peer, { inCallMs: Infinity });
  const [operator, spot] = [await createBot(t), await createBot(t)];
  const arnOf = async (id: string) => (await waitStatus(t, id, ['IN_CALL'])).platformIdentifier as string;
  const [operatorArn, spotArn] = [await arnOf(operator), await arnOf(spot)];

  await peer.ecs.send(
    new StopTaskCommand({ cluster: peer.env.AWS_ECS_CLUSTER, task: operatorArn, reason: 'stopped by an operator' }),
  );
  await peer.ecs.send(new StopTaskCommand({ cluster: peer.env.AWS_ECS_CLUSTER, task: spotArn, reason: 'x' }));
  peer.proxy.patchTask(spotArn, { stopCode: 'SpotInterruption', stoppedReason: 'Your Spot Task was interrupted.' });

  expect(await waitStatus(t, operator, ['FATAL', 'ENDED'])).toMatchObject({
    status: 'FATAL',
    endReason: 'CONTAINER_LOST',
  });
  expect(await waitStatus(t, spot, ['FATAL', 'ENDED'])).toMatchObject({ status: 'FATAL', endReason: 'CONTAINER_LOST' });
  const lost = async (id: string) =>
    (await events(t, id)).find((e) => e.type === 'status' && e.status === 'FATAL').message;
  expect(await lost(operator)).toMatch(new RegExp(`^container ${operatorArn} is gone: .*stopped by an operator`));
  expect(await lost(spot)).toMatch(
    new RegExp(`^container ${spotArn} is gone: SpotInterruption: Your Spot Task was interrupted\\.`),
  );
  await waitFor(async () => (await t.fleet.placement.stats()).platforms[0].active === 0, 'capacity to be freed');
});

it('reconciliation: a running task of an ended bot is stopped', async () => {
  const t = await fleet({ SWEEP_INTERVAL_MS: '500' });
  const id = await createBot(t, { joinAt: new Date(Date.now() + 3600_000).toISOString() });
  expect((await t.request('DELETE', `/api/bots/${id}`)).body).toMatchObject({
    status: 'ENDED',
    endReason: 'CANCELLED',
  });
  // A task of this fleet for that bot, as an earlier crash might have left behind.
  const started = await peer.ecs.send(
    new RunTaskCommand({
      cluster: peer.env.AWS_ECS_CLUSTER,
      taskDefinition: peer.env.AWS_ECS_TASK_DEF_ZOOM,
      startedBy: `mb-${id}-aws`,
      launchType: 'FARGATE',
      tags: [
        { key: 'meeboter:fleet', value: t.fleet.fleetId },
        { key: 'meeboter:bot', value: id },
      ],
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: peer.env.AWS_ECS_SUBNETS.split(','),
          securityGroups: [peer.env.AWS_ECS_SECURITY_GROUPS],
        },
      },
    }),
  );
  const arn = started.tasks![0].taskArn!;
  await waitFor(
    async () => (await peer.tasks('STOPPED', `mb-${id}-aws`)).some((task) => task.taskArn === arn),
    'the leftover task to be stopped',
  );
});
