/**
 * The sim bot as a process: the default LOCAL_BOT_COMMAND. Reads BOT_ID, MILO_URL, MILO_AUTH_TOKEN from its
 * environment like a real bot image. SIGTERM stops it. `crash` exits with code 1 without reporting.
 */
import { BotClient } from '../src/sdk/bot-client';
import { runSimBot } from '../src/sdk/sim-bot';

const controller = new AbortController();
process.on('SIGTERM', () => controller.abort());
process.on('SIGINT', () => controller.abort());

runSimBot(BotClient.fromEnv(process.env, controller.signal), controller.signal)
  .then((outcome) => {
    process.stdout.write(
      JSON.stringify({ time: new Date().toISOString(), msg: 'sim bot finished', botId: process.env.BOT_ID, outcome }) +
        '\n',
    );
    process.exit(outcome === 'crashed' ? 1 : 0);
  })
  .catch((error) => {
    process.stderr.write(`sim bot failed: ${String(error)}\n`);
    process.exit(2);
  });
