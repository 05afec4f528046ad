import { DescribeTasksCommand, ECSClient, ListTasksCommand, StopTaskCommand, Task } from '@aws-sdk/client-ecs';
import { FLEET_TAG, tagValue } from '../../../src/platforms/aws/task-status';
import { startAwsPeer as startMotoEcs, overridesOf } from '../../../test/support/aws';
import { botIdOfEnv } from '../../../test/support/bot-id-of-env';
import { startBotPlayer } from '../../../test/support/bot-player';
import { awsSdkEnv } from '../../../test/support/moto';
import { PeerContext, PlatformPeer } from '../platform-peer';

/** A read of moto's truth that has no answer within this long rejects: a paused moto never answers. */
const ANSWER_WITHIN_MS = 5000;

/**
 * The `aws` platform's peer in a chaos run: the tests' moto server with what `aws:setup` makes, behind the
 * tests' ECS fault proxy (which shows a task held in PROVISIONING as such), reached by the fleet through the
 * run's network path to that proxy. Moto runs nothing in its tasks, so every RUNNING task of the fleet is
 * played as the sim bot with the env of its container overrides.
 *
 * Its truth: the cluster's tasks with desired status RUNNING, tagged `meeboter:fleet` with the run's fleet and
 * not yet STOPPED, read from moto directly.
 */
export async function startAwsPeer(ctx: PeerContext): Promise<PlatformPeer> {
  const aws = await startMotoEcs();
  try {
    const address = await ctx.paths.open('aws', new URL(aws.proxy.url).host);
    const { ecs, cluster } = aws;
    const answerWithin = () => ({ abortSignal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
    const viaProxy = new ECSClient({
      region: aws.region,
      endpoint: aws.proxy.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      maxAttempts: 1,
    });
    /** The fleet's tasks not yet stopped, as moto describes them (or the fault proxy: `client`). */
    const fleetTasks = async (client = ecs): Promise<Task[]> => {
      const listed = await ecs.send(new ListTasksCommand({ cluster, desiredStatus: 'RUNNING' }), answerWithin());
      const arns = listed.taskArns ?? [];
      const tasks: Task[] = [];
      for (let i = 0; i < arns.length; i += 100) {
        // Always with TAGS: moto keeps "include TAGS" in one dict shared by all requests (see test/support/aws.ts).
        const described = await client.send(
          new DescribeTasksCommand({ cluster, tasks: arns.slice(i, i + 100), include: ['TAGS'] }),
          answerWithin(),
        );
        tasks.push(...(described.tasks ?? []));
      }
      return tasks.filter((task) => tagValue(task, FLEET_TAG) === ctx.fleetId && task.lastStatus !== 'STOPPED');
    };
    const botIdOf = (task: Task) => botIdOfEnv(overridesOf(task))!;

    const player = startBotPlayer(
      async (_played, play) => {
        // Described through the fault proxy, which may hold a task in PROVISIONING: such a task runs nothing.
        const tasks = await fleetTasks(viaProxy);
        for (const task of tasks)
          if (task.lastStatus === 'RUNNING') play(task.taskArn!, { ...overridesOf(task), MILO_URL: ctx.apiUrl });
        return tasks.length;
      },
      { protocol: 'sim', intervalMs: 200, onError: (line) => ctx.log(`aws bot player: ${line}`) },
    );

    return {
      platform: 'aws',
      limit: ctx.limit,
      fleetEnv: { ...aws.env, ...awsSdkEnv(`http://${address}`), AWS_BOT_LIMIT: String(ctx.limit) },
      async liveContainers() {
        return (await fleetTasks()).map((task) => ({ id: task.taskArn!, botId: botIdOf(task) }));
      },
      faults: [
        {
          // moto keeps its state in memory only, so it is paused rather than killed: nothing it says answers.
          kind: 'aws:moto-down',
          begin() {
            process.kill(aws.moto.pid, 'SIGSTOP');
            return Promise.resolve(() => Promise.resolve(void process.kill(aws.moto.pid, 'SIGCONT')));
          },
        },
        {
          // The oldest task of the fleet is stopped outside the fleet, as an operator or a Spot interruption would.
          kind: 'aws:task-stopped',
          async begin() {
            const [oldest] = (await fleetTasks()).sort(
              (a, b) => new Date(a.createdAt ?? 0).getTime() - new Date(b.createdAt ?? 0).getTime(),
            );
            if (oldest)
              await ecs.send(
                new StopTaskCommand({ cluster, task: oldest.taskArn, reason: 'stopped by the chaos run' }),
                answerWithin(),
              );
            return () => Promise.resolve();
          },
        },
      ],
      async close() {
        await player.stop();
        viaProxy.destroy();
        await aws.close();
      },
    };
  } catch (error) {
    await aws.close();
    throw error;
  }
}
