import { existsSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Redis } from 'ioredis';
import { Config, ConfigError, PlatformKind, PlatformSettings } from '../config';
import { createAwsPlatform } from './aws/aws.platform';
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
  redis: Redis;
  prefix: string;
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

/** null: the kind is known to configuration but its adapter is not part of this build. */
const FACTORIES: Record<PlatformKind, Factory | null> = {
  local: (settings, { config, redis, prefix }) =>
    createLocalPlatform({
      name: settings.name,
      command: config.localBotCommand ?? DEFAULT_LOCAL_BOT_COMMAND,
      runDir: config.localRunDir ?? path.join(os.tmpdir(), `meeboter-${prefix}-local`),
      fleetId: config.fleetId,
      hostId: config.localHostId,
      redis,
      prefix,
    }),
  sim: (settings, { config, redis }) =>
    createSimPlatform({ name: settings.name, redis, host: config.simHost, fleetId: config.fleetId }),
  k8s: (settings, { config, redis, prefix }) =>
    createK8sPlatform({
      name: settings.name,
      settings: config.k8s!,
      fleetId: config.fleetId,
      startTimeoutMs: settings.startTimeoutMs,
      pullLock: config.k8s!.imagePullLockEnabled ? createImagePullLock({ redis, prefix, waitMs: settings.startTimeoutMs }) : undefined,
    }),
  aws: (settings, { config }) => createAwsPlatform({ name: settings.name, settings: config.aws!, fleetId: config.fleetId }),
  coolify: null,
};

/** Stops startup of any role (an API-only process builds no adapter) when an enabled platform is not built. */
export function assertPlatformsBuilt(config: Config): void {
  const missing = config.platforms.find((settings) => !FACTORIES[settings.kind]);
  if (missing) throw new ConfigError(`PLATFORM_PRIORITY: the ${missing.kind} adapter is not part of this build yet`);
}

export function createPlatforms(deps: PlatformDeps, names?: string[]): Map<string, Platform> {
  assertPlatformsBuilt(deps.config);
  const platforms = new Map<string, Platform>();
  for (const settings of deps.config.platforms) {
    if (names && !names.includes(settings.name)) continue;
    platforms.set(settings.name, FACTORIES[settings.kind]!(settings, deps));
  }
  return platforms;
}
