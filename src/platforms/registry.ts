import { existsSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Redis } from 'ioredis';
import { Connection } from 'mongoose';
import { Config, PlatformKind, PlatformSettings } from '../config';
import { createAwsPlatform } from './aws/aws.platform';
import { createCoolifyPlatform } from './coolify/coolify.platform';
import { createSlotStats, createSlotHolderReader as readSlotHolder } from './coolify/slot.records';
import { createImagePullLock } from './k8s/image-pull-lock';
import { createK8sPlatform } from './k8s/k8s.platform';
import { createLocalPlatform } from './local/local.platform';
import { Platform } from './platform';
import { createSimPlatform } from './sim/sim.platform';

/**
 * Builds the enabled platforms from PLATFORM_PRIORITY. The table below is the only place that maps a
 * platform kind to its adapter.
 */
export interface PlatformDeps {
  config: Config;
  /** FLEET_ID or the fleet's kept identity (src/store/fleet-identity.ts), stamped on every container. */
  fleetId: string;
  redis: Redis;
  prefix: string;
  /** For adapters that keep durable records (the Coolify slot pool). */
  mongo: Connection;
}

type Factory = (settings: PlatformSettings, deps: PlatformDeps) => Platform;

/**
 * The compiled sim bot: next to this file when running from dist/, or in dist/ when this file runs from
 * source (the tests).
 */
const simBotScript = [
  path.resolve(__dirname, '../../scripts/sim-bot.js'),
  path.resolve(__dirname, '../../dist/scripts/sim-bot.js'),
].find((candidate) => existsSync(candidate));
export const DEFAULT_LOCAL_BOT_COMMAND = `"${process.execPath}" "${simBotScript ?? 'dist/scripts/sim-bot.js'}"`;

const FACTORIES: Record<PlatformKind, Factory> = {
  local: (settings, { config, fleetId, redis, prefix }) =>
    createLocalPlatform({
      name: settings.name,
      command: config.localBotCommand ?? DEFAULT_LOCAL_BOT_COMMAND,
      // Named after REDIS_PREFIX, as it always was, so a fleet upgraded under running bots finds their pid
      // files; fleets sharing it never act on each other's processes, since each pid file names its fleet.
      runDir: config.localRunDir ?? path.join(os.tmpdir(), `meeboter-${prefix}-local`),
      fleetId,
      hostId: config.localHostId,
      redis,
      prefix,
      // Renewed as often as a deploy slot's lease, by every worker of the host.
      leaseRenewMs: Math.floor(config.workerLockDurationMs / 3),
      hostGoneAfterMs: config.localHostGoneAfterMs,
    }),
  sim: (settings, { config, fleetId, redis }) =>
    createSimPlatform({ name: settings.name, redis, host: config.simHost, fleetId, runner: config.simRunner }),
  k8s: (settings, { config, fleetId, redis, prefix }) =>
    createK8sPlatform({
      name: settings.name,
      settings: config.k8s!,
      fleetId,
      startTimeoutMs: settings.startTimeoutMs,
      pullLock: config.k8s!.imagePullLockEnabled
        ? createImagePullLock({ redis, prefix, waitMs: settings.startTimeoutMs })
        : undefined,
    }),
  aws: (settings, { config, fleetId }) => createAwsPlatform({ name: settings.name, settings: config.aws!, fleetId }),
  coolify: (settings, { config, fleetId, redis, prefix, mongo }) =>
    createCoolifyPlatform({
      name: settings.name,
      settings: config.coolify!,
      limit: settings.limit,
      fleetId,
      redis,
      prefix,
      mongo,
      recoveryIntervalMs: config.slotRecoveryIntervalMs,
    }),
};

export function createPlatforms(deps: PlatformDeps, names?: string[]): Map<string, Platform> {
  const platforms = new Map<string, Platform>();
  for (const settings of deps.config.platforms) {
    if (names && !names.includes(settings.name)) continue;
    platforms.set(settings.name, FACTORIES[settings.kind](settings, deps));
  }
  return platforms;
}

/**
 * Reads the slot pool for GET /api/bots/pool-stats without building an adapter (the API process builds
 * none); null when no pool platform is enabled.
 */
export function createPoolStatsReader(config: Config, mongo: Connection, fleetId: string) {
  return config.coolify ? createSlotStats(mongo, fleetId) : null;
}

/** With coolify enabled: the bot a pool slot holds now, by its uuid. */
export function createSlotHolderReader(config: Config, mongo: Connection, fleetId: string) {
  return config.coolify ? readSlotHolder(mongo, fleetId) : null;
}
