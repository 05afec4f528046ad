import { createHmac, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import os from 'node:os';
import { closest, distance } from 'fastest-levenshtein';
import Joi from 'joi';
import { MEETING_PLATFORMS, MeetingPlatform } from './domain/bot.lifecycle';
import { botRepository, ghcrRegistry, isImageReference } from './platforms/bot-image';

/**
 * The one place that reads configuration. `loadConfig(env)` is pure: it validates every variable once,
 * names the first bad one, and returns a frozen, typed object, with the warnings for the caller to log
 * (variables of ours that nothing reads, platforms configured but not enabled). Nothing else in the code
 * reads process.env.
 *
 * A platform is enabled by naming it in PLATFORM_PRIORITY; only then are its variables demanded.
 */

/** Platform kinds the registry knows. `sim` may appear several times as `sim`, `sim-a`, `sim-b`, ... */
export const PLATFORM_KINDS = ['k8s', 'aws', 'coolify', 'local', 'sim'] as const;
export type PlatformKind = (typeof PLATFORM_KINDS)[number];

export interface PlatformSettings {
  /** Name as written in PLATFORM_PRIORITY; also the suffix of its BullMQ queue. */
  name: string;
  kind: PlatformKind;
  limit: number;
  queueTimeoutMs: number;
  /**
   * How long a deployed container may stay `starting` (a task provisioning, a pod pulling its image) before
   * it is stopped and the bot moves on to the next platform. `<NAME>_START_TIMEOUT_MS`.
   */
  startTimeoutMs: number;
  /**
   * How many more tries a start that failed (stopped before it ran, or its deploy failed) gets on this
   * platform, each on a new task / slot / Job, before the platform is excluded for the bot.
   * `<NAME>_START_RETRIES`.
   */
  startRetries: number;
}

export interface KubernetesSettings {
  namespace: string;
  /**
   * Where the client's cluster and credentials come from: the K8S_KUBECONFIG file; else the pod's own
   * ServiceAccount when running in a cluster (KUBERNETES_SERVICE_HOST set); else the default kubeconfig.
   */
  credentials: { kubeconfig: string } | 'in-cluster' | 'default';
  imageRegistry: string;
  imageTag: string;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
  imagePullLockEnabled: boolean;
  /** The docker-registry Secret in the namespace that pulls the bot images (K8S_IMAGE_PULL_SECRET). */
  imagePullSecret: string;
}

/**
 * How one RunTask places a task: on one capacity provider (a one-entry capacityProviderStrategy) or with a
 * plain launch type (for clusters without capacity providers).
 */
export type AwsLaunchOption = { capacityProvider: string } | { launchType: 'FARGATE' };

export interface AwsSettings {
  region: string;
  cluster: string;
  subnets: string[];
  securityGroups: string[];
  assignPublicIp: boolean;
  /** Task definition family (latest revision), family:revision or ARN, per meeting platform. */
  taskDefinitions: { 'google-meet': string; 'microsoft-teams': string; zoom: string };
  /**
   * Tried in this order: when ECS answers that one has no capacity, the next is tried at once; when the
   * last has none, the platform is full for now. AWS_ECS_CAPACITY_PROVIDERS or AWS_ECS_LAUNCH_TYPE.
   */
  launchOptions: AwsLaunchOption[];
}

export interface CoolifySettings {
  apiUrl: string;
  apiToken: string;
  projectUuid: string;
  serverUuid: string;
  environmentName: string;
  destinationUuid: string;
  /** Slot images: `ghcr.io/<GHCR_ORG lowercased>/meeboter-<meeting-platform>-bot:<imageTag>`. */
  ghcrOrg: string;
  imageTag: string;
  /** Meeting platforms the pool keeps warm slots for (COOLIFY_MEETING_PLATFORMS). */
  meetingPlatforms: MeetingPlatform[];
  /** Idle slots kept warm per meeting platform in `meetingPlatforms`, within COOLIFY_BOT_LIMIT. */
  minIdleSlots: number;
  /** A slot whose deployment has not finished this long after it was taken fails its start. */
  startTimeoutMs: number;
  /** How often a starting slot's deployment record is read (jittered ±20 %). */
  pollIntervalMs: number;
  /** Failed starts or stops in a row after which slot recovery deletes and replaces a slot. */
  maxSlotFailures: number;
}

/** An IP network written as address and prefix length (`10.0.0.0/8`; a bare address is a network of one). */
export interface AddressRange {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * Redis reached through Sentinel: the sentinels that know where the primary named `name` is. The user,
 * password and database number, if any, come from REDIS_URL (its host and port are not used); the sentinels
 * themselves are asked without a password.
 */
export interface SentinelTarget {
  sentinels: Array<{ host: string; port: number }>;
  name: string;
  username?: string;
  password?: string;
  db?: number;
}

export interface Config {
  port: number;
  publicUrl: string;
  redisUrl?: string;
  /** REDIS_SENTINELS and REDIS_SENTINEL_NAME: when set, every connection finds the primary through them. */
  redisSentinel?: SentinelTarget;
  mongodbUri?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Enabled platforms in priority order. */
  platforms: PlatformSettings[];
  /** Platform worker groups this process runs (WORKER_PLATFORMS), defaulting to all enabled ones. */
  workerPlatforms: string[];
  globalQueueTimeoutMs: number;
  deploymentQueueMaxConcurrent: number;
  botTokenSecret: string;
  /** True when BOT_TOKEN_SECRET was not set and a per-process random secret is used (single-process only). */
  botTokenSecretGenerated: boolean;
  bootstrapApiKey?: string;
  adminApiKey?: string;
  localBotCommand?: string;
  /** Where the local platform keeps pid and log files of its bot processes. */
  localRunDir?: string;
  /** Prefix of every Redis key (BullMQ and ours); lets several fleets or test runs share one Redis. */
  redisPrefix: string;
  /**
   * Identity stamped on every container this fleet starts (label, tag, pid file); list(), adoption and
   * reconciliation only ever consider containers carrying it. FLEET_ID when set; otherwise startFleet reads
   * the one the fleet keeps in MongoDB (src/store/fleet-identity.ts) and fills it in.
   */
  fleetId?: string;
  /** Which machine this process is, for platforms whose containers live on one host (`local`). */
  localHostId: string;
  /**
   * A `local` host whose workers all stopped renewing its liveness lease this long ago counts as gone for good
   * (its bot processes with it): its ended bots' capacity is freed. Until then only that host stops them.
   */
  localHostGoneAfterMs: number;
  /** The simulated host the `sim` platforms share (a Redis namespace); defaults to REDIS_PREFIX. */
  simHost: string;
  /**
   * Where sim bots run: `in-process` (in the worker that deploys them) or `sim-host` (in a separate
   * `npm run sim-host` process on the same simulated host, so the worker's memory is the fleet's own).
   */
  simRunner: 'in-process' | 'sim-host';
  /** Where a worker-only process serves /metrics (the API serves it on PORT); none when unset. */
  metricsPort?: number;
  /** Client requests per API key per minute, across all API processes; 0 turns the limit off. */
  apiRateLimitPerMinute: number;
  /** SIGTERM ends the process within this long, even with Redis or MongoDB unreachable. */
  shutdownTimeoutMs: number;
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  deployTimeoutMs: number;
  sweepIntervalMs: number;
  slotRecoveryIntervalMs: number;
  leaveGraceMs: number;
  /** BullMQ lock of a held bot: a crashed worker's bots are adopted by another within about 1.5× this. */
  workerLockDurationMs: number;
  /** A SCHEDULED bot enters the global queue this long before its joinAt. */
  scheduleLeadMs: number;
  webhooks: {
    /** Signs every delivery; defaults to a key derived from BOT_TOKEN_SECRET. */
    secret: string;
    ratePerSecond: number;
    retryBaseMs: number;
    /** An event still undelivered this long after its status change is abandoned (WEBHOOK_RETRY_MAX_AGE_MS). */
    retryMaxAgeMs: number;
    /**
     * WEBHOOK_ALLOWED_HOSTS: destinations allowed although they resolve to an address that is not public
     * unicast (development receivers, a trusted internal service).
     */
    allowedHosts: string[];
    allowedRanges: AddressRange[];
  };
  ghcrOrg?: string;
  s3: { endpoint?: string; accessKey?: string; secretKey?: string; bucketName?: string; region: string };
  k8s?: KubernetesSettings;
  aws?: AwsSettings;
  coolify?: CoolifySettings;
  /**
   * One line each, for the caller to log at startup: a variable with one of our prefixes or suffixes that
   * nothing reads (a misspelling, named with the closest variable we do read), a platform whose variables
   * are set but which PLATFORM_PRIORITY does not name. Names only, never values.
   */
  warnings: string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const positiveInt = Joi.number().integer().min(1);
const nonNegativeInt = Joi.number().integer().min(0);
const url = Joi.string().uri({ scheme: ['http', 'https'] });
const FLEET_ID_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
/** A `local` host silent this long counts as gone for good, unless WORKER_LOCK_DURATION_MS is longer still. */
const DEFAULT_LOCAL_HOST_GONE_AFTER_MS = 300_000;
const csv = Joi.string().pattern(/^[^,\s]+(\s*,\s*[^,\s]+)*$/);

/**
 * The variables of baseSchema as it returns them: converted, defaults filled in. `Joi.object<..., true>`
 * makes the compiler check that the schema declares each of them with a schema of the matching type.
 */
type BaseVariables = {
  PORT: number;
  PUBLIC_URL?: string;
  REDIS_URL?: string;
  REDIS_SENTINELS?: string;
  REDIS_SENTINEL_NAME?: string;
  MONGODB_URI?: string;
  LOG_LEVEL: Config['logLevel'];
  PLATFORM_PRIORITY: string;
  WORKER_PLATFORMS?: string;
  GLOBAL_QUEUE_TIMEOUT_MS: number;
  DEPLOYMENT_QUEUE_MAX_CONCURRENT: number;
  BOT_TOKEN_SECRET?: string;
  BOOTSTRAP_API_KEY?: string;
  ADMIN_API_KEY?: string;
  LOCAL_BOT_LIMIT: number;
  LOCAL_QUEUE_TIMEOUT_MS: number;
  LOCAL_BOT_COMMAND?: string;
  LOCAL_RUN_DIR?: string;
  REDIS_PREFIX: string;
  FLEET_ID?: string;
  LOCAL_HOST_ID?: string;
  LOCAL_HOST_GONE_AFTER_MS?: number;
  SIM_HOST?: string;
  SIM_RUNNER: Config['simRunner'];
  SHUTDOWN_TIMEOUT_MS: number;
  API_RATE_LIMIT_PER_MINUTE: number;
  METRICS_PORT?: number;
  HEARTBEAT_TIMEOUT_MS: number;
  HEARTBEAT_INTERVAL_MS: number;
  DEPLOY_TIMEOUT_MS: number;
  SWEEP_INTERVAL_MS: number;
  SLOT_RECOVERY_INTERVAL_MS: number;
  LEAVE_GRACE_MS: number;
  WORKER_LOCK_DURATION_MS: number;
  SCHEDULE_LEAD_MS: number;
  WEBHOOK_SECRET?: string;
  WEBHOOK_RATE_PER_SECOND: number;
  WEBHOOK_RETRY_BASE_MS: number;
  WEBHOOK_RETRY_MAX_AGE_MS: number;
  WEBHOOK_ALLOWED_HOSTS?: string;
  GHCR_ORG?: string;
  MILO_AUTH_TOKEN?: string;
  S3_ENDPOINT?: string;
  S3_ACCESS_KEY?: string;
  S3_SECRET_KEY?: string;
  S3_BUCKET_NAME?: string;
  S3_REGION: string;
  K8S_BOT_LIMIT?: number;
  K8S_QUEUE_TIMEOUT_MS: number;
  AWS_BOT_LIMIT?: number;
  AWS_QUEUE_TIMEOUT_MS: number;
  COOLIFY_BOT_LIMIT?: number;
  COOLIFY_QUEUE_TIMEOUT_MS: number;
};

/** Variables every process reads. Empty strings count as unset. */
const baseSchema = Joi.object<BaseVariables, true>({
  PORT: Joi.number().port().default(3000),
  PUBLIC_URL: url,
  REDIS_URL: Joi.string().uri({ scheme: ['redis', 'rediss'] }),
  REDIS_SENTINELS: Joi.string(),
  REDIS_SENTINEL_NAME: Joi.string().pattern(/^[A-Za-z0-9_.-]+$/),
  MONGODB_URI: Joi.string().uri({ scheme: ['mongodb', 'mongodb+srv'] }),
  LOG_LEVEL: Joi.string().valid('debug', 'info', 'warn', 'error').default('info'),
  PLATFORM_PRIORITY: csv.default('local'),
  WORKER_PLATFORMS: csv,
  GLOBAL_QUEUE_TIMEOUT_MS: positiveInt.default(600000),
  DEPLOYMENT_QUEUE_MAX_CONCURRENT: positiveInt.default(4),
  BOT_TOKEN_SECRET: Joi.string().min(16),
  BOOTSTRAP_API_KEY: Joi.string().min(16),
  ADMIN_API_KEY: Joi.string().min(16),
  LOCAL_BOT_LIMIT: positiveInt.default(5),
  LOCAL_QUEUE_TIMEOUT_MS: positiveInt.default(30000),
  LOCAL_BOT_COMMAND: Joi.string(),
  LOCAL_RUN_DIR: Joi.string(),
  REDIS_PREFIX: Joi.string()
    .pattern(/^[A-Za-z0-9_-]+$/)
    .default('meeboter'),
  // A valid Kubernetes label value and ECS tag value, since every container carries it.
  FLEET_ID: Joi.string().pattern(FLEET_ID_PATTERN),
  LOCAL_HOST_ID: Joi.string().pattern(/^[A-Za-z0-9_.-]+$/),
  // Above the lease's renewal interval (a third of the worker lock) with room for a slow renewal.
  LOCAL_HOST_GONE_AFTER_MS: Joi.number().integer().min(Joi.ref('WORKER_LOCK_DURATION_MS')),
  SIM_HOST: Joi.string().pattern(/^[A-Za-z0-9_-]+$/),
  SIM_RUNNER: Joi.string().valid('in-process', 'sim-host').default('in-process'),
  SHUTDOWN_TIMEOUT_MS: positiveInt.default(30000),
  API_RATE_LIMIT_PER_MINUTE: nonNegativeInt.default(6000),
  METRICS_PORT: Joi.number().port(),
  HEARTBEAT_TIMEOUT_MS: positiveInt.default(300000),
  HEARTBEAT_INTERVAL_MS: positiveInt.default(30000),
  DEPLOY_TIMEOUT_MS: positiveInt.default(900000),
  SWEEP_INTERVAL_MS: positiveInt.default(30000),
  SLOT_RECOVERY_INTERVAL_MS: positiveInt.default(300000),
  LEAVE_GRACE_MS: nonNegativeInt.default(60000),
  WORKER_LOCK_DURATION_MS: Joi.number().integer().min(1000).default(30000),
  SCHEDULE_LEAD_MS: nonNegativeInt.default(60000),
  WEBHOOK_SECRET: Joi.string().min(16),
  WEBHOOK_RATE_PER_SECOND: positiveInt.default(10),
  WEBHOOK_RETRY_BASE_MS: positiveInt.default(1000),
  WEBHOOK_RETRY_MAX_AGE_MS: positiveInt.max(7 * 24 * 3600 * 1000).default(24 * 3600 * 1000),
  WEBHOOK_ALLOWED_HOSTS: csv,
  GHCR_ORG: Joi.string(),
  // The seed's one static bot token: read only to refuse it (botTokenSecretOf).
  MILO_AUTH_TOKEN: Joi.string(),
  S3_ENDPOINT: url,
  S3_ACCESS_KEY: Joi.string(),
  S3_SECRET_KEY: Joi.string(),
  S3_BUCKET_NAME: Joi.string(),
  S3_REGION: Joi.string().default('us-east-1'),
  K8S_BOT_LIMIT: positiveInt,
  K8S_QUEUE_TIMEOUT_MS: positiveInt.default(60000),
  AWS_BOT_LIMIT: positiveInt,
  AWS_QUEUE_TIMEOUT_MS: positiveInt.default(30000),
  COOLIFY_BOT_LIMIT: positiveInt,
  COOLIFY_QUEUE_TIMEOUT_MS: positiveInt.default(300000),
}).unknown(true);

/** What k8sSchema returns. */
type KubernetesVariables = {
  K8S_BOT_LIMIT: number;
  K8S_NAMESPACE: string;
  K8S_KUBECONFIG?: string;
  K8S_IMAGE_REGISTRY?: string;
  K8S_IMAGE_TAG: string;
  K8S_BOT_CPU_REQUEST: string;
  K8S_BOT_CPU_LIMIT: string;
  K8S_BOT_MEMORY_REQUEST: string;
  K8S_BOT_MEMORY_LIMIT: string;
  K8S_IMAGE_PULL_LOCK_ENABLED: boolean;
  K8S_IMAGE_PULL_SECRET: string;
  KUBERNETES_SERVICE_HOST?: string;
  GHCR_ORG?: string;
};

const k8sSchema = Joi.object<KubernetesVariables, true>({
  K8S_BOT_LIMIT: positiveInt.required(),
  K8S_NAMESPACE: Joi.string().default('meeboter'),
  K8S_KUBECONFIG: Joi.string(),
  K8S_IMAGE_REGISTRY: Joi.string(),
  K8S_IMAGE_TAG: Joi.string().default('latest'),
  K8S_BOT_CPU_REQUEST: Joi.string().default('500m'),
  K8S_BOT_CPU_LIMIT: Joi.string().default('1000m'),
  K8S_BOT_MEMORY_REQUEST: Joi.string().default('1Gi'),
  K8S_BOT_MEMORY_LIMIT: Joi.string().default('2Gi'),
  K8S_IMAGE_PULL_LOCK_ENABLED: Joi.boolean().truthy('true').falsy('false').default(true),
  K8S_IMAGE_PULL_SECRET: Joi.string().default('ghcr-secret'),
  KUBERNETES_SERVICE_HOST: Joi.string(),
  GHCR_ORG: Joi.string(),
})
  .or('K8S_IMAGE_REGISTRY', 'GHCR_ORG')
  .unknown(true);

/** What awsSchema returns. */
type AwsVariables = {
  AWS_BOT_LIMIT: number;
  AWS_REGION: string;
  AWS_ECS_CLUSTER: string;
  AWS_ECS_SUBNETS: string;
  AWS_ECS_SECURITY_GROUPS: string;
  AWS_ECS_ASSIGN_PUBLIC_IP: boolean;
  AWS_ECS_TASK_DEF_GOOGLE_MEET: string;
  AWS_ECS_TASK_DEF_MICROSOFT_TEAMS: string;
  AWS_ECS_TASK_DEF_ZOOM: string;
  AWS_ECS_CAPACITY_PROVIDERS?: string;
  AWS_ECS_LAUNCH_TYPE?: 'FARGATE';
};

const awsSchema = Joi.object<AwsVariables, true>({
  AWS_BOT_LIMIT: positiveInt.required(),
  AWS_REGION: Joi.string().required(),
  AWS_ECS_CLUSTER: Joi.string().required(),
  AWS_ECS_SUBNETS: csv.required(),
  AWS_ECS_SECURITY_GROUPS: csv.required(),
  AWS_ECS_ASSIGN_PUBLIC_IP: Joi.boolean().truthy('true').falsy('false').default(true),
  AWS_ECS_TASK_DEF_GOOGLE_MEET: Joi.string().required(),
  AWS_ECS_TASK_DEF_MICROSOFT_TEAMS: Joi.string().required(),
  AWS_ECS_TASK_DEF_ZOOM: Joi.string().required(),
  AWS_ECS_CAPACITY_PROVIDERS: csv,
  AWS_ECS_LAUNCH_TYPE: Joi.string().valid('FARGATE'),
})
  .nand('AWS_ECS_CAPACITY_PROVIDERS', 'AWS_ECS_LAUNCH_TYPE')
  .unknown(true);

/** Fargate Spot first (cheaper), on-demand Fargate when Spot has no capacity. */
const DEFAULT_CAPACITY_PROVIDERS = 'FARGATE_SPOT,FARGATE';

/** What coolifySchema returns. */
type CoolifyVariables = {
  COOLIFY_BOT_LIMIT: number;
  COOLIFY_API_URL: string;
  COOLIFY_API_TOKEN: string;
  COOLIFY_PROJECT_UUID: string;
  COOLIFY_SERVER_UUID: string;
  COOLIFY_ENVIRONMENT_NAME: string;
  COOLIFY_DESTINATION_UUID: string;
  COOLIFY_IMAGE_TAG: string;
  COOLIFY_MEETING_PLATFORMS: string;
  COOLIFY_MIN_IDLE_SLOTS: number;
  COOLIFY_POLL_INTERVAL_MS: number;
  COOLIFY_SLOT_MAX_FAILURES: number;
  GHCR_ORG: string;
};

const coolifySchema = Joi.object<CoolifyVariables, true>({
  COOLIFY_BOT_LIMIT: positiveInt.required(),
  COOLIFY_API_URL: url.required(),
  COOLIFY_API_TOKEN: Joi.string().required(),
  COOLIFY_PROJECT_UUID: Joi.string().required(),
  COOLIFY_SERVER_UUID: Joi.string().required(),
  COOLIFY_ENVIRONMENT_NAME: Joi.string().default('production'),
  COOLIFY_DESTINATION_UUID: Joi.string().required(),
  COOLIFY_IMAGE_TAG: Joi.string().default('latest'),
  COOLIFY_MEETING_PLATFORMS: Joi.string()
    .pattern(new RegExp(`^(${MEETING_PLATFORMS.join('|')})(\\s*,\\s*(${MEETING_PLATFORMS.join('|')}))*$`))
    .default(MEETING_PLATFORMS.join(',')),
  COOLIFY_MIN_IDLE_SLOTS: nonNegativeInt.default(1),
  COOLIFY_POLL_INTERVAL_MS: positiveInt.default(5000),
  COOLIFY_SLOT_MAX_FAILURES: positiveInt.default(3),
  GHCR_ORG: Joi.string().required(),
}).unknown(true);

const allowListEntry = Joi.alternatives(Joi.string().ip({ cidr: 'optional' }), Joi.string().hostname());

type Env = Record<string, string | undefined>;

function validate<Variables>(schema: Joi.ObjectSchema<Variables>, env: Env): Variables {
  const result = schema.validate(env, { convert: true, abortEarly: true });
  if (result.error) {
    const detail = result.error.details[0];
    if (detail.type === 'object.missing') {
      throw new ConfigError(`${(detail.context?.peers as string[]).join(' or ')}: one of them is required`);
    }
    if (detail.type === 'object.nand') {
      throw new ConfigError(
        `${detail.context?.main}: cannot be combined with ${(detail.context?.peers as string[]).join(', ')}`,
      );
    }
    throw new ConfigError(`${detail.path.join('.')}: ${detail.message.replace(/^"[^"]*" /, '')}`);
  }
  return result.value;
}

/** The variable names an object schema declares. */
function schemaKeys(schema: Joi.ObjectSchema<object>): string[] {
  const keys: unknown = schema.describe().keys; // Joi's description types its keys as any
  return keys && typeof keys === 'object' ? Object.keys(keys) : [];
}

function withoutEmpty(env: Env): Env {
  const out: Env = {};
  for (const [key, value] of Object.entries(env))
    if (value !== undefined && value.trim() !== '') out[key] = value.trim();
  return out;
}

function splitCsv(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

/** `sim-load` → `SIM_LOAD`: the prefix of that platform's *_BOT_LIMIT and *_QUEUE_TIMEOUT_MS variables. */
function envPrefix(name: string): string {
  return name.toUpperCase().replace(/-/g, '_');
}

function platformKind(name: string): PlatformKind {
  if (/^sim(-[a-z0-9]+)*$/.test(name)) return 'sim';
  if ((PLATFORM_KINDS as readonly string[]).includes(name)) return name as PlatformKind;
  throw new ConfigError(
    `PLATFORM_PRIORITY: unknown platform "${name}" (expected k8s, aws, coolify, local, sim or sim-<name>)`,
  );
}

/**
 * The variables of one platform named in PLATFORM_PRIORITY: `<NAME>_BOT_LIMIT`, `_QUEUE_TIMEOUT_MS`,
 * `_START_TIMEOUT_MS`, `_START_RETRIES`. Typed by these four, all numbers (the other variables pass through,
 * unread).
 */
function platformSchema(name: string): Joi.ObjectSchema<Record<string, number>> {
  const kind = platformKind(name);
  const prefix = envPrefix(name);
  const defaults: Record<string, { limit?: number; timeout: number }> = {
    local: { limit: 5, timeout: 30000 },
    sim: { limit: 1000, timeout: 30000 },
  };
  const fallback = defaults[name] ?? (kind === 'sim' ? defaults.sim : undefined);
  return Joi.object<Record<string, number>>({
    [`${prefix}_BOT_LIMIT`]: fallback?.limit ? positiveInt.default(fallback.limit) : positiveInt.required(),
    [`${prefix}_QUEUE_TIMEOUT_MS`]: positiveInt.default(fallback?.timeout ?? 60000),
    [`${prefix}_START_TIMEOUT_MS`]: positiveInt.default(DEFAULT_START_TIMEOUT_MS),
    // Each try's number is part of its deployment name, which ECS caps at 36 characters.
    [`${prefix}_START_RETRIES`]: nonNegativeInt.max(MAX_START_RETRIES).default(DEFAULT_START_RETRIES),
  }).unknown(true);
}

function platformSettings(name: string, env: Env, base: BaseVariables): PlatformSettings {
  const kind = platformKind(name);
  const prefix = envPrefix(name);
  const parsed = validate(platformSchema(name), {
    ...env,
    ...pick(base, `${prefix}_BOT_LIMIT`, `${prefix}_QUEUE_TIMEOUT_MS`),
  });
  return {
    name,
    kind,
    limit: parsed[`${prefix}_BOT_LIMIT`],
    queueTimeoutMs: parsed[`${prefix}_QUEUE_TIMEOUT_MS`],
    startTimeoutMs: parsed[`${prefix}_START_TIMEOUT_MS`],
    startRetries: parsed[`${prefix}_START_RETRIES`],
  };
}

/** WEBHOOK_ALLOWED_HOSTS: a comma list of host names (matched exactly, any case) and IP addresses or CIDR ranges. */
function webhookAllowList(value: string | undefined): Pick<Config['webhooks'], 'allowedHosts' | 'allowedRanges'> {
  const allowedHosts: string[] = [];
  const allowedRanges: AddressRange[] = [];
  for (const entry of value ? splitCsv(value) : []) {
    if (allowListEntry.validate(entry).error) {
      throw new ConfigError(`WEBHOOK_ALLOWED_HOSTS: "${entry}" is neither a host name nor an IP address or CIDR range`);
    }
    const [address, prefix] = entry.split('/');
    const family = isIP(address);
    if (!family) {
      allowedHosts.push(entry.toLowerCase());
      continue;
    }
    const single = family === 4 ? 32 : 128; // a bare address is a range of one
    allowedRanges.push({ address, prefix: prefix ? Number(prefix) : single, family: family === 4 ? 'ipv4' : 'ipv6' });
  }
  return { allowedHosts, allowedRanges };
}

/**
 * Fargate takes up to a minute or two to start a task with a large image; five minutes is a stuck one (and
 * the seed cleans up Coolify slots stuck deploying after five minutes).
 */
const DEFAULT_START_TIMEOUT_MS = 300_000;
const DEFAULT_START_RETRIES = 2;
const MAX_START_RETRIES = 9;

function pick(source: Record<string, string | number | boolean | undefined>, ...keys: string[]): Env {
  const out: Env = {};
  for (const key of keys) if (source[key] !== undefined) out[key] = String(source[key]);
  return out;
}

/**
 * Every variable loadConfig reads with these platforms in PLATFORM_PRIORITY (each platform kind's own
 * variables included, enabled or not). The schemas ignore unknown names; `configWarnings` checks the
 * environment against this list instead.
 */
export function configVariableNames(platformNames: readonly string[]): string[] {
  const schemas = [
    baseSchema,
    k8sSchema,
    awsSchema,
    coolifySchema,
    ...[...PLATFORM_KINDS, ...platformNames].map(platformSchema),
  ];
  const names = new Set(schemas.flatMap(schemaKeys));
  return [...names].sort();
}

/** Read by `npm run sim-host` (scripts/sim-host.ts), which shares the fleet's environment in the benchmark. */
const READ_BY_SIM_HOST = ['SIM_HOST_RUN_BOTS', 'SIM_PLATFORMS'];

/**
 * Prefixes no other software's variables use, so a variable with one that nothing reads is a mistake.
 * `AWS_` alone is also the AWS SDK's (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL, ...): see
 * NEAR_OURS_ONLY.
 */
export const OWN_PREFIXES = [
  'K8S_',
  'AWS_ECS_',
  'COOLIFY_',
  'LOCAL_',
  'SIM_',
  'WEBHOOK_',
  'S3_',
  'HEARTBEAT_',
  'DEPLOYMENT_',
  'GHCR_',
];
/** Every platform's own variables end so: `<NAME>_BOT_LIMIT`, ... */
export const PLATFORM_SUFFIXES = schemaKeys(platformSchema('local')).map((name) => name.slice('LOCAL'.length));
/** An `AWS_` variable is taken for a misspelling of ours only this close to one (the SDK's are further). */
const NEAR_OURS_ONLY = { prefix: 'AWS_', distance: 2 };

/** The platform a `<NAME>_BOT_LIMIT`-like variable is of (`SIM_A_BOT_LIMIT` → sim-a), if it names one. */
function platformBySuffix(variable: string): string | undefined {
  const suffix = PLATFORM_SUFFIXES.find((end) => variable.endsWith(end) && variable.length > end.length);
  const name = suffix && variable.slice(0, -suffix.length).toLowerCase().replace(/_/g, '-');
  return name && (/^sim(-[a-z0-9]+)*$/.test(name) || (PLATFORM_KINDS as readonly string[]).includes(name))
    ? name
    : undefined;
}

/** Variables of one platform kind by their prefix (`K8S_NAMESPACE` → k8s, `SIM_RUNNER` → sim). */
const PLATFORM_PREFIXES: Array<[string, PlatformKind]> = [
  ['K8S_', 'k8s'],
  ['AWS_ECS_', 'aws'],
  ['COOLIFY_', 'coolify'],
  ['LOCAL_', 'local'],
  ['SIM_', 'sim'],
];

/** What loadConfig warns about (see Config.warnings), for these enabled platforms. */
export function configWarnings(env: Env, enabled: readonly string[]): string[] {
  const known = [...configVariableNames(enabled), ...READ_BY_SIM_HOST];
  const knownSet = new Set(known);
  const warnings: string[] = [];
  const unusedPlatforms = new Map<string, string[]>();
  for (const variable of Object.keys(env).sort()) {
    const bySuffix = platformBySuffix(variable);
    const platform = bySuffix ?? PLATFORM_PREFIXES.find(([prefix]) => variable.startsWith(prefix))?.[1];
    // `SIM_HOST` and `SIM_RUNNER` serve every sim platform, whatever it is called
    const inUse =
      platform === 'sim' && !bySuffix
        ? enabled.some((name) => platformKind(name) === 'sim')
        : enabled.includes(platform ?? '');
    if (platform && !inUse && (bySuffix || knownSet.has(variable))) {
      unusedPlatforms.set(platform, [...(unusedPlatforms.get(platform) ?? []), variable]);
      continue;
    }
    if (knownSet.has(variable)) continue;
    const nearest = closest(variable, known);
    const ours =
      OWN_PREFIXES.some((prefix) => variable.startsWith(prefix)) ||
      PLATFORM_SUFFIXES.some((suffix) => variable.endsWith(suffix)) ||
      (variable.startsWith(NEAR_OURS_ONLY.prefix) && distance(variable, nearest) <= NEAR_OURS_ONLY.distance);
    if (ours) warnings.push(`${variable} is not a variable meeboter reads; did you mean ${nearest}?`);
  }
  for (const [platform, variables] of unusedPlatforms) {
    warnings.push(
      `platform ${platform} is configured (${variables.join(', ')}) but not in PLATFORM_PRIORITY (${enabled.join(',')}), so it is unused`,
    );
  }
  return warnings;
}

/**
 * The secret bot tokens are signed with. The seed gives every bot one static `MILO_AUTH_TOKEN`; here each bot
 * gets its own token, signed with BOT_TOKEN_SECRET. A seed's MILO_AUTH_TOKEN is refused rather than ignored
 * or reused: no static token is accepted, so ignoring it would hide that the bots' tokens changed, and
 * signing with it would make a value every container of the old deployment held able to forge any bot's
 * token (and, through WEBHOOK_SECRET's default, webhooks).
 */
function botTokenSecretOf(base: { BOT_TOKEN_SECRET?: string; MILO_AUTH_TOKEN?: string }): string | undefined {
  if (base.MILO_AUTH_TOKEN) {
    throw new ConfigError(
      'MILO_AUTH_TOKEN: not used by this fleet: every bot gets its own token (signed with BOT_TOKEN_SECRET) and no static bot token is accepted; remove it, and set BOT_TOKEN_SECRET to a new secret if you set one',
    );
  }
  return base.BOT_TOKEN_SECRET;
}

/** `host:port`: a host name or IPv4 address, or an IPv6 address in brackets (`[::1]:26379`). */
const SENTINEL_ADDRESS = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/;

/** REDIS_SENTINELS and REDIS_SENTINEL_NAME, both or neither, with REDIS_URL's credentials and database. */
function sentinelTarget(
  base: Pick<BaseVariables, 'REDIS_SENTINELS' | 'REDIS_SENTINEL_NAME' | 'REDIS_URL'>,
): SentinelTarget | undefined {
  const { REDIS_SENTINELS: list, REDIS_SENTINEL_NAME: name } = base;
  if (!list && !name) return undefined;
  if (!list) throw new ConfigError('REDIS_SENTINELS: required with REDIS_SENTINEL_NAME (host:port[,host:port...])');
  if (!name)
    throw new ConfigError("REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the primary's name in Sentinel)");
  const sentinels = splitCsv(list).map((entry) => {
    const match = SENTINEL_ADDRESS.exec(entry);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) {
      throw new ConfigError(`REDIS_SENTINELS: "${entry}" is not host:port (a port from 1 to 65535)`);
    }
    return { host: match[1] ?? match[2], port };
  });
  if (!sentinels.length) throw new ConfigError('REDIS_SENTINELS: names no sentinel (host:port[,host:port...])');
  const target: SentinelTarget = { sentinels, name };
  if (base.REDIS_URL) {
    const url = new URL(base.REDIS_URL);
    if (url.protocol === 'rediss:') {
      throw new ConfigError('REDIS_URL: rediss (TLS) cannot be combined with REDIS_SENTINELS; use a redis: URL');
    }
    if (url.username) target.username = decodeURIComponent(url.username);
    if (url.password) target.password = decodeURIComponent(url.password);
    const db = url.pathname.replace(/^\//, '');
    if (db) {
      if (!/^[0-9]+$/.test(db)) throw new ConfigError(`REDIS_URL: the database "${db}" is not a number`);
      target.db = Number(db);
    }
  }
  return target;
}

/** Parses and validates configuration; throws ConfigError whose message names the variable. */
export function loadConfig(rawEnv: Env): Readonly<Config> {
  const env = withoutEmpty(rawEnv);
  const base = validate(baseSchema, env);

  const names = splitCsv(base.PLATFORM_PRIORITY);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate) throw new ConfigError(`PLATFORM_PRIORITY: "${duplicate}" is listed twice`);
  const platforms = names.map((name) => platformSettings(name, env, base));

  const workerPlatforms = base.WORKER_PLATFORMS ? splitCsv(base.WORKER_PLATFORMS) : names;
  const unknownWorker = workerPlatforms.find((name) => !names.includes(name));
  if (unknownWorker) throw new ConfigError(`WORKER_PLATFORMS: "${unknownWorker}" is not in PLATFORM_PRIORITY`);

  const kinds = new Set(platforms.map((platform) => platform.kind));
  if (!base.FLEET_ID && !FLEET_ID_PATTERN.test(base.REDIS_PREFIX)) {
    throw new ConfigError(`FLEET_ID: required, since REDIS_PREFIX "${base.REDIS_PREFIX}" cannot label containers`);
  }
  const config: Config = {
    port: base.PORT,
    publicUrl: base.PUBLIC_URL ?? `http://127.0.0.1:${base.PORT}`,
    redisUrl: base.REDIS_URL,
    redisSentinel: sentinelTarget(base),
    mongodbUri: base.MONGODB_URI,
    logLevel: base.LOG_LEVEL,
    platforms,
    workerPlatforms,
    globalQueueTimeoutMs: base.GLOBAL_QUEUE_TIMEOUT_MS,
    deploymentQueueMaxConcurrent: base.DEPLOYMENT_QUEUE_MAX_CONCURRENT,
    botTokenSecret: botTokenSecretOf(base) ?? randomSecret(),
    botTokenSecretGenerated: !botTokenSecretOf(base),
    bootstrapApiKey: base.BOOTSTRAP_API_KEY,
    adminApiKey: base.ADMIN_API_KEY,
    localBotCommand: base.LOCAL_BOT_COMMAND,
    localRunDir: base.LOCAL_RUN_DIR,
    redisPrefix: base.REDIS_PREFIX,
    fleetId: base.FLEET_ID,
    localHostId: base.LOCAL_HOST_ID ?? os.hostname(),
    localHostGoneAfterMs:
      base.LOCAL_HOST_GONE_AFTER_MS ?? Math.max(DEFAULT_LOCAL_HOST_GONE_AFTER_MS, base.WORKER_LOCK_DURATION_MS),
    simHost: base.SIM_HOST ?? base.REDIS_PREFIX,
    simRunner: base.SIM_RUNNER,
    shutdownTimeoutMs: base.SHUTDOWN_TIMEOUT_MS,
    apiRateLimitPerMinute: base.API_RATE_LIMIT_PER_MINUTE,
    metricsPort: base.METRICS_PORT,
    heartbeatTimeoutMs: base.HEARTBEAT_TIMEOUT_MS,
    heartbeatIntervalMs: base.HEARTBEAT_INTERVAL_MS,
    deployTimeoutMs: base.DEPLOY_TIMEOUT_MS,
    sweepIntervalMs: base.SWEEP_INTERVAL_MS,
    slotRecoveryIntervalMs: base.SLOT_RECOVERY_INTERVAL_MS,
    leaveGraceMs: base.LEAVE_GRACE_MS,
    workerLockDurationMs: base.WORKER_LOCK_DURATION_MS,
    scheduleLeadMs: base.SCHEDULE_LEAD_MS,
    webhooks: {
      secret: '',
      ratePerSecond: base.WEBHOOK_RATE_PER_SECOND,
      retryBaseMs: base.WEBHOOK_RETRY_BASE_MS,
      retryMaxAgeMs: base.WEBHOOK_RETRY_MAX_AGE_MS,
      ...webhookAllowList(base.WEBHOOK_ALLOWED_HOSTS),
    },
    ghcrOrg: base.GHCR_ORG,
    s3: {
      endpoint: base.S3_ENDPOINT,
      accessKey: base.S3_ACCESS_KEY,
      secretKey: base.S3_SECRET_KEY,
      bucketName: base.S3_BUCKET_NAME,
      region: base.S3_REGION,
    },
    warnings: configWarnings(env, names),
  };

  config.webhooks.secret =
    base.WEBHOOK_SECRET ?? createHmac('sha256', config.botTokenSecret).update('meeboter-webhooks').digest('hex');

  if (kinds.has('k8s')) {
    const k = validate(k8sSchema, env);
    const registry = k.K8S_IMAGE_REGISTRY
      ? { variable: 'K8S_IMAGE_REGISTRY', value: k.K8S_IMAGE_REGISTRY }
      : // A bare GHCR_ORG would resolve to Docker Hub; the registry host is made explicit. The schema's .or()
        // demands one of the two, so GHCR_ORG is set here.
        { variable: 'GHCR_ORG', value: ghcrRegistry(k.GHCR_ORG!) };
    checkBotImages(registry, { variable: 'K8S_IMAGE_TAG', value: k.K8S_IMAGE_TAG });
    config.k8s = {
      namespace: k.K8S_NAMESPACE,
      credentials: k.K8S_KUBECONFIG
        ? { kubeconfig: k.K8S_KUBECONFIG }
        : k.KUBERNETES_SERVICE_HOST
          ? 'in-cluster'
          : 'default',
      imageRegistry: registry.value,
      imageTag: k.K8S_IMAGE_TAG,
      cpuRequest: k.K8S_BOT_CPU_REQUEST,
      cpuLimit: k.K8S_BOT_CPU_LIMIT,
      memoryRequest: k.K8S_BOT_MEMORY_REQUEST,
      memoryLimit: k.K8S_BOT_MEMORY_LIMIT,
      imagePullLockEnabled: k.K8S_IMAGE_PULL_LOCK_ENABLED,
      imagePullSecret: k.K8S_IMAGE_PULL_SECRET,
    };
  }
  if (kinds.has('aws')) {
    const a = validate(awsSchema, env);
    config.aws = {
      region: a.AWS_REGION,
      cluster: a.AWS_ECS_CLUSTER,
      subnets: splitCsv(a.AWS_ECS_SUBNETS),
      securityGroups: splitCsv(a.AWS_ECS_SECURITY_GROUPS),
      assignPublicIp: a.AWS_ECS_ASSIGN_PUBLIC_IP,
      taskDefinitions: {
        'google-meet': a.AWS_ECS_TASK_DEF_GOOGLE_MEET,
        'microsoft-teams': a.AWS_ECS_TASK_DEF_MICROSOFT_TEAMS,
        zoom: a.AWS_ECS_TASK_DEF_ZOOM,
      },
      launchOptions: a.AWS_ECS_LAUNCH_TYPE
        ? [{ launchType: a.AWS_ECS_LAUNCH_TYPE }]
        : splitCsv(a.AWS_ECS_CAPACITY_PROVIDERS ?? DEFAULT_CAPACITY_PROVIDERS).map((capacityProvider) => ({
            capacityProvider,
          })),
    };
  }
  if (kinds.has('coolify')) {
    const c = validate(coolifySchema, env);
    checkBotImages(
      { variable: 'GHCR_ORG', value: ghcrRegistry(c.GHCR_ORG) },
      { variable: 'COOLIFY_IMAGE_TAG', value: c.COOLIFY_IMAGE_TAG },
    );
    config.coolify = {
      apiUrl: c.COOLIFY_API_URL,
      apiToken: c.COOLIFY_API_TOKEN,
      projectUuid: c.COOLIFY_PROJECT_UUID,
      serverUuid: c.COOLIFY_SERVER_UUID,
      environmentName: c.COOLIFY_ENVIRONMENT_NAME,
      destinationUuid: c.COOLIFY_DESTINATION_UUID,
      ghcrOrg: c.GHCR_ORG,
      imageTag: c.COOLIFY_IMAGE_TAG,
      meetingPlatforms: [...new Set(splitCsv(c.COOLIFY_MEETING_PLATFORMS))] as MeetingPlatform[],
      minIdleSlots: c.COOLIFY_MIN_IDLE_SLOTS,
      // the platform's own COOLIFY_START_TIMEOUT_MS, so it has one default, the other platforms'
      startTimeoutMs: platforms.find((platform) => platform.kind === 'coolify')!.startTimeoutMs,
      pollIntervalMs: c.COOLIFY_POLL_INTERVAL_MS,
      maxSlotFailures: c.COOLIFY_SLOT_MAX_FAILURES,
    };
  }
  return deepFreeze(config);
}

/**
 * Refuses at startup image settings that would give every bot an image reference a registry rejects (the
 * pods would sit in InvalidImageName), naming the variable.
 */
function checkBotImages(registry: { variable: string; value: string }, tag: { variable: string; value: string }): void {
  for (const meetingPlatform of MEETING_PLATFORMS) {
    const repository = botRepository(registry.value, meetingPlatform);
    if (!isImageReference(repository)) {
      throw new ConfigError(
        `${registry.variable}: makes the image name "${repository}", which is not a valid image reference (a registry host, then lowercase letters, digits, and . _ - separators)`,
      );
    }
    if (!isImageReference(`${repository}:${tag.value}`)) {
      throw new ConfigError(
        `${tag.variable}: "${tag.value}" is not a valid image tag (up to 128 letters, digits, _ . -, not starting with . or -)`,
      );
    }
  }
}

function randomSecret(): string {
  return randomBytes(32).toString('hex');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
