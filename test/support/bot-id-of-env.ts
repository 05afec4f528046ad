/**
 * The id of the bot a container env is for. `BOT_ID` is the bot's number; its token (`MILO_AUTH_TOKEN`,
 * `mbt_<id>.<number>.<mac>`) names the id. A fixture reads it without checking the MAC: the fleet checks it.
 */
export function botIdOfEnv(env: Record<string, string | undefined>): string | undefined {
  return /^mbt_([0-9a-f]{24})\./.exec(env.MILO_AUTH_TOKEN ?? '')?.[1] ?? env.BOT_ID;
}
