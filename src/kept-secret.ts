import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The secret a single-process fleet (`npm start`) signs bot tokens with when neither BOT_TOKEN_SECRET nor
 * MILO_AUTH_TOKEN is set:
 * made once and kept in `<dataDir>/bot-token-secret` (mode 0600), so the tokens that running bots hold stay
 * valid across restarts, and so does the webhook secret derived from it. A configured secret always wins.
 */
export function withKeptBotTokenSecret(
  env: Record<string, string | undefined>,
  dataDir: string,
): Record<string, string | undefined> {
  if (env.BOT_TOKEN_SECRET?.trim() || env.MILO_AUTH_TOKEN?.trim()) return env;
  const file = path.join(dataDir, 'bot-token-secret');
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(dataDir, { recursive: true });
    secret = randomBytes(32).toString('hex');
    // `wx`: if another process made it first, read theirs instead of overwriting it.
    try {
      writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
    } catch {
      secret = readFileSync(file, 'utf8').trim();
    }
  }
  chmodSync(file, 0o600);
  return { ...env, BOT_TOKEN_SECRET: secret };
}
