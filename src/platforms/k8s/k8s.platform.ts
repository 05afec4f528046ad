import {
  BatchV1Api,
  CoreV1Api,
  createConfiguration,
  KubeConfig,
  ServerConfiguration,
  V1Job,
} from '@kubernetes/client-node';
import { KubernetesSettings } from '../../config';
import { ContainerStatus, Deployment, DeploySpec, ListedContainer, Platform, PlatformError } from '../platform';
import { createClusterReader, listAll } from './cluster-reader';
import { buildJob, buildSecret, fleetSelector, imageOf, JOB_NAME_LABEL, jobName, LABELS } from './job-spec';
import { isQuotaRefusal, jobStatus } from './job-status';
import { k8sError, statusCode } from './k8s-errors';
import { ImagePullLock } from './image-pull-lock';

/**
 * `k8s`: one batch/v1 Job per bot attempt, through @kubernetes/client-node. Every Job, pod and Secret carries
 * `meeboter.io/fleet=<fleetId>`, and every list selects on it: a Job of another fleet is never adopted,
 * listed, judged or stopped.
 */
export interface K8sPlatformOptions {
  name: string;
  settings: KubernetesSettings;
  fleetId: string;
  startTimeoutMs: number;
  /** Shared by all processes when K8S_IMAGE_PULL_LOCK_ENABLED; absent when disabled. */
  pullLock?: ImagePullLock;
  /** How long stop() waits for the Job's pods to be gone. */
  stopWaitMs?: number;
  /** How long deploy() waits for the Job controller to create the pod (or be refused). */
  podCreateWaitMs?: number;
  /** How long one API call may take before it is abandoned as a transient failure (30 s by default). */
  requestTimeoutMs?: number;
}

export function kubeConfigOf(settings: KubernetesSettings): KubeConfig {
  const kc = new KubeConfig();
  if (settings.credentials === 'in-cluster') kc.loadFromCluster();
  else if (settings.credentials === 'default') kc.loadFromDefault();
  else kc.loadFromFile(settings.credentials.kubeconfig);
  return kc;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The API clients, each request bounded by `requestTimeoutMs`: the client has no timeout of its own, so a
 * call to an API server that accepted the connection and never answers would hold its occupy job forever.
 */
function apiClients(kc: KubeConfig, requestTimeoutMs: number) {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig names no current cluster');
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: (request) => {
          request.setSignal(AbortSignal.timeout(requestTimeoutMs));
          return Promise.resolve(request);
        },
        post: (response) => Promise.resolve(response),
      },
    ],
  });
  return { batch: new BatchV1Api(configuration), core: new CoreV1Api(configuration) };
}

export function createK8sPlatform(options: K8sPlatformOptions): Platform {
  const { settings, fleetId } = options;
  const namespace = settings.namespace;
  const stopWaitMs = options.stopWaitMs ?? 120_000;
  const podCreateWaitMs = options.podCreateWaitMs ?? 15_000;
  const { batch, core } = apiClients(kubeConfigOf(settings), options.requestTimeoutMs ?? 30_000);
  const reader = createClusterReader(batch, core, namespace, fleetId);

  const call = async <T>(operation: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      throw k8sError(operation, error);
    }
  };
  /** The answer, or undefined for 404. */
  const unlessMissing = async <T>(operation: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw k8sError(operation, error);
    }
  };
  const ours = (job: V1Job | undefined): job is V1Job => job?.metadata?.labels?.[LABELS.fleet] === fleetId;

  const podsOf = (name: string) =>
    call('list pods', () =>
      listAll((cont) =>
        core.listNamespacedPod({
          namespace,
          labelSelector: fleetSelector(fleetId, { [JOB_NAME_LABEL]: name }),
          _continue: cont,
        }),
      ),
    );
  const eventsOf = (name: string) =>
    call('list events', () =>
      core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.kind=Job,involvedObject.name=${name}` }),
    ).then((list) => list.items);

  const statusOf = async (job: V1Job | undefined, name: string): Promise<ContainerStatus> => {
    const pods = job ? await podsOf(name) : [];
    const status = jobStatus(job, pods);
    // Only a Job still without a pod needs its events: did the API server refuse the pod?
    return status.state === 'starting' && !pods.length && !job?.spec?.suspend
      ? jobStatus(job, pods, await eventsOf(name))
      : status;
  };

  const toDeployment = (name: string, status: ContainerStatus): Deployment => ({
    identifier: name,
    state: status.state === 'running' ? 'running' : 'starting',
  });

  /**
   * After the Job is resumed the Job controller creates its pod, or the API server refuses it: a quota
   * refusal means the platform is full now, so the Job is deleted and the bot moves on at once.
   */
  const awaitPod = async (name: string): Promise<ContainerStatus> => {
    const deadline = Date.now() + podCreateWaitMs;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      const job = await unlessMissing('read Job', () => batch.readNamespacedJob({ name, namespace }));
      const pods = job ? await podsOf(name) : [];
      if (!job || pods.length) return jobStatus(job, pods);
      const status = jobStatus(job, pods, await eventsOf(name));
      if (status.detail?.startsWith('FailedCreate: ') && isQuotaRefusal(status.detail)) {
        await remove(name);
        throw new PlatformError(`Job ${name}: ${status.detail}`, false, true);
      }
      if (Date.now() >= deadline) return status;
      await pause(wait);
    }
  };

  const create = async (spec: DeploySpec): Promise<Deployment> => {
    const name = jobName(spec);
    let job: V1Job | undefined;
    try {
      job = await batch.createNamespacedJob({
        namespace,
        body: buildJob(spec, settings, fleetId, options.startTimeoutMs),
      });
    } catch (error) {
      if (statusCode(error) !== 409) throw k8sError('create Job', error);
      // A retry of this attempt: adopt what the first call made.
      job = await unlessMissing('read Job', () => batch.readNamespacedJob({ name, namespace }));
      if (!job) throw new PlatformError(`Job ${name} exists and vanished while read: try again`, true);
      if (!ours(job))
        throw new PlatformError(`Job ${name} exists but does not carry ${LABELS.fleet}=${fleetId}`, false);
    }
    if (job.spec?.suspend) {
      try {
        await core.createNamespacedSecret({ namespace, body: buildSecret(job, spec) });
      } catch (error) {
        if (statusCode(error) !== 409) throw k8sError('create Secret', error);
      }
      await call('resume Job', () =>
        batch.patchNamespacedJob({ name, namespace, body: [{ op: 'replace', path: '/spec/suspend', value: false }] }),
      );
    }
    return toDeployment(name, await awaitPod(name));
  };

  async function remove(name: string): Promise<void> {
    // Background: the Job goes at once and the garbage collector deletes its pods and Secret.
    await unlessMissing('delete Job', () =>
      batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }),
    );
  }

  const adopt = async (name: string): Promise<Deployment | null> => {
    const jobs = await call('list Jobs', () =>
      listAll((cont) =>
        batch.listNamespacedJob({
          namespace,
          labelSelector: fleetSelector(fleetId, { [LABELS.deployment]: name }),
          _continue: cont,
        }),
      ),
    );
    jobs.sort((a, b) => Number(b.metadata?.labels?.[LABELS.attempt]) - Number(a.metadata?.labels?.[LABELS.attempt]));
    for (const job of jobs) {
      const status = await statusOf(job, job.metadata!.name!);
      if (status.state !== 'gone') return toDeployment(job.metadata!.name!, status);
    }
    return null;
  };

  /** From the shared snapshot; events only for a Job that has no pod yet (was its pod refused?). */
  const status = async (identifier: string): Promise<ContainerStatus> => {
    const snapshot = await reader.read();
    const job = snapshot.jobs.get(identifier);
    const pods = snapshot.pods.get(identifier) ?? [];
    const current = jobStatus(job, pods);
    if (current.state === 'starting' && !pods.length && job && !job.spec?.suspend)
      return jobStatus(job, pods, await eventsOf(identifier));
    return current;
  };

  return {
    name: options.name,
    adopt,
    async deploy(spec, context) {
      if (!options.pullLock) return create(spec);
      return options.pullLock.deploy(
        imageOf(settings, spec.meetingPlatform),
        () => create(spec),
        status,
        context?.outsideDeploySlot,
      );
    },
    status,
    async list(): Promise<ListedContainer[]> {
      const snapshot = await reader.read();
      const listed: ListedContainer[] = [];
      for (const [name, job] of snapshot.jobs) {
        if (jobStatus(job, snapshot.pods.get(name) ?? []).state === 'gone') continue;
        listed.push({ identifier: name, botId: job.metadata?.labels?.[LABELS.bot] ?? null });
      }
      return listed;
    },
    async stop(identifier) {
      const job = await unlessMissing('read Job', () => batch.readNamespacedJob({ name: identifier, namespace }));
      if (job) {
        // Loudly, not silently: a stop that quietly did nothing would free capacity while the Job runs.
        if (!ours(job))
          throw new PlatformError(`Job ${identifier} does not carry ${LABELS.fleet}=${fleetId}: not stopped`, false);
        await remove(identifier);
      }
      // Stop means gone: wait until the API server lists none of its pods.
      const deadline = Date.now() + stopWaitMs;
      for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
        const pods = await podsOf(identifier);
        if (!pods.length) return;
        if (Date.now() >= deadline) {
          throw new PlatformError(
            `Job ${identifier}: ${pods.length} pod(s) still there ${stopWaitMs} ms after its deletion`,
            true,
          );
        }
        await pause(wait);
      }
    },
    async close() {
      await options.pullLock?.close();
    },
  };
}
