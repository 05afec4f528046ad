import { createWriteStream, WriteStream } from 'node:fs';
import path from 'node:path';
import { FleetProcess, spawnFleetProcess } from '../../test/support/fleet';
import { Fault } from './faults';

/**
 * The fleet split in roles, one OS process each (`dist/src/main.js api|worker`), as on real machines: API
 * processes on their own ports behind the run's balancer, workers grouped in pairs per `LOCAL_HOST_ID`.
 * Each process's output goes to `<dir>/<name>.log`.
 */
export interface FleetMember {
  name: string;
  role: 'api' | 'worker';
  env: Record<string, string>;
}

export interface ChaosFleet {
  readonly members: FleetMember[];
  /** SIGKILL of each process, restarted with the same environment when the fault ends. */
  readonly faults: Fault[];
  close(): Promise<void>;
}

export interface FleetLayout {
  apiPorts: number[];
  workers: number;
  /** Workers per `LOCAL_HOST_ID`: `h1` holds the first pair, `h2` the next, ... */
  workersPerHost: number;
}

export function layoutMembers(layout: FleetLayout, env: Record<string, string>, dir: string): FleetMember[] {
  const apis = layout.apiPorts.map((port, i) => ({
    name: `api-${i + 1}`,
    role: 'api' as const,
    env: { ...env, PORT: String(port) },
  }));
  const workers = Array.from({ length: layout.workers }, (_, i) => {
    const host = `h${Math.floor(i / layout.workersPerHost) + 1}`;
    return {
      name: `worker-${i + 1}`,
      role: 'worker' as const,
      // One run directory per host, as on separate machines.
      env: { ...env, PORT: '0', LOCAL_HOST_ID: host, LOCAL_RUN_DIR: path.join(dir, `local-${host}`) },
    };
  });
  return [...apis, ...workers];
}

export function startChaosFleet(members: FleetMember[], dir: string): ChaosFleet {
  const logs = new Map<string, WriteStream>();
  const running = new Map<string, FleetProcess | null>();
  const start = (member: FleetMember) => {
    if (!logs.has(member.name)) logs.set(member.name, createWriteStream(path.join(dir, `${member.name}.log`)));
    const log = logs.get(member.name)!;
    const child = spawnFleetProcess(member.role, member.env);
    child.child.stdout?.on('data', (chunk: Buffer) => log.write(chunk));
    child.child.stderr?.on('data', (chunk: Buffer) => log.write(chunk));
    running.set(member.name, child);
  };
  members.forEach(start);
  return {
    members,
    faults: members.map((member) => ({
      kind: `fleet:kill-${member.role}`,
      target: member.name,
      async begin() {
        await running.get(member.name)?.kill('SIGKILL');
        running.set(member.name, null);
        logs.get(member.name)!.write(`--- chaos: SIGKILL at ${new Date().toISOString()}\n`);
        return () => {
          logs.get(member.name)!.write(`--- chaos: restarted at ${new Date().toISOString()}\n`);
          start(member);
          return Promise.resolve();
        };
      },
    })),
    async close() {
      await Promise.all([...running.values()].map((child) => child?.kill('SIGTERM') ?? Promise.resolve()));
      await Promise.all([...logs.values()].map((log) => new Promise((resolve) => log.end(resolve))));
    },
  };
}
