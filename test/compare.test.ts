/**
 * dplab compare (issue 10): several profiles over one read must decide exactly what each decides
 * alone (`dplab replay --json` per profile, a separate run), rewrites included (dnat's rewrites
 * must not reach the next profile); the flows whose verdicts differ are the ones an independent
 * reader says they should be (tshark: the attack sources the blocklist covers); every figure in
 * the reading comes from the run.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dplab, ROOT, tsharkFields } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-compare-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Json {
  packets: number;
  results: { profile: string; verdicts: { forwarded: number; dropped: number; dropsByReason: Record<string, number> }; stageReports: Record<string, Record<string, unknown>> }[];
  differences: { flows: number; packets: number; listed: { flow: string; packets: number; verdicts: string[] }[] };
}

describe('compare', () => {
  it('gives each profile the verdicts and stage reports it has alone, rewrites kept apart', () => {
    const file = join(ROOT, 'captures/nat/kube-proxy-client.pcap');
    const out = join(dir, 'nat.json');
    const r = dplab('compare', file, '--profiles', 'iptables,ebpf,mixed,stateless', '--json', out, '--repeat', '1');
    expect(r.status, r.stderr).toBe(0);
    const cmp = JSON.parse(readFileSync(out, 'utf8')) as Json;
    for (const p of cmp.results) {
      const alone = dplab('replay', file, '--profile', p.profile, '--json', '-');
      expect(alone.status, alone.stderr).toBe(0);
      const rep = JSON.parse(alone.stdout) as { verdicts: Json['results'][0]['verdicts']; stageReports: Record<string, Record<string, unknown>> };
      expect(p.verdicts, p.profile).toEqual(rep.verdicts);
      expect(p.stageReports, p.profile).toEqual(rep.stageReports);
    }
    // iptables translated the service traffic; the profiles after it saw it as read.
    const ipt = cmp.results.find((p) => p.profile === 'iptables')!;
    expect((ipt.stageReports.dnat!.packetsTranslated as { original: number }).original).toBeGreaterThan(50);
    expect(r.stdout).toMatch(/Reading:/);
    expect(r.stdout).toMatch(/Per-packet DNAT in iptables cost [\d.]+ ns per translated packet/);
    expect(r.stdout).toMatch(/ebpf balanced at connect time: 30 backend choices/);
  });

  it('lists the flows one profile drops and another forwards, as tshark finds them', () => {
    const gen = join(dir, 'attack.pcap');
    const g = dplab('gen', gen, '--packets', '20000', '--attack', '10%', '--seed', '4');
    expect(g.status, g.stderr).toBe(0);
    const out = join(dir, 'attack.json');
    const r = dplab('compare', gen, '--profiles', 'conntrack-only,ebpf', '--json', out, '--differences', '100000');
    expect(r.status, r.stderr).toBe(0);
    const cmp = JSON.parse(readFileSync(out, 'utf8')) as Json;
    // The independent count: packets from or to the blocklisted prefixes (profiles/rules/blocklist.txt).
    const rows = tsharkFields(gen, ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst']);
    const blocked = (a: string | undefined) => !!a && (/^(192\.0\.2|198\.51\.100|203\.0\.113)\./.test(a) || a.startsWith('2001:db8:bad:'));
    const expected = rows.filter((c) => c.some((a) => blocked(a))).length;
    expect(expected).toBeGreaterThan(1000);
    expect(cmp.differences.packets).toBe(expected);
    const listed = cmp.differences.listed;
    expect(listed.reduce((a, d) => a + d.packets, 0)).toBe(expected);
    for (const d of listed) {
      expect(d.verdicts[0], d.flow).toBe('forwarded');
      expect(d.verdicts[1], d.flow).toMatch(/^xdp\/blocked-(src|dst)$/);
      const addrs = d.flow.split(' ').slice(1).filter((w) => w !== '<->').map((w) => (w.startsWith('[') ? w.slice(1, w.indexOf(']')) : w.replace(/:\d+$/, '')));
      expect(addrs.some(blocked), d.flow).toBe(true);
    }
    expect(r.stdout).toMatch(/ebpf dropped [\d,]+ packets at xdp before any flow state existed/);
  });

  it('an output it cannot write is one line, before anything is read', () => {
    const r = dplab('compare', join(ROOT, 'captures/nat/kube-proxy-client.pcap'), '--html', join(dir, 'no/such/folder/r.html'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^dplab compare: cannot write --html .*no such folder/)]);
    expect(r.stdout).toBe('');
  });

  it('says what is wrong with a bad profile before reading', () => {
    const r = dplab('compare', join(ROOT, 'captures/nat/kube-proxy-client.pcap'), '--profiles', 'iptables,nosuch');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nosuch/);
  });
});

describe('figures from several runs', () => {
  it("each profile's figures are those of its median run, the first (cold) run left out", async () => {
    const { medianRun } = await import('../src/cli/compare.js');
    type Run = Parameters<typeof medianRun>[0][number];
    // Runs whose profile rows carry a marker (stageReports.run) so the test sees which run each came from.
    const run = (k: number, a: number, b: number): Run => ({
      file: 'x', packets: 10, captureSeconds: 1, captureRate: 10, batchSize: 256, flushUs: 50, meanBatch: 1, complete: true, error: null,
      differences: { flows: 0, packets: 0, listed: [] }, sharingNsPerPacket: k,
      results: [a, b].map((ns, j) => ({ profile: `p${j}`, pipeline: '', verdicts: { packets: 10, forwarded: 10, dropped: 0, malformed: 0, dropsByReason: {}, malformedByReason: {} },
        stages: [], dataplaneNsPerPacket: ns, emulationNsPerPacket: 0, stageReports: { run: { k } }, flows: 1, natTranslated: 0, natBindings: 0, connects: 0,
        coresAtCaptureRate: 0, latencyUs: { p50: 0, p99: 0 } })),
    });
    // Run 1 is cold (slowest); of runs 2-4 the medians are run 3 for p0 (200) and run 4 for p1 (50).
    const r = medianRun([run(1, 9000, 9000), run(2, 100, 70), run(3, 200, 20), run(4, 300, 50)]);
    expect(r.results.map((p) => [p.dataplaneNsPerPacket, p.stageReports.run])).toEqual([[200, { k: 3 }], [50, { k: 4 }]]);
    expect(r.repeats).toBe(4);
    expect(r.sharingNsPerPacket).toBe(3);
    // Two runs: neither is left out (the lower middle is taken).
    expect(medianRun([run(1, 10, 10), run(2, 20, 5)]).results.map((p) => p.dataplaneNsPerPacket)).toEqual([10, 5]);
  });
});
