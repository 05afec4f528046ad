import { existsSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Redis } from 'ioredis';
import { Config, ConfigError, PlatformKind, PlatformSettings } from '../config';
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

const notYet = (kind: string): Factory => () => {
  throw new ConfigError(`PLATFORM_PRIORITY: the ${kind} adapter is not part of this build yet`);
};

const FACTORIES: Record<PlatformKind, Factory> = {
  local: (settings, { config, prefix }) =>
    createLocalPlatform({
      name: settings.name,
      command: config.localBotCommand ?? DEFAULT_LOCAL_BOT_COMMAND,
      runDir: config.localRunDir ?? path.join(os.tmpdir(), `meeboter-${prefix}-local`),
    }),
  sim: (settings, { redis, prefix }) => createSimPlatform({ name: settings.name, redis, prefix }),
  k8s: notYet('k8s'),
  aws: notYet('aws'),
  coolify: notYet('coolify'),
};

export function createPlatforms(deps: PlatformDeps, names?: string[]): Map<string, Platform> {
  const platforms = new Map<string, Platform>();
  for (const settings of deps.config.platforms) {
    if (names && !names.includes(settings.name)) continue;
    platforms.set(settings.name, FACTORIES[settings.kind](settings, deps));
  }
  return platforms;
}
