import { createDeploySlots } from '../src/placement/deploy-slots';
import { redisOnly } from './support/redis-only';

/** DEPLOYMENT_QUEUE_MAX_CONCURRENT's semaphore, on the real Redis of the run, as two processes would use it. */
const peers = redisOnly('mbtest_slots');
const { prefix, connect } = peers;
afterAll(() => peers.close());

it('never holds more than the limit across two users of it, serves every waiter, and each its own in order', async () => {
  const [a, b] = [createDeploySlots(connect(), prefix, 2), createDeploySlots(connect(), prefix, 2)];
  let holding = 0;
  let peak = 0;
  const served: Record<'a' | 'b', number[]> = { a: [], b: [] };
  const use = async (slots: typeof a, who: 'a' | 'b', n: number) => {
    const release = await slots.acquire(`${who}-${n}`);
    holding++;
    peak = Math.max(peak, holding);
    served[who].push(n);
    // long enough that the next waiter asks while this one holds its slot
    await new Promise((resolve) => setTimeout(resolve, 20));
    holding--;
    await release();
  };
  const order = Array.from({ length: 15 }, (_, n) => n);
  await Promise.all([...order.map((n) => use(a, 'a', n)), ...order.map((n) => use(b, 'b', n))]);
  expect(peak).toBe(2);
  expect(served).toEqual({ a: order, b: order });
  expect(await a.inUse()).toBe(0);
});

it('a waiter whose job is aborted leaves the line without a slot, and the others are still served', async () => {
  const slots = createDeploySlots(connect(), `${prefix}:abort`, 1);
  const first = await slots.acquire('first');
  const aborted = new AbortController();
  const leaving = slots.acquire('leaving', aborted.signal);
  const next = slots.acquire('next');
  aborted.abort();
  await expect(leaving).rejects.toThrow('aborted while waiting for a deploy slot');
  await first();
  const release = await next;
  expect(await slots.inUse()).toBe(1);
  await release();
  expect(await slots.inUse()).toBe(0);
});
