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
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { calibrate, type CalibrationReport } from '../src/calibrate/calibrate.js';
import { checkSetup, onPath } from '../src/calibrate/kernel.js';
import type { FlowRecord } from '../src/pipeline/flowlog.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { CAPTURES, cleanCaptures, ROOT } from './helpers.js';
import { TestNet, conntrackMiddlebox, kernelConntrack, netnsUnavailable, sh } from './netns.js';

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
    if (s.model === null || s.agree === null) continue; // no model, or not compared (said in its note)
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
    expect(modelled.map((s) => s.type).sort()).toEqual(['conntrack', 'conntrack+policy', 'ctlb', 'policy', 'xdp']);
    // No service traffic in this capture: no connect for the ctlb model (the ctlb test has some).
    expect(modelled.find((s) => s.type === 'ctlb')!.packets).toBe(0);
    for (const s of modelled.filter((x) => x.type !== 'ctlb')) {
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

describe('route model (bpf/route.bpf.c): the FIB lookup chooses the route dplab chose', () => {
  // Nested and overlapping prefixes both families, an IPv6 default and no IPv4 default (no-route drops).
  const ROUTED = profile('routed', `pipeline: route
[route]
mode: full
route: 10.0.0.0/8 dev eth1
route: 10.1.0.0/16 via 10.0.0.1 dev eth2
route: 10.1.2.128/25 dev eth3
route: 192.168.0.0/16 dev eth3
route: 192.168.1.0/24 via 192.168.0.1 dev eth4
route: 172.16.0.0/12 via 10.0.0.254 dev eth1
route: 2001:db8::/32 dev eth4
route: fe80::/10 dev eth0
route: ::/0 via fe80::1 dev eth0
`);

  it('on every shipped capture: the same route for every packet, and the same no-route drops', () => {
    needsKernel();
    let dropped = 0;
    let routed = 0;
    for (const row of cleanCaptures()) {
      const r = calibrate({ file: join(CAPTURES, row.file), profile: ROUTED, ...quick });
      check(r, row.file);
      const s = r.stages.find((x) => x.type === 'route')!;
      expect(s.model).toBe('bpf/route.bpf.c');
      dropped += s.dplabDropped;
      routed += s.agree! - s.dplabDropped;
    }
    expect(dropped).toBeGreaterThan(100);
    expect(routed).toBeGreaterThan(1000);
  }, 600_000);
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

interface Frame { ts: bigint; data: Buffer }

function readPcap(file: string): Frame[] {
  const buf = readFileSync(file);
  const scale = buf.readUInt32LE(0) === 0xa1b23c4d ? 1n : 1000n;
  const frames: Frame[] = [];
  for (let at = 24; at + 16 <= buf.length;) {
    const len = buf.readUInt32LE(at + 8);
    frames.push({ ts: BigInt(buf.readUInt32LE(at)) * 1_000_000_000n + BigInt(buf.readUInt32LE(at + 4)) * scale, data: buf.subarray(at + 16, at + 16 + len) });
    at += 16 + len;
  }
  return frames;
}

/** An Ethernet pcap with nanosecond times. */
function writePcap(file: string, frames: Frame[]): void {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b23c4d, 0); head.writeUInt16LE(2, 4); head.writeUInt16LE(4, 6); head.writeUInt32LE(262144, 16); head.writeUInt32LE(1, 20);
  const parts: Buffer[] = [head];
  for (const f of frames) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(Number(f.ts / 1_000_000_000n), 0); h.writeUInt32LE(Number(f.ts % 1_000_000_000n), 4);
    h.writeUInt32LE(f.data.length, 8); h.writeUInt32LE(f.data.length, 12);
    parts.push(h, f.data);
  }
  writeFileSync(file, Buffer.concat(parts));
}

describe('dnat model (bpf/dnat.bpf.c) on the kube-proxy recording (captures/nat)', () => {
  // The router's input, as test/nat-kernel.test.ts assembles it: client -> VIP from the client
  // side, backend -> client from the backend side, in time order.
  const NAT = join(CAPTURES, 'nat');
  // client side 10.77.1.0/24 and fd00:77:1::/64, backends 10.88.2.0/24 and fd00:88:2::/64 (net 77 or 88)
  const side = (d: Buffer, net: number): boolean => (d.readUInt16BE(12) === 0x0800 ? d[26] === 10 && d[27] === net : d.readUInt32BE(22) === 0xfd000000 + parseInt(String(net), 16));
  const input = [...readPcap(join(NAT, 'kube-proxy-client.pcap')).filter((f) => side(f.data, 77)), ...readPcap(join(NAT, 'kube-proxy-backend.pcap')).filter((f) => side(f.data, 88))]
    .sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  const routerIn = join(dir, 'router-in.pcap');
  writePcap(routerIn, input);

  function natCheck(services: string, file: string): CalibrationReport {
    const p = profile('nat', `pipeline: conntrack -> dnat -> policy\n[dnat]\nservices: ${services}\n[policy]\nrule: drop udp port 53\n`);
    const r = calibrate({ file, profile: p, ...quick });
    check(r, file);
    const combo = r.stages.find((s) => s.type === 'conntrack+dnat')!;
    expect(combo, 'the conntrack+dnat row').toBeDefined();
    expect(combo.bytesCompared, 'every packet both passed had its bytes compared').toBe(combo.packets - combo.dplabDropped);
    return r;
  }

  it('with the shipped service table: the kernel picks the backends dplab picks (its hash in C), same verdicts, flows and bytes', () => {
    needsKernel();
    const r = natCheck(join(NAT, 'services.txt'), routerIn);
    const combo = r.stages.find((s) => s.type === 'conntrack+dnat')!;
    expect(input.length).toBeGreaterThan(150);
    // Clients' packets went to dplab's backends, so the recorded replies from the kernel's random
    // choice are INVALID to both (dropped); the clients' own packets were translated by both.
    expect(combo.translated).toBeGreaterThan(40);
    expect(combo.flowsAtEnd!.dplab).toBeGreaterThan(20);
    expect(r.stages.find((s) => s.stage === 'dnat')!.kernelNs).not.toBeNull();
  }, 120_000);

  it('ctlb: the connect hook model chooses the backend dplab chose for every connect, and drops where there are no endpoints', () => {
    needsKernel();
    // The shipped table with the closed port's services left without endpoints (rejected).
    const text = readFileSync(join(NAT, 'services.txt'), 'utf8').replace(/^(udp \S+:9999 ->).*$/gm, '$1');
    const services = join(dir, 'no-endpoints.txt');
    writeFileSync(services, text);
    const p = profile('ctlb', `pipeline: ctlb -> conntrack\n[ctlb]\nservices: ${services}\n`);
    const r = calibrate({ file: routerIn, profile: p, ...quick, xdpSample: 8 });
    check(r, 'router-in.pcap');
    const c = r.stages.find((s) => s.type === 'ctlb')!;
    expect(c.xdpSample?.verdictsAgree, 'the XDP build decides as the tc build').toBe(true);
    // Connects only: the clients' SYNs and first datagrams (and the rejected ones), not every packet.
    expect(c.packets).toBeGreaterThan(20);
    expect(c.packets).toBeLessThan(input.length / 2);
    expect(c.agree).toBe(c.packets);
    expect(c.dplabDropped).toBeGreaterThan(0);
  }, 120_000);

  it('the shipped iptables profile: conntrack+dnat modelled, the dnat row has a kernel figure', () => {
    needsKernel();
    const r = calibrate({ file: routerIn, profile: 'iptables', runs: 1, passes: 2, repeat: 5, xdpSample: 0 });
    check(r, 'router-in.pcap');
    expect(r.stages.map((s) => s.type)).toEqual(['conntrack', 'conntrack+dnat', 'dnat', 'policy']);
    const combo = r.stages.find((s) => s.type === 'conntrack+dnat')!;
    expect(combo.firstPackets).toBeGreaterThan(0);
    expect(combo.firstNs).toBeGreaterThan(0);
    expect(combo.laterNs).toBeGreaterThan(0);
    expect(r.stages.find((s) => s.type === 'dnat')!.dplabNs).toBeGreaterThan(0);
  }, 120_000);

  it('each flow with the backend Linux picked: replies and ICMP errors translated too, byte for byte as dplab', () => {
    needsKernel();
    const key = (f: Frame): string => {
      const d = f.data;
      const v6 = d.readUInt16BE(12) === 0x86dd;
      const ip = d.subarray(14);
      let proto = v6 ? ip[6]! : ip[9]!;
      let q = ip;
      let l4 = v6 ? 40 : (ip[0]! & 15) * 4;
      if (proto === 1 || proto === 58) { q = ip.subarray(l4 + 8); proto = v6 ? q[6]! : q[9]!; l4 = v6 ? 40 : (q[0]! & 15) * 4; }
      const a = (o: number): string => q.subarray(o, o + (v6 ? 16 : 4)).toString('hex');
      const [s, dd] = v6 ? [a(8), a(24)] : [a(12), a(16)];
      const sp = q.readUInt16BE(l4); const dp = q.readUInt16BE(l4 + 2);
      // the client end identifies the flow; the other end (VIP or backend) is the service's
      const clientIsSrc = s.startsWith(v6 ? 'fd000077' : '0a4d');
      return `${proto} ${clientIsSrc ? `${s}:${sp}` : `${dd}:${dp}`}`;
    };
    const backend = readPcap(join(NAT, 'kube-proxy-backend.pcap'));
    const flows = [...new Set(input.map(key))];
    expect(flows.length).toBeGreaterThan(20);
    let translated = 0;
    let errors = 0;
    for (const flow of flows) {
      const mine = input.filter((f) => key(f) === flow);
      const first = mine[0]!.data;
      const v6 = first.readUInt16BE(12) === 0x86dd;
      const ep = (d: Buffer, src: boolean): string => {
        const ip = d.subarray(14);
        const l4 = v6 ? 40 : (ip[0]! & 15) * 4;
        const o = v6 ? (src ? 8 : 24) : (src ? 12 : 16);
        const addr = v6 ? `[${[...Array(8).keys()].map((k) => ip.readUInt16BE(o + 2 * k).toString(16)).join(':')}]` : [...ip.subarray(o, o + 4)].join('.');
        return `${addr}:${ip.readUInt16BE(l4 + (src ? 0 : 2))}`;
      };
      const be = backend.find((f) => key(f) === flow && side(f.data, 77))!; // client -> the backend Linux picked
      const proto = flow.startsWith('6 ') ? 'tcp' : 'udp';
      const services = join(dir, 'one-service.txt');
      writeFileSync(services, `${proto} ${ep(first, false)} -> ${ep(be.data, false)}\n`);
      const file = join(dir, 'flow.pcap');
      writePcap(file, mine);
      const r = natCheck(services, file);
      const combo = r.stages.find((s) => s.type === 'conntrack+dnat')!;
      expect(combo.dplabDropped, flow).toBe(0);
      expect(combo.translated, `${flow}: every packet translated`).toBe(mine.length);
      translated += combo.translated!;
      errors += mine.filter((f) => { const d = f.data; return d.readUInt16BE(12) === 0x86dd ? d[20] === 58 : d[23] === 1; }).length;
    }
    expect(translated).toBe(input.length);
    expect(errors).toBeGreaterThanOrEqual(6);
  }, 300_000);
});

describe('ICMPv6 node information (139/140) in conntrack: Linux keys it by the identifier field (the Qtype)', () => {
  const A = 'fd00:1::1';
  const B = 'fd00:1::2';
  const words = (a: string): Buffer => {
    const [h, t] = a.split('::') as [string, string];
    const g = [...h.split(':'), ...Array(8 - h.split(':').length - t.split(':').length).fill('0'), ...t.split(':')];
    const b = Buffer.alloc(16);
    g.forEach((x, k) => b.writeUInt16BE(parseInt(x, 16), 2 * k));
    return b;
  };
  /** Set an ICMPv6 message's checksum (RFC 4443: over the pseudo-header and the message). */
  const icmp6Checksum = (src: Buffer, dst: Buffer, icmp: Buffer): void => {
    let sum = 0;
    const add = (b: Buffer): void => { for (let k = 0; k + 1 < b.length; k += 2) sum += b.readUInt16BE(k); if (b.length & 1) sum += b[b.length - 1]! << 8; };
    add(src); add(dst); sum += icmp.length + 58; add(icmp);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    icmp.writeUInt16BE(~sum & 0xffff, 2);
  };
  /** IPv6 + (fragment header) + ICMPv6 node information message of `qtype`, checksum over what is given. */
  function ni(ts: number, from: string, to: string, type: number, qtype: number, frag?: { id: number; offset: number; more: boolean; bytes?: number }): Frame {
    const icmp = Buffer.alloc(16 + 8);
    icmp[0] = type; icmp.writeUInt16BE(qtype, 4); icmp.write('nonce123', 8); icmp.write('dplab-ni', 16);
    const src = words(from); const dst = words(to);
    icmp6Checksum(src, dst, icmp);
    const payload = frag ? Buffer.concat([Buffer.from([58, 0, (frag.offset >> 5) & 0xff, ((frag.offset & 31) << 3) | (frag.more ? 1 : 0), 0, 0, 0, 0]), frag.offset ? Buffer.alloc(frag.bytes ?? 16, 0x61) : icmp]) : icmp;
    if (frag) payload.writeUInt32BE(frag.id, 4);
    const ip = Buffer.alloc(40);
    ip[0] = 0x60; ip.writeUInt16BE(payload.length, 4); ip[6] = frag ? 44 : 58; ip[7] = 64; src.copy(ip, 8); dst.copy(ip, 24);
    const eth = Buffer.from('02000000000202000000000186dd', 'hex');
    return { ts: BigInt(ts) * 1_000_000n, data: Buffer.concat([eth, ip, payload]) };
  }
  const nodeInfo = join(dir, 'node-info.pcap');
  writePcap(nodeInfo, [
    ni(1, A, B, 139, 3), ni(2, B, A, 140, 3), // Qtype 3: one flow, answered
    ni(3, A, B, 139, 4), // Qtype 4: a flow of its own
    ni(4, B, A, 140, 2), // a reply no query asked for: INVALID, no entry
  ]);
  const fragmented = join(dir, 'node-info-fragments.pcap');
  writePcap(fragmented, [
    ni(1, A, B, 139, 5, { id: 0x1234, offset: 0, more: true }), ni(2, A, B, 139, 5, { id: 0x1234, offset: 3, more: false }), ni(3, B, A, 140, 5),
  ]);
  const conntrackOnly = parseProfile('pipeline: conntrack\n[conntrack]\ninvalid: accept\n', 'ni');
  const dplabFlows = (file: string): string[] => {
    const out: string[] = [];
    runCapture({ file, profile: 'ni', stages: buildStages(conntrackOnly), onFlow: (f: FlowRecord) => { if (f.end === 'end-of-input') out.push(`${f.sport} ${f.packets[0]}/${f.packets[1]}`); } });
    return out.sort();
  };

  it('Linux (nf_conntrack in a namespace) keeps one flow per Qtype and no entry for an unasked reply; dplab the same', () => {
    const unavailable = netnsUnavailable(['tcpreplay', 'tcprewrite', 'ip6tables', 'iptables']);
    if (unavailable) throw new Error(`cannot ask Linux: ${unavailable}`);
    const net = new TestNet('ni');
    let linux: string[];
    try {
      net.create();
      conntrackMiddlebox(net, [A, B]);
      const rewritten = join(dir, 'node-info-in.pcap');
      sh('tcprewrite', [`--enet-dmac=${net.insideMac}`, '-i', nodeInfo, '-o', rewritten]);
      sh('tcpreplay', ['-q', '-t', '-i', net.outside, rewritten]);
      linux = kernelConntrack(net).filter((e) => e.proto === 'icmpv6').map((e) => `${e.sport} ${e.packetsOrig}/${e.packetsReply}`).sort();
    } finally {
      net.destroy();
    }
    expect(linux).toEqual(['3 1/1', '4 1/0']);
    expect(dplabFlows(nodeInfo)).toEqual(linux);
  });

  // Linux finds an ICMPv6 error's flow from the packet it quotes with the same tuple function
  // (icmpv6_pkt_to_tuple over the quote): a quoted node-information query is keyed by its Qtype.
  it('an ICMPv6 error quoting a node-information query is RELATED to that query\'s flow (Qtype 7)', () => {
    const query = ni(1, A, B, 139, 7);
    const quote = query.data.subarray(14);
    const icmp = Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), quote]); // destination unreachable, port unreachable
    const src = words(B); const dst = words(A);
    icmp6Checksum(src, dst, icmp);
    const ip = Buffer.alloc(40);
    ip[0] = 0x60; ip.writeUInt16BE(icmp.length, 4); ip[6] = 58; ip[7] = 64; src.copy(ip, 8); dst.copy(ip, 24);
    const file = join(dir, 'node-info-error.pcap');
    writePcap(file, [query, { ts: 2_000_000n, data: Buffer.concat([Buffer.from('02000000000102000000000286dd', 'hex'), ip, icmp]) }]);
    const strict = parseProfile('pipeline: conntrack\n[conntrack]\ninvalid: drop\n', 'ni-error');
    const r = runCapture({ file, profile: 'ni-error', stages: buildStages(strict) }).report;
    // An error without a flow would be INVALID (icmp-error-without-flow) and dropped.
    expect(r.verdicts.dropsByReason).toEqual({});
    expect(r.verdicts.forwarded).toBe(2);
    expect(JSON.stringify(r.stageReports.conntrack)).toMatch(/"related":1\b/);
  });

  it('the kernel model agrees, first fragments included (the later fragment follows the Qtype-5 flow)', () => {
    needsKernel();
    const p = profile('ni', 'pipeline: conntrack\n[conntrack]\ninvalid: drop\n');
    for (const file of [nodeInfo, fragmented]) check(calibrate({ file, profile: p, ...quick }), file);
    expect(dplabFlows(fragmented)).toEqual(['5 2/1']);
  });
});
