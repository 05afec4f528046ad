import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { UnavailableError } from '../errors';
import { RedisScript } from '../redis-script';
import { withTimeout } from '../retry';
import { Models } from '../store/models';

/**
 * Client API keys. Only a SHA-256 of each key is stored, as the record's id (keys are 256 random bits, so a
 * fast hash is enough); the first 12 hex digits of it name a key for listing and revoking without showing
 * it. A short in-process cache keeps authentication off the database on hot paths, so a revoked key stops
 * working in every process within CACHE_MS.
 */
export interface ApiKeyInfo {
  /** The first 12 hex digits of the key's SHA-256. */
  id: string;
  owner: string;
  createdAt: Date;
}

export interface ApiKeys {
  create(owner: string): Promise<string>;
  /** The key's owner and id, or null for an unknown key. */
  authenticate(key: string): Promise<{ owner: string; keyId: string } | null>;
  /** Makes sure `key` exists for `owner` (BOOTSTRAP_API_KEY). */
  ensure(key: string, owner: string): Promise<void>;
  list(): Promise<ApiKeyInfo[]>;
  /** Revokes the one key whose id starts with `id`; returns it, or null when none or several match. */
  revoke(id: string): Promise<ApiKeyInfo | null>;
}

export const API_KEY_CACHE_MS = 30_000;
/**
 * While MongoDB does not answer (within LOOKUP_TIMEOUT_MS), a key this process knew keeps its owner for
 * STALE_RETRY_MS more, then one request looks it up again: the fleet serves without MongoDB, and its clients
 * should not be refused for a database they do not need. A key this process never saw is looked up among the
 * keys the fleet's processes found in MongoDB (`known`: the hash and owner only, in Redis, dropped when MongoDB
 * says the key is gone, forgotten KNOWN_KEY_TTL_S after the last lookup found it), so a process started during
 * the outage serves the fleet's clients too. A key no process found cannot be checked: 503.
 *
 * A revoke leaves `revoked` (the hash, no expiry) in the same step that drops `known`, and a lookup shares a
 * key only if it is not there (one script). Without it, a lookup that read the key from MongoDB just before
 * the revoke and wrote `known` just after would share the revoked key for KNOWN_KEY_TTL_S. The mark never
 * expires because that write can come arbitrarily late (the process paused between its read and its write);
 * revokes are rare and a mark is a hash, and a key only comes back through `ensure`, which clears it.
 */
const LOOKUP_TIMEOUT_MS = 1000;
const STALE_RETRY_MS = 5000;
const KNOWN_KEY_TTL_S = 24 * 3600;
const ID_LENGTH = 12;
const hash = (key: string) => createHash('sha256').update(key).digest('hex');

/** KEYS: known, revoked. ARGV: owner, seconds. Shares the key's owner unless the key was revoked. */
const SHARE_UNLESS_REVOKED = new RedisScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1`);

/** Where the fleet's processes share the keys they found (without it, each process knows only its own). */
export interface KnownApiKeys {
  redis: Redis;
  prefix: string;
}

export function createApiKeys({ ApiKey }: Models, shared?: KnownApiKeys): ApiKeys {
  const cache = new Map<string, { owner: string | null; until: number }>();
  const knownKey = (digest: string) => `${shared?.prefix}:api-keys:known:${digest}`;
  const revokedKey = (digest: string) => `${shared?.prefix}:api-keys:revoked:${digest}`;
  /** Best effort: a Redis that does not answer only means a later outage finds fewer keys known. */
  const remember = (digest: string, owner: string | null) =>
    shared
      ? (owner
          ? SHARE_UNLESS_REVOKED.run(shared.redis, 2, knownKey(digest), revokedKey(digest), owner, KNOWN_KEY_TTL_S)
          : shared.redis.del(knownKey(digest))
        ).catch(() => undefined)
      : undefined;
  const knownOwner = async (digest: string) =>
    shared ? await shared.redis.get(knownKey(digest)).catch(() => null) : null;
  const info = (doc: { _id: string; owner: string; createdAt: Date }): ApiKeyInfo => ({
    id: doc._id.slice(0, ID_LENGTH),
    owner: doc.owner,
    createdAt: doc.createdAt,
  });
  return {
    async create(owner) {
      const key = 'mbk_' + randomBytes(32).toString('base64url');
      await ApiKey.create({ _id: hash(key), owner, createdAt: new Date() });
      return key;
    },
    async authenticate(key) {
      const digest = hash(key);
      const known = (owner: string | null) => (owner ? { owner, keyId: digest.slice(0, ID_LENGTH) } : null);
      const cached = cache.get(digest);
      if (cached && cached.until > Date.now()) return known(cached.owner);
      let found;
      try {
        found = await withTimeout(ApiKey.findById(digest).lean().exec(), LOOKUP_TIMEOUT_MS);
      } catch (error) {
        if (cached) {
          cached.until = Date.now() + STALE_RETRY_MS;
          return known(cached.owner);
        }
        const owner = await knownOwner(digest);
        if (owner) {
          cache.set(digest, { owner, until: Date.now() + STALE_RETRY_MS });
          return known(owner);
        }
        throw new UnavailableError(
          `cannot check the API key: MongoDB does not answer (${error instanceof Error ? error.message : String(error)})`,
        );
      }
      const owner = found?.owner ?? null;
      await remember(digest, owner);
      if (cache.size > 10_000) cache.clear();
      // Unknown keys are cached briefly too, so a client hammering with a bad key costs no queries.
      cache.set(digest, { owner, until: Date.now() + (owner ? API_KEY_CACHE_MS : 2000) });
      return known(owner);
    },
    async ensure(key, owner) {
      try {
        await ApiKey.create({ _id: hash(key), owner, createdAt: new Date() });
      } catch (error) {
        if ((error as { code?: number }).code !== 11000) throw error; // it exists already
        return;
      }
      // a key revoked before and made again: it may be shared again
      await shared?.redis.del(revokedKey(hash(key)));
    },
    async list() {
      const docs = await ApiKey.find({}).sort({ createdAt: 1 }).lean();
      return docs.map(info);
    },
    async revoke(id) {
      if (!/^[0-9a-f]{4,64}$/.test(id)) return null;
      const matches = (await ApiKey.find({}).lean()).filter((doc) => doc._id.startsWith(id));
      if (matches.length !== 1) return null;
      const digest = matches[0]._id;
      // Before MongoDB forgets the key: a revoke that fails here can be retried, and stops it being shared.
      if (shared) {
        const replies = await shared.redis.multi().set(revokedKey(digest), '1').del(knownKey(digest)).exec();
        for (const [error] of replies ?? []) if (error) throw error;
      }
      await ApiKey.deleteOne({ _id: digest });
      cache.delete(digest);
      return info(matches[0]);
    },
  };
}
