import { Redis } from 'ioredis';
import { Connection } from 'mongoose';
import { CoolifySettings } from '../../config';
import { MeetingPlatform } from '../../domain/bot.lifecycle';
import { logger } from '../../logger';
import { botRepository, ghcrRegistry } from '../bot-image';
import { botIdOfDeployment, ContainerStatus, Deployment, DeploySpec, Platform, PlatformError } from '../platform';
import { CoolifyApplication, CoolifyError, createCoolifyClient, isNotFound } from './coolify.client';
import { fleetMarker, isFleetApplication } from './fleet-marker';
import { createSlotPool, SlotView } from './slot.pool';
import { createSlotRecords, SlotRecord } from './slot.records';
import { recoverSlots } from './slot.recovery';

/**
 * `coolify`: a pool of pre-provisioned Coolify docker-image applications ("slots"), one image per meeting
 * platform. deploy takes the bot's own slot (a retried deploy), else the least recently used idle slot of
 * its meeting platform, else a new one while the pool is under COOLIFY_BOT_LIMIT (else it re-images an idle
 * slot of another meeting platform, else the pool is full); then it writes the bot env, starts a deployment
 * and follows the deployment record until it finished or failed, within COOLIFY_START_TIMEOUT_MS. deploy
 * runs inside the occupy job under a deploy-concurrency lease, never inside an HTTP request. stop stops the
 * application and puts the slot back in the pool.
 *
 * A container identifier is `<deployment name>@<slot>`: slots are reused, so an identifier names one bot
 * attempt's stay on a slot, and a late stop of an old identifier never touches the slot's next bot.
 * Slot names (`mb-slot-<fleet>-…`) and application descriptions (`meeboter-fleet=<fleet> …`) carry the
 * fleet's identity; only this fleet's applications are ever touched.
 */
export interface CoolifyPlatformOptions {
  name: string;
  settings: CoolifySettings;
  limit: number;
  fleetId: string;
  redis: Redis;
  prefix: string;
  mongo: Connection;
  recoveryIntervalMs: number;
  /** How long a claim on a slot's stop lasts unless renewed (STOP_CLAIM_MS; tests shorten it). */
  stopClaimMs?: number;
  /** How long after a start an unchanged `exited` may be Coolify's stale reading (STATUS_LAG_GRACE_MS; tests shorten it). */
  statusLagGraceMs?: number;
  /** How long a stop waits for the application to report exited (STOP_CONFIRM_MS; tests shorten it). */
  stopConfirmMs?: number;
}

/** Stop is asynchronous in Coolify: how long we wait for the application to report exited. */
const STOP_CONFIRM_MS = 120_000;
/** How long a claim on a slot's stop lasts unless renewed: the stopper renews it every third of this. */
const STOP_CLAIM_MS = 30_000;
/** How often a stop that found another one running asks again. */
const STOP_WAIT_MS = 250;

const isUp = (app: CoolifyApplication | undefined) => !!app && !app.status.startsWith('exited');

/**
 * Coolify learns an application's status from periodic server checks, so for a while after a deployment
 * finished the application still reports the `exited` it had before. An `exited` that has not changed since
 * the container started (`updated_at` before `runningSince`, the deployment's finish by Coolify's own clock)
 * is that stale reading, for at most this long; one written after it is a real exit.
 */
const STATUS_LAG_GRACE_MS = 180_000;
const reportsStaleExit = (
  app: CoolifyApplication,
  record: SlotRecord | null | undefined,
  graceMs: number,
  now = Date.now(),
) => {
  const since = record?.runningSince?.getTime();
  if (!app.status.startsWith('exited') || since === undefined || now - since >= graceMs) return false;
  return !app.updated_at || Date.parse(app.updated_at) < since;
};

function parseIdentifier(identifier: string): { name: string; slot: string } | null {
  const at = identifier.lastIndexOf('@');
  return at > 0 ? { name: identifier.slice(0, at), slot: identifier.slice(at + 1) } : null;
}

const jittered = (ms: number) => ms * (0.8 + Math.random() * 0.4);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

export function createCoolifyPlatform(options: CoolifyPlatformOptions): Platform {
  const { settings, fleetId } = options;
  const log = logger.child({ platform: options.name });
  const client = createCoolifyClient({ apiUrl: settings.apiUrl, token: settings.apiToken });
  const records = createSlotRecords(options.mongo, fleetId);
  const pool = createSlotPool({
    redis: options.redis,
    prefix: options.prefix,
    fleetId,
    limit: options.limit,
    meetingPlatforms: settings.meetingPlatforms,
    records: () => records.all(),
  });
  const image = (meetingPlatform: MeetingPlatform) => ({
    docker_registry_image_name: botRepository(ghcrRegistry(settings.ghcrOrg), meetingPlatform),
    docker_registry_image_tag: settings.imageTag,
  });

  /** Creates the slot's application, or finds the one an interrupted earlier call created. */
  const createApplication = async (slot: string, meetingPlatform: MeetingPlatform): Promise<string> => {
    const existing = (await client.listApplications()).find(
      (app) => app.name === slot && isFleetApplication(app, fleetId),
    );
    const uuid =
      existing?.uuid ??
      (
        await client.createDockerImageApplication({
          project_uuid: settings.projectUuid,
          server_uuid: settings.serverUuid,
          environment_name: settings.environmentName,
          destination_uuid: settings.destinationUuid,
          ...image(meetingPlatform),
          name: slot,
          description: `${fleetMarker(fleetId)} meeboter bot slot (${meetingPlatform}); managed by meeboter, do not edit`,
          ports_exposes: '3000', // required by older Coolify servers even for workers
          instant_deploy: false, // a bot is deployed only with its env written
          autogenerate_domain: false,
        })
      ).uuid;
    await records.save(slot, { applicationUuid: uuid });
    return uuid;
  };

  /**
   * Runs `work` (a stop of `holder`'s application on `slot`, and its settle) if this caller may: only one
   * caller at a time may, and none once the holder left the slot, where a stop would reach the slot's next
   * bot. The claim is renewed while `work` runs, so it lapses only if this process dies. A caller that finds
   * another stop running waits for it: false once that one settled the slot; it takes over if it lapses.
   * That wait is bounded: a stop still running after twice the time one may take is an error to retry.
   */
  const claimMs = options.stopClaimMs ?? STOP_CLAIM_MS;
  const graceMs = options.statusLagGraceMs ?? STATUS_LAG_GRACE_MS;
  const confirmMs = options.stopConfirmMs ?? STOP_CONFIRM_MS;
  const underStopClaim = async (slot: string, holder: string, work: () => Promise<void>): Promise<boolean> => {
    const waitDeadline = Date.now() + 2 * Math.max(confirmMs, graceMs);
    for (;;) {
      const claim = await pool.claimStop(slot, holder, claimMs);
      if (claim.outcome === 'not-held') return false;
      if (claim.outcome === 'claimed') {
        const renewal = setInterval(() => {
          pool
            .renewStop(slot, claim.token, claimMs)
            .catch((error) => log.warn('could not renew a stop claim', { slot, error: String(error) }));
        }, claimMs / 3);
        try {
          await work();
        } finally {
          clearInterval(renewal);
        }
        return true;
      }
      if (Date.now() > waitDeadline) {
        throw new PlatformError(
          `another stop of ${holder} on slot ${slot} still runs after ${2 * Math.max(confirmMs, graceMs)} ms`,
          true,
        );
      }
      await sleep(jittered(STOP_WAIT_MS));
    }
  };

  /**
   * Stops an application and waits until Coolify reports it exited; throws when it cannot confirm that. An
   * `exited` Coolify has not updated since the slot's container started (`record`) confirms nothing: the
   * stop is queued in Coolify, and the slot must not go back to the pool before it happened.
   */
  const stopApplication = async (uuid: string, record: SlotRecord | null = null) => {
    await client.stop(uuid);
    // Stopped before Coolify ever saw the container run, the status stays the `exited` it had (Coolify writes
    // a status only when it changes): that confirms the stop only once the lag's grace is over, so the wait
    // lasts at least until a poll after the grace.
    const pollMs = Math.min(settings.pollIntervalMs, 1000);
    const since = record?.runningSince?.getTime() ?? 0;
    const deadline = Math.max(Date.now() + confirmMs, since + graceMs + 2 * pollMs);
    for (;;) {
      const app = await client.getApplication(uuid);
      if (app.status.startsWith('exited') && !reportsStaleExit(app, record, graceMs)) return;
      if (Date.now() > deadline) throw new PlatformError(`application ${uuid} still ${app.status} after stop`, true);
      await sleep(jittered(pollMs));
    }
  };

  /**
   * Follows the deployment that starts a slot until it finished or failed, or the deadline passes. Coolify
   * may answer a deploy with a deployment uuid that does not exist (a deduplicated request): then the
   * application's newest deployment is followed, unless it is the one that started the slot's previous bot.
   */
  const follow = async (uuid: string, deploymentUuid: string | null, stale: string | null, deadline: number) => {
    let current = deploymentUuid;
    for (;;) {
      try {
        let deployment = current
          ? await client.getDeployment(current).catch((error: unknown) => {
              if (isNotFound(error)) return null;
              throw error;
            })
          : null;
        if (!deployment) {
          const latest = await client.latestDeployment(uuid);
          if (latest && latest.deployment_uuid !== stale) deployment = latest;
        }
        if (deployment) current = deployment.deployment_uuid;
        // When it finished, by Coolify's clock: what the application's later status changes are compared with.
        if (deployment?.status === 'finished') return { outcome: 'finished' as const, at: deployment.updated_at };
        if (deployment?.status === 'failed' || deployment?.status === 'cancelled-by-user') {
          return {
            outcome: 'failed' as const,
            reason: `deployment ${deployment.deployment_uuid} ${deployment.status}`,
          };
        }
      } catch (error) {
        if (!(error instanceof CoolifyError && error.transient)) throw error;
        log.warn('reading a deployment failed; still following it', { uuid, error: error.message });
      }
      const left = deadline - Date.now();
      if (left <= 0)
        return { outcome: 'failed' as const, reason: `did not start within ${settings.startTimeoutMs} ms` };
      await sleep(Math.min(left, jittered(settings.pollIntervalMs)));
    }
  };

  /** A start that failed: the slot goes ERROR with the reason and the assignment cleared. */
  const failStart = async (slot: string, spec: DeploySpec, record: SlotRecord | null, reason: string) => {
    const settled = await underStopClaim(slot, spec.name, async () => {
      if (record?.applicationUuid) {
        await stopApplication(record.applicationUuid, record).catch((error) =>
          log.warn('could not stop a slot whose start failed', { slot, error: String(error) }),
        );
      }
      if (await pool.settle(slot, spec.name, 'ERROR')) {
        await records.save(slot, {
          state: 'ERROR',
          deploymentName: null,
          botId: null,
          lastError: reason,
          recoveryAttempts: (record?.recoveryAttempts ?? 0) + 1,
        });
      }
    });
    log.warn(settled ? 'slot failed to start' : 'slot failed to start; another stop already released it', {
      slot,
      botId: spec.botId,
      reason,
    });
  };

  const start = async (spec: DeploySpec, slot: string, kind: string): Promise<Deployment> => {
    const identifier = `${spec.name}@${slot}`;
    let record = await records.get(slot);
    if (kind !== 'existing' || !record) {
      const taken = {
        meetingPlatform: spec.meetingPlatform,
        state: 'STARTING' as const,
        deploymentName: spec.name,
        botId: spec.botId,
        lastUsedAt: new Date(),
        runningSince: null,
        lastError: null,
      };
      const fresh = {
        applicationUuid: null,
        recoveryAttempts: 0,
        createdAt: new Date(),
        deploymentUuid: null,
        deploymentFor: null,
      };
      await records.save(slot, record ? taken : { ...fresh, ...taken });
      record = { _id: slot, fleetId, ...fresh, ...record, ...taken };
    }
    const deadline = (record.lastUsedAt?.getTime() ?? Date.now()) + settings.startTimeoutMs;
    let started = false;
    let finishedAt: string | undefined;
    try {
      let uuid = record.applicationUuid;
      if (!uuid) uuid = await createApplication(slot, spec.meetingPlatform);
      else if (kind === 'reimage') await client.updateApplication(uuid, image(spec.meetingPlatform));
      record.applicationUuid = uuid;
      // deploymentFor says whose start the recorded deployment is: a retried deploy follows its own.
      const resumed = record.deploymentFor === spec.name ? record.deploymentUuid : null;
      let deploymentUuid = resumed;
      if (!resumed) {
        await client.setEnvs(uuid, spec.env);
        deploymentUuid = await client.deploy(uuid);
        await records.save(slot, { deploymentUuid, deploymentFor: spec.name });
      }
      started = true;
      const result = await follow(uuid, deploymentUuid, resumed ? null : record.deploymentUuid, deadline);
      if (result.outcome === 'failed') {
        await failStart(slot, spec, record, result.reason);
        throw new PlatformError(`coolify slot ${slot} failed to start: ${result.reason}`, false);
      }
      finishedAt = result.at;
    } catch (error) {
      if (error instanceof PlatformError && !(error instanceof CoolifyError)) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      if (!started && error instanceof CoolifyError && error.transient) {
        // Nothing ran: the slot goes back to the pool and the fleet retries the deploy (under the stop claim,
        // so a stop of this bot already running is not cut short).
        await underStopClaim(slot, spec.name, async () => {
          if (await pool.settle(slot, spec.name, 'IDLE'))
            await records.save(slot, { state: 'IDLE', deploymentName: null, botId: null });
        });
        throw error;
      }
      await failStart(slot, spec, record, reason);
      throw new PlatformError(`coolify slot ${slot} failed to start: ${reason}`, false);
    }
    if (!(await pool.settle(slot, spec.name, 'BUSY'))) {
      // Another run of this same attempt (a job BullMQ re-ran while it still ran) saw the start through first.
      const view = await pool.view(slot);
      if (view?.state === 'BUSY' && view.holder === spec.name) return { identifier, state: 'running' };
      throw new PlatformError(`coolify slot ${slot} was reclaimed while it started`, false);
    }
    const runningSince = finishedAt && !Number.isNaN(Date.parse(finishedAt)) ? new Date(finishedAt) : new Date();
    await records.save(slot, { state: 'BUSY', runningSince, recoveryAttempts: 0, lastError: null });
    log.info('slot started', { slot, botId: spec.botId, kind });
    return { identifier, state: 'running' };
  };

  const heldView = async (identifier: string): Promise<SlotView | null> => {
    const parsed = parseIdentifier(identifier);
    if (!parsed) return null;
    const view = await pool.view(parsed.slot);
    return view && view.holder === parsed.name ? view : null;
  };

  return {
    name: options.name,
    async deploy(spec) {
      const claim = await pool.acquire(spec.name, spec.meetingPlatform);
      if (!claim) {
        throw new PlatformError(`coolify pool is full: ${options.limit} slots, none idle`, false, true);
      }
      if (claim.kind === 'existing' && (await pool.view(claim.slot))?.state === 'BUSY') {
        return { identifier: `${spec.name}@${claim.slot}`, state: 'running' };
      }
      return start(spec, claim.slot, claim.kind);
    },
    async adopt(name) {
      const slot = await pool.slotOf(name);
      if (!slot) return null;
      const view = await pool.view(slot);
      if (!view || view.holder !== name) return null;
      return { identifier: `${name}@${slot}`, state: view.state === 'BUSY' ? 'running' : 'starting' };
    },
    async status(identifier): Promise<ContainerStatus> {
      const view = await heldView(identifier);
      if (!view) return { state: 'gone' };
      if (view.state !== 'BUSY') return { state: 'starting', detail: `slot ${view.slot} is ${view.state}` };
      const record = await records.get(view.slot);
      const uuid = record?.applicationUuid;
      if (!uuid) return { state: 'gone', detail: `slot ${view.slot} has no application` };
      try {
        const app = await client.getApplication(uuid);
        if (reportsStaleExit(app, record, graceMs))
          return {
            state: 'starting',
            detail: `application still ${app.status}: Coolify has not checked its new container yet`,
          };
        if (app.status.startsWith('exited')) return { state: 'gone', detail: `application ${app.status}` };
        return { state: /^(starting|restarting)/.test(app.status) ? 'starting' : 'running', detail: app.status };
      } catch (error) {
        if (isNotFound(error)) return { state: 'gone', detail: 'application deleted' };
        throw error;
      }
    },
    async list() {
      const held = (await pool.all()).filter(
        (view) => view.holder && (view.state === 'STARTING' || view.state === 'BUSY'),
      );
      if (held.length === 0) return [];
      // One call for every application's status; a failed call throws, it is never read as "none".
      const apps = new Map((await client.listApplications()).map((app) => [app.uuid, app]));
      const bySlot = new Map((await records.all()).map((record) => [record._id, record]));
      const appOf = (slot: string) => apps.get(bySlot.get(slot)?.applicationUuid ?? '');
      return held
        .filter((view) => {
          const app = appOf(view.slot);
          return (
            view.state === 'STARTING' || isUp(app) || (!!app && reportsStaleExit(app, bySlot.get(view.slot), graceMs))
          );
        })
        .map((view) => ({ identifier: `${view.holder}@${view.slot}`, botId: botIdOfDeployment(view.holder!) }));
    },
    async stop(identifier) {
      const view = await heldView(identifier);
      if (!view) return; // gone already, or not this fleet's
      const holder = view.holder!;
      // (false: another stop of this bot released the slot)
      await underStopClaim(view.slot, holder, async () => {
        const record = await records.get(view.slot);
        try {
          if (!record?.applicationUuid) throw new PlatformError('the slot has no application', false);
          await stopApplication(record.applicationUuid, record);
          if (await pool.settle(view.slot, holder, 'IDLE')) {
            await records.save(view.slot, {
              state: 'IDLE',
              deploymentName: null,
              botId: null,
              lastUsedAt: new Date(),
              runningSince: null,
              lastError: null,
            });
          }
        } catch (error) {
          // The bot's end stands whatever happens to its slot: the slot goes ERROR for recovery to deal with.
          const reason = error instanceof Error ? error.message : String(error);
          log.warn('could not stop a slot; it goes ERROR', { slot: view.slot, reason });
          if (await pool.settle(view.slot, holder, 'ERROR')) {
            await records.save(view.slot, {
              state: 'ERROR',
              deploymentName: null,
              botId: null,
              lastError: `stop failed: ${reason}`,
              recoveryAttempts: (record?.recoveryAttempts ?? 0) + 1,
            });
          }
        }
      });
    },
    upkeep: {
      name: 'slot-recovery',
      intervalMs: options.recoveryIntervalMs,
      run: (ctx) =>
        recoverSlots({
          ctx,
          client,
          pool,
          records,
          settings,
          fleetId,
          createApplication,
          stopApplication,
          underStopClaim,
          log,
        }),
    },
    async close() {
      // The client holds no connection of its own (fetch's pool is global); slots keep running.
    },
  };
}
