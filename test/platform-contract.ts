import { botIdOfDeployment, DeploySpec, Platform } from '../src/platforms/platform';
import { waitFor } from './support/fleet';

/**
 * The battery every platform adapter passes. `setup` gives a fresh adapter and a way to make
 * a deploy spec for a new bot that the fleet knows (its container talks to a real API).
 */
export interface ContractSubject {
  platform: Platform;
  newSpec(): Promise<DeploySpec>;
  /** How many containers the platform itself says exist for `name` (0 or 1 unless it double-deployed). */
  containersNamed(name: string): Promise<number>;
  /** An adapter of the same kind on the same host, namespace or account, configured for another fleet. */
  otherFleet: Platform;
}

export function runPlatformContract(label: string, setup: () => ContractSubject | Promise<ContractSubject>) {
  describe(`${label} platform contract`, () => {
    let subject: ContractSubject;
    beforeAll(async () => {
      subject = await setup();
    });

    it('deploys, reports running, stops, and reports gone', async () => {
      const spec = await subject.newSpec();
      const deployment = await subject.platform.deploy(spec);
      expect(deployment.identifier).toBeTruthy();
      await waitFor(async () => (await subject.platform.status(deployment.identifier)).state === 'running', 'running');
      await subject.platform.stop(deployment.identifier);
      expect((await subject.platform.status(deployment.identifier)).state).toBe('gone');
      expect(await subject.containersNamed(spec.name)).toBe(0);
    });

    it('deploy is idempotent per name: a second call returns the same container', async () => {
      const spec = await subject.newSpec();
      const first = await subject.platform.deploy(spec);
      const second = await subject.platform.deploy(spec);
      expect(second.identifier).toBe(first.identifier);
      expect(await subject.containersNamed(spec.name)).toBe(1);
      await subject.platform.stop(first.identifier);
    });

    it('adopt finds a running container by name and never starts one', async () => {
      const spec = await subject.newSpec();
      expect(await subject.platform.adopt(spec.name)).toBeNull();
      expect(await subject.containersNamed(spec.name)).toBe(0);
      const deployment = await subject.platform.deploy(spec);
      expect((await subject.platform.adopt(spec.name))?.identifier).toBe(deployment.identifier);
      await subject.platform.stop(deployment.identifier);
      expect(await subject.platform.adopt(spec.name)).toBeNull();
    });

    it('lists its containers with the bot each one runs', async () => {
      const spec = await subject.newSpec();
      const deployment = await subject.platform.deploy(spec);
      const listed = await subject.platform.list();
      expect(listed).toContainEqual({ identifier: deployment.identifier, botId: spec.botId });
      expect(botIdOfDeployment(spec.name)).toBe(spec.botId);
      await subject.platform.stop(deployment.identifier);
      expect((await subject.platform.list()).map((c) => c.identifier)).not.toContain(deployment.identifier);
    });

    it("sees, adopts and judges only its own fleet's containers", async () => {
      const ours = await subject.newSpec();
      const theirs = await subject.newSpec();
      const mine = await subject.platform.deploy(ours);
      const other = await subject.otherFleet.deploy(theirs);
      const identifiers = async (platform: Platform) => (await platform.list()).map((c) => c.identifier);
      expect(await identifiers(subject.otherFleet)).not.toContain(mine.identifier);
      expect(await identifiers(subject.platform)).not.toContain(other.identifier);
      expect(await identifiers(subject.platform)).toContain(mine.identifier);
      expect(await subject.otherFleet.adopt(ours.name)).toBeNull();
      expect(await subject.platform.adopt(theirs.name)).toBeNull();
      // Neither fleet's stop reaches the other's container.
      await subject.otherFleet.stop(mine.identifier).catch(() => undefined);
      expect((await subject.platform.status(mine.identifier)).state).toBe('running');
      await subject.platform.stop(mine.identifier);
      expect((await subject.otherFleet.status(other.identifier)).state).toBe('running');
      await subject.otherFleet.stop(other.identifier);
      expect(await subject.containersNamed(theirs.name)).toBe(0);
    });

    it('stopping a gone container succeeds', async () => {
      const spec = await subject.newSpec();
      const deployment = await subject.platform.deploy(spec);
      await subject.platform.stop(deployment.identifier);
      await expect(subject.platform.stop(deployment.identifier)).resolves.toBeUndefined();
    });
  });
}
