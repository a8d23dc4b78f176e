/**
 * dplab calibrate: the kernel models in bpf/ decide as dplab's stages do, packet for packet, on
 * every shipped capture (xdp with block and allow lists that drop some packets, its per-source
 * rate limit, conntrack with its INVALID drops, the policy rules evaluated per packet, and
 * conntrack with policy's decision cached in the flow), and a missing tool is one clear line.
 *
 * These tests load BPF programs: they need root, clang and libbpf-dev (CI runs as root on Debian:
 * apt-get install clang libbpf-dev). Without them they FAIL, saying what is missing; they never
 * pass without having run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { calibrate, type CalibrationReport } from '../src/calibrate/calibrate.js';
import { checkSetup, onPath } from '../src/calibrate/kernel.js';
import { CAPTURES, cleanCaptures, ROOT } from './helpers.js';

const DPLAB = join(ROOT, 'bin', 'dplab.js');
const dir = mkdtempSync(join(tmpdir(), 'dplab-calibrate-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function missing(): string | null {
  try {
    checkSetup();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
const problem = missing();
function needsKernel(): void {
  if (problem) throw new Error(`cannot run the calibrate tests: ${problem}`);
}

function profile(name: string, text: string): string {
  const f = join(dir, `${name}.profile`);
  writeFileSync(f, text);
  return f;
}

// Blocks with holes and a longer block inside a hole; rules with prefixes both ways, source and
// destination ports, ranges, protocol numbers, IPv6.
const LISTS = profile('lists', `pipeline: xdp -> conntrack -> policy
[xdp]
block: 192.168.0.0/16, 10.0.0.0/9, 2001:db8::/32
allow: 192.168.1.0/24
block: 192.168.1.128/26
block: fe80::/16
allow: fe80::/64
block: 172.16.0.0/12
allow: 172.16.133.0/24
[conntrack]
capacity: 16384
invalid: drop
[policy]
evaluator: trie
default: accept
rule: drop tcp port 23
rule: drop udp from 10.0.0.0/8 port 53
rule: accept udp sport 53
rule: drop udp port 1-1024
rule: accept tcp to 10.0.0.0/8 port 80,443,8000-8080
rule: drop tcp sport 80 to 10.128.0.0/9
rule: drop tcp port 80,21
rule: accept icmp
rule: drop icmpv6 from fe80::/10
rule: drop 17 to ff02::/16
rule: drop 58
`);

/** Without conntrack: policy sees every packet xdp passed, and the default drops. */
const STATELESS = profile('stateless', `pipeline: xdp -> policy
[xdp]
block: 192.168.1.0/24, 2001:db8:bad::/48
[policy]
evaluator: chain
default: drop
rule: accept tcp port 80,443
rule: accept udp
rule: accept icmp
rule: drop tcp from 10.0.0.0/8
rule: accept tcp sport 1024-65535
`);

const RATE = profile('rate', `pipeline: xdp -> policy
[xdp]
block: 203.0.113.0/24
rate-limit: 3/s burst 4
rate-table: 64
[policy]
rule: drop tcp port 443
`);

const quick = { runs: 1, passes: 1, repeat: 1, xdpSample: 0, floor: false };

function check(r: CalibrationReport, file: string): void {
  for (const s of r.stages) {
    if (s.model === null) continue;
    // Every packet's verdict agrees; the message names them if not.
    expect(s.mismatches.map((m) => `${file} #${m.packet} ${m.packetSummary}: dplab ${m.dplab}, kernel ${m.kernel}`), `${file} ${s.stage}`).toEqual([]);
    expect(s.kernelDropped, `${file} ${s.stage}`).toBe(s.dplabDropped);
    // conntrack: the flows live at the end are the same, with the same states and packets each way.
    if (s.flowsAtEnd) {
      expect(s.flowsAtEnd.differ, `${file} flows at the end`).toEqual([]);
      flowsCompared += s.flowsAtEnd.dplab;
    }
  }
}
let flowsCompared = 0;

describe('calibrate: kernel models against dplab', () => {
  it('has what it needs: root, clang, libbpf-dev (CI: apt-get install clang libbpf-dev)', () => {
    needsKernel();
  });

  it('xdp (block lists), conntrack (states, INVALID drops) and policy (rules per packet) decide as dplab on every shipped capture', () => {
    needsKernel();
    const drops: Record<string, number> = {};
    let captures = 0;
    for (const profileFile of [LISTS, STATELESS]) {
      for (const row of cleanCaptures()) {
        const file = join(CAPTURES, row.file);
        const r = calibrate({ file, profile: profileFile, ...quick });
        check(r, row.file);
        for (const s of r.stages) if (s.model) drops[`${profileFile === LISTS ? 'lists' : 'stateless'} ${s.stage}`] = (drops[`${profileFile === LISTS ? 'lists' : 'stateless'} ${s.stage}`] ?? 0) + s.dplabDropped;
        captures++;
      }
    }
    expect(captures).toBeGreaterThan(50);
    expect(flowsCompared).toBeGreaterThan(100);
    // The lists and rules drop some packets and pass others: both verdicts were compared.
    for (const k of ['lists xdp', 'lists conntrack', 'lists conntrack+policy', 'lists policy', 'stateless xdp', 'stateless policy']) {
      expect(drops[k], k).toBeGreaterThan(0);
    }
    // Behind conntrack, policy decides once per flow: the cached model drops what dplab's pipeline does.
    expect(drops['lists conntrack+policy']).toBeGreaterThan(drops['lists conntrack']!);
  }, 900_000);

  it('the per-source rate limit (LRU hash, capture clock in skb->tstamp) drops the same packets', () => {
    needsKernel();
    let dropped = 0;
    for (const f of ['dns/ppp_DnsPackets.pcap', 'large/ppp_many-protocols.pcap', 'ipv6/zeek_ftp_ipv6.pcap', 'icmp/zeek_communityid_icmp6.pcap']) {
      const r = calibrate({ file: join(CAPTURES, f), profile: RATE, ...quick });
      check(r, f);
      const x = r.stages.find((s) => s.stage === 'xdp')!;
      dropped += x.dplabDropped;
      // Stateful: first packets of a source are told apart from later ones.
      expect(x.firstPackets).toBeGreaterThan(0);
      expect(x.laterNs).not.toBeNull();
    }
    expect(dropped).toBeGreaterThan(100);
  }, 300_000);

  it('the XDP builds load, agree with the tc builds, and the figures are there (shipped ebpf profile)', () => {
    needsKernel();
    const r = calibrate({ file: join(CAPTURES, 'large/ppp_many-protocols.pcap'), profile: 'ebpf', runs: 2, passes: 2, repeat: 10, xdpSample: 16 });
    check(r, 'ppp_many-protocols');
    const modelled = r.stages.filter((s) => s.model !== null);
    expect(modelled.map((s) => s.type).sort()).toEqual(['conntrack', 'conntrack+policy', 'policy', 'xdp']);
    for (const s of modelled) {
      // Stateless models also run their XDP build on a sample; conntrack splits first and later packets.
      if (s.type === 'conntrack' || s.type === 'conntrack+policy') {
        expect(s.firstPackets).toBeGreaterThan(0);
        expect(s.firstNs).toBeGreaterThan(0);
        expect(s.laterNs).toBeGreaterThan(0);
      } else expect(s.xdpSample?.verdictsAgree, s.stage).toBe(true);
      expect(s.kernelNs, s.stage).toBeGreaterThan(0);
      expect(s.floorNs, s.stage).toBeGreaterThan(0);
      expect(s.dplabNs, s.stage).toBeGreaterThan(0);
      expect(s.ratio, s.stage).toBeCloseTo(s.dplabNs! / s.kernelNs!, 6);
    }
  }, 300_000);
});

describe('dplab calibrate (command line)', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
    spawnSync(process.execPath, [DPLAB, 'calibrate', ...args], { encoding: 'utf8', env });

  it('prints the table and writes JSON; exit 0 when every verdict agrees', () => {
    needsKernel();
    const json = join(dir, 'out.json');
    const r = run([join(CAPTURES, 'dns/dpkt_dns_icmp.pcap'), '--profile', LISTS, '--runs', '1', '--passes', '1', '--repeat', '5', '--json', json]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/stage\s+packets\s+kernel ns\/pkt\s+floor\s+model\s+dplab ns\/pkt\s+dplab\/kernel\s+dplab\/model\s+verdicts/);
    expect(r.stdout).toMatch(/^xdp\s+32\s/m);
    expect(r.stdout).toContain('Every verdict agrees.');
    const rep = JSON.parse(spawnSync('cat', [json], { encoding: 'utf8' }).stdout) as CalibrationReport;
    expect(rep.packets).toBe(32);
    expect(rep.mismatches).toBe(0);
  });

  it('without clang on PATH: one line saying what is missing and how to fix it, exit 1', () => {
    const cache = mkdtempSync(join(dir, 'cache-'));
    const r = run([join(CAPTURES, 'dns/dpkt_dns_icmp.pcap')], { ...process.env, PATH: join(dir, 'no-such-dir'), DPLAB_CACHE_DIR: cache });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    // As root the first thing missing is clang; not as root, it is root.
    expect(r.stderr).toMatch(process.getuid?.() === 0 ? /^dplab calibrate: no clang on PATH: .*apt-get install -y clang libbpf-dev/ : /^dplab calibrate: needs root/);
  });

  it('not root: one line, exit 1', () => {
    const setpriv = onPath('setpriv');
    if (process.getuid?.() !== 0) {
      const r = run([join(CAPTURES, 'dns/dpkt_dns_icmp.pcap')]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^dplab calibrate: needs root: .*sudo\)\n$/);
      return;
    }
    if (!setpriv) throw new Error('cannot test the not-root message: no setpriv (Debian: util-linux)');
    const r = spawnSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, DPLAB, 'calibrate', join(CAPTURES, 'dns/dpkt_dns_icmp.pcap')], { encoding: 'utf8' });
    expect(r.stderr).toMatch(/^dplab calibrate: needs root: .*sudo\)\n$/);
    expect(r.status).toBe(1);
  });

  it('refuses standard input and bad numbers before anything else', () => {
    expect(run(['-']).stderr).toMatch(/reads the capture more than once/);
    const r = run([join(CAPTURES, 'dns/dpkt_dns_icmp.pcap'), '--passes', '0']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--passes wants a whole number 1\.\.1000/);
  });
});
