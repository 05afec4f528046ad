import { BOT_STATUSES, BotStatus, isTerminal } from '../src/domain/bot.lifecycle';
import { BotState, decideTransition, StatusChange, TransitionRequest } from '../src/domain/transition';
import { TransitionError } from '../src/errors';

/** The lifecycle's one decision, as tables: no database, no queue, no clock but the one passed in. */
const NOW = Date.UTC(2026, 11, 1, 12);
const bot = (status: BotStatus, fields: Partial<BotState> = {}): BotState => ({
  status,
  platform: null,
  statusVersion: 3,
  statusChangedAt: new Date(NOW - 1000),
  ...fields,
});
const move = (
  to: BotStatus,
  fields: Partial<Extract<TransitionRequest, { kind: 'move' }>> = {},
): TransitionRequest => ({
  kind: 'move',
  to,
  source: 'fleet',
  ...fields,
});

/** Every (from, to) pair: what the lifecycle of docs/lifecycle.md allows, written out rather than computed. */
const ALLOWED: Record<BotStatus, BotStatus[]> = {
  SCHEDULED: ['QUEUED', 'DEPLOYING', 'JOINING_CALL', 'IN_WAITING_ROOM', 'IN_CALL', 'LEAVING', 'ENDED', 'FATAL'],
  QUEUED: ['DEPLOYING', 'JOINING_CALL', 'IN_WAITING_ROOM', 'IN_CALL', 'LEAVING', 'ENDED', 'FATAL'],
  DEPLOYING: ['JOINING_CALL', 'IN_WAITING_ROOM', 'IN_CALL', 'LEAVING', 'ENDED', 'FATAL'],
  JOINING_CALL: ['IN_WAITING_ROOM', 'IN_CALL', 'LEAVING', 'ENDED', 'FATAL'],
  IN_WAITING_ROOM: ['IN_CALL', 'LEAVING', 'ENDED', 'FATAL'],
  IN_CALL: ['LEAVING', 'ENDED', 'FATAL'],
  LEAVING: ['ENDED', 'FATAL'],
  ENDED: [],
  FATAL: [],
};
const pairs = BOT_STATUSES.flatMap((from) => BOT_STATUSES.map((to) => [from, to, ALLOWED[from].includes(to)] as const));

it.each(pairs)('%s → %s allowed: %s', (from, to, allowed) => {
  const result = decideTransition(bot(from), move(to), NOW);
  if (!allowed) {
    expect(result).toBeInstanceOf(TransitionError);
    expect((result as TransitionError).details).toEqual({ from, to });
    return;
  }
  const change = result as StatusChange;
  expect(change.set).toMatchObject({ status: to, statusVersion: 4, statusChangedAt: new Date(NOW) });
  expect(change.event).toMatchObject({ status: to, data: { source: 'fleet', version: 4 } });
  expect('endedAt' in change.set).toBe(isTerminal(to));
});

describe('end reasons', () => {
  const table: Array<[string, BotState, TransitionRequest, string | undefined]> = [
    ['a bot reporting ENDED on its own completed', bot('IN_CALL'), move('ENDED', { source: 'bot' }), 'COMPLETED'],
    [
      'a bot reporting ENDED after a client asked it to leave left',
      bot('LEAVING', { leaveRequestedAt: new Date(NOW - 50) }),
      move('ENDED', { source: 'bot' }),
      'LEFT',
    ],
    [
      'a bot reporting FATAL without a reason had an error',
      bot('IN_CALL'),
      move('FATAL', { source: 'bot' }),
      'BOT_ERROR',
    ],
    [
      'a reason the bot gives is kept',
      bot('IN_CALL'),
      move('FATAL', { source: 'bot', reason: 'CONTAINER_LOST' }),
      'CONTAINER_LOST',
    ],
    ['the fleet names its own reason', bot('QUEUED'), move('FATAL', { reason: 'QUEUE_TIMEOUT' }), 'QUEUE_TIMEOUT'],
    ['a client cancel', bot('QUEUED'), move('ENDED', { source: 'client', reason: 'CANCELLED' }), 'CANCELLED'],
    ['the fleet without a reason records none', bot('IN_CALL'), move('ENDED'), undefined],
    ['a live move carries no end reason', bot('DEPLOYING'), move('IN_CALL', { source: 'bot' }), undefined],
  ];
  it.each(table)('%s', (_name, current, request, endReason) => {
    const change = decideTransition(current, request, NOW) as StatusChange;
    expect(change.set.endReason).toBe(endReason);
    expect(change.event.reason).toBe(endReason);
  });
});

describe('requeue: the one backward move', () => {
  const attempt = (outcome: 'failed' | 'timed-out' | 'full') => ({
    platform: 'k8s',
    outcome,
    reason: 'why',
    at: new Date(NOW),
  });
  const table: Array<
    [BotStatus, string | null, 'failed' | 'timed-out' | 'full', 'requeued' | 'refused', string | undefined]
  > = [
    ['DEPLOYING', 'k8s', 'failed', 'requeued', 'k8s'],
    ['DEPLOYING', 'k8s', 'timed-out', 'requeued', 'k8s'],
    ['DEPLOYING', 'k8s', 'full', 'requeued', undefined],
    ['QUEUED', null, 'timed-out', 'requeued', 'k8s'],
    ['DEPLOYING', 'aws', 'failed', 'refused', undefined], // it moved on to another platform meanwhile
    ['IN_CALL', 'k8s', 'failed', 'refused', undefined], // a container runs: too late to move
    ['ENDED', 'k8s', 'failed', 'refused', undefined],
    ['SCHEDULED', null, 'failed', 'refused', undefined],
  ];
  it.each(table)('%s on %s, %s → %s (excludes %s)', (status, platform, outcome, expected, excluded) => {
    const result = decideTransition(
      bot(status, { platform }),
      { kind: 'requeue', platform: 'k8s', attempt: attempt(outcome) },
      NOW,
    );
    if (expected === 'refused') return expect(result).toBeInstanceOf(TransitionError);
    const change = result as StatusChange;
    expect(change.set).toMatchObject({ status: 'QUEUED', platform: null, platformIdentifier: null, statusVersion: 4 });
    expect(change.attempt).toEqual(attempt(outcome));
    expect(change.exclude).toBe(excluded);
    expect(change.event).toMatchObject({ status: 'QUEUED', reason: 'why' });
  });
});

it('stamps a change no earlier than a millisecond after the previous one, whatever the caller clock says', () => {
  const previous = new Date(NOW + 5000); // written by a process whose clock runs ahead
  const change = decideTransition(bot('IN_CALL', { statusChangedAt: previous }), move('LEAVING'), NOW) as StatusChange;
  expect(change.set.statusChangedAt).toEqual(new Date(NOW + 5001));
});

it('fields the caller sets travel with the move, but cannot override the status or the version', () => {
  const change = decideTransition(
    bot('QUEUED'),
    move('DEPLOYING', { set: { platform: 'sim', status: 'IN_CALL', statusVersion: 99 } }),
    NOW,
  ) as StatusChange;
  expect(change.set).toMatchObject({ platform: 'sim', status: 'DEPLOYING', statusVersion: 4 });
});

it.each([
  ['QUEUED', true],
  ['SCHEDULED', false], // allowed forward, but not by the claim: only the global queue's bots are deployed
  ['DEPLOYING', false], // claimed already (a re-run of the job adopts instead)
  ['ENDED', false],
] as const)('the deploy claim from %s succeeds: %s', (status, claimed) => {
  const result = decideTransition(bot(status), move('DEPLOYING', { onlyFrom: 'QUEUED' }), NOW);
  expect(result instanceof TransitionError).toBe(!claimed);
});
