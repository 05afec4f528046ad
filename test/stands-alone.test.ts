import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A clone holds everything its comments and docs point to: no file names a document that lives outside the
 * repository (the brief the project started from, or a directory beside the checkout). What the code relies on
 * is in docs/.
 */
const root = path.resolve(__dirname, '..');
// Built from parts so that this file does not match itself.
const outside = new RegExp(`\\b(${['PRODUCT', 'TESTING', 'STYLE'].join('|')})\\.md\\b|\\.\\./${'shared'}/`);

it('no tracked file names a document outside the repository', () => {
  const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
  expect(files.length).toBeGreaterThan(100);
  const citing = files.filter((file) => {
    const full = path.join(root, file);
    if (!fs.existsSync(full) || fs.statSync(full).size > 2_000_000) return false;
    return outside.test(fs.readFileSync(full, 'utf8'));
  });
  expect(citing).toEqual([]);
});

it('the docs the code points to exist', () => {
  const files = execFileSync('git', ['ls-files', 'src', 'queues', 'workers', 'scripts', 'test'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean);
  const cited = new Set(
    files.flatMap((file) => fs.readFileSync(path.join(root, file), 'utf8').match(/docs\/[a-z-]+\.md/g) ?? []),
  );
  expect(cited.size).toBeGreaterThan(0);
  for (const doc of cited) expect(fs.existsSync(path.join(root, doc))).toBe(true);
});
