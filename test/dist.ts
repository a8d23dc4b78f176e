/**
 * dist's modules for the tests that must run what the workers and the CLI run: stages registered
 * in dist's registry, runs through dist's runCapture and profile loader. Typed as their sources.
 * (vitest's globalSetup builds dist/ before any test, so it is never stale.)
 */
import { join } from 'node:path';
import { ROOT } from './helpers.js';

export const dist = {
  run: await import(join(ROOT, 'dist/pipeline/run.js')) as typeof import('../src/pipeline/run.js'),
  profile: await import(join(ROOT, 'dist/pipeline/profile.js')) as typeof import('../src/pipeline/profile.js'),
  registry: await import(join(ROOT, 'dist/pipeline/registry.js')) as typeof import('../src/pipeline/registry.js'),
};
await import(join(ROOT, 'dist/stages/index.js'));
