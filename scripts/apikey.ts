/**
 * `npm run apikey -- create <owner> | list | revoke <id>`:
 * - create: makes an API key for <owner> and prints it, once, as the last line;
 * - list: one line per key: its id (the first 12 hex digits of its SHA-256), owner and creation time;
 * - revoke: deletes the key with that id (or a unique prefix of it); every process refuses it within 30 s.
 * Uses MONGODB_URI, or the MongoDB that `npm start` uses by default (127.0.0.1:27017 or its own FerretDB).
 */
import path from 'node:path';
import { loadConfig } from '../src/config';
import { createMongo } from '../src/connections';
import { isPortOpen, startFerretDb } from '../src/peers';
import { ApiKeys, createApiKeys } from '../src/services/api-keys.service';
import { createModels } from '../src/store/models';

const USAGE = 'usage: npm run apikey -- create <owner> | list | revoke <id>\n';

const COMMANDS: Record<string, (keys: ApiKeys, argument?: string) => Promise<number>> = {
  async create(keys, owner) {
    const key = await keys.create(owner!);
    process.stdout.write(`API key for ${owner} (shown once, store it now):\n${key}\n`);
    return 0;
  },
  async list(keys) {
    for (const key of await keys.list())
      process.stdout.write(`${key.id}  ${key.owner}  ${key.createdAt.toISOString()}\n`);
    return 0;
  },
  async revoke(keys, id) {
    const revoked = await keys.revoke(id!);
    if (!revoked) {
      process.stderr.write(`no single API key has an id starting with "${id}" (see npm run apikey -- list)\n`);
      return 1;
    }
    process.stdout.write(`revoked ${revoked.id} (owner ${revoked.owner})\n`);
    return 0;
  },
};

function parse(argv: string[]): { command: string; argument?: string } | null {
  const [command, argument] = argv;
  if (command === 'create' && argument && /^[\w.@-]{1,100}$/.test(argument)) return { command, argument };
  if (command === 'list' && argument === undefined) return { command };
  if (command === 'revoke' && argument) return { command, argument };
  return null;
}

async function main() {
  const parsed = parse(process.argv.slice(2));
  if (!parsed) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const config = loadConfig(process.env);
  let uri = config.mongodbUri;
  let stop = async () => {};
  if (!uri) {
    if (await isPortOpen(27017)) uri = 'mongodb://127.0.0.1:27017/meeboter';
    else {
      const peer = await startFerretDb(path.resolve('.data/ferretdb'));
      uri = peer.url;
      stop = peer.stop;
    }
  }
  const connection = await createMongo(uri);
  try {
    process.exitCode = await COMMANDS[parsed.command](createApiKeys(await createModels(connection)), parsed.argument);
  } finally {
    await connection.close();
    await stop();
  }
}

main().catch((error) => {
  process.stderr.write(`apikey failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
