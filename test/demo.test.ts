/**
 * The README's main command: `dplab compare` on captures/demo/node-ingress.pcap, real traffic at a
 * node's ingress (captures/demo/README.md). The expected values come from tshark reading the same
 * capture and from the shipped rule files: the flows the clients and the scanner opened, the
 * scanner's SYNs (xdp drops them in ebpf; iptables tracks each and drops it in its policy), the
 * packets to the ports policy.rules drops, the packets to and from the services, and the HTTP
 * requests l7.rules denies. The verdicts must not depend on the batch size or the worker count.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tsharkFields } from './helpers.js';

const FILE = join(ROOT, 'captures/demo/node-ingress.pcap');
const PROFILES = 'iptables,ebpf,hns,mixed,iptables-proxy,ebpf-l7';
const dir = mkdtempSync(join(tmpdir(), 'dplab-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dplab(...args: string[]): string {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`dplab ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

interface Result {
  profile: string;
  verdicts: { packets: number; forwarded: number; dropped: number; malformed: number; dropsByReason: Record<string, number> };
  stageReports: Record<string, Record<string, unknown>>;
  flows: number;
}
interface Comparison { packets: number; results: Result[]; differences: unknown }

function compare(...extra: string[]): Comparison {
  const out = join(dir, `cmp${extra.join('')}.json`);
  dplab('compare', FILE, '--profiles', PROFILES, '--repeat', '1', '--json', out, ...extra);
  return JSON.parse(readFileSync(out, 'utf8')) as Comparison;
}

// --- tshark's reading of the capture, and the shipped rules ---
interface Pkt { src: string; dst: string; proto: 'tcp' | 'udp' | 'icmp'; sport: number; dport: number; syn: boolean; ack: boolean }
const first = (s: string | undefined): string => (s ?? '').split(',')[0]!;
const inPrefix = (a: string, v4: RegExp, v6: string): boolean => v4.test(a) || a.startsWith(v6);
const isClient = (a: string): boolean => inPrefix(a, /^10\.77\.1\./, 'fd00:77:1::');
const isBackend = (a: string): boolean => inPrefix(a, /^10\.88\.2\./, 'fd00:88:2::');
/** profiles/rules/blocklist.txt's prefixes; the scanner is in 203.0.113.0/24 and 2001:db8:bad::/48. */
const isBlocked = (a: string): boolean => /^(192\.0\.2|198\.51\.100|203\.0\.113)\./.test(a) || a.startsWith('2001:db8:bad:');
/** The drop lines of profiles/rules/policy.rules. */
const DENIED: Record<string, number[]> = { tcp: [23, 135, 139, 445], udp: [1900, 137, 138] };

/** VIP:port of each service in profiles/rules/services.txt, as "proto addr port". */
function services(): Set<string> {
  const out = new Set<string>();
  for (const l of readFileSync(join(ROOT, 'profiles/rules/services.txt'), 'utf8').split('\n')) {
    const m = /^(tcp|udp)\s+\[?([0-9a-f.:]+?)\]?:(\d+)\s+->/.exec(l.trim());
    if (m) out.add(`${m[1]} ${m[2]} ${m[3]}`);
  }
  return out;
}

let pkts: Pkt[] = [];
let requests: { method: string; uri: string; host: string; dport: number }[] = [];
let cmp: Comparison;
const result = (p: string): Result => cmp.results.find((r) => r.profile === p)!;

beforeAll(() => {
  const rows = tsharkFields(FILE, ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport',
    'tcp.flags.syn', 'tcp.flags.ack', 'icmp.type', 'icmpv6.type', 'http.request.method', 'http.request.uri', 'http.host']);
  pkts = rows.map((c) => {
    const icmp = c[10] !== '' || c[11] !== '';
    const tcp = !icmp && c[4] !== '';
    return {
      src: first(c[0] || c[2]), dst: first(c[1] || c[3]),
      proto: icmp ? 'icmp' : tcp ? 'tcp' : 'udp',
      sport: Number(first(tcp ? c[4] : c[6])), dport: Number(first(tcp ? c[5] : c[7])),
      syn: c[8] === '1', ack: c[9] === '1',
    } as Pkt;
  });
  requests = rows.filter((c) => c[12] !== '').map((c) => ({ method: c[12]!, uri: c[13]!, host: c[14]!, dport: Number(c[5]) }));
  cmp = compare();
}, 120_000);

describe('the demo capture (captures/demo/node-ingress.pcap), as tshark reads it', () => {
  it('is what its README says: IPv4 and IPv6, a scanner, policy-denied ports, HTTP the l7 rules deny', () => {
    expect(pkts.length).toBe(cmp.packets);
    expect(pkts.some((p) => p.src.includes(':'))).toBe(true);
    expect(pkts.some((p) => !p.src.includes(':'))).toBe(true);
    expect(pkts.filter((p) => isBlocked(p.src)).length).toBeGreaterThan(20);
    expect(pkts.filter((p) => isClient(p.src) && DENIED[p.proto]?.includes(p.dport)).length).toBeGreaterThan(4);
    expect(requests.length).toBeGreaterThan(20);
  });
});

describe('dplab compare on the demo capture', () => {
  it('finds every reply\'s flow: the backends that answered are the ones dplab picked (else re-record captures/demo)', () => {
    for (const r of cmp.results) {
      const bad = Object.keys(r.verdicts.dropsByReason).filter((k) => k.startsWith('conntrack/') || k.startsWith('dnat/invalid'));
      expect(bad, `${r.profile}: ${JSON.stringify(r.verdicts.dropsByReason)}; did dplab's backend hash change? bash captures/demo/record.sh`).toEqual([]);
      expect(r.verdicts.malformed, r.profile).toBe(0);
    }
  });

  it('tracks one flow per connection the clients and the scanner opened; ebpf none for the scanner', () => {
    const key = (p: Pkt) => `${p.proto} ${p.src} ${p.sport} ${p.dst} ${p.dport}`;
    const opened = new Set(pkts.filter((p) => p.proto !== 'icmp' && (isClient(p.src) || isBlocked(p.src))).map(key));
    const scanner = new Set(pkts.filter((p) => p.proto !== 'icmp' && isBlocked(p.src)).map(key));
    expect(result('iptables').flows).toBe(opened.size);
    expect(result('hns').flows).toBe(opened.size);
    expect(result('ebpf').flows).toBe(opened.size - scanner.size);
  });

  it('ebpf drops the scanner\'s SYNs at xdp; iptables tracks each and drops it in its policy', () => {
    const scan = pkts.filter((p) => isBlocked(p.src));
    expect(scan.every((p) => p.proto === 'tcp' && p.syn && !p.ack)).toBe(true);
    const deniedFromClients = pkts.filter((p) => isClient(p.src) && DENIED[p.proto]?.includes(p.dport)).length;
    const ebpf = result('ebpf').verdicts.dropsByReason;
    expect(ebpf['xdp/blocked-src']).toBe(scan.length);
    expect(ebpf['policy/rule']).toBe(deniedFromClients);
    const ipt = result('iptables').verdicts.dropsByReason;
    // A probe to the VIP and one to the pod it was translated to, from one source port, are the same
    // connection after DNAT: Linux's conntrack (and dplab's) refuses the second as a tuple clash.
    expect((ipt['policy/rule'] ?? 0) + (ipt['dnat/tuple-clash'] ?? 0)).toBe(scan.length + deniedFromClients);
    expect(result('hns').verdicts.dropsByReason['vfp/acl']).toBe(scan.length + deniedFromClients);
  });

  it('drops exactly the packets tshark finds from the blocklist or to a port the policy drops', () => {
    // A dropped packet is written as dnat (iptables) or ctlb (ebpf) left it: a probe of a service
    // readdressed to a backend. Those are compared by their source side, the rest in full.
    const svc = services();
    const full = (p: Pkt) => `${p.proto} ${p.src} ${p.sport} > ${p.dst} ${p.dport}`;
    const source = (p: Pkt) => `${p.proto} ${p.src} ${p.sport}`;
    const expected = pkts.filter((p) => isBlocked(p.src) || (isClient(p.src) && DENIED[p.proto]?.includes(p.dport)));
    const notToService = expected.filter((p) => !svc.has(`${p.proto} ${p.dst} ${p.dport}`));
    expect(notToService.length).toBeGreaterThan(expected.length - 4);
    for (const profile of ['ebpf', 'iptables']) {
      const out = join(dir, `dropped-${profile}.pcap`);
      dplab('replay', FILE, '--profile', profile, '--write-dropped', out);
      const dropped = tsharkFields(out, ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport'])
        .map((c): Pkt => {
          const tcp = c[4] !== '';
          return { proto: tcp ? 'tcp' : 'udp', src: c[0] || c[2]!, dst: c[1] || c[3]!, sport: Number(tcp ? c[4] : c[6]), dport: Number(tcp ? c[5] : c[7]), syn: false, ack: false };
        });
      expect(dropped.map(source).sort(), profile).toEqual(expected.map(source).sort());
      const got = dropped.map(full);
      for (const p of notToService) {
        const k = got.indexOf(full(p));
        expect(k, `${profile}: ${full(p)} not dropped`).toBeGreaterThanOrEqual(0);
        got.splice(k, 1);
      }
    }
  });

  it('translates every packet to a service and every reply from one (iptables), or connects once per connection (ebpf)', () => {
    const svc = services();
    const toService = pkts.filter((p) => p.proto !== 'icmp' && svc.has(`${p.proto} ${p.dst} ${p.dport}`));
    const replies = pkts.filter((p) => p.proto !== 'icmp' && isBackend(p.src) && isClient(p.dst));
    const icmpErrors = pkts.filter((p) => p.proto === 'icmp' && isBackend(p.src));
    const dnat = result('iptables').stageReports.dnat! as { packetsTranslated: { original: number; reply: number }; icmpErrorsTranslated: number };
    expect(dnat.packetsTranslated).toEqual({ original: toService.length, reply: replies.length });
    expect(dnat.icmpErrorsTranslated).toBe(icmpErrors.length);
    const conns = (proto: string) => new Set(toService.filter((p) => p.proto === proto).map((p) => `${p.src} ${p.sport} ${p.dst} ${p.dport}`)).size;
    const ctlb = result('ebpf').stageReports.ctlb! as { connects: { tcp: number; udp: number }; packetsReaddressed: { original: number; reply: number } };
    expect(ctlb.connects).toEqual({ tcp: conns('tcp'), udp: conns('udp') });
    expect(ctlb.packetsReaddressed).toEqual({ original: toService.length, reply: 0 });
  });

  it('the l7 profiles deny the requests profiles/rules/l7.rules denies, inline and in the proxy', () => {
    // l7.rules: deny prefix /admin; deny method TRACE,CONNECT; deny method OPTIONS port 8080 (the
    // backends' port, behind the service); deny host *.doubleclick.net.
    const denied = requests.filter((r) => r.uri.startsWith('/admin') || r.method === 'TRACE' || r.method === 'CONNECT'
      || r.method === 'OPTIONS' || r.host.toLowerCase().endsWith('.doubleclick.net'));
    expect(denied.length).toBeGreaterThanOrEqual(8);
    for (const p of ['iptables-proxy', 'ebpf-l7']) {
      expect(result(p).verdicts.dropsByReason['l7/rule'], p).toBe(denied.length);
      expect((result(p).stageReports.l7 as { denied: number }).denied, p).toBe(denied.length);
    }
    for (const p of ['iptables', 'ebpf', 'hns', 'mixed']) expect(result(p).verdicts.dropsByReason['l7/rule'], p).toBeUndefined();
  });

  it('decides the same whatever the batch size (1, 7, 256)', () => {
    const strip = (c: Comparison) => ({ differences: c.differences, results: c.results.map((r) => ({ profile: r.profile, verdicts: r.verdicts, flows: r.flows, stageReports: r.stageReports })) });
    const base = strip(cmp);
    for (const batch of ['1', '7']) expect(strip(compare('--batch', batch)), `--batch ${batch}`).toEqual(base);
  }, 120_000);

  it('decides the same with 1 and 2 worker threads: verdicts and the flow log (replay; compare has no --workers)', () => {
    for (const profile of PROFILES.split(',')) {
      const run = (workers: string) => {
        const flows = join(dir, `flows-${profile}-${workers}.txt`);
        const rep = JSON.parse(dplab('replay', FILE, '--profile', profile, '--workers', workers, '--flows', flows, '--json', '-')) as { verdicts: Result['verdicts'] };
        return { verdicts: rep.verdicts, flows: readFileSync(flows, 'utf8').split('\n').sort() };
      };
      const one = run('1');
      expect(one.verdicts, profile).toEqual(result(profile).verdicts);
      expect(run('2'), profile).toEqual(one);
    }
  }, 120_000);
});
