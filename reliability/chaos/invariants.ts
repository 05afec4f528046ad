import { Answer } from './balancer';
import { sleep } from './faults';
import { LiveContainer, PlatformPeer } from './platform-peer';

/** The invariants, each checked from outside the fleet: the peers' own truth, the API's answers, webhooks. */
export const INVARIANTS = [
  'within-limit',
  'one-container-per-bot',
  'fifo',
  'every-bot-ends-with-reason',
  'no-container-left',
  'webhook-delivered',
  'webhook-one-payload',
  'no-5xx-outside-redis-faults',
] as const;
export type Invariant = (typeof INVARIANTS)[number];

/** Violations per invariant: the count, and the first few as examples. */
export class Violations {
  readonly counts = new Map<Invariant, number>(INVARIANTS.map((name) => [name, 0]));
  readonly examples = new Map<Invariant, unknown[]>(INVARIANTS.map((name) => [name, []]));

  add(name: Invariant, example: unknown): void {
    this.counts.set(name, this.counts.get(name)! + 1);
    const kept = this.examples.get(name)!;
    if (kept.length < 5) kept.push(example);
  }

  total(): number {
    return [...this.counts.values()].reduce((sum, count) => sum + count, 0);
  }
}

type Sample = Map<string, LiveContainer[]>;
const keyOf = (platform: string, container: LiveContainer) => `${platform}/${container.id}/${container.botId}`;

async function sample(peers: PlatformPeer[]): Promise<{ sample: Sample; unanswered: string[] }> {
  const answers = await Promise.allSettled(peers.map((peer) => peer.liveContainers()));
  const result: Sample = new Map();
  const unanswered: string[] = [];
  answers.forEach((answer, i) => {
    if (answer.status === 'fulfilled') result.set(peers[i].platform, answer.value);
    else unanswered.push(peers[i].platform);
  });
  return { sample: result, unanswered };
}

/** What is in both samples: each of those containers was live throughout the time between the two. */
function both(first: Sample, second: Sample): Sample {
  const result: Sample = new Map();
  for (const [platform, containers] of second) {
    const before = new Set((first.get(platform) ?? []).map((container) => keyOf(platform, container)));
    result.set(
      platform,
      containers.filter((container) => before.has(keyOf(platform, container))),
    );
  }
  return result;
}

function suspects(peers: PlatformPeer[], current: Sample) {
  const overLimit = peers.filter((peer) => (current.get(peer.platform)?.length ?? 0) > peer.limit);
  const byBot = new Map<string, string[]>();
  for (const [platform, containers] of current)
    for (const container of containers)
      byBot.set(container.botId, [...(byBot.get(container.botId) ?? []), `${platform}/${container.id}`]);
  const doubled = [...byBot].filter(([, held]) => held.length > 1);
  return { overLimit, doubled };
}

export interface Sampler {
  /** Samples taken, and samples of a peer that could not answer (skipped, never read as empty). */
  readonly samples: number;
  readonly unanswered: number;
  /** When each container was first seen (a bot placed and running), in order. */
  readonly firstSeen: number[];
  /** The containers of the last sample, per platform. */
  last(): Sample;
  stop(): Promise<void>;
}

/**
 * Samples every peer's truth continuously. A sample that looks over a limit or shows a bot twice is taken
 * again at once, and only what both samples hold counts: each of those containers was live at the moment
 * between the two, so a container that ended while the first sample was being read is never counted
 * against one that started after it.
 */
export function startSampler(peers: PlatformPeer[], violations: Violations, everyMs: number): Sampler {
  const seen = new Set<string>();
  const firstSeen: number[] = [];
  let samples = 0;
  let unanswered = 0;
  let latest: Sample = new Map();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const first = await sample(peers);
      samples++;
      unanswered += first.unanswered.length;
      latest = first.sample;
      const now = Date.now();
      for (const [platform, containers] of first.sample)
        for (const container of containers) {
          const key = keyOf(platform, container);
          if (!seen.has(key)) {
            seen.add(key);
            firstSeen.push(now);
          }
        }
      const suspected = suspects(peers, first.sample);
      if (suspected.overLimit.length || suspected.doubled.length) {
        const second = await sample(peers);
        const confirmed = suspects(peers, both(first.sample, second.sample));
        for (const peer of confirmed.overLimit)
          violations.add('within-limit', {
            at: new Date(now).toISOString(),
            platform: peer.platform,
            limit: peer.limit,
            live: both(first.sample, second.sample).get(peer.platform),
          });
        for (const [botId, held] of confirmed.doubled)
          violations.add('one-container-per-bot', { at: new Date(now).toISOString(), botId, containers: held });
      }
      await sleep(everyMs);
    }
  })();
  return {
    get samples() {
      return samples;
    },
    get unanswered() {
      return unanswered;
    },
    firstSeen,
    last: () => latest,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

export interface BotHistory {
  id: string;
  createdAt: number;
  status: string;
  endReason: string | null;
  events: Array<{ type: string; status: string | null; at: number; platform: string | null }>;
}

/**
 * FIFO, from the bots' own histories (their events as the fleet recorded them). Waiting bots are ordered by creation
 * (the fleet's queue keeps a bot handed back after a failed attempt at its creation's place). A bot waits
 * from a `status` QUEUED event until its next `attempt.assigned` or its end. When bot B is assigned to
 * platform P at time t, every bot A created before B that waited at t is a violation, unless:
 * - A entered the queue less than `raceMs` before t (the dispatcher read the queue before A was in it), or
 * - A was excluded from P by then (an `attempt.failed` or `attempt.timed-out` on P before t), or
 * - A was assigned in the same dispatcher run (the same `attempt.assigned` time), which ends its wait at t.
 */
export function checkFifo(histories: BotHistory[], violations: Violations, raceMs: number): void {
  interface Wait {
    bot: BotHistory;
    from: number;
    until: number;
  }
  const waits: Wait[] = [];
  for (const bot of histories) {
    let from: number | null = null;
    for (const event of bot.events) {
      if (event.type === 'status' && event.status === 'QUEUED') from ??= event.at;
      else if (
        from !== null &&
        (event.type === 'attempt.assigned' ||
          (event.type === 'status' && (event.status === 'ENDED' || event.status === 'FATAL')))
      ) {
        waits.push({ bot, from, until: event.at });
        from = null;
      }
    }
    if (from !== null) waits.push({ bot, from, until: Infinity });
  }
  const excludedBy = (bot: BotHistory, platform: string, at: number) =>
    bot.events.some(
      (event) =>
        (event.type === 'attempt.failed' || event.type === 'attempt.timed-out') &&
        event.platform === platform &&
        event.at <= at,
    );
  for (const placed of histories)
    for (const event of placed.events) {
      if (event.type !== 'attempt.assigned' || !event.platform) continue;
      for (const wait of waits) {
        const earlier = wait.bot;
        if (earlier.createdAt >= placed.createdAt || earlier.id === placed.id) continue;
        if (!(wait.from <= event.at - raceMs && wait.until > event.at)) continue;
        if (excludedBy(earlier, event.platform, event.at)) continue;
        violations.add('fifo', {
          placed: placed.id,
          placedAt: new Date(event.at).toISOString(),
          platform: event.platform,
          waiting: earlier.id,
          waitingSince: new Date(wait.from).toISOString(),
          createdBefore: `${placed.createdAt - earlier.createdAt} ms`,
        });
      }
    }
}

/** Each 5xx answer of the API outside every Redis fault's window. */
export function check5xx(
  answers: Answer[],
  redisWindows: Array<{ from: number; until: number }>,
  violations: Violations,
): void {
  for (const answer of answers) {
    if (answer.status < 500) continue;
    if (redisWindows.some((window) => answer.at >= window.from && answer.at <= window.until)) continue;
    violations.add('no-5xx-outside-redis-faults', { ...answer, at: new Date(answer.at).toISOString() });
  }
}
