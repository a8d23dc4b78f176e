/**
 * dplab's conntrack against Linux's own: each capture is replayed (tcpreplay) into a network
 * namespace that forwards it through nf_conntrack, and the kernel's table (/proc/net/nf_conntrack)
 * is the expected value: the same flows, TCP states, ASSURED bits and per-direction packet counts.
 *
 * The kernel is set up as dplab models it: no window tracking (nf_conntrack_tcp_be_liberal=1),
 * mid-stream pickup on (nf_conntrack_tcp_loose=1), no checksum checks. tcpreplay sends at top
 * speed, so no kernel timeout fires; dplab runs with timeouts long enough that none fires either.
 * Only plain Ethernet captures can be used: this kernel has no 802.1Q module and does not
 * terminate PPPoE, so it would never see the IP packets of a tagged or tunnelled capture.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipv6ToString } from '../src/packet/format.js';
import type { FlowRecord } from '../src/pipeline/flowlog.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { ROOT, readAll } from './helpers.js';
import { TestNet, conntrackMiddlebox, kernelConntrack, netnsUnavailable, sh, type KernelEntry } from './netns.js';

const SCENARIOS: [file: string, what: string][] = [
  ['captures/tcp_http/ppp_one_http_stream_fin.pcap', 'handshake, data, FIN teardown'],
  ['captures/tcp_http/ppp_one_http_stream_fin2.pcap', 'FIN teardown from the other side'],
  ['captures/tcp_http/ppp_three_http_streams.pcap', 'three connections'],
  ['captures/tcp_http/zeek_http_bro.org.pcap', '13 connections with retransmissions'],
  ['captures/tcp_http/zeek_http_methods.pcap', '49 short connections'],
  ['captures/large/ppp_many-protocols.pcap', 'a mix of protocols and SYN scans'],
  ['captures/ipv6/arkime_v6-http.pcap', 'IPv6 HTTP'],
  ['captures/ipv6/zeek_ftp_ipv6.pcap', 'IPv6 FTP control and data connections'],
  ['captures/dns/ppp_DnsPackets.pcap', 'DNS over UDP, IPv4 and IPv6'],
  ['captures/icmp/zeek_icmp_5-pings.pcap', 'ICMP echo'],
  ['test/fixtures/conntrack/time-wait-reuse.pcap', 'a 4-tuple reused while in TIME_WAIT'],
  ['test/fixtures/conntrack/mid-stream.pcap', 'a connection picked up mid-stream'],
  ['test/fixtures/conntrack/starts-with-fin.pcap', 'a flow whose first packet is a FIN'],
  ['test/fixtures/conntrack/rst-and-lone-syns.pcap', 'RST teardowns and unanswered SYNs, IPv4 and IPv6'],
  ['test/fixtures/conntrack/simultaneous-open.pcap', 'TCP simultaneous open: crossing SYNs, then SYN/ACKs'],
];

const FOREVER = ['tcp-syn-sent', 'tcp-syn-recv', 'tcp-established', 'tcp-fin-wait', 'tcp-close-wait', 'tcp-last-ack',
  'tcp-time-wait', 'tcp-close', 'udp', 'udp-stream', 'icmp', 'generic'].map((k) => `timeout-${k}: 1000d`).join('\n');
const PROFILE = parseProfile(`pipeline: conntrack\n[conntrack]\ninvalid: accept\n${FOREVER}\n`, 'test');

function normal(addr: string): string {
  if (!addr.includes(':')) return addr;
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const words = [0, 1, 2, 3].map((k) => ((parseInt(groups[2 * k]!, 16) << 16) | parseInt(groups[2 * k + 1]!, 16)) >>> 0);
  return ipv6ToString(words, 0);
}

const PROTOS: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };

function line(proto: string, src: string, sport: number, dst: string, dport: number, state: string, po: number, pr: number, assured: boolean): string {
  return `${proto} ${normal(src)}:${sport} > ${normal(dst)}:${dport} ${state} packets ${po}/${pr}${assured ? ' assured' : ''}`;
}

function fromKernel(e: KernelEntry): string {
  // UDP/ICMP "assured" depends on wall-clock time (a UDP stream must last 2 s), which a top-speed
  // replay compresses; only TCP's ASSURED is compared.
  return line(e.proto, e.src, e.sport, e.dst, e.dport, e.state || (e.unreplied ? 'unreplied' : 'replied'), e.packetsOrig, e.packetsReply, e.proto === 'tcp' && e.assured);
}

function fromDplab(r: FlowRecord): string {
  const proto = PROTOS[r.proto] ?? `proto-${r.proto}`;
  return line(proto, r.src, r.sport, r.dst, r.dport, r.state, r.packets[0], r.packets[1], proto === 'tcp' && r.assured);
}

const unavailable = netnsUnavailable(['tcpreplay', 'tcprewrite', 'iptables', 'ip6tables']);

describe('conntrack agrees with Linux nf_conntrack on real captures', () => {
  let dir = '';
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dplab-ct-')); });
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  SCENARIOS.forEach(([file, what], k) => {
    it(`${file} (${what})`, () => {
      if (unavailable) throw new Error(`cannot run the Linux conntrack comparison: ${unavailable}`);
      // A fresh namespace per capture: its conntrack table starts empty and goes with it.
      const net = new TestNet(`c${k}`);
      let kernel: string[];
      try {
        net.create();
        conntrackMiddlebox(net, unicastIPv6(join(ROOT, file)));
        const rewritten = join(dir, `in${k}.pcap`);
        sh('tcprewrite', [`--enet-dmac=${net.insideMac}`, '-i', join(ROOT, file), '-o', rewritten]);
        sh('tcpreplay', ['-q', '-t', '-i', net.outside, rewritten]);
        kernel = kernelConntrack(net).filter((e) => ['tcp', 'udp', 'icmp', 'icmpv6'].includes(e.proto)).map(fromKernel).sort();
      } finally {
        net.destroy();
      }
      const ours: string[] = [];
      runCapture({
        file: join(ROOT, file), profile: 'conntrack', stages: buildStages(PROFILE),
        onFlow: (r) => { if (r.end === 'end-of-input' && PROTOS[r.proto] && !multicast(r.dst)) ours.push(fromDplab(r)); },
      });
      ours.sort();
      expect(kernel.length).toBeGreaterThan(0);
      expect({ onlyLinux: kernel.filter((k) => !ours.includes(k)), onlyDplab: ours.filter((o) => !kernel.includes(o)) })
        .toEqual({ onlyLinux: [], onlyDplab: [] });
    });
  });
});

/**
 * Flows to multicast or broadcast addresses: the middlebox namespace neither routes multicast nor
 * joins groups, so the kernel never confirms these entries; that is the test rig, not conntrack.
 */
function multicast(addr: string): boolean {
  if (addr.includes(':')) return addr.toLowerCase().startsWith('ff');
  const first = Number(addr.split('.')[0]);
  return (first >= 224 && first <= 239) || addr === '255.255.255.255';
}

/** The global and unique-local IPv6 unicast addresses in a capture (made local in the namespace). */
function unicastIPv6(file: string): string[] {
  const out = new Set<string>();
  readAll(file, (b) => {
    for (let i = 0; i < b.count; i++) {
      if (b.family[i] !== 6) continue;
      for (const A of [b.src, b.dst]) {
        const first = A[i << 2]!;
        if (first >>> 29 === 1 || first >>> 25 === 0x7e) out.add(ipv6ToString(A, i << 2));
      }
    }
  });
  return [...out];
}
