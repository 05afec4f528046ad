import { createHash } from 'node:crypto';
import {
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  paginateListTasks,
  RunTaskCommand,
  RunTaskCommandInput,
  StopTaskCommand,
  Task,
} from '@aws-sdk/client-ecs';
import { AwsLaunchOption, AwsSettings } from '../../config';
import { logger } from '../../logger';
import {
  botIdOfDeployment,
  ContainerStatus,
  Deployment,
  DeploySpec,
  ListedContainer,
  Platform,
  PlatformError,
} from '../platform';
import { ecsError, isTaskNotFound, runTaskFailure } from './ecs-errors';
import { createTaskReader } from './task-reader';
import { BOT_TAG, FLEET_TAG, tagValue, taskStatus } from './task-status';

/**
 * `aws`: one ECS task per bot attempt, on Fargate, through @aws-sdk/client-ecs. Credentials, region
 * endpoints and retries come from the SDK's own chain and variables (AWS_PROFILE, AWS_ACCESS_KEY_ID,
 * AWS_ENDPOINT_URL_ECS, AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, ...); the SDK retries throttling and 5xx itself.
 *
 * A task is found again by `startedBy` = the deployment name (ListTasks filters on it exactly) and belongs to
 * a fleet by its `meeboter:fleet` tag, which every DescribeTasks here reads: a task without our fleet's tag
 * is never adopted, listed, judged or stopped.
 */
export interface AwsPlatformOptions {
  name: string;
  settings: AwsSettings;
  fleetId: string;
  /** How long stop() waits for DescribeTasks to say STOPPED after StopTask. */
  stopWaitMs?: number;
  /** How long one attempt of an API call may take before the SDK abandons it (30 s by default). */
  requestTimeoutMs?: number;
}

const STOP_REASON = 'Stopped by meeboter';
/**
 * The ECS API is eventually consistent: DescribeTasks may not know a task for a while after RunTask started
 * it. Within this long of its start, a task this process started that reads MISSING is not yet visible
 * rather than gone.
 */
const UNSEEN_GRACE_MS = 60_000;

export function createAwsPlatform(options: AwsPlatformOptions): Platform {
  const { settings, fleetId } = options;
  const cluster = settings.cluster;
  const stopWaitMs = options.stopWaitMs ?? 180_000;
  // The SDK's own default gives an unanswered call 15 minutes per attempt. A bounded one ends in a
  // TimeoutError, which the SDK's retry mode counts as transient.
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const client = new ECSClient({
    region: settings.region,
    requestHandler: {
      connectionTimeout: requestTimeoutMs,
      socketTimeout: requestTimeoutMs,
      requestTimeout: requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });

  const send = async <T>(operation: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      throw ecsError(operation, error);
    }
  };

  const reader = createTaskReader(async (arns) => {
    const answer = await send('DescribeTasks', () =>
      client.send(new DescribeTasksCommand({ cluster, tasks: arns, include: ['TAGS'] })),
    );
    const unexpected = (answer.failures ?? []).filter((failure) => failure.reason !== 'MISSING');
    if (unexpected.length) {
      throw new PlatformError(`DescribeTasks: ${unexpected.map((f) => `${f.arn}: ${f.reason}`).join('; ')}`, false);
    }
    return answer.tasks ?? [];
  });

  const ours = (task: Task | undefined): task is Task => !!task && tagValue(task, FLEET_TAG) === fleetId;

  /** Task ARN → when RunTask answered with it, for UNSEEN_GRACE_MS. */
  const startedHere = new Map<string, number>();
  const noteStarted = (arn: string) => {
    const now = Date.now();
    for (const [known, at] of startedHere) if (now - at >= UNSEEN_GRACE_MS) startedHere.delete(known);
    startedHere.set(arn, now);
  };
  const notVisibleYet = (arn: string, task: Task | undefined) =>
    !task && Date.now() - (startedHere.get(arn) ?? -Infinity) < UNSEEN_GRACE_MS;

  /** This fleet's tasks with desiredStatus RUNNING (starting or running), every page of them. */
  const listTasks = async (startedBy?: string): Promise<Task[]> => {
    const arns: string[] = [];
    await send('ListTasks', async () => {
      const pages = paginateListTasks({ client, pageSize: 100 }, { cluster, desiredStatus: 'RUNNING', startedBy });
      for await (const page of pages) arns.push(...(page.taskArns ?? []));
    });
    return (await reader.readMany(arns)).filter(ours);
  };

  const deploymentOf = (task: Task): Deployment => ({
    identifier: task.taskArn!,
    // A task already on its way down is left to the start watch, which sees it gone.
    state: taskStatus(task).state === 'running' ? 'running' : 'starting',
  });

  const adopt = async (name: string): Promise<Deployment | null> => {
    const tasks = await listTasks(name);
    if (tasks.length > 1)
      logger.warn('several ECS tasks for one deployment', { name, tasks: tasks.map((t) => t.taskArn) });
    return tasks.length ? deploymentOf(tasks[0]) : null;
  };

  /** The container to override is the task definition's first: read once per task definition. */
  const containerNames = new Map<string, Promise<string>>();
  const containerName = (taskDefinition: string) => {
    let name = containerNames.get(taskDefinition);
    if (!name) {
      name = send('DescribeTaskDefinition', () =>
        client.send(new DescribeTaskDefinitionCommand({ taskDefinition })),
      ).then((answer) => {
        const first = answer.taskDefinition?.containerDefinitions?.[0]?.name;
        if (!first) throw new PlatformError(`task definition ${taskDefinition} has no container`, false);
        return first;
      });
      name.catch(() => containerNames.delete(taskDefinition));
      containerNames.set(taskDefinition, name);
    }
    return name;
  };

  const runTask = async (spec: DeploySpec, option: AwsLaunchOption): Promise<Task | PlatformError> => {
    const taskDefinition = settings.taskDefinitions[spec.meetingPlatform];
    const launch = 'launchType' in option ? `launch type ${option.launchType}` : option.capacityProvider;
    const input: RunTaskCommandInput = {
      cluster,
      taskDefinition,
      count: 1,
      startedBy: spec.name,
      // The same attempt always sends the same token, so an ECS that honours it never starts a second task.
      clientToken: createHash('sha256').update([fleetId, spec.name, spec.attempt, launch].join('\n')).digest('hex'),
      tags: [
        { key: FLEET_TAG, value: fleetId },
        { key: BOT_TAG, value: spec.botId },
      ],
      overrides: {
        containerOverrides: [
          {
            name: await containerName(taskDefinition),
            environment: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
          },
        ],
      },
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: [...settings.subnets],
          securityGroups: [...settings.securityGroups],
          assignPublicIp: settings.assignPublicIp ? 'ENABLED' : 'DISABLED',
        },
      },
      ...('launchType' in option
        ? { launchType: option.launchType }
        : { capacityProviderStrategy: [{ capacityProvider: option.capacityProvider, weight: 1 }] }),
    };
    const answer = await send('RunTask', () => client.send(new RunTaskCommand(input)));
    const task = answer.tasks?.[0];
    return task?.taskArn ? task : runTaskFailure(answer.failures ?? [], launch);
  };

  return {
    name: options.name,
    adopt,
    async deploy(spec) {
      // Not every ECS endpoint honours clientToken: a retried attempt first looks for what it started.
      const existing = await adopt(spec.name);
      if (existing) return existing;
      let full: PlatformError | undefined;
      for (const option of settings.launchOptions) {
        const result = await runTask(spec, option);
        if (!(result instanceof PlatformError)) {
          noteStarted(result.taskArn!);
          return deploymentOf(result);
        }
        if (!result.full) throw result;
        full = result; // no capacity there: the next option, at once
      }
      throw full!;
    },
    async status(identifier): Promise<ContainerStatus> {
      const task = await reader.read(identifier);
      if (task && !ours(task)) return { state: 'gone', detail: 'the task belongs to another fleet' };
      if (notVisibleYet(identifier, task))
        return { state: 'starting', detail: 'just started; DescribeTasks does not show it yet' };
      return taskStatus(task);
    },
    async list(): Promise<ListedContainer[]> {
      return (await listTasks()).map((task) => ({
        identifier: task.taskArn!,
        botId: tagValue(task, BOT_TAG) ?? botIdOfDeployment(task.startedBy ?? ''),
      }));
    },
    async stop(identifier) {
      // Stop means gone: until ECS itself says STOPPED. A task this process just started may not be visible
      // yet: it is still sent StopTask, and waited for like any other.
      const deadline = Date.now() + stopWaitMs;
      for (let pauseMs = 250; ; pauseMs = Math.min(pauseMs * 2, 5000)) {
        const task = await reader.read(identifier);
        const unseen = notVisibleYet(identifier, task);
        if ((!task && !unseen) || task?.lastStatus === 'STOPPED') return;
        // Loudly, not silently: a stop that quietly did nothing would free capacity while the task runs.
        if (task && !ours(task))
          throw new PlatformError(`task ${identifier} does not carry ${FLEET_TAG}=${fleetId}: not stopped`, false);
        if (unseen || task?.desiredStatus !== 'STOPPED') {
          try {
            await client.send(new StopTaskCommand({ cluster, task: identifier, reason: STOP_REASON }));
          } catch (error) {
            if (!isTaskNotFound(error)) throw ecsError('StopTask', error);
            if (!unseen) return;
          }
        }
        if (Date.now() >= deadline) {
          throw new PlatformError(
            `task ${identifier} still ${task?.lastStatus ?? 'not visible'} ${stopWaitMs} ms after StopTask`,
            true,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, pauseMs / 2 + Math.random() * pauseMs));
      }
    },
    close() {
      client.destroy();
      return Promise.resolve();
    },
  };
}
