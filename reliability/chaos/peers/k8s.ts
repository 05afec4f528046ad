import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { V1Pod } from '@kubernetes/client-node';
import { fleetSelector, LABELS } from '../../../src/platforms/k8s/job-spec';
import { botIdOfEnv } from '../../../test/support/bot-id-of-env';
import { startBotPlayer } from '../../../test/support/bot-player';
import { startK8sPeer as startCluster, NAMESPACE } from '../../../test/support/k8s';
import { OUTCOME_LABEL } from '../../../test/support/kwok-stages';
import { LiveContainer, PeerContext, PlatformPeer } from '../platform-peer';

/**
 * The `k8s` platform's peer in a chaos run: the tests' control plane (kube-apiserver on etcd, the real
 * controllers, kwok faking a node), reached by the fleet through the run's network path to kube-apiserver.
 * kwok runs no container, so every Running pod of the fleet is played as the sim bot with the env it got.
 *
 * Its truth: the fleet's pods (label `meeboter.io/fleet`) that have not finished (Pending, Running, or
 * terminating until kwok removes them), read with the admin's credentials straight from kube-apiserver.
 */
export async function startK8sPeer(ctx: PeerContext): Promise<PlatformPeer> {
  const cluster = await startCluster();
  try {
    const apiServer = new URL(cluster.plane.server).host;
    const address = await ctx.paths.open('k8s', apiServer);
    // The ServiceAccount's kubeconfig, its server the path's end (the certificate names 127.0.0.1).
    const kubeconfig = path.join(ctx.dir, 'k8s-fleet.kubeconfig');
    writeFileSync(
      kubeconfig,
      readFileSync(cluster.serviceAccountKubeconfig, 'utf8').replace(
        `server: ${cluster.plane.server}`,
        `server: https://${address}`,
      ),
    );
    const selector = fleetSelector(ctx.fleetId);
    /** Each pod's env, read once (its token comes from the pod's Secret). */
    const envs = new Map<string, Record<string, string>>();
    const envOf = async (pod: V1Pod) => {
      const name = pod.metadata!.name!;
      if (!envs.has(name)) envs.set(name, await cluster.podEnv(pod));
      return envs.get(name)!;
    };
    const unfinished = async () =>
      (await cluster.pods(selector)).filter((pod) => !['Succeeded', 'Failed'].includes(pod.status?.phase ?? ''));

    const player = startBotPlayer(
      async (_played, play) => {
        const pods = await unfinished();
        const names = new Set(pods.map((pod) => pod.metadata!.name!));
        for (const name of envs.keys()) if (!names.has(name)) envs.delete(name); // finished: never asked again
        for (const pod of pods)
          if (pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp)
            play(pod.metadata!.name!, { ...(await envOf(pod)), MILO_URL: ctx.apiUrl });
        return pods.length;
      },
      { protocol: 'sim', intervalMs: 200, onError: (line) => ctx.log(`k8s bot player: ${line}`) },
    );

    return {
      platform: 'k8s',
      limit: ctx.limit,
      fleetEnv: { ...cluster.env, K8S_KUBECONFIG: kubeconfig, K8S_BOT_LIMIT: String(ctx.limit) },
      async liveContainers() {
        const live: LiveContainer[] = [];
        for (const pod of await unfinished()) {
          // A terminating pod's Secret may already be gone with its Job: then its bot label names the bot.
          const env = await envOf(pod).catch(() => ({ BOT_ID: pod.metadata!.labels![LABELS.bot] }));
          live.push({ id: pod.metadata!.name!, botId: botIdOfEnv(env)! });
        }
        return live;
      },
      faults: [
        {
          kind: 'k8s:apiserver-down',
          begin: () => cluster.plane.killApiServer(),
        },
        {
          // The oldest running bot's container fails (exit 1), as a crashing bot image's would.
          kind: 'k8s:pod-crash',
          async begin() {
            const running = (await unfinished())
              .filter((pod) => pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp)
              .sort((a, b) => startedAt(a) - startedAt(b));
            if (running[0])
              cluster.plane.kubectl([
                '-n',
                NAMESPACE,
                'label',
                'pod',
                running[0].metadata!.name!,
                `${OUTCOME_LABEL}=fail`,
              ]);
            return () => Promise.resolve();
          },
        },
      ],
      async close() {
        await player.stop();
        await cluster.close();
      },
    };
  } catch (error) {
    await cluster.close();
    throw error;
  }
}

const startedAt = (pod: V1Pod) => new Date(pod.status?.startTime ?? 0).getTime();
