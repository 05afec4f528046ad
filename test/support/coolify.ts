import { CoolifySettings } from '../../src/config';
import { BotClient } from '../../src/sdk/bot-client';
import { runSimBot } from '../../src/sdk/sim-bot';
import { STANDIN_TIMING } from './bot-player';
import { CoolifyServer, startCoolifyServer } from './coolify-server';
import { startTestFleet, TestFleet } from './fleet';
import { spawnUpstreamBot } from './upstream-bot';

/** Shared set-up of the Coolify tests: the test server, and the env or settings that point a fleet at it. */
export const COOLIFY_TOKEN = 'coolify-test-token-0123456789';

/**
 * A Coolify test server whose started applications run the sim bot (or, with `upstream`, the stand-in
 * upstream bot image) with the env the slot received, as a bot image would (it ends when the application is
 * stopped).
 */
export function startCoolifyWithBots(protocol: 'sdk' | 'upstream' = 'sdk'): Promise<CoolifyServer> {
  return startCoolifyServer({
    token: COOLIFY_TOKEN,
    onRunning: (_app, env, signal) => {
      if (!env.BOT_ID) return;
      if (protocol === 'upstream') void spawnUpstreamBot(env, { ...STANDIN_TIMING, inCallMs: 1500, signal });
      else void runSimBot(BotClient.fromEnv(env, signal), signal).catch(() => undefined);
    },
  });
}

/**
 * A fleet (API and workers in this process) on a fresh Coolify test server whose slots run the sim bot, with
 * zoom slots, up to 3 of them, recovered every second; `env` adds PLATFORM_PRIORITY and anything else.
 */
export async function startCoolifyFleet(
  env: Record<string, string>,
): Promise<{ coolify: CoolifyServer; t: TestFleet }> {
  const coolify = await startCoolifyWithBots();
  const t = await startTestFleet({
    COOLIFY_BOT_LIMIT: '3',
    ...coolifyEnv(coolify, { COOLIFY_MEETING_PLATFORMS: 'zoom', COOLIFY_SLOT_MAX_FAILURES: '5' }),
    SLOT_RECOVERY_INTERVAL_MS: '1000',
    // The bots run in this jest process: a pause of it must not look like a silent bot.
    HEARTBEAT_TIMEOUT_MS: '10000',
    ...env,
  });
  return { coolify, t };
}

export function coolifyEnv(server: CoolifyServer, extra: Record<string, string> = {}): Record<string, string> {
  return {
    COOLIFY_API_URL: server.url,
    COOLIFY_API_TOKEN: COOLIFY_TOKEN,
    COOLIFY_PROJECT_UUID: 'project-uuid',
    COOLIFY_SERVER_UUID: 'server-uuid',
    COOLIFY_DESTINATION_UUID: 'destination-uuid',
    COOLIFY_ENVIRONMENT_NAME: 'production',
    COOLIFY_POLL_INTERVAL_MS: '50',
    GHCR_ORG: 'Payme-Works',
    ...extra,
  };
}

export function coolifySettings(server: CoolifyServer, extra: Partial<CoolifySettings> = {}): CoolifySettings {
  return {
    apiUrl: server.url,
    apiToken: COOLIFY_TOKEN,
    projectUuid: 'project-uuid',
    serverUuid: 'server-uuid',
    environmentName: 'production',
    destinationUuid: 'destination-uuid',
    ghcrOrg: 'Payme-Works',
    imageTag: 'latest',
    meetingPlatforms: ['google-meet', 'zoom'],
    minIdleSlots: 0,
    startTimeoutMs: 60_000,
    pollIntervalMs: 50,
    maxSlotFailures: 2,
    ...extra,
  };
}

/** The meeting platform a slot application's image is for. */
export const imageOf = (server: CoolifyServer, appUuid: string) =>
  /meeboter-(.+)-bot$/.exec(String(server.applications.get(appUuid)?.fields.docker_registry_image_name))?.[1];
