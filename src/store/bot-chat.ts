import { Redis } from 'ioredis';
import { RedisScript } from '../redis-script';

/**
 * Chat messages an owner sends a bot to post in its meeting: a Redis list per bot, taken by the bot one at a
 * time in the order sent (`bots.chat.dequeueMessage`), each once. At most `CHAT_BOUNDS.queued` wait at once;
 * a bot's queue is forgotten `CHAT_BOUNDS.keepMs` after the last message was sent to it.
 */
export const CHAT_BOUNDS = { queued: 100, keepMs: 24 * 3600 * 1000 };

export interface ChatMessage {
  messageText: string;
  userId: string;
  sentAt: string;
}

export interface BotChat {
  /** False when the bot already has `CHAT_BOUNDS.queued` messages waiting. */
  send(botId: string, message: ChatMessage): Promise<boolean>;
  /** The oldest waiting message, removed; null when none waits. */
  take(botId: string): Promise<ChatMessage | null>;
}

/** KEYS: the bot's queue. ARGV: bound, keep ms, message JSON. */
const SEND = new RedisScript(`
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`);

export function createBotChat(redis: Redis, prefix: string): BotChat {
  const queueKey = (botId: string) => `${prefix}:chat:${botId}`;
  return {
    async send(botId, message) {
      return (
        (await SEND.run(redis, 1, queueKey(botId), CHAT_BOUNDS.queued, CHAT_BOUNDS.keepMs, JSON.stringify(message))) ===
        1
      );
    },
    async take(botId) {
      const next = await redis.lpop(queueKey(botId));
      return next === null ? null : (JSON.parse(next) as ChatMessage);
    },
  };
}
