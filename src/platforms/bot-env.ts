import { botToken } from '../auth/bot-token';
import { Config } from '../config';

/**
 * The environment every bot container gets, on every platform (docs/bot-protocol.md). `BOT_ID` is the bot's number, which both
 * the upstream bot images (they parse it with `Number()`) and our SDK (it names the bot in URLs) take;
 * `MILO_AUTH_TOKEN` is the bot's own token, which names the bot and its number. A bot made before numbers
 * existed gets its id.
 */
export function botEnv(config: Config, botId: string, number?: number): Record<string, string> {
  const env: Record<string, string> = {
    BOT_ID: number === undefined ? botId : String(number),
    MILO_URL: config.publicUrl,
    MILO_AUTH_TOKEN: botToken(config.botTokenSecret, botId, number),
    NODE_ENV: 'production',
    S3_REGION: config.s3.region,
  };
  const optional: Record<string, string | undefined> = {
    S3_ENDPOINT: config.s3.endpoint,
    S3_ACCESS_KEY: config.s3.accessKey,
    S3_SECRET_KEY: config.s3.secretKey,
    S3_BUCKET_NAME: config.s3.bucketName,
  };
  for (const [key, value] of Object.entries(optional)) if (value) env[key] = value;
  return env;
}
