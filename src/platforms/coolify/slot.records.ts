import { Connection, Model, Schema } from 'mongoose';
import { MeetingPlatform } from '../../domain/bot.lifecycle';
import { PoolCounts, PoolStats } from '../platform';

/**
 * Slot records in MongoDB: the durable truth about the pool, from which the Redis working state is rebuilt
 * after Redis lost its data. State changes are decided in Redis (slot.pool.ts) and then written here, one
 * document by `_id` (the slot name) at a time: FerretDB applies updates without atomicity and uses no other
 * index, so nothing here is a conditional update or a query by another field on a hot path.
 */
export const SLOT_STATES = ['IDLE', 'STARTING', 'BUSY', 'ERROR'] as const;
export type SlotState = (typeof SLOT_STATES)[number];

export interface SlotRecord {
  /** The slot name, also the Coolify application's name. */
  _id: string;
  fleetId: string;
  meetingPlatform: MeetingPlatform;
  /** The Coolify application; null until it has been created. */
  applicationUuid: string | null;
  state: SlotState;
  /** The bot attempt (deployment name `mb-<botId>-<platform>`) holding the slot. */
  deploymentName: string | null;
  botId: string | null;
  /** The deployment that starts the current holder, so a retried deploy follows it instead of starting another. */
  deploymentUuid: string | null;
  /** The attempt `deploymentUuid` was started for (it outlives that attempt, to tell a stale deployment apart). */
  deploymentFor: string | null;
  lastUsedAt: Date | null;
  /** When its current holder's deployment finished (its container started); null while none has. */
  runningSince: Date | null;
  lastError: string | null;
  /** Failed starts or stops since the slot last started a bot; recovery replaces it at COOLIFY_SLOT_MAX_FAILURES. */
  recoveryAttempts: number;
  createdAt: Date;
}

const slotSchema = new Schema<SlotRecord>(
  {
    _id: { type: String, required: true },
    fleetId: { type: String, required: true },
    meetingPlatform: { type: String, required: true },
    applicationUuid: { type: String, default: null },
    state: { type: String, enum: SLOT_STATES, required: true },
    deploymentName: { type: String, default: null },
    botId: { type: String, default: null },
    deploymentUuid: { type: String, default: null },
    deploymentFor: { type: String, default: null },
    lastUsedAt: { type: Date, default: null },
    runningSince: { type: Date, default: null },
    lastError: { type: String, default: null },
    recoveryAttempts: { type: Number, default: 0 },
    createdAt: { type: Date, required: true },
  },
  { collection: 'coolify_slots', versionKey: false },
);

export interface SlotRecords {
  get(slot: string): Promise<SlotRecord | null>;
  /** Every slot of this fleet (the pool is at most COOLIFY_BOT_LIMIT slots, so reading it whole is cheap). */
  all(): Promise<SlotRecord[]>;
  save(slot: string, fields: Partial<Omit<SlotRecord, '_id' | 'fleetId'>>): Promise<void>;
  remove(slot: string): Promise<void>;
}

function slotModel(connection: Connection): Model<SlotRecord> {
  return (
    (connection.models.CoolifySlot as Model<SlotRecord>) ?? connection.model<SlotRecord>('CoolifySlot', slotSchema)
  );
}

export function createSlotRecords(connection: Connection, fleetId: string): SlotRecords {
  const Slot = slotModel(connection);
  const ready = Slot.createCollection().catch((error: { code?: number; codeName?: string }) => {
    if (error.code !== 48 && error.codeName !== 'NamespaceExists') throw error;
  });
  return {
    async get(slot) {
      await ready;
      const record = await Slot.findById(slot).lean<SlotRecord>();
      return record && record.fleetId === fleetId ? record : null;
    },
    async all() {
      await ready;
      return Slot.find({ fleetId }).lean<SlotRecord[]>();
    },
    async save(slot, fields) {
      await ready;
      await Slot.updateOne({ _id: slot }, { $set: { ...fields, fleetId } }, { upsert: true });
    },
    async remove(slot) {
      await ready;
      await Slot.deleteOne({ _id: slot });
    },
  };
}

/** Slot counts from the records, overall and per meeting platform: what GET /api/bots/pool-stats reports. */
export function createSlotStats(connection: Connection, fleetId: string) {
  const records = createSlotRecords(connection, fleetId);
  return async (): Promise<PoolStats> => {
    const empty = (): PoolCounts => ({ total: 0, idle: 0, starting: 0, busy: 0, error: 0 });
    const overall = empty();
    const byMeetingPlatform: Record<string, PoolCounts> = {};
    for (const record of await records.all()) {
      const key = record.state.toLowerCase() as Lowercase<SlotState>;
      for (const counts of [overall, (byMeetingPlatform[record.meetingPlatform] ??= empty())]) {
        counts.total++;
        counts[key]++;
      }
    }
    return { ...overall, byMeetingPlatform };
  };
}

/**
 * The bot a slot holds now (starting or running it), by the slot's Coolify application uuid or its name: what
 * a slot image started without `BOT_ID` asks for by its `POOL_SLOT_UUID`. Null for an unknown or idle slot.
 */
export function createSlotHolderReader(connection: Connection, fleetId: string) {
  const records = createSlotRecords(connection, fleetId);
  return async (poolSlotUuid: string): Promise<string | null> => {
    const slot = (await records.all()).find(
      (record) => record.applicationUuid === poolSlotUuid || record._id === poolSlotUuid,
    );
    return slot && (slot.state === 'BUSY' || slot.state === 'STARTING') ? slot.botId : null;
  };
}
