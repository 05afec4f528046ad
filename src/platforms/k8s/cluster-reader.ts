import { BatchV1Api, CoreV1Api, V1Job, V1Pod } from '@kubernetes/client-node';
import { fleetSelector, JOB_NAME_LABEL } from './job-spec';
import { k8sError } from './k8s-errors';

/**
 * This fleet's Jobs and their pods, read with two label-selected lists (every page of each), shared by every
 * read asked for in the same turn of the event loop: status() of all held bots and list() cost two list
 * calls per page, never one GET per bot.
 */
export interface ClusterSnapshot {
  jobs: Map<string, V1Job>;
  /** Job name → its pods. */
  pods: Map<string, V1Pod[]>;
}

const PAGE = 500;

export async function listAll<T>(
  page: (cont: string | undefined) => Promise<{ items: T[]; metadata?: { _continue?: string } }>,
): Promise<T[]> {
  const items: T[] = [];
  let cont: string | undefined;
  do {
    const answer = await page(cont);
    items.push(...answer.items);
    cont = answer.metadata?._continue || undefined;
  } while (cont);
  return items;
}

export function createClusterReader(batch: BatchV1Api, core: CoreV1Api, namespace: string, fleetId: string) {
  let pending: Promise<ClusterSnapshot> | null = null;
  const labelSelector = fleetSelector(fleetId);

  const fetch = async (): Promise<ClusterSnapshot> => {
    const [jobs, pods] = await Promise.all([
      listAll((cont) => batch.listNamespacedJob({ namespace, labelSelector, limit: PAGE, _continue: cont })).catch(
        (error) => {
          throw k8sError('list Jobs', error);
        },
      ),
      listAll((cont) => core.listNamespacedPod({ namespace, labelSelector, limit: PAGE, _continue: cont })).catch(
        (error) => {
          throw k8sError('list pods', error);
        },
      ),
    ]);
    const byJob = new Map<string, V1Pod[]>();
    for (const pod of pods) {
      const job = pod.metadata?.labels?.[JOB_NAME_LABEL];
      if (!job) continue;
      if (!byJob.has(job)) byJob.set(job, []);
      byJob.get(job)!.push(pod);
    }
    return { jobs: new Map(jobs.map((job) => [job.metadata!.name!, job])), pods: byJob };
  };

  return {
    read(): Promise<ClusterSnapshot> {
      if (!pending) {
        pending = new Promise((resolve) => setImmediate(resolve)).then(() => {
          pending = null;
          return fetch();
        });
      }
      return pending;
    },
  };
}
