import { Task } from '@aws-sdk/client-ecs';

/**
 * Batches DescribeTasks: every read asked for in the same turn of the event loop goes out together, up to
 * 100 task ARNs a call (the API's maximum), so status() of many held bots and list() cost one call per 100.
 */
export interface TaskReader {
  /** The task, or undefined when ECS does not know it. */
  read(arn: string): Promise<Task | undefined>;
  readMany(arns: string[]): Promise<Array<Task | undefined>>;
}

/** One DescribeTasks call: the tasks ECS knows among `arns` (unknown ones are left out). */
export type DescribeBatch = (arns: string[]) => Promise<Task[]>;

const DESCRIBE_BATCH = 100;

export function createTaskReader(describe: DescribeBatch): TaskReader {
  let pending = new Map<string, Array<{ resolve(task: Task | undefined): void; reject(error: unknown): void }>>();
  let scheduled = false;

  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = new Map();
    const arns = [...batch.keys()];
    for (let i = 0; i < arns.length; i += DESCRIBE_BATCH) {
      const chunk = arns.slice(i, i + DESCRIBE_BATCH);
      describe(chunk).then(
        (tasks) => {
          const byArn = new Map(tasks.map((task) => [task.taskArn, task]));
          for (const arn of chunk) for (const waiter of batch.get(arn)!) waiter.resolve(byArn.get(arn));
        },
        (error) => {
          for (const arn of chunk) for (const waiter of batch.get(arn)!) waiter.reject(error);
        },
      );
    }
  };

  const read = (arn: string) =>
    new Promise<Task | undefined>((resolve, reject) => {
      if (!pending.has(arn)) pending.set(arn, []);
      pending.get(arn)!.push({ resolve, reject });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });

  return { read, readMany: (arns) => Promise.all(arns.map(read)) };
}
