/**
 * The synthetic-traffic generator, checked by an independent reader: tshark counts the packets,
 * verifies every checksum, follows every TCP stream, and finds each flow as one conversation.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSynthPcap, type SynthOptions, type SynthSummary } from '../src/gen/synth.js';
import { ROOT } from './helpers.js';

const CHECKSUMS = ['-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE'];
/** Status 1 is "good"; 0 is "bad" and 2 "unverified", so anything but 1 is a failure. */
const PROBLEMS = 'tcp.checksum.status!=1 || udp.checksum.status!=1 || ip.checksum.status!=1 || _ws.malformed || _ws.expert.severity>=error';

function tshark(...args: string[]): string {
  const r = spawnSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) throw new Error(`tshark could not run (${r.error.message}): install it, e.g. apt-get install tshark`);
  if (r.status !== 0) throw new Error(`tshark ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Packets of `file` matching a display filter. */
function countMatching(file: string, filter: string): number {
  return tshark('-r', file, ...CHECKSUMS, '-Y', filter, '-T', 'fields', '-e', 'frame.number').split('\n').filter(Boolean).length;
}

function conversations(file: string, proto: 'tcp' | 'udp'): number {
  return tshark('-r', file, '-q', '-z', `conv,${proto}`).split('\n').filter((l) => l.includes('<->')).length;
}

const OPTS: SynthOptions = {
  seed: 42, flows: 300, packetsPerFlow: 8, ipv6Share: 0.3, vlanShare: 0.2, udpShare: 0.25,
  rstShare: 0.2, attackShare: 0.1, payloadSize: 100, concurrency: 50,
};

describe('dplab gen: synthetic traffic', () => {
  let dir: string;
  let file: string;
  let s: SynthSummary;

  beforeAll(() => {
    const v = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) {
      throw new Error('tshark is not installed, and these tests compare the generator against it: apt-get install tshark');
    }
    dir = mkdtempSync(join(tmpdir(), 'dplab-gen-'));
    file = join(dir, 'synth.pcap');
    s = writeSynthPcap(file, OPTS);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('makes the packets it was asked for: flows x packets per flow, plus the attack share', () => {
    expect(s.tcpFlows + s.udpFlows).toBe(300);
    expect(s.packets - s.attackPackets).toBe(300 * 8);
    expect(s.attackPackets).toBe(Math.round((2400 * 0.1) / 0.9));
  });

  it('tshark reads every packet', () => {
    expect(countMatching(file, 'frame')).toBe(s.packets);
  });

  it('has no malformed packet and no bad or unverified checksum', () => {
    expect(countMatching(file, PROBLEMS)).toBe(0);
    // Every checksum was really checked, and found good.
    expect(countMatching(file, 'tcp.checksum.status==1')).toBe(s.tcpPackets);
    expect(countMatching(file, 'udp.checksum.status==1')).toBe(s.udpPackets);
    expect(countMatching(file, 'ip.checksum.status==1')).toBe(s.packets - s.ipv6Packets);
  });

  it('the checksum check has teeth: one flipped byte in a TCP, a UDP and an IPv4 header is caught', () => {
    const bytes = readFileSync(file);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const want = { tcp: true, udp: true, ip: true };
    const hit: number[] = [];
    for (let at = 24, n = 1; at < bytes.length; n++) {
      const len = dv.getUint32(at + 8, true);
      const frame = at + 16;
      const vlan = dv.getUint16(frame + 12) === 0x8100 ? 4 : 0;
      const v4 = dv.getUint16(frame + 12 + vlan) === 0x0800;
      const proto = bytes[frame + 14 + vlan + (v4 ? 9 : 6)];
      if (v4 && want.ip) { bytes[frame + 14 + vlan + 8]! ^= 1; want.ip = false; hit.push(n); } // TTL
      else if (proto === 6 && want.tcp) { bytes[frame + len - 1]! ^= 0xff; want.tcp = false; hit.push(n); }
      else if (proto === 17 && want.udp) { bytes[frame + len - 1]! ^= 0xff; want.udp = false; hit.push(n); }
      at = frame + len;
    }
    const bad = join(dir, 'corrupt.pcap');
    writeFileSync(bad, bytes);
    expect(hit).toHaveLength(3);
    expect(countMatching(bad, PROBLEMS)).toBe(3);
  });

  it('TCP flows open, carry data and close as real ones do (tshark finds no seq/ack anomaly)', () => {
    expect(countMatching(file, 'tcp.analysis.flags')).toBe(0);
    expect(countMatching(file, 'tcp.flags==0x002')).toBe(s.tcpFlows + s.attackPackets); // SYN
    expect(countMatching(file, 'tcp.flags==0x012')).toBe(s.tcpFlows); // SYN-ACK
    expect(countMatching(file, 'tcp.flags.reset==1')).toBe(s.rstFlows);
    expect(countMatching(file, 'tcp.flags.fin==1')).toBe(2 * (s.tcpFlows - s.rstFlows));
    expect(countMatching(file, 'tcp.len==100')).toBe((8 - 6) * (s.tcpFlows - s.rstFlows) + (8 - 4) * s.rstFlows);
  });

  it('every flow and every attack SYN is its own conversation', () => {
    expect(conversations(file, 'tcp')).toBe(s.tcpFlows + s.attackPackets);
    expect(conversations(file, 'udp')).toBe(s.udpFlows);
  });

  it('mixes IPv6, VLAN tags and attack sources in the asked shares', () => {
    expect(countMatching(file, 'ipv6')).toBe(s.ipv6Packets);
    expect(countMatching(file, 'vlan')).toBe(s.vlanPackets);
    expect(countMatching(file, 'ip.src==192.0.2.0/24 || ipv6.src==2001:db8:bad::/48')).toBe(s.attackPackets);
    expect(s.ipv6Packets / s.packets).toBeGreaterThan(0.2);
    expect(s.ipv6Packets / s.packets).toBeLessThan(0.4);
    expect(s.vlanPackets / s.packets).toBeGreaterThan(0.1);
    expect(s.vlanPackets / s.packets).toBeLessThan(0.3);
  });

  it('interleaves flows: many TCP streams are open at once', () => {
    const streams = tshark('-r', file, '-Y', 'tcp', '-T', 'fields', '-e', 'tcp.stream').split('\n').filter(Boolean).map(Number);
    const last = new Map<number, number>();
    streams.forEach((id, k) => last.set(id, k));
    const open = new Set<number>();
    let most = 0;
    streams.forEach((id, k) => {
      open.add(id);
      most = Math.max(most, open.size);
      if (last.get(id) === k) open.delete(id);
    });
    expect(most).toBeGreaterThanOrEqual(30);
  });

  it('is deterministic: the same seed gives the same bytes, another seed other bytes', () => {
    const again = join(dir, 'again.pcap');
    const other = join(dir, 'other.pcap');
    writeSynthPcap(again, OPTS);
    writeSynthPcap(other, { ...OPTS, seed: 43 });
    expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
    expect(readFileSync(other).equals(readFileSync(file))).toBe(false);
  });

  it('--packets gives exactly that many packets, the last flow cut short', () => {
    const f = join(dir, 'exact.pcap');
    const r = writeSynthPcap(f, { packets: 1001, packetsPerFlow: 7, seed: 5 });
    expect(r.packets).toBe(1001);
    expect(countMatching(f, 'frame')).toBe(1001);
    expect(countMatching(f, PROBLEMS)).toBe(0);
  });

  it('--scan: each probe is a SYN to a well-known port and the server\'s RST/ACK microseconds later', () => {
    const f = join(dir, 'scan.pcap');
    const r = writeSynthPcap(f, { flows: 100, scanShare: 0.4, seed: 11 });
    expect(r.scanProbes).toBeGreaterThan(100);
    expect(countMatching(f, PROBLEMS)).toBe(0);
    const scanner = 'ip.addr==100.64.0.0/24 || ipv6.addr==fd00:64::/64';
    expect(countMatching(f, `(${scanner}) && tcp.flags==0x002`)).toBe(r.scanProbes);
    expect(countMatching(f, `(${scanner}) && tcp.flags==0x014`)).toBe(r.scanProbes);
    // tshark pairs each RST with its SYN: the RST acknowledges the SYN and follows it in the same stream.
    expect(countMatching(f, `(${scanner}) && tcp.flags==0x014 && tcp.ack==1 && tcp.time_delta < 0.000005`)).toBe(r.scanProbes);
    expect(conversations(f, 'tcp')).toBe(r.tcpFlows + r.attackPackets + r.scanProbes);
  });

  it('the dplab gen command writes what the library writes, and rejects bad options', () => {
    const f = join(dir, 'cli.pcap');
    const ok = spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), 'gen', f, '--flows', '50', '--ipv6', '50%', '--scan', '30%', '--seed', '9'], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    const lib = join(dir, 'lib.pcap');
    writeSynthPcap(lib, { flows: 50, ipv6Share: 0.5, scanShare: 0.3, seed: 9 });
    expect(readFileSync(f).equals(readFileSync(lib))).toBe(true);
    const bad = spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), 'gen', f, '--udp', '2'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('UDP share must be a share between 0 and 1');
  });
});
