/**
 * Profiles: the shipped ones build, and a bad profile gets one error naming the file, the line
 * and the key, before any packet is read.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinProfiles, loadProfile, parseProfile, pipelineText, ProfileError } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { ROOT } from './helpers.js';

function errorOf(text: string): string {
  try {
    buildStages(parseProfile(text, 'my.profile'));
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    return (e as Error).message;
  }
  throw new Error('expected a ProfileError');
}

describe('profiles', () => {
  it('ships the profiles the README lists, and each builds', () => {
    expect(builtinProfiles()).toEqual(expect.arrayContaining(['ebpf', 'iptables', 'ipset', 'stateless', 'conntrack-only']));
    for (const name of builtinProfiles()) expect(buildStages(loadProfile(name)).map((s) => s.name)).toEqual(loadProfile(name).stages);
  });

  it('a stage type may appear twice under names of its own, and reports key by those names', () => {
    // Before conntrack, policy judges every packet; after it, once per flow. A port-23 flow is
    // dropped by [pre] on its first packet; [post] then sees only what [pre] let through.
    const p = parseProfile('pipeline: pre :: policy -> conntrack -> post :: policy\n[pre]\nrule: drop tcp port 23\n[post]\ndefault: drop\nrule: accept tcp port 80\n', 'two.profile');
    expect([p.stages, p.types]).toEqual([['pre', 'conntrack', 'post'], ['policy', 'conntrack', 'policy']]);
    expect(pipelineText(p)).toBe('pre :: policy -> conntrack -> post :: policy');
    const stages = buildStages(p);
    expect(stages.map((s) => s.name)).toEqual(['pre', 'conntrack', 'post']);
    const r = runCapture({ file: join(ROOT, 'captures/large/zeek_echo-connections.pcap'), profile: 'two', stages, timing: false }).report;
    expect(Object.keys(r.stageReports)).toEqual(['pre', 'conntrack', 'post']);
    expect(r.stages.map((s) => s.name)).toEqual(['decode', 'pre', 'conntrack', 'post']);
    // Every packet reached [pre] (it has no conntrack before it); [post] decided once per flow.
    expect(r.stageReports.pre!.evaluations).toBe(r.stages[1]!.packets);
    expect(r.stageReports.post!.cachedLookups).toBeGreaterThan(0);
    for (const key of Object.keys(r.verdicts.dropsByReason)) expect(key).toMatch(/^(pre|conntrack|post)\//);
    expect(r.verdicts.packets).toBe(r.verdicts.forwarded + r.verdicts.dropped + r.verdicts.malformed);
  });

  it('two stages of one name must be told apart', () => {
    expect(errorOf('pipeline: policy -> conntrack -> policy\n')).toBe('my.profile:1: stage "policy" appears twice in the pipeline (give each its own name: "pre :: policy")');
    expect(errorOf('pipeline: a :: nosuch\n')).toMatch(/^my\.profile:1: unknown stage "nosuch"/);
    expect(errorOf('pipeline: a :: b :: c\n')).toMatch(/is not a chain of stage names/);
  });

  it('names file, line and key for an unknown key', () => {
    expect(errorOf('pipeline: conntrack\n\n[conntrack]\ncapacity: 1000\ncapasity: 2000\n'))
      .toMatch(/^my\.profile:5: \[conntrack\] capasity: unknown key \(this section knows: .*\bcapacity\b.*\bwhen-full\b.*\)$/);
  });

  it('names file, line and key for a bad value', () => {
    expect(errorOf('pipeline: conntrack\n[conntrack]\nwhen-full: panic\n')).toBe('my.profile:3: [conntrack] when-full: "panic" is not one of: evict, drop-new');
    expect(errorOf('pipeline: conntrack\n[conntrack]\ncapacity: lots\n')).toBe('my.profile:3: [conntrack] capacity: "lots" is not a whole number');
    expect(errorOf('pipeline: conntrack\n[conntrack]\ntimeout-udp: soon\n')).toBe('my.profile:3: [conntrack] timeout-udp: "soon" is not a duration (e.g. 30s, 2m, 5d)');
  });

  it('names the line of an unknown stage and of a section for a stage not in the pipeline', () => {
    expect(errorOf('# x\npipeline: xdp -> contrack\n')).toMatch(/^my\.profile:2: unknown stage "contrack" \(stages: /);
    expect(errorOf('pipeline: xdp\n[policy]\ndefault: drop\n')).toBe('my.profile:2: section [policy] configures a stage that is not in the pipeline (xdp)');
    expect(errorOf('block: 10.0.0.0/8\npipeline: xdp\n')).toBe('my.profile:1: "block" must be inside a [section]; only "pipeline:" comes before the sections');
    expect(errorOf('pipeline: xdp\n[xdp]\nblock 10.0.0.0/8\n')).toBe('my.profile:3: expected "key: value", got "block 10.0.0.0/8"');
  });

  it('reports every error, in file order, not just the first', () => {
    const text = 'pipeline: xdp -> conntrack -> policy\n[xdp]\nblock: 192.0.2.5/24\n[conntrack]\ncapacity: lots\nwhen-full: panic\n'
      + 'capasity: 3\n[policy]\nevaluator: tree\nrule: drop tcp from 10.1.2.3/8\n[Bad]\n';
    expect(errorOf(text).split('\n').map((l) => l.replace(/:\s.*/, ''))).toEqual(
      ['my.profile:3', 'my.profile:5', 'my.profile:6', 'my.profile:7', 'my.profile:9', 'my.profile:10', 'my.profile:11']);
  });

  it('a prefix with host bits set is an error with file, line and the prefix meant', () => {
    expect(errorOf('pipeline: xdp\n[xdp]\nblock: 192.0.2.5/24\n'))
      .toBe('my.profile:3: [xdp] block: "192.0.2.5/24" has host bits set (bits past the first 24 are not 0); did you mean 192.0.2.0/24?');
    expect(errorOf('pipeline: policy\n[policy]\nrule: accept tcp to 2001:db8::1/32 port 80\n'))
      .toMatch(/^my\.profile:3: \[policy\] rule: .*"2001:db8::1\/32" has host bits set .*; did you mean 2001:db8::\/32\?$/);
  });

  it('dplab profiles FILE prints the checked profile, which reads back as the same profile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dplab-profile-'));
    try {
      const mine = join(dir, 'mine.profile');
      writeFileSync(mine, '# mine: a test\npipeline: xdp -> conntrack\n[xdp]\nblock: 192.0.2.0/24  # docs\n[conntrack]\ncapacity: 1k\n');
      const out = execFileSync('node', [join(ROOT, 'bin/dplab.js'), 'profiles', mine], { encoding: 'utf8' });
      expect(out).toContain(`# ${mine}: ok\n`);
      expect(out).toContain('pipeline: xdp -> conntrack\n\n[xdp]\nblock: 192.0.2.0/24\n# prefixes: blocked 1');
      expect(out).toContain('[conntrack]\ncapacity: 1k\n# capacity: 1,000\n');
      const again = parseProfile(out, 'again.profile');
      expect(buildStages(again).map((st) => st.name)).toEqual(['xdp', 'conntrack']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the CLI prints the error as one line and exits 1 without reading the capture', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dplab-profile-'));
    try {
      const bad = join(dir, 'bad.profile');
      writeFileSync(bad, 'pipeline: conntrack\n[conntrack]\ninvalid: maybe\n');
      let status = 0; let stderr = '';
      try {
        execFileSync('node', [join(ROOT, 'bin/dplab.js'), 'replay', join(ROOT, 'captures/dns/zeek_dns53.pcap'), '--profile', bad], { stdio: 'pipe' });
      } catch (e) {
        status = (e as { status: number }).status;
        stderr = String((e as { stderr: Buffer }).stderr);
      }
      expect(status).toBe(1);
      expect(stderr.trim().split('\n')).toEqual([`dplab: profile ${bad}:3: [conntrack] invalid: "maybe" is not one of: drop, accept`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

