import { MeetingPlatform } from '../domain/bot.lifecycle';

/**
 * The port every platform adapter implements. Nothing outside src/platforms/<name>/ knows a platform's API.
 *
 * Idempotency contract: `deploy` with the same `name` never starts a second container (Kubernetes: a Job
 * of that name; ECS: the RunTask clientToken; local: a pid file of that name). The fleet calls `adopt`
 * first when it may already have deployed, so a re-run after a crash takes over the running container.
 *
 * Fleet scope: every container an adapter starts carries its fleet's id (FLEET_ID), and `adopt`, `list`,
 * `status` and `stop` never act on a container of another fleet, so fleets sharing a host, namespace or
 * cluster never judge or stop each other's bots.
 */
export interface DeploySpec {
  botId: string;
  /** Deterministic per bot, platform and start try: see deploymentName(). */
  name: string;
  /**
   * How many placement attempts the bot had before this one. With `name` it identifies the attempt, for
   * platforms whose idempotency key must change when a bot comes back to them (the ECS clientToken).
   */
  attempt: number;
  meetingPlatform: MeetingPlatform;
  /** The bot's maximum duration, if it has one: platforms that can cap a container's lifetime do. */
  maxDurationMs: number | null;
  /** docs/bot-protocol.md: BOT_ID, MILO_URL, MILO_AUTH_TOKEN, S3_*, NODE_ENV. */
  env: Record<string, string>;
}

/** What the fleet lends one deploy call. */
export interface DeployContext {
  /**
   * Runs `wait` outside the call's DEPLOYMENT_QUEUE_MAX_CONCURRENT slot: the slot is given back for the
   * wait and taken again after it, in line with every other deploy. For a wait on something other than the
   * platform's answer (Kubernetes: another bot's pod pulling the same image first), so that it holds up no
   * other bot's deploy, on this platform or another.
   */
  outsideDeploySlot: <T>(wait: () => Promise<T>) => Promise<T>;
}

export interface Deployment {
  /** What the platform calls the container (Job name, task ARN, pid, slot uuid). */
  identifier: string;
  /**
   * `running`: the container is up. `starting`: accepted, still coming up (a pod pulling its image, a pool
   * slot starting); the bot's own status reports and the reconciliation sweep follow it from there.
   */
  state: 'starting' | 'running' | 'elsewhere';
}

export interface ListedContainer {
  identifier: string;
  /** The bot it runs, when the platform can tell (from the deterministic name or a label). */
  botId: string | null;
}

/**
 * `elsewhere`: the container lives on another host of a host-bound platform (`local`), which alone may judge
 * or stop it; this process can neither confirm nor deny that it runs, so its bot keeps its unit of capacity
 * until that host stopped it. A host gone for good (its liveness lease lapsed) answers nothing instead.
 */
export type ContainerState = 'starting' | 'running' | 'gone' | 'elsewhere';

export interface ContainerStatus {
  state: ContainerState;
  /** Operator-facing detail, for example "ImagePullBackOff" or "exit code 137". */
  detail?: string;
}

/** Thrown by adapters. `transient` failures (429, 5xx, timeouts) are retried with backoff, others are not. */
export class PlatformError extends Error {
  override name = 'PlatformError';
  constructor(
    message: string,
    readonly transient: boolean,
    /**
     * Set when the platform said it has no room right now (ECS `failures[]` with RESOURCE, a full pool, a
     * quota): the bot moves on at once and the platform is not marked failed for it.
     */
    readonly full = false,
  ) {
    super(message);
  }
}

/** Counts of a pool platform's slots (GET /api/bots/pool-stats). */
export interface PoolCounts {
  total: number;
  idle: number;
  starting: number;
  busy: number;
  error: number;
}

export type PoolStats = PoolCounts & { byMeetingPlatform: Record<string, PoolCounts> };

/** What a platform's upkeep may ask the fleet. */
export interface UpkeepContext {
  /** True while the bot is live on this platform (not ended, not gone, not moved elsewhere). */
  holdsBot(botId: string): Promise<boolean>;
}

/** Periodic work a platform needs besides reconciliation (Coolify: slot recovery). */
export interface PlatformUpkeep {
  /** Names the job scheduler and its run counter. */
  name: string;
  /** Runs once per interval across all fleet processes. */
  intervalMs: number;
  /** One pass; returns counts of what it did, for logs and tests. */
  run(ctx: UpkeepContext): Promise<Record<string, number>>;
}

export interface Platform {
  /** Name in PLATFORM_PRIORITY. */
  readonly name: string;
  /**
   * True when only the process that deployed a container can follow and stop it (`local`: child processes
   * of one host; `sim` with in-process bots). Its occupy job then stays active for as long as the bot runs.
   * Otherwise any process can stop the container, and once it runs the job is parked (see workers/occupy.ts)
   * so that a worker keeps nothing in memory for the bots it has placed.
   */
  readonly stopsOnlyWhereDeployed?: boolean;
  /**
   * Starts the container for one bot attempt, or returns the one already started under `spec.name`.
   * Returns as soon as the platform accepted it, or, where only following the start tells success from
   * failure (a Coolify slot's deployment), once it started, bounded by the platform's own start timeout.
   * It runs inside the occupy job, never inside an HTTP request, holding a deploy slot throughout except
   * where it waits through `context.outsideDeploySlot` (without a context, such a wait simply runs).
   * `elsewhere` means an earlier attempt started it on another host, which holds it.
   */
  deploy(spec: DeploySpec, context?: DeployContext): Promise<Deployment>;
  /**
   * Takes over a container this or another fleet process started under `name`, or returns null if there is
   * none (never started, already gone, or on a host gone for good). Never starts anything.
   */
  adopt(name: string): Promise<Deployment | null>;
  /** Current state of a container; `gone` once the platform confirms it no longer runs. */
  status(identifier: string): Promise<ContainerStatus>;
  /** Every container of this fleet the platform holds now, running or starting (for reconciliation). */
  list(): Promise<ListedContainer[]>;
  /** Stops a container and resolves once the platform confirms it is gone. Stopping a gone one succeeds. */
  stop(identifier: string): Promise<void>;
  /** Periodic upkeep, for platforms that need one. */
  readonly upkeep?: PlatformUpkeep;
  /** Releases the adapter's own clients and timers. Containers keep running. */
  close(): Promise<void>;
}

/**
 * `mb-<botId>-<platform>` for a bot's first start try on a platform, `mb-<botId>-<platform>--<try>` for each
 * retry of a failed start: every try is a new name, so it gets a new task, slot or Job, while a re-run of the
 * same try adopts what that try started. (`--` never occurs in a platform name, so no two names meet.)
 */
export function deploymentName(botId: string, platform: string, startTry = 0): string {
  return startTry === 0 ? `mb-${botId}-${platform}` : `mb-${botId}-${platform}--${startTry}`;
}

/** The bot id in a name made by deploymentName(), or null for a name that is not ours. */
export function botIdOfDeployment(name: string): string | null {
  return /^mb-([0-9a-f]{24})-/.exec(name)?.[1] ?? null;
}
