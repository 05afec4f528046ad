import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFerretDb } from '../src/peers';

/** Without FerretDB, the error sends the user to the provisioning script, which builds our patched one. */
it('a missing ferretdb names the provisioning script, not a plain `go install`', async () => {
  const empty = mkdtempSync(path.join(os.tmpdir(), 'meeboter-no-ferretdb-'));
  const saved = { PATH: process.env.PATH, GOBIN: process.env.GOBIN };
  process.env.PATH = empty;
  process.env.GOBIN = empty;
  try {
    const failure = await startFerretDb(path.join(empty, 'data')).then(
      () => null,
      (error: Error) => error.message,
    );
    expect(failure).toContain('bash scripts/provision.sh');
    expect(failure).toContain('MONGODB_URI');
    expect(failure).not.toMatch(/go install/);
  } finally {
    process.env.PATH = saved.PATH;
    if (saved.GOBIN === undefined) delete process.env.GOBIN;
    else process.env.GOBIN = saved.GOBIN;
  }
});
