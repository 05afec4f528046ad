/**
 * What the chaos run needs of each platform's peer (the Kubernetes control plane, moto's ECS, the Coolify
 * test server, the host's processes): the peer's own truth about what runs, and ways to break the peer. The
 * run never asks the fleet what runs: invariants are checked against `liveContainers`.
 */
export interface PlatformPeer {
  /** The platform's name in PLATFORM_PRIORITY (`k8s`, `aws`, `coolify`, `local`, `sim-<name>`). */
  readonly platform: string;
  /** The bot limit this run gives the platform; `fleetEnv` sets `<NAME>_BOT_LIMIT` to it. */
  readonly limit: number;
  /** Variables every fleet process needs for this platform. */
  readonly fleetEnv: Record<string, string>;
  /**
   * The peer's own list of this fleet's containers that hold capacity (created and not yet terminated),
   * each with the bot it runs. Rejects when the peer cannot answer (it is down): the checker skips the
   * sample, it never counts that as zero.
   */
  liveContainers(): Promise<LiveContainer[]>;
  /** Faults this peer can suffer: each begins when called and ends when the returned function is called. */
  readonly faults: PeerFault[];
  /** Stops the peer and anything it started (its bot players). */
  close(): Promise<void>;
}

export interface LiveContainer {
  /** The peer's name for it: a pod name, a task ARN, a slot's application uuid, a process group id. */
  id: string;
  /** The fleet's id of the bot it runs (24 hex digits). */
  botId: string;
}

export interface PeerFault {
  /** A short name for the record: `k8s:apiserver-down`, `aws:latency`, ... */
  kind: string;
  begin(): Promise<() => Promise<void>>;
}

/** What a platform peer is given when the run starts it. */
export interface PeerContext {
  /** A directory of the run's the peer may write to. */
  dir: string;
  /** The bot limit to give the platform. */
  limit: number;
  /** The run's FLEET_ID: the peer's truth lists only containers stamped with it. */
  fleetId: string;
  /** Where bots reach the fleet's API (the run's balancer over its API processes): their `MILO_URL`. */
  apiUrl: string;
  /** The network paths the run can break: the fleet reaches the peer through one. */
  paths: NetworkPaths;
  /** Where a peer reports what its bot players saw go wrong (printed and counted, not a violation). */
  log(line: string): void;
}

/**
 * Network paths between the fleet and a peer that the run can break: Toxiproxy's proxies in the run
 * (`toxiproxy.ts`), straight connections without it (`directPaths`).
 */
export interface NetworkPaths {
  /** A path to `upstream` (`host:port`): the fleet is given the returned `host:port` instead. */
  open(name: string, upstream: string): Promise<string>;
  /** Faults of a path opened before: added latency, a timeout, reset connections, low bandwidth, down. */
  faultsOf(name: string): PeerFault[];
  close(): Promise<void>;
}

/** Paths that are the upstream itself: a run without network faults. */
export const directPaths: NetworkPaths = {
  open: (_name, upstream) => Promise.resolve(upstream),
  faultsOf: () => [],
  close: () => Promise.resolve(),
};
