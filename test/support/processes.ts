import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { botIdOfEnv } from './bot-id-of-env';

/** What /proc says about processes, for tests that count bot processes or kill a process's children. */

function stat(pid: number): { ppid: number; pgid: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return null; // a zombie holds nothing
    return { ppid: Number(fields[1]), pgid: Number(fields[2]) };
  } catch {
    return null;
  }
}

const pids = () =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);

/** Children of `parent` whose command name (/proc/<pid>/comm) is `comm`. */
export function childrenNamed(parent: number, comm: string): number[] {
  return pids().filter((pid) => {
    try {
      return stat(pid)?.ppid === parent && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
    } catch {
      return false;
    }
  });
}

/**
 * Live bot processes of the given bots, as bot id → the process groups running it (one group per
 * deployment: the `sh -c` wrapper and the bot share one). Read from each process's environment (its token).
 */
export function botProcessGroups(botIds: ReadonlySet<string>): Map<string, Set<number>> {
  return botProcessGroupsWhere((botId) => botIds.has(botId));
}

/** The same, for the bot processes whose bot id and environment (`/proc/<pid>/environ`) `keep` accepts. */
export function botProcessGroupsWhere(keep: (botId: string, environ: string) => boolean): Map<string, Set<number>> {
  const groups = new Map<string, Set<number>>();
  for (const pid of pids()) {
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue;
    }
    const botId = botIdOfEnv({
      MILO_AUTH_TOKEN: /(?:^|\0)MILO_AUTH_TOKEN=([^\0]*)/.exec(environ)?.[1],
      BOT_ID: /(?:^|\0)BOT_ID=([^\0]*)/.exec(environ)?.[1],
    });
    const info = botId && keep(botId, environ) ? stat(pid) : null;
    if (!botId || !info) continue;
    if (!groups.has(botId)) groups.set(botId, new Set());
    groups.get(botId)!.add(info.pgid);
  }
  return groups;
}

export function isAlive(pid: number): boolean {
  return stat(pid) !== null;
}

/** Live (non-zombie) processes of process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  return pids().filter((pid) => stat(pid)?.pgid === pgid);
}

/** SIGKILLs the process group of every `local` bot a run directory's pid files name: a host dying with its bots. */
export function killBotProcessesIn(runDir: string): void {
  for (const file of readdirSync(runDir).filter((name) => name.endsWith('.pid'))) {
    try {
      process.kill(-(JSON.parse(readFileSync(path.join(runDir, file), 'utf8')) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
