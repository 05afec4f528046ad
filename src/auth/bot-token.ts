import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Per-bot credentials: a bot's MILO_AUTH_TOKEN is signed under BOT_TOKEN_SECRET, so it is valid for that one
 * bot, needs no storage and is checked without I/O on every heartbeat.
 *
 * A token names its bot: `mbt_<id>.<number>.<mac>`, the MAC an HMAC of both. Bots speaking the upstream
 * protocol send only their number (`BOT_ID`), so the fleet learns which bot a request speaks for, and
 * whether the number in each call is that bot's, from the token alone. A token of the older form,
 * `mbt_<mac of the id>`, is still valid for its bot, so containers started before an upgrade keep working.
 */
const PREFIX = 'mbt_';

export interface BotClaims {
  botId: string;
  /** The bot's per-fleet number; null for a token of the older form. */
  number: number | null;
}

const mac = (secret: string, subject: string) => createHmac('sha256', secret).update(subject).digest('base64url');

const sameText = (a: string, b: string) => {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
};

/** The token of bot `botId`; with its `number`, in the form that names both. */
export function botToken(secret: string, botId: string, number?: number): string {
  if (number === undefined) return PREFIX + mac(secret, `bot:${botId}`);
  return `${PREFIX}${botId}.${number}.${mac(secret, `bot:${botId}:${number}`)}`;
}

/** The bot a token of the naming form speaks for, if it is genuine; null otherwise. */
export function readBotToken(secret: string, presented: string): BotClaims | null {
  const match = /^mbt_([0-9a-f]{24})\.([1-9][0-9]{0,15})\.([\w-]{43})$/.exec(presented);
  if (!match) return null;
  const [, botId, number] = match;
  return sameText(botToken(secret, botId, Number(number)), presented) ? { botId, number: Number(number) } : null;
}

/**
 * The bot a token speaks for when it is presented for `idOrNumber` (a bot id or number, as a URL names it):
 * null unless the token is genuine and that bot's.
 */
export function botOfToken(secret: string, idOrNumber: string, presented: string): string | null {
  const claims = readBotToken(secret, presented);
  if (claims) return claims.botId === idOrNumber || String(claims.number) === idOrNumber ? claims.botId : null;
  return sameText(botToken(secret, idOrNumber), presented) ? idOrNumber : null;
}

export function verifyBotToken(secret: string, botId: string, presented: string): boolean {
  return botOfToken(secret, botId, presented) === botId;
}
