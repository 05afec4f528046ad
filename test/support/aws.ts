import { DescribeTasksCommand, ECSClient, ListTasksCommand, Task } from '@aws-sdk/client-ecs';
import { setupAws } from '../../src/platforms/aws/aws-setup';
import { BotPlayer, PlayerOptions, startBotPlayer } from './bot-player';
import { EcsFaultProxy, startEcsFaultProxy } from './ecs-fault-proxy';
import { awsSdkEnv, Moto, startMoto } from './moto';

/**
 * The aws platform's test peer: a moto server with the infrastructure `aws:setup` makes (cluster, task
 * definitions, real moto subnets and security group), the fault proxy in front of it, and an ECS client
 * that talks to moto directly, for tests that look at what really exists there.
 */
export interface AwsPeer {
  moto: Moto;
  proxy: EcsFaultProxy;
  region: string;
  cluster: string;
  /** The fleet's AWS_* variables and the SDK's own, pointing at the proxy. */
  env: Record<string, string>;
  /** Straight to moto, past the proxy. */
  ecs: ECSClient;
  /** Every task in the cluster with this desired status, described (with tags). */
  tasks(desiredStatus: 'RUNNING' | 'STOPPED', startedBy?: string): Promise<Task[]>;
  close(): Promise<void>;
}

export async function startAwsPeer(region = 'eu-west-1'): Promise<AwsPeer> {
  const moto = await startMoto();
  const proxy = await startEcsFaultProxy(moto.url);
  const sdkEnv = awsSdkEnv(proxy.url);
  // In-process adapters and setup read the SDK's variables from this process's environment.
  Object.assign(process.env, sdkEnv);
  const { env } = await setupAws({ region });
  const ecs = new ECSClient({
    region,
    endpoint: moto.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  });
  const cluster = Object.fromEntries(env).AWS_ECS_CLUSTER;
  return {
    moto,
    proxy,
    region,
    cluster,
    env: { ...Object.fromEntries(env), ...sdkEnv },
    ecs,
    async tasks(desiredStatus, startedBy) {
      const arns = (await ecs.send(new ListTasksCommand({ cluster, desiredStatus, startedBy }))).taskArns ?? [];
      const tasks: Task[] = [];
      for (let i = 0; i < arns.length; i += 100) {
        const answer = await ecs.send(
          new DescribeTasksCommand({ cluster, tasks: arns.slice(i, i + 100), include: ['TAGS'] }),
        );
        tasks.push(...(answer.tasks ?? []));
      }
      return tasks;
    },
    async close() {
      ecs.destroy();
      await proxy.close();
      await moto.stop();
    },
  };
}

/** A task's container environment overrides as a plain object. */
export function overridesOf(task: Task): Record<string, string> {
  const environment = task.overrides?.containerOverrides?.[0]?.environment ?? [];
  return Object.fromEntries(environment.map((entry) => [entry.name!, entry.value!]));
}

/** Where the bots' tasks are: moto (`ecs`), and the proxy that shows them as the fleet sees them. */
export type BotStage = Pick<AwsPeer, 'ecs' | 'region' | 'cluster'> & { proxy: { url: string } };

/**
 * Plays the bots of moto's tasks (bot-player.ts): each sample counts the tasks with desiredStatus RUNNING,
 * and a new task that reads RUNNING through the proxy (a task held in PROVISIONING runs nothing) is played
 * with the env of its overrides.
 */
export function playBots(peer: BotStage, options: PlayerOptions = {}): BotPlayer {
  const cluster = peer.cluster;
  const viaProxy = new ECSClient({
    region: peer.region,
    endpoint: peer.proxy.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  return startBotPlayer(
    async (played, play) => {
      const arns = (await peer.ecs.send(new ListTasksCommand({ cluster, desiredStatus: 'RUNNING' }))).taskArns ?? [];
      const fresh = arns.filter((arn) => !played.has(arn));
      for (let i = 0; i < fresh.length; i += 100) {
        // Always with TAGS: moto keeps "include TAGS" in one dict shared by all requests, so a concurrent
        // DescribeTasks without it strips the tags from the fleet's own answer.
        const answer = await viaProxy.send(
          new DescribeTasksCommand({ cluster, tasks: fresh.slice(i, i + 100), include: ['TAGS'] }),
        );
        for (const task of answer.tasks ?? [])
          if (task.lastStatus === 'RUNNING') play(task.taskArn!, overridesOf(task));
      }
      return arns.length;
    },
    options,
    () => viaProxy.destroy(),
  );
}
