/**
 * `npm run aws:setup -- --region R [--profile P] [--image-org ORG] [--dry-run]`: creates or updates the AWS
 * infrastructure of the `aws` platform (see src/platforms/aws/aws-setup.ts) and prints the AWS_* lines to
 * paste into the fleet's environment as the last lines of its output.
 */
import { setupAws } from '../src/platforms/aws/aws-setup';

const USAGE = 'usage: npm run aws:setup -- --region <region> [--profile <profile>] [--image-org <org>] [--dry-run]\n';

function parseArgs(argv: string[]) {
  const options: { region?: string; profile?: string; imageOrg?: string; dryRun: boolean } = { dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--dry-run') options.dryRun = true;
    else if (flag === '--region' || flag === '--profile' || flag === '--image-org') {
      const value = argv[++i];
      if (!value || value.startsWith('--')) throw new Error(`${flag} needs a value`);
      if (flag === '--region') options.region = value;
      else if (flag === '--profile') options.profile = value;
      else options.imageOrg = value;
    } else throw new Error(`unknown argument "${flag}"`);
  }
  if (!options.region) throw new Error('--region is required');
  return options as typeof options & { region: string };
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`aws:setup: ${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const result = await setupAws({ ...options, report: (line) => process.stdout.write(`  ${line}\n`) });
  const verb = options.dryRun ? 'would make' : 'made';
  process.stdout.write(`aws:setup ${verb} ${result.changes.length} change(s) in ${options.region}\n`);
  process.stdout.write("\n# Paste into the fleet's environment (PLATFORM_PRIORITY must name aws):\n");
  for (const [name, value] of result.env) process.stdout.write(`${name}=${value}\n`);
}

main().catch((error) => {
  process.stderr.write(
    `aws:setup failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`,
  );
  process.exit(1);
});
