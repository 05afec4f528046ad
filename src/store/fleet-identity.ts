import { randomBytes } from 'node:crypto';
import { Connection } from 'mongoose';

/**
 * The fleet's own identity when FLEET_ID is not set: made once and kept in MongoDB with the fleet's bots, so
 * two fleets that share nothing configured (each its own MongoDB or database) never carry the same id, even
 * with the same REDIS_PREFIX on one machine, and never list, adopt or stop each other's containers. It lives
 * in MongoDB rather than Redis because containers outlive a Redis that lost its data, and the id they carry
 * must not change under them. Every process of the fleet reads the same document; the first to start makes
 * it, and processes starting at once all end up with the one that was stored first.
 */
interface FleetIdentityDoc {
  _id: 'identity';
  fleetId: string;
  createdAt: Date;
}

const COLLECTION = 'fleet';
const DUPLICATE_KEY = 11000;

/**
 * A new id: the Redis prefix (so a person can tell fleets apart on a shared host) and 48 random bits, within
 * the 63 characters a Kubernetes label value allows.
 */
const newFleetId = (redisPrefix: string) => `${redisPrefix.slice(0, 50)}-${randomBytes(6).toString('hex')}`;

export async function keptFleetId(connection: Connection, redisPrefix: string): Promise<string> {
  const identities = connection.collection<FleetIdentityDoc>(COLLECTION);
  const kept = await identities.findOne({ _id: 'identity' });
  if (kept) return kept.fleetId;
  // A database that already holds bots or slots was used by this fleet before it kept an id, when the id was
  // REDIS_PREFIX: its containers carry that one, so it stays.
  const usedBefore =
    (await connection.collection('bots').countDocuments({}, { limit: 1 })) > 0 ||
    (await connection.collection('coolify_slots').countDocuments({}, { limit: 1 })) > 0;
  const candidate = usedBefore ? redisPrefix : newFleetId(redisPrefix);
  try {
    await identities.insertOne({ _id: 'identity', fleetId: candidate, createdAt: new Date() });
    return candidate;
  } catch (error) {
    if ((error as { code?: number }).code !== DUPLICATE_KEY) throw error;
  }
  // another process of this fleet stored its id first
  const stored = await identities.findOne({ _id: 'identity' });
  if (!stored) throw new Error('the fleet identity was stored and then removed');
  return stored.fleetId;
}
