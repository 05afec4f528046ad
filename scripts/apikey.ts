/**
 * `npm run apikey -- create <owner>`: creates an API key for <owner> and prints it as the last line.
 * Uses MONGODB_URI, or the MongoDB that `npm start` uses by default (127.0.0.1:27017 or its own FerretDB).
 */
import path from 'node:path';
import { loadConfig } from '../src/config';
import { createMongo } from '../src/connections';
import { isPortOpen, startFerretDb } from '../src/peers';
import { createApiKeys } from '../src/services/api-keys.service';
import { createModels } from '../src/store/models';

async function main() {
  const [command, owner] = process.argv.slice(2);
  if (command !== 'create' || !owner || !/^[\w.@-]{1,100}$/.test(owner)) {
    process.stderr.write('usage: npm run apikey -- create <owner>\n');
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
    const key = await createApiKeys(await createModels(connection)).create(owner);
    process.stdout.write(`API key for ${owner} (shown once, store it now):\n${key}\n`);
  } finally {
    await connection.close();
    await stop();
  }
}

main().catch((error) => {
  process.stderr.write(`apikey failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
