import { Connection } from 'mongoose';
import { Redis } from 'ioredis';
import { Config } from '../config';
import { Placement } from '../placement/placement.service';
import { ApiKeys } from '../services/api-keys.service';
import { BotsService } from '../services/bots.service';
import { Queue } from 'bullmq';

/** What the HTTP layer may use: services, plus the raw connections only for readiness checks. */
export interface ApiContext {
  config: Config;
  bots: BotsService;
  apiKeys: ApiKeys;
  placement: Placement;
  queues: Queue[];
  redis: Redis;
  mongo: Connection;
}
