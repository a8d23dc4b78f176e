/**
 * dplab trace: a packet's path stage by stage, with the state each stage left. The handshake's
 * conntrack states are the kernel's for the same packets (test/conntrack-linux.test.ts checks the
 * table itself against Linux); the blocked source is the shipped blocklist's.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

function trace(...args: string[]): string {
  return execFileSync('node', [join(ROOT, 'bin/dplab.js'), 'trace', ...args], { encoding: 'utf8' });
}

describe('dplab trace', () => {
  it('follows a TCP handshake through xdp, conntrack and policy', () => {
    const out = trace(join(ROOT, 'captures/tcp_http/ppp_one_http_stream_fin.pcap'), '--packet', '1-3');
    const conntrack = out.split('\n').filter((l) => l.trimStart().startsWith('conntrack'));
    expect(conntrack).toHaveLength(3);
    expect(conntrack[0]).toMatch(/new flow #\d+ SYN_SENT, original direction/);
    expect(conntrack[1]).toMatch(/established flow #\d+ SYN_RECV seen-reply, reply direction/);
    expect(conntrack[2]).toMatch(/established flow #\d+ ESTABLISHED seen-reply assured, original direction/);
    // The rules ran for the first packet; the others used the flow's stored decision.
    const policy = out.split('\n').filter((l) => l.trimStart().startsWith('policy'));
    expect(policy[0]).toMatch(/rule \d+ .*matched: accept; stored in flow/);
    expect(policy[1]).toMatch(/cached decision of flow/);
    expect(out.match(/=> forwarded/g)).toHaveLength(3);
  });

  it('shows where a blocked packet stopped and that later stages never saw it', () => {
    const out = trace(join(ROOT, 'test/fixtures/conntrack/rst-and-lone-syns.pcap'), '--packet', '10');
    expect(out).toContain('tcp 192.0.2.2:1024 -> 172.16.0.13:80 [SYN]');
    expect(out).toMatch(/xdp\s+source 192\.0\.2\.2 is in blocked 192\.0\.2\.0\/24 .*=> DROP \(blocked-src\)/);
    expect(out).toMatch(/conntrack\s+\(not reached\)/);
    expect(out).toContain('=> dropped by xdp');
  });

  it('--flow follows both directions of one flow', () => {
    const out = trace(join(ROOT, 'captures/tcp_http/ppp_three_http_streams.pcap'), '--packet', '1', '--flow', '--profile', 'iptables');
    const heads = out.split('\n').filter((l) => l.startsWith('Packet '));
    expect(heads.length).toBeGreaterThan(3);
    const tuples = new Set(heads.map((h) => h.replace(/^Packet \d+\s+\S+\s+\d+ bytes\s+/, '').replace(/ \[.*$/, '').replace(/^tcp /, '').split(' -> ').sort().join(' ')));
    expect(tuples.size).toBe(1);
  });
});
