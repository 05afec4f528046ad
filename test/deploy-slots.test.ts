import { ChildProcess, spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import path from 'node:path';
import { createDeploySlots, DeploySlot } from '../src/placement/deploy-slots';
import { createImagePullLock } from '../src/platforms/k8s/image-pull-lock';
import { ContainerStatus, DeploySpec } from '../src/platforms/platform';
import { createSimPlatform, simHostKeys } from '../src/platforms/sim/sim.platform';
import { peerUrls, waitFor } from './support/fleet';
import { redisOnly } from './support/redis-only';

/** DEPLOYMENT_QUEUE_MAX_CONCURRENT's semaphore, on the real Redis of the run, as processes use it. */
jest.setTimeout(120_000);
const peers = redisOnly('mbtest_slots');
const { prefix, connect } = peers;
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await peers.close();
});

const LEASE_MS = 1500;

it('never holds more than the limit across two users of it, serves every waiter, and each its own in order', async () => {
  const [a, b] = [createDeploySlots(connect(), prefix, 2, LEASE_MS), createDeploySlots(connect(), prefix, 2, LEASE_MS)];
  let holding = 0;
  let peak = 0;
  const served: Record<'a' | 'b', number[]> = { a: [], b: [] };
  const use = async (slots: typeof a, who: 'a' | 'b', n: number) => {
    const slot = await slots.acquire(`${who}-${n}`);
    holding++;
    peak = Math.max(peak, holding);
    served[who].push(n);
    // long enough that the next waiter asks while this one holds its slot
    await new Promise((resolve) => setTimeout(resolve, 20));
    holding--;
    await slot.release();
  };
  const order = Array.from({ length: 15 }, (_, n) => n);
  await Promise.all([...order.map((n) => use(a, 'a', n)), ...order.map((n) => use(b, 'b', n))]);
  expect(peak).toBe(2);
  expect(served).toEqual({ a: order, b: order });
  expect(await a.inUse()).toBe(0);
});

it('a waiter whose job is aborted leaves the line without a slot, and the others are still served', async () => {
  const slots = createDeploySlots(connect(), `${prefix}:abort`, 1, LEASE_MS);
  const first = await slots.acquire('first');
  const aborted = new AbortController();
  const leaving = slots.acquire('leaving', aborted.signal);
  const next = slots.acquire('next');
  aborted.abort();
  await expect(leaving).rejects.toThrow('aborted while waiting for a deploy slot');
  await first.release();
  const slot = await next;
  expect(await slots.inUse()).toBe(1);
  await slot.release();
  expect(await slots.inUse()).toBe(0);
});

it("served waiters stop listening to the process's shutdown signal, which every job shares", async () => {
  const slots = createDeploySlots(connect(), `${prefix}:listeners`, 2, LEASE_MS);
  const stopping = new AbortController();
  await Promise.all(
    Array.from({ length: 20 }, async (_, n) => {
      const slot = await slots.acquire(`deploy-${n}`, stopping.signal);
      await slot.outside(() => Promise.resolve(undefined));
      await slot.release();
    }),
  );
  expect(getEventListeners(stopping.signal, 'abort')).toHaveLength(0);
});

/** The lapse time of every lease in the set, on Redis' clock. */
const leases = async (key: string) => {
  const flat = await peers.connections[0].zrange(key, 0, -1, 'WITHSCORES');
  return flat.filter((_, i) => i % 2 === 1).map(Number);
};
/** Resolves once the lease has been renewed past `times` lease lengths after it was first seen. */
const renewedPast = async (key: string, times: number) => {
  const [first] = await leases(key);
  await waitFor(
    async () => (await leases(key)).some((score) => score > first + times * LEASE_MS),
    `the lease renewed past ${times} lease lengths`,
  );
};
const served = (acquiring: Promise<DeploySlot>) => {
  const state = { slot: null as DeploySlot | null };
  void acquiring.then((slot) => (state.slot = slot));
  return state;
};

it('a deploy longer than the lease keeps its slot: its holder renews it, and nobody else gets in until it is released', async () => {
  const key = `${prefix}:long`;
  const slots = createDeploySlots(connect(), key, 1, LEASE_MS);
  const other = createDeploySlots(connect(), key, 1, LEASE_MS);
  const long = await slots.acquire('long-deploy');
  const waiter = served(other.acquire('waiter'));
  await renewedPast(`${key}:deploy-slots`, 4);
  expect(waiter.slot).toBeNull();
  expect(await other.inUse()).toBe(1);
  await long.release();
  await waitFor(() => waiter.slot, 'the waiter to be served');
  await waiter.slot!.release();
});

it('a slot released while its renewal is sent again after NOSCRIPT (Redis restarted) is not brought back by it', async () => {
  const key = `${prefix}:renew-race`;
  const redis = connect();
  const slots = createDeploySlots(redis, key, 1, LEASE_MS);
  const slot = await slots.acquire('released-mid-renewal');
  const [member] = await peers.connections[0].zrange(`${key}:deploy-slots`, 0, -1);
  // Redis forgot its scripts: the renewal's EVALSHA answers NOSCRIPT and the script is sent again with EVAL.
  // The release lands in between, as it may when another job's deploy ends at that moment.
  await peers.connections[0].script('FLUSH');
  const resend = redis.eval.bind(redis) as (...args: unknown[]) => Promise<unknown>;
  let resentRenewal: Promise<unknown> | undefined;
  (redis as unknown as { eval: (...args: unknown[]) => Promise<unknown> }).eval = async (...args) => {
    if (resentRenewal) return resend(...args);
    let answered!: (answer: Promise<unknown>) => void;
    resentRenewal = new Promise((resolve) => (answered = resolve));
    await slot.release();
    const answer = resend(...args);
    answered(answer);
    return answer;
  };
  await waitFor(() => resentRenewal, 'a renewal sent again after NOSCRIPT');
  // The renewal sent after the release put the lease back; only once it has answered is the lease's removal
  // by the renewing process due (checking before that could see the gap between the release and the renewal).
  await resentRenewal;
  await waitFor(
    async () => (await peers.connections[0].zscore(`${key}:deploy-slots`, member)) === null,
    'the released lease to stay gone',
    15_000,
  );
  expect(await slots.inUse()).toBe(0);
});

/** A process holding a slot of `key` (cap 1), once it says so. */
async function holderProcess(key: string): Promise<{ child: ChildProcess; output(): string }> {
  let output = '';
  const child = spawn(process.execPath, [path.resolve(__dirname, '../dist/test/support/deploy-slot-holder.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      REDIS_URL: peerUrls().redisUrl,
      PREFIX: key,
      CAP: '1',
      LEASE_MS: String(LEASE_MS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  await waitFor(() => output.includes('holding'), 'the holder process to hold its slot', 30_000);
  return { child, output: () => output };
}

it('a holder SIGKILLed in the middle of its deploy frees its slot once its lease lapses', async () => {
  const key = `${prefix}:killed`;
  const holder = await holderProcess(key);
  const slots = createDeploySlots(connect(), key, 1, LEASE_MS);
  const waiter = served(slots.acquire('waiter'));
  // While the holder lives its slot outlasts many leases.
  await renewedPast(`${key}:deploy-slots`, 3);
  expect(waiter.slot).toBeNull();
  holder.child.kill('SIGKILL');
  await waitFor(() => waiter.slot, "the waiter to get the dead holder's slot", 30_000);
  expect(await slots.inUse()).toBe(1);
  await waiter.slot!.release();
});

it('a holder stalled past its lease finds it gone: it counts itself again, above the cap, so nobody new starts until the deploys running are under it', async () => {
  const key = `${prefix}:stalled`;
  const holder = await holderProcess(key);
  const slots = createDeploySlots(connect(), key, 1, LEASE_MS);
  const order: string[] = [];
  holder.child.kill('SIGSTOP');
  // Its lease lapses: another deploy takes the slot.
  const taker = await slots.acquire('taker');
  order.push('taker served');
  holder.child.kill('SIGCONT');
  // The holder's next renewal finds its lease gone and puts it back: two deploys run, and both count.
  await waitFor(async () => (await slots.inUse()) === 2, 'the stalled holder to count itself again', 30_000);
  await waitFor(() => holder.output().includes('a deploy slot lapsed while its deploy still ran'), 'its warning');
  const late = slots.acquire('late').then((slot) => {
    order.push('late served');
    return slot;
  });
  await taker.release();
  order.push('taker released');
  // One deploy (the holder's) still runs: the cap of 1 is full, through more than one renewal.
  await renewedPast(`${key}:deploy-slots`, 2);
  order.push('holder renewed');
  order.push('holder releasing');
  holder.child.kill('SIGTERM');
  await (await late).release();
  expect(order).toEqual(['taker served', 'taker released', 'holder renewed', 'holder releasing', 'late served']);
});

it("a Kubernetes bot waiting for another bot's image pull holds no deploy slot: another platform's deploy runs meanwhile", async () => {
  const key = `${prefix}:pull`;
  const redis = connect();
  const slots = createDeploySlots(redis, key, 1, LEASE_MS);
  const lock = createImagePullLock({ redis, prefix: key, waitMs: 60_000 });
  const sim = createSimPlatform({ name: 'sim', redis, host: key, fleetId: 'fleet', runner: 'sim-host' });
  const order: string[] = [];
  let firstPodRuns = false;
  const status = (): Promise<ContainerStatus> => Promise.resolve({ state: firstPodRuns ? 'running' : 'starting' });
  const image = 'registry.test/meeboter/meeboter-zoom-bot:new';
  /** As the occupy job deploys: under a slot, with the slot's `outside` lent to the call. */
  const deployK8s = async (bot: string) => {
    const slot = await slots.acquire(bot);
    try {
      return await lock.deploy(
        image,
        () => {
          order.push(`${bot} created`);
          return Promise.resolve({ identifier: bot, state: 'starting' });
        },
        status,
        (wait) => slot.outside(wait),
      );
    } finally {
      await slot.release();
    }
  };
  await deployK8s('first'); // takes the pull lock; its pod pulls until firstPodRuns
  const second = deployK8s('second');
  await waitFor(async () => (await slots.inUse()) === 0, 'the second bot to wait without its slot');

  const spec: DeploySpec = {
    botId: 'b'.repeat(24),
    name: `mb-${'b'.repeat(24)}-sim`,
    attempt: 0,
    meetingPlatform: 'zoom',
    maxDurationMs: null,
    env: {},
  };
  const slot = await slots.acquire('other-platform');
  await sim.deploy(spec);
  order.push('other platform deployed');
  await slot.release();
  expect(order).toEqual(['first created', 'other platform deployed']);

  firstPodRuns = true;
  await second;
  expect(order).toEqual(['first created', 'other platform deployed', 'second created']);
  expect(await redis.hexists(simHostKeys(key, 'sim').containers, spec.name)).toBe(1);
  await lock.close();
  await sim.close();
});
