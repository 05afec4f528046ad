import { existsSync } from 'node:fs';
import path from 'node:path';
import { BatchV1Api, CoreV1Api, KubeConfig, V1Pod } from '@kubernetes/client-node';
import { BotPlayer, PlayerOptions, startBotPlayer } from './bot-player';
import { ControlPlane, startControlPlane } from './k8s-control-plane';

/**
 * The k8s platform's test peer: a control plane (k8s-control-plane.ts) with deploy/k8s/ applied by kubectl,
 * the fleet given the `meeboter` ServiceAccount's token (so the Role shipped is the Role tested), and admin
 * clients for tests that look at what really exists.
 */
export const NAMESPACE = 'meeboter';
/** In the repository root, seen from test/support/ (jest) or dist/test/support/ (compiled: the chaos run). */
const DEPLOY_DIR = ['../../deploy/k8s', '../../../deploy/k8s']
  .map((candidate) => path.resolve(__dirname, candidate))
  .find((candidate) => existsSync(candidate))!;

export interface K8sPeer {
  plane: ControlPlane;
  /** The fleet's K8S_* variables (the ServiceAccount's kubeconfig). */
  env: Record<string, string>;
  serviceAccountKubeconfig: string;
  batch: BatchV1Api;
  core: CoreV1Api;
  /** Pods of the namespace (admin), optionally label-selected. */
  pods(labelSelector?: string): Promise<V1Pod[]>;
  /** The env a pod's container gets, with secretKeyRef values read from their Secret (admin). */
  podEnv(pod: V1Pod): Promise<Record<string, string>>;
  close(): Promise<void>;
}

export async function startK8sPeer(): Promise<K8sPeer> {
  const plane = await startControlPlane();
  try {
    plane.kubectl(['apply', '-f', path.join(DEPLOY_DIR, 'namespace.yaml'), '-f', path.join(DEPLOY_DIR, 'rbac.yaml')]);
    plane.kubectl([
      '-n',
      NAMESPACE,
      'create',
      'secret',
      'docker-registry',
      'ghcr-secret',
      '--docker-server=registry.test',
      '--docker-username=test',
      '--docker-password=test',
    ]);
    const token = plane.kubectl(['-n', NAMESPACE, 'create', 'token', 'meeboter', '--duration=24h']).trim();
    const serviceAccountKubeconfig = plane.tokenKubeconfig('meeboter-sa', token);
    const kc = new KubeConfig();
    kc.loadFromFile(plane.adminKubeconfig);
    const batch = kc.makeApiClient(BatchV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    // Pods can only be made once the controller-manager created the namespace's default ServiceAccount.
    const deadline = Date.now() + 120_000;
    while (!(await core.readNamespacedServiceAccount({ name: 'default', namespace: NAMESPACE }).catch(() => null))) {
      if (Date.now() > deadline) throw new Error('the default ServiceAccount did not appear');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return {
      plane,
      env: {
        K8S_KUBECONFIG: serviceAccountKubeconfig,
        K8S_NAMESPACE: NAMESPACE,
        K8S_IMAGE_REGISTRY: 'registry.test/meeboter',
      },
      serviceAccountKubeconfig,
      batch,
      core,
      pods: async (labelSelector) => (await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector })).items,
      async podEnv(pod) {
        const env: Record<string, string> = {};
        for (const entry of pod.spec!.containers[0].env ?? []) {
          const ref = entry.valueFrom?.secretKeyRef;
          if (!ref) env[entry.name] = entry.value ?? '';
          else {
            const secret = await core.readNamespacedSecret({ name: ref.name!, namespace: NAMESPACE });
            env[entry.name] = Buffer.from(secret.data![ref.key], 'base64').toString('utf8');
          }
        }
        return env;
      },
      close: () => plane.stop(),
    };
  } catch (error) {
    await plane.stop();
    throw error;
  }
}

/**
 * Plays the bots of the namespace's pods (bot-player.ts): each sample counts the Jobs that have a pod that has
 * not finished, and a new Running pod is played with the env it received (Secret included).
 */
export function playBots(peer: K8sPeer, options: PlayerOptions = {}): BotPlayer {
  return startBotPlayer(async (played, play) => {
    const pods = await peer.pods('app=meeboter-bot');
    const live = pods.filter((pod) => !['Succeeded', 'Failed'].includes(pod.status?.phase ?? ''));
    for (const pod of live) {
      const name = pod.metadata!.name!;
      if (pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp && !played.has(name))
        play(name, await peer.podEnv(pod));
    }
    return new Set(live.map((pod) => pod.metadata!.labels!['batch.kubernetes.io/job-name'])).size;
  }, options);
}
