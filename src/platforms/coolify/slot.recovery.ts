import { CoolifySettings } from '../../config';
import { MeetingPlatform } from '../../domain/bot.lifecycle';
import { Logger } from '../../logger';
import { botIdOfDeployment, UpkeepContext } from '../platform';
import { CoolifyClient, isNotFound } from './coolify.client';
import { isFleetApplication } from './fleet-marker';
import { SlotPool } from './slot.pool';
import { SlotRecord, SlotRecords } from './slot.records';

/**
 * Slot recovery, one pass every SLOT_RECOVERY_INTERVAL_MS across all processes (the platform's upkeep job):
 * 1. reloads Redis from the slot records if it lost them;
 * 2. reads Coolify's application list once. A failed or throttled call (after the client's retries) or an
 *    answer that is not a list throws here, before anything is judged: it is never read as "no applications";
 * 3. repairs drift: this fleet's applications no slot record names are deleted (records are written before
 *    their application is created, so this never races a creation); an idle or failed slot whose
 *    application was deleted outside meeboter gets a new one;
 * 4. ERROR slots are stopped and put back in the pool, or, after COOLIFY_SLOT_MAX_FAILURES failed starts or
 *    stops in a row, deleted (and replaced by step 6);
 * 5. STARTING slots whose start deadline passed and BUSY slots whose bot is no longer live on the platform
 *    are stopped and put back in the pool;
 * 6. the minimum of idle slots per meeting platform is restored, within COOLIFY_BOT_LIMIT.
 */
export interface SlotRecoveryDeps {
  ctx: UpkeepContext;
  client: CoolifyClient;
  pool: SlotPool;
  records: SlotRecords;
  settings: CoolifySettings;
  fleetId: string;
  createApplication(slot: string, meetingPlatform: MeetingPlatform): Promise<string>;
  stopApplication(uuid: string, record?: SlotRecord | null): Promise<void>;
  /** Runs a stop of a held slot's application if no other stop of that holder runs or ran; false if not. */
  underStopClaim(slot: string, holder: string, work: () => Promise<void>): Promise<boolean>;
  log: Logger;
}

export async function recoverSlots(deps: SlotRecoveryDeps): Promise<Record<string, number>> {
  const { client, pool, records, settings, log } = deps;
  const result = { rebuilt: 0, orphansDeleted: 0, healed: 0, replaced: 0, released: 0, created: 0, failed: 0 };
  if (await pool.ensureBuilt()) result.rebuilt = 1;
  const apps = (await client.listApplications()).filter((app) => isFleetApplication(app, deps.fleetId));
  const present = new Set(apps.map((app) => app.uuid));
  const byId = new Map((await records.all()).map((record) => [record._id, record]));
  const now = Date.now();

  const removeSlot = async (slot: string, uuid: string | null) => {
    if (!(await pool.forget(slot))) return false;
    if (uuid) {
      await client.deleteApplication(uuid).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
    }
    await records.remove(slot);
    return true;
  };
  /** Puts an unheld slot back in the pool with a live, stopped application. */
  const heal = async (slot: string, meetingPlatform: MeetingPlatform, uuid: string | null) => {
    if (uuid && present.has(uuid)) await deps.stopApplication(uuid);
    else {
      await records.save(slot, { applicationUuid: null });
      await deps.createApplication(slot, meetingPlatform);
    }
    if (await pool.settle(slot, null, 'IDLE'))
      await records.save(slot, { state: 'IDLE', deploymentName: null, botId: null });
  };
  const attempt = async (slot: string, what: string, step: () => Promise<unknown>) => {
    try {
      await step();
      return true;
    } catch (error) {
      result.failed++;
      log.warn(`slot recovery could not ${what}`, { slot, error: String(error) });
      return false;
    }
  };

  for (const app of apps) {
    const named = [...byId.values()].some(
      (r) => r.applicationUuid === app.uuid || (!r.applicationUuid && r._id === app.name),
    );
    if (named) continue;
    if (await attempt(app.name, 'delete an orphaned application', () => client.deleteApplication(app.uuid)))
      result.orphansDeleted++;
  }

  const views = await pool.all();
  const inRedis = new Set(views.map((view) => view.slot));
  for (const record of byId.values()) {
    // A slot whose removal stopped half-way: forgotten by Redis, still recorded.
    if (!inRedis.has(record._id))
      await attempt(record._id, 'finish removing a slot', () => removeSlot(record._id, record.applicationUuid));
  }

  for (const view of views) {
    const record = byId.get(view.slot);
    if (!record) {
      if (!view.holder) await pool.forget(view.slot); // reserved, then its record was never written
      continue;
    }
    const uuid = record.applicationUuid;
    if (view.state === 'ERROR' && record.recoveryAttempts >= settings.maxSlotFailures) {
      if (await attempt(view.slot, 'replace a failing slot', () => removeSlot(view.slot, uuid))) {
        result.replaced++;
        log.warn('slot deleted after repeated failures', {
          slot: view.slot,
          lastError: record.lastError,
          failures: record.recoveryAttempts,
        });
      }
      continue;
    }
    const missing = !uuid || !present.has(uuid);
    const unheldStart =
      view.state === 'STARTING' && !view.holder && now - record.createdAt.getTime() > settings.startTimeoutMs;
    if (view.state === 'ERROR' || (view.state === 'IDLE' && missing) || unheldStart) {
      // An idle slot leaves the idle set (ERROR) before its application is replaced, so no bot takes it meanwhile.
      if (view.state === 'IDLE' && !(await pool.settle(view.slot, null, 'ERROR'))) continue;
      if (await attempt(view.slot, 'heal a slot', () => heal(view.slot, view.meetingPlatform, uuid))) result.healed++;
      else await records.save(view.slot, { recoveryAttempts: record.recoveryAttempts + 1 });
      continue;
    }
    if (!view.holder || (view.state !== 'BUSY' && view.state !== 'STARTING')) continue;
    // A start in progress is bounded by its own deadline; after it, whoever held the slot gave up on it.
    const startOver = view.state === 'BUSY' || now - (record.lastUsedAt?.getTime() ?? 0) > settings.startTimeoutMs;
    const botId = botIdOfDeployment(view.holder);
    if (!startOver || (botId && (await deps.ctx.holdsBot(botId)))) continue;
    const holder = view.holder;
    let released = false;
    const release = async () => {
      try {
        if (uuid && present.has(uuid)) await deps.stopApplication(uuid, record);
      } catch (error) {
        // As a bot's own failed stop does: the slot goes ERROR, and a later pass heals it.
        if (await pool.settle(view.slot, holder, 'ERROR')) {
          await records.save(view.slot, {
            state: 'ERROR',
            deploymentName: null,
            botId: null,
            lastError: `stop failed: ${String(error)}`,
            recoveryAttempts: record.recoveryAttempts + 1,
          });
        }
        throw error;
      }
      if (await pool.settle(view.slot, holder, 'IDLE')) {
        await records.save(view.slot, {
          state: 'IDLE',
          deploymentName: null,
          botId: null,
          lastUsedAt: new Date(),
          runningSince: null,
        });
        released = true;
      }
    };
    // (its bot's own stop may have released it meanwhile: then nothing is done)
    await attempt(view.slot, 'release a slot whose bot is gone', () => deps.underStopClaim(view.slot, holder, release));
    if (released) result.released++;
  }

  for (const meetingPlatform of settings.meetingPlatforms) {
    while ((await pool.idleCount(meetingPlatform)) < settings.minIdleSlots) {
      const slot = await pool.reserve(meetingPlatform);
      if (!slot) break; // the pool is at COOLIFY_BOT_LIMIT
      await records.save(slot, {
        meetingPlatform,
        state: 'STARTING',
        applicationUuid: null,
        deploymentName: null,
        botId: null,
        deploymentUuid: null,
        deploymentFor: null,
        lastUsedAt: null,
        lastError: null,
        recoveryAttempts: 0,
        createdAt: new Date(),
      });
      const created = await attempt(slot, 'create a warm slot', async () => {
        await deps.createApplication(slot, meetingPlatform);
        if (await pool.settle(slot, null, 'IDLE')) await records.save(slot, { state: 'IDLE' });
      });
      if (!created) {
        if (await pool.settle(slot, null, 'ERROR'))
          await records.save(slot, { state: 'ERROR', lastError: 'could not create its application' });
        break;
      }
      result.created++;
    }
  }
  return result;
}
