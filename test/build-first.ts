/**
 * vitest globalSetup: build dist/ before any test runs, as `npm run build` does (tsc, then the
 * start-up snapshot). Worker threads and the CLI tests run the compiled code in dist/, while the
 * tests import src/ directly; building here means a test run can never exercise stale worker, CLI
 * or snapshot code after a source edit, however vitest was started.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'scripts', 'snapshot.js')], { stdio: 'inherit' });
}
