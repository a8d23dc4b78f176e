/**
 * The benchmark suite runs (issue 10, `npm run bench`): `node bench/run.js micro flowtrack --quick`
 * must exit 0, each benchmark must exit 0, and bench/run.js's latest.json must hold their figures.
 * Nothing here is a speed figure or a timing bound: it checks that the suite runs and that its
 * contenders did the work. The flow counts are checked against an independent source: the flows
 * the generator wrote, by each tool's definition (tshark's conv,tcp and argus, when installed,
 * count them too). A peer missing from the machine must be reported as skipped, not fail the run:
 * the suite runs with a PATH that holds only the other peers (no nfpcapd), into a temporary
 * results folder (bench/results is left alone).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

/** The full path of `cmd` on this process's PATH, or null. */
function which(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(d, cmd);
    try { accessSync(p, constants.X_OK); return p; } catch { /* not here */ }
  }
  return null;
}

interface MicroTask { name: string; nsPerPacket: number; p99NsPerPacket: number; samples: number; packets: number }
interface FlowContender { id: string; mpps: number; medianSeconds: number; flows: number | null; expectedFlows: number }
interface Latest {
  quick: boolean;
  benches: Record<string, { exit: number; json: Record<string, unknown> | null }>;
  summary: { bench: string; peer: string; peerFigure: string; ratio: number | null }[];
}

const dir = mkdtempSync(join(tmpdir(), 'dplab-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run bench (smoke)', () => {
  it('runs micro and flowtrack with --quick, records their figures, and skips a missing peer', () => {
    // A PATH with the other peers but no nfpcapd, and node (dplab's command line runs `node`, as
    // any npm command does).
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    const present: string[] = [];
    for (const tool of ['argus', 'ra', 'tshark']) {
      const p = which(tool);
      if (p) { symlinkSync(p, join(bin, tool)); present.push(tool); }
    }
    const results = join(dir, 'results');
    const r = spawnSync(process.execPath, [join(ROOT, 'bench/run.js'), 'micro', 'flowtrack', '--quick', '--results', results], {
      cwd: ROOT, env: { ...process.env, PATH: bin }, encoding: 'utf8', timeout: 170_000, maxBuffer: 1 << 26,
    });
    const tail = `${r.stdout.slice(-3000)}\n--- stderr ---\n${r.stderr.slice(-3000)}`;
    expect(r.error, tail).toBeUndefined();
    expect(r.status, tail).toBe(0);
    expect(existsSync(join(results, 'latest.json')), tail).toBe(true);

    const latest = JSON.parse(readFileSync(join(results, 'latest.json'), 'utf8')) as Latest;
    expect(latest.quick).toBe(true);
    expect(Object.keys(latest.benches).sort()).toEqual(['flowtrack', 'micro']);
    for (const [name, b] of Object.entries(latest.benches)) {
      expect(b.exit, `${name} exit`).toBe(0);
      expect(b.json, `${name} wrote no JSON`).not.toBeNull();
    }

    // micro: every stage's figure, a positive number of ns per packet (or request).
    const tasks = latest.benches.micro!.json!.tasks as MicroTask[];
    expect(tasks.map((t) => t.name)).toEqual([
      'decode', 'xdp', 'policy chain', 'policy set', 'policy trie', 'conntrack hit', 'conntrack new', 'dnat rewrite',
      'setEndpoint', 'setAddress+setPort', 'l7 parse',
    ]);
    for (const t of tasks) {
      expect(Number.isFinite(t.nsPerPacket) && t.nsPerPacket > 0, `${t.name}: ${t.nsPerPacket}`).toBe(true);
      expect(t.p99NsPerPacket, t.name).toBeGreaterThanOrEqual(t.nsPerPacket);
      expect(t.samples, t.name).toBeGreaterThan(0);
      expect(t.packets, t.name).toBeGreaterThan(0);
    }

    // flowtrack: dplab's two profiles and the peers on the PATH ran; nfpcapd was skipped with how to install it.
    const ft = latest.benches.flowtrack!.json!;
    const contenders = ft.contenders as FlowContender[];
    const ids = contenders.map((c) => c.id);
    const expected = ['dplab ebpf', 'dplab conntrack-only', ...(present.includes('argus') ? ['argus'] : []), ...(present.includes('tshark') ? ['tshark conv,tcp'] : [])];
    expect(ids).toEqual(expected);
    for (const c of contenders) {
      expect(Number.isFinite(c.mpps) && c.mpps > 0, `${c.id}: ${c.mpps} Mpps`).toBe(true);
      // Each tool's flows, by its own definition, equal what the generator wrote (argus's need ra).
      if (c.id !== 'argus' || present.includes('ra')) expect(c.flows, c.id).toBe(c.expectedFlows);
    }
    const capture = ft.capture as { tcpFlows: number; udpFlows: number; attackPackets: number };
    const legit = capture.tcpFlows + capture.udpFlows;
    expect(contenders.find((c) => c.id === 'dplab conntrack-only')!.expectedFlows).toBe(legit + capture.attackPackets);
    expect(ft.skipped).toContainEqual({ id: 'nfpcapd', tool: 'nfpcapd', install: 'apt-get install nfdump' });
    expect(r.stdout).toContain('nfpcapd: nfpcapd not installed, skipped (apt-get install nfdump)');

    // The summary at the top of latest.md: flowtrack's rows, and the skipped peer among them.
    const md = readFileSync(join(results, 'latest.md'), 'utf8');
    const summaryAt = md.indexOf('## Summary');
    expect(summaryAt, md.slice(0, 2000)).toBeGreaterThan(0);
    expect(summaryAt).toBeLessThan(md.indexOf('## bench/flowtrack.js'));
    expect(md).toMatch(/\| flowtrack \| .* \| nfpcapd \| skipped \(apt-get install nfdump\) \| - \|/);
    expect(latest.summary.some((s) => s.bench === 'micro' && Number.isFinite(s.ratio) && s.ratio! > 0)).toBe(true);
  }, 180_000);
});
