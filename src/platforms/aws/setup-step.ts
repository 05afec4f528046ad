/**
 * Bookkeeping of the infrastructure setup: each piece is looked up first and only created or updated when
 * missing or different; in a dry run nothing is changed and the would-be changes are reported instead.
 * `changes` lists what was (or would be) created or updated, so a second run reports none.
 */
export interface SetupStep {
  /** The id of what `find` finds, or of what `create` makes (undefined in a dry run). */
  ensure(
    what: string,
    find: () => Promise<string | undefined>,
    create: () => Promise<string>,
  ): Promise<string | undefined>;
  update(what: string, apply: () => Promise<unknown>): Promise<void>;
  readonly changes: string[];
}

export function createSetupStep(dryRun: boolean, report: (line: string) => void): SetupStep {
  const changes: string[] = [];
  return {
    changes,
    async ensure(what, find, create) {
      const found = await find();
      if (found) {
        report(`exists   ${what}: ${found}`);
        return found;
      }
      changes.push(`create ${what}`);
      if (dryRun) {
        report(`would create ${what}`);
        return undefined;
      }
      const id = await create();
      report(`created  ${what}: ${id}`);
      return id;
    },
    async update(what, apply) {
      changes.push(`update ${what}`);
      if (dryRun) return report(`would update ${what}`);
      await apply();
      report(`updated  ${what}`);
    },
  };
}
