import { createHash, randomBytes } from 'node:crypto';
import { Models } from '../store/models';

/**
 * Client API keys. Only a SHA-256 of each key is stored (keys are 256 random bits, so a fast hash is
 * enough); a short in-process cache keeps authentication off the database on hot paths.
 */
export interface ApiKeys {
  create(owner: string): Promise<string>;
  /** Returns the key's owner, or null for an unknown key. */
  authenticate(key: string): Promise<string | null>;
  /** Makes sure `key` exists for `owner` (BOOTSTRAP_API_KEY). */
  ensure(key: string, owner: string): Promise<void>;
}

const CACHE_MS = 30_000;
const hash = (key: string) => createHash('sha256').update(key).digest('hex');

export function createApiKeys({ ApiKey }: Models): ApiKeys {
  const cache = new Map<string, { owner: string | null; until: number }>();
  return {
    async create(owner) {
      const key = 'mbk_' + randomBytes(32).toString('base64url');
      await ApiKey.create({ hash: hash(key), owner, createdAt: new Date() });
      return key;
    },
    async authenticate(key) {
      const digest = hash(key);
      const cached = cache.get(digest);
      if (cached && cached.until > Date.now()) return cached.owner;
      const found = await ApiKey.findOne({ hash: digest }).lean();
      const owner = found?.owner ?? null;
      if (cache.size > 10_000) cache.clear();
      // Unknown keys are cached briefly too, so a client hammering with a bad key costs no queries.
      cache.set(digest, { owner, until: Date.now() + (owner ? CACHE_MS : 2000) });
      return owner;
    },
    async ensure(key, owner) {
      await ApiKey.updateOne(
        { hash: hash(key) },
        { $setOnInsert: { hash: hash(key), owner, createdAt: new Date() } },
        { upsert: true },
      );
    },
  };
}
