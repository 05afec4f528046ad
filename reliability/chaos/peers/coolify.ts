import { fleetMarker } from '../../../src/platforms/coolify/fleet-marker';
import { BotClient } from '../../../src/sdk/bot-client';
import { runSimBot } from '../../../src/sdk/sim-bot';
import { botIdOfEnv } from '../../../test/support/bot-id-of-env';
import { COOLIFY_TOKEN, coolifyEnv } from '../../../test/support/coolify';
import { startCoolifyServer } from '../../../test/support/coolify-server';
import { LiveContainer, PeerContext, PlatformPeer } from '../platform-peer';

/**
 * The `coolify` platform's peer in a chaos run: the tests' Coolify API server (in this process), reached by
 * the fleet through the run's network path to it. Each deployment of the fleet's that finishes runs the sim bot
 * with the env the slot's application got, until the application is stopped or crashes.
 *
 * Its truth, asked over its own API: the applications carrying the run's fleet marker whose container runs
 * (status `running:*`) or is being deployed (a deployment queued or in progress), each with the bot of the
 * env it was deployed with.
 */
export async function startCoolifyPeer(ctx: PeerContext): Promise<PlatformPeer> {
  const marker = fleetMarker(ctx.fleetId);
  const ours = (description: string | null) => (description ?? '').split(/\s+/)[0] === marker;
  const server = await startCoolifyServer({
    token: COOLIFY_TOKEN,
    onRunning: (app, env, signal) => {
      if (!env.BOT_ID || !ours(app.description)) return;
      runSimBot(BotClient.fromEnv({ ...env, MILO_URL: ctx.apiUrl }, signal), signal).catch((error) => {
        if (!signal.aborted) ctx.log(`coolify bot player: ${env.BOT_ID} on ${app.uuid}: ${String(error)}`);
      });
    },
  });
  const api = new URL(server.url);
  const address = await ctx.paths.open('coolify', api.host);
  const deploying = (uuid: string) =>
    [...server.deployments.values()].some(
      (deployment) =>
        deployment.application_uuid === uuid && (deployment.status === 'queued' || deployment.status === 'in_progress'),
    );
  /** Every request answers 503 until the fault ends (the server has no other way to be down). */
  const down = { method: undefined, path: /.*/, status: 503 as const, times: Number.POSITIVE_INFINITY };

  return {
    platform: 'coolify',
    limit: ctx.limit,
    fleetEnv: {
      ...coolifyEnv(server),
      COOLIFY_API_URL: `http://${address}${api.pathname}`,
      COOLIFY_BOT_LIMIT: String(ctx.limit),
    },
    async liveContainers() {
      const response = await fetch(`${server.url}/applications`, {
        headers: { authorization: `Bearer ${COOLIFY_TOKEN}`, accept: 'application/json' },
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`the Coolify server answered ${response.status}`);
      const applications = (await response.json()) as Array<{
        uuid: string;
        description: string | null;
        status: string;
      }>;
      const live: LiveContainer[] = [];
      for (const app of applications) {
        if (!ours(app.description) || !(app.status.startsWith('running') || deploying(app.uuid))) continue;
        const env = Object.fromEntries(server.applications.get(app.uuid)?.envs ?? []);
        live.push({ id: app.uuid, botId: botIdOfEnv(env)! });
      }
      return live;
    },
    faults: [
      {
        kind: 'coolify:api-down',
        begin() {
          server.fail(down);
          return Promise.resolve(() => Promise.resolve(server.clearFaults()));
        },
      },
      {
        // Every deployment fails while it lasts: each slot started meanwhile goes to ERROR.
        kind: 'coolify:deployments-fail',
        begin() {
          server.failDeployments = Number.POSITIVE_INFINITY;
          return Promise.resolve(() => Promise.resolve(void (server.failDeployments = 0)));
        },
      },
      {
        // The container of the fleet's longest-running slot dies.
        kind: 'coolify:container-crash',
        begin() {
          const [oldest] = server
            .running()
            .filter((app) => ours(app.description))
            .sort((a, b) => a.updated_at.localeCompare(b.updated_at));
          if (oldest) server.crash(oldest.uuid);
          return Promise.resolve(() => Promise.resolve());
        },
      },
    ],
    close: () => server.close(),
  };
}
