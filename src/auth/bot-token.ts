import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Per-bot credentials: a bot's MILO_AUTH_TOKEN is an HMAC of its id under BOT_TOKEN_SECRET, so it is valid
 * for that one bot, needs no storage and is checked without I/O on every heartbeat.
 */
const PREFIX = 'mbt_';

export function botToken(secret: string, botId: string): string {
  return PREFIX + createHmac('sha256', secret).update(`bot:${botId}`).digest('base64url');
}

export function verifyBotToken(secret: string, botId: string, presented: string): boolean {
  const expected = Buffer.from(botToken(secret, botId));
  const given = Buffer.from(presented);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
