import { mapConcurrently } from '../reliability/chaos/api-client';
import { Fault, planFaults } from '../reliability/chaos/faults';
import { BotHistory, check5xx, checkFifo, startSampler, Violations } from '../reliability/chaos/invariants';
import { LiveContainer, PlatformPeer } from '../reliability/chaos/platform-peer';
import { Random } from '../reliability/chaos/random';

/** The chaos run's own rules (RELIABILITY.md): its schedule replays from a seed, and its checks catch what they name. */

const fault = (kind: string, target?: string): Fault => ({
  kind,
  target,
  begin: () => Promise.resolve(() => Promise.resolve()),
});
const FAULTS = [fault('fleet:kill-worker', 'worker-1'), fault('fleet:kill-api', 'api-1'), fault('redis:kill')];
const OPTIONS = { fromMs: 20_000, untilMs: 600_000, meanGapMs: 15_000, minDurationMs: 3_000, maxDurationMs: 25_000 };

describe('the fault schedule', () => {
  it('is the same for a seed and differs for another seed', () => {
    const a = planFaults(FAULTS, new Random(7).fork('faults'), OPTIONS);
    const b = planFaults(FAULTS, new Random(7).fork('faults'), OPTIONS);
    const c = planFaults(FAULTS, new Random(8).fork('faults'), OPTIONS);
    expect(a.length).toBeGreaterThan(10);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('never overlaps two faults of one target, overlaps others, and ends every fault in time', () => {
    const plan = planFaults(FAULTS, new Random(3), OPTIONS);
    let overlapping = 0;
    for (const [i, x] of plan.entries()) {
      expect(x.at).toBeGreaterThanOrEqual(OPTIONS.fromMs);
      expect(x.at + x.durationMs).toBeLessThanOrEqual(OPTIONS.untilMs);
      for (const y of plan.slice(i + 1)) {
        const overlap = y.at < x.at + x.durationMs && x.at < y.at + y.durationMs;
        if (x.target === y.target) expect(overlap).toBe(false);
        else if (overlap) overlapping++;
      }
    }
    expect(overlapping).toBeGreaterThan(0);
  });
});

const bot = (id: string, createdAt: number, events: BotHistory['events']): BotHistory => ({
  id,
  createdAt,
  status: 'ENDED',
  endReason: 'COMPLETED',
  events,
});
const queued = (at: number) => ({ type: 'status', status: 'QUEUED', at, platform: null });
const assigned = (at: number, platform = 'local') => ({ type: 'attempt.assigned', status: null, at, platform });

describe('the FIFO check', () => {
  const fifo = (histories: BotHistory[]) => {
    const violations = new Violations();
    checkFifo(histories, violations, 1_000);
    return violations.counts.get('fifo');
  };

  it('counts a bot placed while an older one waited', () => {
    expect(
      fifo([bot('a', 1_000, [queued(1_000), assigned(20_000)]), bot('b', 2_000, [queued(2_000), assigned(10_000)])]),
    ).toBe(1);
  });

  it('exempts the same dispatcher run, a bot excluded from the platform, one that had just entered, and a cancelled one', () => {
    expect(
      fifo([bot('a', 1_000, [queued(1_000), assigned(10_000)]), bot('b', 2_000, [queued(2_000), assigned(10_000)])]),
    ).toBe(0);
    const excluded = { type: 'attempt.failed', status: null, at: 5_000, platform: 'local' };
    expect(
      fifo([
        bot('a', 1_000, [queued(1_000), assigned(3_000), excluded, queued(5_000), assigned(30_000, 'k8s')]),
        bot('b', 2_000, [queued(2_000), assigned(10_000)]),
      ]),
    ).toBe(0);
    expect(
      fifo([bot('a', 1_000, [queued(9_500), assigned(20_000)]), bot('b', 2_000, [queued(2_000), assigned(10_000)])]),
    ).toBe(0);
    const cancelled = { type: 'status', status: 'ENDED', at: 8_000, platform: null };
    expect(
      fifo([bot('a', 1_000, [queued(1_000), cancelled]), bot('b', 2_000, [queued(2_000), assigned(10_000)])]),
    ).toBe(0);
  });
});

describe('the 5xx check', () => {
  it('counts a 5xx only outside every Redis fault window', () => {
    const violations = new Violations();
    const answer = (at: number, status: number) => ({ at, status, method: 'GET', path: '/x', backend: '1' });
    check5xx([answer(100, 503), answer(500, 500), answer(900, 200)], [{ from: 50, until: 200 }], violations);
    expect(violations.counts.get('no-5xx-outside-redis-faults')).toBe(1);
  });
});

describe('the sampler', () => {
  /** A peer of limit 1 answering the given samples in turn, then nothing. */
  const peerAnswering = (samples: LiveContainer[][]): PlatformPeer => ({
    platform: 'p',
    limit: 1,
    fleetEnv: {},
    faults: [],
    liveContainers: () => Promise.resolve(samples.shift() ?? []),
    close: () => Promise.resolve(),
  });
  const run = async (samples: LiveContainer[][]) => {
    const violations = new Violations();
    const sampler = startSampler([peerAnswering(samples)], violations, 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await sampler.stop();
    return [violations.counts.get('within-limit'), violations.counts.get('one-container-per-bot')];
  };
  const a1 = { id: '1', botId: 'a' };
  const a2 = { id: '2', botId: 'a' };
  const b3 = { id: '3', botId: 'b' };

  it('counts containers over the limit and a bot held twice when the second read confirms them', async () => {
    expect(
      await run([
        [a1, a2],
        [a1, a2],
      ]),
    ).toEqual([1, 1]);
    expect(
      await run([
        [a1, b3],
        [a1, b3],
      ]),
    ).toEqual([1, 0]);
  });

  it('does not count a container that ended while the first read ran beside its successor', async () => {
    expect(await run([[a1, a2], [a2]])).toEqual([0, 0]);
  });
});

describe('the reads after the load', () => {
  it('keep the bots in order with never more than the bound in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const answers = await mapConcurrently([...Array(50).keys()], 4, async (n) => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, (n * 7) % 5));
      inFlight--;
      return n * 2;
    });
    expect(answers).toEqual([...Array(50).keys()].map((n) => n * 2));
    expect(most).toBe(4);
  });
});
