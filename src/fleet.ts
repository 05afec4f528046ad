import http from 'node:http';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Connection } from 'mongoose';
import { createQueues, Queues } from '../queues/queues';
import { startDispatchWorker } from '../workers/dispatch.worker';
import { startPlatformWorker } from '../workers/platform.worker';
import { startReconcileWorker } from '../workers/reconcile.worker';
import { startSweepsWorker } from '../workers/sweeps.worker';
import { startWebhookWorker } from '../workers/webhook.worker';
import { startScheduleWorker } from '../workers/schedule.worker';
import { WorkerDeps } from '../workers/worker-deps';
import { createApp } from './api/app';
import { Config } from './config';
import { createMongo, createRedis, RedisTarget, redisOptions } from './connections';
import { isTerminal } from './domain/bot.lifecycle';
import { logger } from './logger';
import { fleetGauges, metricsOnlyHandler } from './metrics';
import { serveHttp } from './http-server';
import { checkReadiness } from './readiness';
import { createDeploySlots } from './placement/deploy-slots';
import { createEndSignals, endedSignal } from './placement/end-signals';
import { createGlobalQueue, GlobalQueue } from './placement/global-queue';
import { createPlacement, Placement } from './placement/placement.service';
import { createPlatformControls } from './placement/platform-controls';
import { createRecordingLinks } from './recordings/recording-links';
import { createScreenshotStore } from './recordings/screenshots';
import { createRecovery, runRecoveryEvery } from './placement/recovery';
import { createWithdrawal } from './placement/withdrawal';
import { botEnv } from './platforms/bot-env';
import { createPlatforms, createPoolStatsReader, createSlotHolderReader } from './platforms/registry';
import { createShutdown, Shutdown } from './shutdown';
import { createApiKeys, ApiKeys } from './services/api-keys.service';
import { BotsService, createBotsService } from './services/bots.service';
import { createLifecycle, Lifecycle, LifecycleEffects } from './services/lifecycle.service';
import { createBotChanges } from './store/bot-changes';
import { createBotChat } from './store/bot-chat';
import { createBotLogs } from './store/bot-logs';
import { createBotNumbers } from './store/bot-numbers';
import { botRecordCodec, createBotRepository, BotRepository } from './store/bot.repository';
import { createFlusher, Flusher } from './store/flusher';
import { createIdempotencyKeys } from './store/idempotency-keys';
import { createLiveState, LiveState } from './store/live-state';
import { keptFleetId } from './store/fleet-identity';
import { createModels, Models } from './store/models';
import { createDestinationCheck } from './webhooks/destination';
import { createWebhookOutbox, WebhookOutbox } from './webhooks/webhook-outbox';

/**
 * Wires one fleet process: the API, the worker groups, or both (`npm start`). Every role shares Redis and
 * MongoDB with every other process; nothing that matters for correctness is kept in this process alone.
 */
export interface FleetRoles {
  api: boolean;
  workers: boolean;
}

export interface Fleet {
  /** The configuration, with `fleetId` filled in. */
  config: Config;
  /** FLEET_ID, or the identity the fleet keeps in MongoDB (src/store/fleet-identity.ts). */
  fleetId: string;
  models: Models;
  repo: BotRepository;
  /**
   * Writes the bots' changes to MongoDB; every process runs one (a worker-only process's stands by), each
   * partition has one writer at a time.
   */
  flusher: Flusher;
  bots: BotsService;
  apiKeys: ApiKeys;
  placement: Placement;
  lifecycle: Lifecycle;
  liveState: LiveState;
  globalQueue: GlobalQueue;
  outbox: WebhookOutbox;
  queues: Queues;
  redis: Redis;
  mongo: Connection;
  server?: http.Server;
  /** The port the API listens on (useful with PORT=0). */
  port?: number;
  /** The port a worker-only process serves /metrics on. */
  metricsPort?: number;
  shutdown: Shutdown;
}

/** Where the peers are: every Redis connection of the process, BullMQ's included, goes to `redis`. */
export interface FleetPeers {
  redis: RedisTarget;
  mongodbUri: string;
}

const DISPATCH_TICK_MS = 1000;

/**
 * What each status change makes in its own Redis step: the due-sets move, and an end also leaves the global
 * queue and is announced, so that no process dying after an accepted end leaves it unannounced.
 */
export function changesAlongsideStatus(
  liveState: LiveState,
  globalQueue: GlobalQueue,
  prefix: string,
): LifecycleEffects['changesAlongside'] {
  return (botId, status, bySelf) => [
    ...liveState.changesFor(botId, status, bySelf),
    ...(isTerminal(status) ? [...globalQueue.forgetChanges(botId), ...endedSignal(prefix, botId)] : []),
  ];
}

/** `shutdown` may already hold closers (peers this process started); the fleet's close before them. */
export async function startFleet(
  configured: Config,
  peers: FleetPeers,
  roles: FleetRoles,
  shutdown: Shutdown = createShutdown(),
): Promise<Fleet> {
  const prefix = configured.redisPrefix;
  try {
    const redis = createRedis(peers.redis, 'producer');
    shutdown.add('redis', () => redis.quit());
    const mongo = await createMongo(peers.mongodbUri);
    shutdown.add('mongodb', () => mongo.close());
    const models = await createModels(mongo);
    const fleetId = configured.fleetId ?? (await keptFleetId(mongo, prefix));
    logger.info('fleet identity', { fleetId, from: configured.fleetId ? 'FLEET_ID' : 'MongoDB' });
    const config: Config = { ...configured, fleetId };
    const queues = await createQueues(redis, prefix, config.platforms);
    shutdown.add('queues', () => queues.close());
    const outbox = createWebhookOutbox(redis, prefix, queues.webhooks);
    const changes = createBotChanges(redis, prefix);
    const repo = createBotRepository(models, changes, {
      // a status change Redis lost after MongoDB received it: its webhook event went with it
      afterLostWrites: async (bot, statusPutBack) => {
        if (statusPutBack) await outbox.enqueue(bot);
        else if (bot.callbackUrl && (await outbox.pending(String(bot._id))) > 0) await outbox.wake(String(bot._id));
      },
    });
    // Added before every role's closers, so it closes after them: their last changes are written first.
    // API processes write; a worker-only process stands by and writes only while no API process does, so
    // the workers' memory goes to the bots they hold (BENCHMARKS.md, P6).
    const flusher = createFlusher({
      standby: !roles.api,
      redis,
      prefix,
      bots: models.Bot.collection as never,
      events: models.BotEvent.collection,
      live: models.LiveBot.collection as never,
      claims: models.Idempotency.collection as never,
      partitions: changes.partitions,
      codec: botRecordCodec,
    });
    shutdown.add('flusher', () => flusher.close());
    const globalQueue = createGlobalQueue(redis, prefix);
    const liveState = createLiveState(redis, prefix);

    const lifecycle = createLifecycle(repo, {
      withdraw: createWithdrawal(queues, config.platforms),
      changesAlongside: changesAlongsideStatus(liveState, globalQueue, prefix),
      lastHeartbeat: (botId) => liveState.lastHeartbeat(botId),
      announce: (bot) => outbox.announce(bot),
      notify: async (bot) => (bot.callbackUrl ? outbox.wake(String(bot._id)) : undefined),
    });
    const placement = createPlacement({
      platforms: config.platforms,
      queues,
      globalQueue,
      controls: createPlatformControls(redis, prefix),
      repo,
      lifecycle,
      globalQueueTimeoutMs: config.globalQueueTimeoutMs,
      scheduleLeadMs: config.scheduleLeadMs,
    });
    const numbers = createBotNumbers(redis, prefix, models);
    // Redis may have lost its last writes (a restart without them on disk): numbers MongoDB holds stay taken.
    await numbers.catchUp();
    const idempotencyKeys = createIdempotencyKeys(redis, prefix, models);
    // A Redis that lost its data gets the Idempotency-Keys MongoDB holds back while MongoDB answers.
    await idempotencyKeys.restore();
    const apiKeys = createApiKeys(models, { redis, prefix });
    if (config.bootstrapApiKey) await apiKeys.ensure(config.bootstrapApiKey, 'admin');
    const bots = createBotsService({
      repo,
      idempotencyKeys,
      lifecycle,
      placement,
      liveState,
      numbers,
      logs: createBotLogs(redis, prefix),
      chat: createBotChat(redis, prefix),
      checkDestination: createDestinationCheck(config.webhooks),
      recordingLinks: createRecordingLinks(config.s3),
      screenshots: createScreenshotStore(config.s3),
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      leaveGraceMs: config.leaveGraceMs,
    });
    const fleet: Fleet = {
      config,
      fleetId,
      models,
      repo,
      flusher,
      bots,
      apiKeys,
      placement,
      lifecycle,
      liveState,
      globalQueue,
      outbox,
      queues,
      redis,
      mongo,
      shutdown,
    };

    if (roles.workers) await startWorkers(fleet, peers.redis);
    if (!roles.api && config.metricsPort !== undefined) {
      const served = await serveHttp(
        metricsOnlyHandler(fleetGauges(placement, () => checkReadiness(fleet))),
        config.metricsPort,
      );
      shutdown.add('metrics-http', served.close);
      fleet.metricsPort = served.port;
    }
    if (roles.api) {
      const poolStats = createPoolStatsReader(config, mongo, fleetId) ?? undefined;
      const slotHolder = createSlotHolderReader(config, mongo, fleetId) ?? undefined;
      const app = createApp({
        config,
        bots,
        apiKeys,
        placement,
        poolStats,
        slotHolder,
        queues: queues.all(),
        redis,
        mongo,
        flusher,
      });
      const served = await serveHttp(app, config.port);
      shutdown.add('http', served.close);
      fleet.server = served.server;
      fleet.port = served.port;
    }
    return fleet;
  } catch (error) {
    await shutdown.close();
    throw error;
  }
}

async function startWorkers(fleet: Fleet, redisTarget: RedisTarget): Promise<void> {
  const { config, shutdown, repo, lifecycle, placement, queues } = fleet;
  const prefix = config.redisPrefix;
  const subscriber = createRedis(redisTarget, 'subscriber');
  const endSignals = await createEndSignals({
    redis: fleet.redis,
    subscriber,
    prefix,
    hasEnded: async (botId) => {
      const bot = await repo.findById(botId);
      return !bot || isTerminal(bot.status);
    },
  });
  shutdown.add('end-signals', () => endSignals.close());

  const platformRedis = createRedis(redisTarget, 'worker', 'platforms');
  shutdown.add('platform-redis', () => platformRedis.quit());
  const platforms = createPlatforms(
    { config, fleetId: fleet.fleetId, redis: platformRedis, prefix, mongo: fleet.mongo },
    config.workerPlatforms,
  );
  // A deploy slot lapses after a crash as soon as a held occupy job is adopted: within the worker lock's duration.
  const slots = createDeploySlots(
    fleet.redis,
    prefix,
    config.deploymentQueueMaxConcurrent,
    config.workerLockDurationMs,
  );

  const workers: Worker[] = [];
  const schedulers: Array<() => Promise<unknown>> = [];
  const deps: WorkerDeps = {
    queues,
    placement,
    lifecycle,
    log: logger,
    dispatchTickMs: DISPATCH_TICK_MS,
    lockDurationMs: config.workerLockDurationMs,
    occupyContext: {
      repo,
      lifecycle,
      placement,
      slots,
      endSignals,
      botEnv: (bot) => botEnv(config, String(bot._id), bot.number),
    },
    countRun: async (name) => {
      await fleet.redis.incr(`${prefix}:sweeps:${name}:runs`);
    },
    async keepScheduled(upsert) {
      schedulers.push(upsert);
      await upsert();
    },
    makeWorker(name, processor, options) {
      const worker = new Worker(name, processor, {
        connection: redisOptions(redisTarget, 'worker', `worker:${name}`),
        prefix,
        ...options,
      });
      worker.on('error', (error) => logger.warn('worker error', { queue: name, error: String(error) }));
      workers.push(worker);
      return worker;
    },
  };
  await startDispatchWorker(deps);
  startScheduleWorker(deps);
  await startSweepsWorker(
    deps,
    {
      liveState: fleet.liveState,
      repo,
      lifecycle,
      outbox: fleet.outbox,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      deployTimeoutMs: config.deployTimeoutMs,
    },
    config.sweepIntervalMs,
  );
  startWebhookWorker(
    deps,
    {
      outbox: fleet.outbox,
      redis: fleet.redis,
      prefix,
      secret: config.webhooks.secret,
      ratePerSecond: config.webhooks.ratePerSecond,
      maxAgeMs: config.webhooks.retryMaxAgeMs,
      checkDestination: createDestinationCheck(config.webhooks),
      recordEvent: lifecycle.event,
    },
    config.webhooks.retryBaseMs,
  );
  for (const settings of config.platforms) {
    const platform = platforms.get(settings.name);
    if (!platform) continue;
    startPlatformWorker(deps, settings, platform);
    await startReconcileWorker(deps, settings, platform, config.sweepIntervalMs);
  }
  shutdown.add('workers', () => Promise.all(workers.map((worker) => worker.close())));
  logger.info('workers started', { platforms: [...platforms.keys()] });

  const recovery = createRecovery({
    redis: fleet.redis,
    prefix,
    repo,
    globalQueue: fleet.globalQueue,
    liveState: fleet.liveState,
    queues,
    placement,
    leaveGraceMs: config.leaveGraceMs,
    restoreQueues: async () => {
      await queues.applyLimits();
      for (const upsert of schedulers) await upsert();
    },
    log: logger,
  });
  shutdown.add('recovery', runRecoveryEvery(recovery, config.sweepIntervalMs, logger));
}
