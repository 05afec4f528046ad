import { Connection } from 'mongoose';
import { Redis } from 'ioredis';
import { Config } from '../config';
import { Placement } from '../placement/placement.service';
import { PoolStats } from '../platforms/platform';
import { ApiKeys } from '../services/api-keys.service';
import { BotsService } from '../services/bots.service';
import { Queue } from 'bullmq';
import { Flusher } from '../store/flusher';

/** What the HTTP layer may use: services, plus the raw connections only for readiness checks. */
export interface ApiContext {
  config: Config;
  bots: BotsService;
  apiKeys: ApiKeys;
  placement: Placement;
  /** The slot pool's counts, when a pool platform (coolify) is enabled. */
  poolStats?: () => Promise<PoolStats>;
  /** The bot a pool slot holds now, by its uuid, when a pool platform (coolify) is enabled. */
  slotHolder?: (poolSlotUuid: string) => Promise<string | null>;
  queues: Queue[];
  redis: Redis;
  mongo: Connection;
  /** Whether the bots' changes reach MongoDB (readiness reports it). */
  flusher: Pick<Flusher, 'status'>;
}
