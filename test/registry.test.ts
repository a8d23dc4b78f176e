/**
 * The stage registry's table of shipped stages (loadStages loads only the modules a profile
 * names): it must list exactly what stages/index.js registers, and loading by name must register
 * those stages and no others. Each check runs in a fresh Node process, where nothing is loaded yet.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const REGISTRY = join(ROOT, 'dist/pipeline/registry.js');

/** Run `body` (an ES module's text, with `reg` the registry) in a new process; its stdout as JSON. */
function fresh(body: string): unknown {
  const code = `const reg = await import(${JSON.stringify(REGISTRY)});\n${body}`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' }));
}

describe('stage registry', () => {
  it('names the same stages that stages/index.js registers', () => {
    const r = fresh(`
      const before = reg.stageNames().map((s) => s.name);
      await import(${JSON.stringify(join(ROOT, 'dist/stages/index.js'))});
      console.log(JSON.stringify({ before, all: reg.stageNames().map((s) => s.name).sort(), shipped: [...reg.SHIPPED_STAGES].sort() }));
    `) as { before: string[]; all: string[]; shipped: string[] };
    expect(r.before).toEqual([]);
    expect(r.all.length).toBeGreaterThan(0);
    expect(r.shipped).toEqual(r.all);
  });

  it('loads only the stages a profile names', () => {
    const r = fresh(`
      await reg.loadStages(['xdp', 'conntrack', 'not-a-stage', 'xdp']);
      console.log(JSON.stringify(reg.stageNames().map((s) => s.name).sort()));
    `);
    expect(r).toEqual(['conntrack', 'xdp']);
  });

  it('says which stage is missing when buildStages runs before loadStages', () => {
    const r = fresh(`
      const { parseProfile } = await import(${JSON.stringify(join(ROOT, 'dist/pipeline/profile.js'))});
      const p = parseProfile('pipeline: xdp -> conntrack -> bogus\\n', 'test.profile');
      await reg.loadStages(['xdp']);
      try { reg.buildStages(p); console.log('null'); } catch (e) { console.log(JSON.stringify(String(e.message))); }
    `) as string;
    expect(r).toMatch(/stage "conntrack" is not loaded/);
    expect(r).toMatch(/unknown stage "bogus" \(stages: conntrack, policy, xdp, dnat, ctlb, l7, encrypt, route, vfp\)/);
  });
});
