import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/peers';
import { apiClient, callUntilAnswered, mapConcurrently } from './api-client';
import { startBalancer } from './balancer';
import { Fault, FaultRecord, planFaults, runFaults, sleep } from './faults';
import { readHistories } from './histories';
import { layoutMembers, startChaosFleet } from './fleet';
import { BotHistory, check5xx, checkFifo, startSampler, Violations } from './invariants';
import { startLoad } from './load';
import { directPaths, NetworkPaths, PlatformPeer } from './platform-peer';
import { PEER_LIMITS, PEER_STARTERS } from './peers/registry';
import { Random } from './random';
import { invariantsOf, Recovery, RunRecord, writeRecord } from './record';
import { startChaosMongo, startChaosRedis, startChaosSentinelRedis } from './stores';
import { startToxiproxy } from './toxiproxy';
import { startWebhookReceiver } from './webhook-receiver';

export interface RunOptions {
  minutes: number;
  seed: number;
  platforms: string[];
  resultsDir: string;
  /**
   * `toxiproxy`: the fleet reaches Redis, MongoDB and each platform's API through Toxiproxy, whose faults
   * join the run's; `direct`: straight connections, no network faults.
   */
  network: 'toxiproxy' | 'direct';
  /** `single`: one Redis, killed and restarted on its append-only file; `sentinel`: a primary, a replica and three sentinels, failed over. */
  redis: 'single' | 'sentinel';
  log?: (line: string) => void;
}

const API_KEY = 'chaos-api-key-0123456789abcdef';

/**
 * The fleet's timings in the run: short, so heartbeats expire, sweeps run and locks lapse many times a minute.
 * The settle bound below is derived from them.
 */
const TIMINGS = {
  HEARTBEAT_INTERVAL_MS: 2_000,
  HEARTBEAT_TIMEOUT_MS: 15_000,
  SWEEP_INTERVAL_MS: 5_000,
  WORKER_LOCK_DURATION_MS: 5_000,
  LEAVE_GRACE_MS: 10_000,
  GLOBAL_QUEUE_TIMEOUT_MS: 120_000,
  DEPLOY_TIMEOUT_MS: 60_000,
  SHUTDOWN_TIMEOUT_MS: 10_000,
};
const DURATION_MS = { min: 2_000, max: 30_000 };
/**
 * After the last fault and the last create, every bot must have ended and every container be gone within:
 * the longest wait in the global queue, then the longest deploy, the longest call, a leave's grace, and a
 * heartbeat timeout noticed within two sweeps.
 */
const SETTLE_BOUND_MS =
  TIMINGS.GLOBAL_QUEUE_TIMEOUT_MS +
  TIMINGS.DEPLOY_TIMEOUT_MS +
  DURATION_MS.max +
  TIMINGS.LEAVE_GRACE_MS +
  TIMINGS.HEARTBEAT_TIMEOUT_MS +
  2 * TIMINGS.SWEEP_INTERVAL_MS;
/** A bot entering the queue this shortly before another's assignment may not have been in the dispatcher's read. */
const FIFO_RACE_MS = 1_000;
/** After Redis answers again, the fleet's connections take up to this long to reconnect (ioredis' backoff). */
const REDIS_RECONNECT_MS = 5_000;
const WEBHOOK_WAIT_MS = 60_000;
/** After the settle phase, for the fleet's flushers to write every change to MongoDB. */
const FLUSH_WAIT_MS = 120_000;
const TERMINAL = new Set(['ENDED', 'FATAL']);
/** Reads of the bots after the load: enough in flight that an hour's bots are read in minutes, few enough for 2 cores. */
const READ_CONCURRENCY = 16;

export async function runChaos(options: RunOptions): Promise<{ record: RunRecord; file: string }> {
  const log = options.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const unknown = options.platforms.filter((name) => !PEER_STARTERS[name]);
  if (unknown.length)
    throw new Error(`no peer for ${unknown.join(', ')}: supported are ${Object.keys(PEER_STARTERS).join(', ')}`);
  const began = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), `meeboter-chaos-${options.seed}-`));
  let paths: NetworkPaths = directPaths;
  const opened = new Set<string>();
  const closers: Array<() => Promise<void>> = [];
  const violations = new Violations();
  let finished = false;
  // Interrupted (Ctrl-C), the run still stops everything it started.
  const interrupt = () => {
    void (async () => {
      for (const close of closers) await close().catch(() => undefined);
      log(`interrupted; logs kept in ${dir}`);
      process.exit(130);
    })();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    if (options.network === 'toxiproxy') {
      const toxiproxy = await startToxiproxy(path.join(dir, 'toxiproxy'));
      closers.unshift(() => toxiproxy.close());
      // Each path opened (by the run or a peer) brings its faults.
      paths = { ...toxiproxy, open: (name, upstream) => (opened.add(name), toxiproxy.open(name, upstream)) };
    }
    const redis =
      options.redis === 'sentinel'
        ? await startChaosSentinelRedis(dir)
        : await (async () => {
            const single = await startChaosRedis(dir);
            const address = await paths.open('redis', new URL(single.url).host);
            return { ...single, env: { REDIS_URL: `redis://${address}` } };
          })();
    closers.unshift(() => redis.close());
    const mongo = await startChaosMongo(dir);
    closers.unshift(() => mongo.close());
    const receiver = await startWebhookReceiver();
    closers.unshift(() => receiver.close());
    const apiPorts = [await freePort(), await freePort()];
    const balancer = await startBalancer(apiPorts);
    closers.unshift(() => balancer.close());
    const fleetId = `chaos-${options.seed}-${randomBytes(3).toString('hex')}`;
    const peers: PlatformPeer[] = [];
    for (const platform of options.platforms) {
      const peer = await PEER_STARTERS[platform]({
        dir,
        limit: PEER_LIMITS[platform] ?? 3,
        fleetId,
        apiUrl: balancer.url,
        paths,
        log: onceEvery(10_000, (line) => log(`  [${platform}] ${line}`)),
      });
      peers.push(peer);
      closers.unshift(() => peer.close());
    }
    const mongoAddress = await paths.open('mongodb', new URL(mongo.url).host);
    const env: Record<string, string> = {
      ...Object.fromEntries(Object.entries(TIMINGS).map(([name, value]) => [name, String(value)])),
      ...redis.env,
      MONGODB_URI: `mongodb://${mongoAddress}/meeboter_chaos`,
      REDIS_PREFIX: `chaos_${randomBytes(3).toString('hex')}`,
      FLEET_ID: fleetId,
      PUBLIC_URL: balancer.url,
      BOT_TOKEN_SECRET: randomBytes(24).toString('hex'),
      BOOTSTRAP_API_KEY: API_KEY,
      PLATFORM_PRIORITY: options.platforms.join(','),
      WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
      API_RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: 'warn',
      ...Object.fromEntries(peers.flatMap((peer) => Object.entries(peer.fleetEnv))),
    };
    const fleet = startChaosFleet(layoutMembers({ apiPorts, workers: 3, workersPerHost: 2 }, env, dir), dir);
    closers.unshift(() => fleet.close());
    const client = apiClient(balancer.url, API_KEY);
    const ready = await callUntilAnswered(client, Date.now() + 120_000, 'GET', '/readyz');
    if (ready?.status !== 200) throw new Error(`the fleet did not get ready: ${JSON.stringify(ready)}`);
    // The record counts answers from here on: refusals while the API processes were starting are not faults.
    balancer.answers.length = 0;
    balancer.unreachable.length = 0;

    const random = new Random(options.seed);
    const loadRandom = random.fork('load');
    const faultRandom = random.fork('faults');
    const faults: Fault[] = [
      ...fleet.faults,
      ...redis.faults,
      ...mongo.faults,
      ...peers.flatMap((peer) => peer.faults),
      // The fleet cut off from Redis is a fault of Redis as the API sees it: 5xx are allowed in its window.
      ...(opened.has('redis') ? paths.faultsOf('redis') : []).map((fault) => ({ ...fault, redis: true })),
      ...[...opened].filter((name) => name !== 'redis').flatMap((name) => paths.faultsOf(name)),
    ];
    const runMs = options.minutes * 60_000;
    const plan = planFaults(faults, faultRandom, {
      fromMs: Math.min(20_000, runMs / 6),
      untilMs: runMs - 5_000,
      meanGapMs: 15_000,
      minDurationMs: 3_000,
      maxDurationMs: 25_000,
    });
    log(`${plan.length} faults planned over ${options.minutes} min; fleet ${fleetId}, logs in ${dir}`);

    const sampler = startSampler(peers, violations, 250);
    const totalLimit = peers.reduce((sum, peer) => sum + peer.limit, 0);
    // Offered a little under what the platforms hold when nothing is broken: faults make bots queue.
    const meanDuration = (DURATION_MS.min + DURATION_MS.max) / 2;
    const load = startLoad(client, loadRandom, {
      meanGapMs: meanDuration / (totalLimit * 0.85),
      minDurationMs: DURATION_MS.min,
      maxDurationMs: DURATION_MS.max,
      callbackUrl: receiver.callbackUrl,
    });
    const startedAt = Date.now();
    const faultRun = runFaults(plan, faults, startedAt, (fault) =>
      log(
        `  ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s  ${fault.endedAt ? 'end  ' : 'begin'} ${fault.kind} (${fault.target})${fault.error ? `: ${fault.error}` : ''}`,
      ),
    );
    await sleep(runMs);
    const schedule = await faultRun;
    await load.stop();
    const loadEnded = Date.now();
    log(`load stopped after ${load.bots.length} bots; settling (bound ${SETTLE_BOUND_MS / 1000} s)`);

    // Every bot ends, and no container is left on any peer, within the bound.
    const settleDeadline = loadEnded + SETTLE_BOUND_MS;
    const statuses = new Map<string, { status: string; endReason: string | null }>();
    for (;;) {
      const unread = load.bots.filter((bot) => !TERMINAL.has(statuses.get(bot.id)?.status ?? ''));
      await mapConcurrently(unread, READ_CONCURRENCY, async (bot) => {
        const answer = await client
          .call<{ status: string; endReason: string | null }>('GET', `/api/bots/${bot.id}`)
          .catch(() => null);
        if (answer?.status === 200) statuses.set(bot.id, answer.body);
      });
      const open = load.bots.filter((bot) => !TERMINAL.has(statuses.get(bot.id)?.status ?? ''));
      const left = [...sampler.last()].flatMap(([platform, containers]) =>
        containers.map((container) => ({ platform, ...container })),
      );
      if (open.length === 0 && left.length === 0) break;
      if (Date.now() > settleDeadline) {
        for (const bot of open)
          violations.add('every-bot-ends-with-reason', {
            botId: bot.id,
            status: statuses.get(bot.id)?.status ?? 'unknown',
            after: `${SETTLE_BOUND_MS / 1000} s`,
          });
        for (const container of left) violations.add('no-container-left', container);
        break;
      }
      await sleep(1000);
    }
    const settled = Date.now();
    await load.close();
    await sampler.stop();

    // Each bot's own history, for its end reason, FIFO and the webhooks it was owed.
    const histories = await readHistories(
      env,
      load.bots.map((bot) => bot.id),
      FLUSH_WAIT_MS,
    );
    for (const history of histories)
      if (TERMINAL.has(history.status) && !history.endReason)
        violations.add('every-bot-ends-with-reason', { botId: history.id, status: history.status, endReason: null });
    checkFifo(histories, violations, FIFO_RACE_MS);

    // Webhooks: each status change after creation, delivered at least once, one payload per event id.
    const owed = (history: BotHistory) => {
      const counts = new Map<string, number>();
      history.events
        .filter((event) => event.type === 'status')
        .slice(1)
        .forEach((event) => counts.set(event.status!, (counts.get(event.status!) ?? 0) + 1));
      return counts;
    };
    const missing = () => {
      const deliveredTo = new Map<string, Map<string, number>>();
      for (const delivery of receiver.deliveries.values()) {
        const delivered = deliveredTo.get(delivery.botId) ?? new Map<string, number>();
        delivered.set(delivery.status, (delivered.get(delivery.status) ?? 0) + 1);
        deliveredTo.set(delivery.botId, delivered);
      }
      return histories.flatMap((history) => {
        const delivered = deliveredTo.get(history.id) ?? new Map<string, number>();
        return [...owed(history)]
          .filter(([status, count]) => (delivered.get(status) ?? 0) < count)
          .map(([status, count]) => ({
            botId: history.id,
            status,
            owed: count,
            delivered: delivered.get(status) ?? 0,
          }));
      });
    };
    const webhookDeadline = Date.now() + WEBHOOK_WAIT_MS;
    while (missing().length && Date.now() < webhookDeadline) await sleep(1000);
    for (const gap of missing()) violations.add('webhook-delivered', gap);
    for (const [eventId, delivery] of receiver.deliveries)
      if (delivery.bodies.size > 1) violations.add('webhook-one-payload', { eventId, bodies: [...delivery.bodies] });

    const redisWindows = schedule
      .filter((fault) => faults.find((f) => f.kind === fault.kind)?.redis && fault.startedAt)
      .map((fault) => ({ from: fault.startedAt!, until: (fault.endedAt ?? Infinity) + REDIS_RECONNECT_MS }));
    check5xx(balancer.answers, redisWindows, violations);

    const record: RunRecord = {
      seed: options.seed,
      minutes: options.minutes,
      platforms: peers.map((peer) => ({ name: peer.platform, limit: peer.limit })),
      redis: options.redis,
      network: options.network,
      startedAt: new Date(began).toISOString(),
      seconds: {
        load: Math.round((loadEnded - startedAt) / 1000),
        settle: Math.round((settled - loadEnded) / 1000),
        total: Math.round((Date.now() - began) / 1000),
      },
      settleBoundSeconds: SETTLE_BOUND_MS / 1000,
      bots: {
        created: load.bots.length,
        failedCreates: load.failedCreates,
        byOutcome: countBy(histories.map((h) => `${h.status} ${h.endReason ?? ''}`.trim())),
        actionsTaken: load.bots.filter((bot) => bot.acted).length,
      },
      faults: { byKind: faultsByKind(schedule, balancer.answers, sampler.firstSeen), schedule },
      invariants: invariantsOf(violations),
      api: {
        answers: balancer.answers.length,
        byStatus: countBy(balancer.answers.map((answer) => String(answer.status))),
        unreachable: balancer.unreachable.length,
      },
      webhooks: {
        events: histories.reduce((sum, history) => sum + [...owed(history).values()].reduce((a, b) => a + b, 0), 0),
        deliveries: [...receiver.deliveries.values()].reduce((sum, delivery) => sum + delivery.count, 0),
      },
      sampling: { samples: sampler.samples, unanswered: sampler.unanswered },
      violations: violations.total(),
    };
    if (record.violations > 0) record.logs = dir;
    const file = writeRecord(options.resultsDir, record);
    finished = true;
    return { record, file };
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    for (const close of closers) await close().catch((error) => log(`  closing: ${String(error)}`));
    // The processes' logs stay for a run that failed or found a violation.
    if (finished && violations.total() === 0) rmSync(dir, { recursive: true, force: true });
    else log(`logs kept in ${dir}`);
  }
}

/**
 * A peer's bot players report each failed call; while a peer is down that is the same line every few
 * milliseconds. Each distinct line is printed at most once per `ms`, with how many were left out.
 */
function onceEvery(ms: number, print: (line: string) => void): (line: string) => void {
  const last = new Map<string, { at: number; skipped: number }>();
  return (line) => {
    const seen = last.get(line);
    if (seen && Date.now() - seen.at < ms) {
      seen.skipped++;
      return;
    }
    print(seen?.skipped ? `${line} (and ${seen.skipped} more like it)` : line);
    last.set(line, { at: Date.now(), skipped: 0 });
  };
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

function faultsByKind(
  schedule: FaultRecord[],
  answers: Array<{ at: number; status: number }>,
  firstSeen: number[],
): RunRecord['faults']['byKind'] {
  const byKind: RunRecord['faults']['byKind'] = {};
  const worse = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
  for (const fault of schedule) {
    const entry = (byKind[fault.kind] ??= { count: 0, failed: 0, worstRecovery: { api: null, placement: null } });
    entry.count++;
    if (fault.error) entry.failed++;
    if (!fault.endedAt || fault.error) continue;
    const end = fault.endedAt;
    const answered = answers.find((answer) => answer.at >= end && answer.status < 500);
    const placed = firstSeen.find((at) => at >= end);
    const recovery: Recovery = {
      api: answered ? answered.at - end : null,
      placement: placed !== undefined ? placed - end : null,
    };
    entry.worstRecovery = {
      api: worse(entry.worstRecovery.api, recovery.api),
      placement: worse(entry.worstRecovery.placement, recovery.placement),
    };
  }
  return byKind;
}
