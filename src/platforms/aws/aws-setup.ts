import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  DescribeLogGroupsCommand,
  PutRetentionPolicyCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { EC2Client } from '@aws-sdk/client-ec2';
import {
  ContainerDefinition,
  CreateClusterCommand,
  DescribeClustersCommand,
  DescribeTaskDefinitionCommand,
  ECSClient,
  PutClusterCapacityProvidersCommand,
  RegisterTaskDefinitionCommand,
  RegisterTaskDefinitionCommandInput,
} from '@aws-sdk/client-ecs';
import {
  AttachRolePolicyCommand,
  CreateRoleCommand,
  GetRoleCommand,
  IAMClient,
  ListAttachedRolePoliciesCommand,
} from '@aws-sdk/client-iam';
import { MEETING_PLATFORMS } from '../../domain/bot.lifecycle';
import { botRepository, ghcrRegistry } from '../bot-image';
import { ensureNetwork } from './setup-network';
import { createSetupStep, SetupStep } from './setup-step';

/**
 * `npm run aws:setup`: creates or updates, idempotently, what the `aws` platform needs in one region, as the
 * seed's setup-aws does: an ECS cluster with the FARGATE and FARGATE_SPOT capacity providers, one task
 * definition per meeting platform (1 vCPU, 2 GB, awsvpc, logs to CloudWatch /ecs/meeboter-bots), the task
 * execution and task IAM roles, and the network (see setup-network.ts). It returns the AWS_* variables that
 * point a fleet at them. Credentials and endpoints come from the SDK's chain (AWS_PROFILE, AWS_ENDPOINT_URL).
 */
export interface AwsSetupOptions {
  region: string;
  profile?: string;
  dryRun?: boolean;
  /** Owner of the bot images on ghcr.io. */
  imageOrg?: string;
  report?: (line: string) => void;
}

export interface AwsSetupResult {
  /** What was created or updated (or would be, in a dry run); empty when everything was in place. */
  changes: string[];
  /** The fleet's AWS_* variables, in order. */
  env: Array<[string, string]>;
}

const AWS_SETUP_NAMES = {
  cluster: 'meeboter-bots',
  network: 'meeboter-bots',
  logGroup: '/ecs/meeboter-bots',
  executionRole: 'meeboter-bots-task-execution',
  taskRole: 'meeboter-bots-task',
};

const EXECUTION_POLICY = 'arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy';
const LOG_RETENTION_DAYS = 14;
const CAPACITY_PROVIDERS = ['FARGATE', 'FARGATE_SPOT'];
const TRUST_ECS_TASKS = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { Service: 'ecs-tasks.amazonaws.com' }, Action: 'sts:AssumeRole' }],
});

export async function setupAws(options: AwsSetupOptions): Promise<AwsSetupResult> {
  const report = options.report ?? (() => undefined);
  const step = createSetupStep(!!options.dryRun, report);
  const clientConfig = { region: options.region, profile: options.profile };
  const ec2 = new EC2Client(clientConfig);
  const ecs = new ECSClient(clientConfig);
  const iam = new IAMClient(clientConfig);
  const logs = new CloudWatchLogsClient(clientConfig);
  try {
    const network = await ensureNetwork(ec2, AWS_SETUP_NAMES.network, step);
    await ensureLogGroup(logs, step);
    const executionRoleArn = await ensureRole(iam, AWS_SETUP_NAMES.executionRole, [EXECUTION_POLICY], step);
    const taskRoleArn = await ensureRole(iam, AWS_SETUP_NAMES.taskRole, [], step);
    await ensureCluster(ecs, step);
    const families: Record<string, string> = {};
    for (const platform of MEETING_PLATFORMS) {
      families[platform] = await ensureTaskDefinition(
        ecs,
        step,
        taskDefinitionInput(platform, options, executionRoleArn, taskRoleArn),
      );
    }
    const pending = (value: string | undefined) => value ?? '<created by aws:setup>';
    return {
      changes: step.changes,
      env: [
        ['AWS_REGION', options.region],
        ['AWS_ECS_CLUSTER', AWS_SETUP_NAMES.cluster],
        ['AWS_ECS_SUBNETS', network.subnetIds.length === 2 ? network.subnetIds.join(',') : pending(undefined)],
        ['AWS_ECS_SECURITY_GROUPS', pending(network.securityGroupId)],
        ['AWS_ECS_ASSIGN_PUBLIC_IP', 'true'],
        ['AWS_ECS_TASK_DEF_GOOGLE_MEET', families['google-meet']],
        ['AWS_ECS_TASK_DEF_MICROSOFT_TEAMS', families['microsoft-teams']],
        ['AWS_ECS_TASK_DEF_ZOOM', families.zoom],
        ['AWS_ECS_CAPACITY_PROVIDERS', 'FARGATE_SPOT,FARGATE'],
        ['AWS_BOT_LIMIT', '50'],
        ['AWS_QUEUE_TIMEOUT_MS', '30000'],
      ],
    };
  } finally {
    for (const client of [ec2, ecs, iam, logs]) client.destroy();
  }
}

async function ensureLogGroup(logs: CloudWatchLogsClient, step: SetupStep): Promise<void> {
  const name = AWS_SETUP_NAMES.logGroup;
  const find = async () =>
    (await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: name }))).logGroups?.find(
      (group) => group.logGroupName === name,
    );
  await step.ensure(
    `log group ${name}`,
    async () => (await find())?.logGroupName,
    async () => {
      await logs.send(new CreateLogGroupCommand({ logGroupName: name }));
      return name;
    },
  );
  const group = await find();
  if (group && group.retentionInDays !== LOG_RETENTION_DAYS) {
    await step.update(`log group ${name}: keep ${LOG_RETENTION_DAYS} days`, () =>
      logs.send(new PutRetentionPolicyCommand({ logGroupName: name, retentionInDays: LOG_RETENTION_DAYS })),
    );
  }
}

async function ensureRole(iam: IAMClient, name: string, policies: string[], step: SetupStep): Promise<string> {
  const find = async () => {
    try {
      return (await iam.send(new GetRoleCommand({ RoleName: name }))).Role?.Arn;
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchEntityException') return undefined;
      throw error;
    }
  };
  const arn = await step.ensure(
    `IAM role ${name}`,
    find,
    async () =>
      (
        await iam.send(
          new CreateRoleCommand({
            RoleName: name,
            AssumeRolePolicyDocument: TRUST_ECS_TASKS,
            Description: 'meeboter bot tasks',
          }),
        )
      ).Role!.Arn!,
  );
  if (!arn) return `<role ${name}>`;
  const attached = (await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: name }))).AttachedPolicies ?? [];
  for (const policy of policies) {
    if (attached.some((existing) => existing.PolicyArn === policy)) continue;
    await step.update(`IAM role ${name}: attach ${policy}`, () =>
      iam.send(new AttachRolePolicyCommand({ RoleName: name, PolicyArn: policy })),
    );
  }
  return arn;
}

async function ensureCluster(ecs: ECSClient, step: SetupStep): Promise<void> {
  const name = AWS_SETUP_NAMES.cluster;
  const find = async () =>
    (await ecs.send(new DescribeClustersCommand({ clusters: [name] }))).clusters?.find(
      (cluster) => cluster.status === 'ACTIVE',
    );
  await step.ensure(
    `ECS cluster ${name}`,
    async () => (await find())?.clusterArn,
    async () =>
      (
        await ecs.send(
          new CreateClusterCommand({
            clusterName: name,
            capacityProviders: CAPACITY_PROVIDERS,
            defaultCapacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }],
          }),
        )
      ).cluster!.clusterArn!,
  );
  const cluster = await find();
  if (cluster && !CAPACITY_PROVIDERS.every((provider) => cluster.capacityProviders?.includes(provider))) {
    await step.update(`ECS cluster ${name}: capacity providers ${CAPACITY_PROVIDERS.join(', ')}`, () =>
      ecs.send(
        new PutClusterCapacityProvidersCommand({
          cluster: name,
          capacityProviders: CAPACITY_PROVIDERS,
          defaultCapacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }],
        }),
      ),
    );
  }
}

/** The seed's task definitions: family `meeboter-<platform>-bot`, container `<platform>-bot`. */
function taskDefinitionInput(
  platform: string,
  options: AwsSetupOptions,
  executionRoleArn: string,
  taskRoleArn: string,
): RegisterTaskDefinitionCommandInput {
  const registry = ghcrRegistry(options.imageOrg ?? 'Payme-Works');
  return {
    family: `meeboter-${platform}-bot`,
    cpu: '1024',
    memory: '2048',
    networkMode: 'awsvpc',
    requiresCompatibilities: ['FARGATE'],
    executionRoleArn,
    taskRoleArn,
    containerDefinitions: [
      {
        name: `${platform}-bot`,
        image: `${botRepository(registry, platform)}:latest`,
        essential: true,
        // The whole task's memory as the container's hard limit: one container per task.
        memory: 2048,
        logConfiguration: {
          logDriver: 'awslogs',
          options: {
            'awslogs-group': AWS_SETUP_NAMES.logGroup,
            'awslogs-region': options.region,
            'awslogs-stream-prefix': platform,
          },
        },
      },
    ],
  };
}

/** Registers a new revision only when the latest one differs from what we want. Returns the family. */
async function ensureTaskDefinition(
  ecs: ECSClient,
  step: SetupStep,
  wanted: RegisterTaskDefinitionCommandInput,
): Promise<string> {
  const family = wanted.family!;
  let current;
  try {
    current = (await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: family }))).taskDefinition;
  } catch (error) {
    if ((error as { name?: string }).name !== 'ClientException') throw error;
  }
  const existing = current?.status === 'ACTIVE' ? current : undefined;
  const summary = (definition: {
    cpu?: string;
    memory?: string;
    networkMode?: string;
    requiresCompatibilities?: string[];
    executionRoleArn?: string;
    taskRoleArn?: string;
    containerDefinitions?: ContainerDefinition[];
  }) =>
    JSON.stringify([
      definition.cpu,
      definition.memory,
      definition.networkMode,
      [...(definition.requiresCompatibilities ?? [])].sort(),
      definition.executionRoleArn,
      definition.taskRoleArn,
      (definition.containerDefinitions ?? []).map((c) => [
        c.name,
        c.image,
        c.essential,
        c.memory,
        c.logConfiguration?.logDriver,
        c.logConfiguration?.options,
      ]),
    ]);
  const register = async () =>
    (await ecs.send(new RegisterTaskDefinitionCommand(wanted))).taskDefinition!.taskDefinitionArn!;
  if (existing && summary(existing) !== summary(wanted))
    await step.update(`task definition ${family}: new revision`, register);
  else await step.ensure(`task definition ${family}`, () => Promise.resolve(existing?.taskDefinitionArn), register);
  return family;
}
