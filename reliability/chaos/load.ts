import { ApiClient, callUntilAnswered } from './api-client';
import { sleep } from './faults';
import { Random } from './random';

/**
 * The run's bots: created continuously at seeded intervals (a Poisson process), each with a seeded time in
 * the call (`sim.durationMs`), a behaviour of the sim bot (`sim.behavior`: most are normal, some crash, hang,
 * fail to join or ignore a leave request, so the fleet's FATAL paths run) and sometimes an action of its
 * client: cancelled (DELETE) while it waits or deploys, or asked to leave (POST /leave) while in the call.
 */
export type Behavior = 'normal' | 'crash' | 'hang' | 'fail-join' | 'ignore-leave';
export type ClientAction = 'none' | 'cancel-queued' | 'cancel-deploying' | 'leave';

export interface LoadBot {
  id: string;
  createdAt: number;
  durationMs: number;
  behavior: Behavior;
  action: ClientAction;
  /** Whether the action was taken (the bot was seen in the status it waits for, and the call answered). */
  acted: boolean;
}

export interface LoadOptions {
  /** Mean gap between two creates. */
  meanGapMs: number;
  minDurationMs: number;
  maxDurationMs: number;
  callbackUrl: string;
}

export interface Load {
  readonly bots: LoadBot[];
  /** Creates that got no answer below 500 within their deadline (counted, not retried further). */
  readonly failedCreates: number;
  /** Stops creating; resolves once the last create is answered. */
  stop(): Promise<void>;
  /** Stops the clients' actions still waiting for their bot's status. */
  close(): Promise<void>;
}

const BEHAVIORS: Array<[Behavior, number]> = [
  ['crash', 0.05],
  ['hang', 0.04],
  ['fail-join', 0.05],
  ['ignore-leave', 0.04],
];
const ACTIONS: Array<[ClientAction, number]> = [
  ['cancel-queued', 0.08],
  ['cancel-deploying', 0.06],
  ['leave', 0.1],
];
const CREATE_DEADLINE_MS = 60_000;
const ACTION_STATUS: Record<Exclude<ClientAction, 'none'>, string> = {
  'cancel-queued': 'QUEUED',
  'cancel-deploying': 'DEPLOYING',
  leave: 'IN_CALL',
};
const TERMINAL = new Set(['ENDED', 'FATAL']);
/** The lifecycle's order: an action whose status the bot has passed is not taken. */
const ORDER = ['QUEUED', 'DEPLOYING', 'JOINING_CALL', 'IN_WAITING_ROOM', 'IN_CALL', 'LEAVING'];

function weighted<T extends string>(random: Random, table: Array<[T, number]>, otherwise: T): T {
  let draw = random.next();
  for (const [value, weight] of table) {
    if (draw < weight) return value;
    draw -= weight;
  }
  return otherwise;
}

export function startLoad(client: ApiClient, random: Random, options: LoadOptions): Load {
  const bots: LoadBot[] = [];
  const pending = new Set<Promise<unknown>>();
  const creates = new Set<Promise<unknown>>();
  let failedCreates = 0;
  let stopped = false;
  let closed = false;
  const track = (work: Promise<unknown>) => {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  };

  const act = async (bot: LoadBot) => {
    if (bot.action === 'none') return;
    const wanted = ACTION_STATUS[bot.action];
    while (!closed) {
      const answer = await client.call<{ status: string }>('GET', `/api/bots/${bot.id}`).catch(() => null);
      const status = answer?.status === 200 ? answer.body.status : null;
      if (status && (TERMINAL.has(status) || ORDER.indexOf(status) > ORDER.indexOf(wanted))) return;
      if (status === wanted) {
        const route = bot.action === 'leave' ? `/api/bots/${bot.id}/leave` : `/api/bots/${bot.id}`;
        const done = await callUntilAnswered(
          client,
          Date.now() + CREATE_DEADLINE_MS,
          bot.action === 'leave' ? 'POST' : 'DELETE',
          route,
        );
        bot.acted = done !== null && done.status < 300;
        return;
      }
      await sleep(300);
    }
  };

  const create = async (index: number, plan: Omit<LoadBot, 'id' | 'createdAt' | 'acted'>) => {
    const answer = await callUntilAnswered<{ id: string }>(
      client,
      Date.now() + CREATE_DEADLINE_MS,
      'POST',
      '/api/bots',
      {
        meeting: { platform: 'zoom', meetingId: String(100000000 + index) },
        callbackUrl: options.callbackUrl,
        metadata: { 'sim.durationMs': String(plan.durationMs), 'sim.behavior': plan.behavior },
      },
      // the same bot whatever happens to a try: a retry after a lost answer is no second bot
      { 'idempotency-key': `chaos-${index}` },
    );
    if (!answer || answer.status >= 300) {
      failedCreates++;
      return;
    }
    const bot: LoadBot = { ...plan, id: answer.body.id, createdAt: Date.now(), acted: false };
    bots.push(bot);
    track(act(bot));
  };

  const loop = (async () => {
    for (let index = 0; !stopped; index++) {
      const plan = {
        durationMs: random.int(options.minDurationMs, options.maxDurationMs),
        behavior: weighted(random, BEHAVIORS, 'normal'),
        action: weighted(random, ACTIONS, 'none'),
      };
      const gap = random.exponential(options.meanGapMs);
      const creating = create(index, plan);
      creates.add(creating);
      void creating.finally(() => creates.delete(creating));
      await sleep(gap);
    }
  })();

  return {
    bots,
    get failedCreates() {
      return failedCreates;
    },
    async stop() {
      stopped = true;
      await loop;
      await Promise.all([...creates]);
    },
    async close() {
      closed = true;
      while (pending.size) await Promise.all([...pending]);
    },
  };
}
