import { DEFAULT_LOCAL_BOT_COMMAND } from '../../../src/platforms/registry';
import { botProcessGroupsWhere } from '../../../test/support/processes';
import { LiveContainer, PeerContext, PlatformPeer } from '../platform-peer';

/**
 * `local`: the host's own truth. Every bot process the run's fleet starts carries `CHAOS_FLEET=<FLEET_ID>` in
 * its environment (the bot command sets it), and /proc lists them: one process group per container, alive
 * until its last member exits (zombies hold nothing). Fleets of other runs and tests on the machine carry
 * another mark or none, and are never counted.
 */
const MARK = 'CHAOS_FLEET';

function kill(processGroup: number): void {
  try {
    if (processGroup > 1) process.kill(-processGroup, 'SIGKILL');
  } catch {
    // it exited meanwhile
  }
}

export function startLocalPeer(ctx: PeerContext): Promise<PlatformPeer> {
  const mark = `${MARK}=${ctx.fleetId}`;
  const liveContainers = (): LiveContainer[] => {
    const containers: LiveContainer[] = [];
    const groups = botProcessGroupsWhere((_botId, environ) => environ.split('\0').includes(mark));
    for (const [botId, pgids] of groups) for (const pgid of pgids) containers.push({ id: String(pgid), botId });
    return containers;
  };
  return Promise.resolve({
    platform: 'local',
    limit: ctx.limit,
    fleetEnv: {
      LOCAL_BOT_LIMIT: String(ctx.limit),
      LOCAL_BOT_COMMAND: `exec env ${mark} ${DEFAULT_LOCAL_BOT_COMMAND}`,
    },
    liveContainers: () => Promise.resolve(liveContainers()),
    faults: [
      {
        // A container dies behind the fleet's back (an OOM kill, a crashed host process): the oldest one.
        kind: 'local:kill-bot',
        begin() {
          const [victim] = liveContainers().sort((a, b) => Number(a.id) - Number(b.id));
          if (victim) kill(Number(victim.id));
          return Promise.resolve(() => Promise.resolve());
        },
      },
    ],
    // The run's bot processes outlive the workers that started them; none outlives the run.
    close() {
      for (const { id } of liveContainers()) kill(Number(id));
      return Promise.resolve();
    },
  });
}
