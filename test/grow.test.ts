/**
 * Packets that grow (a VLAN tag pushed, a header for encapsulation) move to the batch's output
 * area, and everything after follows them: the setters, the capture writer, and the next pipeline
 * of a fan-out (which must still see the packet as read). Checked with tshark: after a test stage
 * pushes an 802.1Q tag on every untagged Ethernet IP packet and lowers its TTL, each packet is 4
 * bytes longer, carries VLAN 42, has its TTL one lower, and keeps the checksum verdicts it had; the
 * output is byte-identical at --batch 1, 7 and 256.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { Batch } from '../src/packet/batch.js';
import { Fanout } from '../src/pipeline/fanout.js';
import { loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import { Pipeline } from '../src/pipeline/runner.js';
import type { Stage } from '../src/pipeline/stage.js';
import '../src/stages/index.js';
import { CAPTURES, tsharkFields } from './helpers.js';
import { VlanPush } from './stages.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-grow-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FILES = ['large/ppp_many-protocols.pcap', 'ipv6/zeek_ftp_ipv6.pcap', 'ipv4_frag/ppp_ip4_fragments.pcap', 'pcapng/ppp_pcapng-example.pcapng', 'dns/tcpdump_dns_udp.pcap'];

describe('a stage that makes packets longer', () => {
  for (const f of FILES) {
    it(f, () => {
      const input = join(CAPTURES, f);
      const outs = [1, 7, 256].map((batchSize) => {
        const out = join(dir, `${batchSize}-${f.replace(/\//g, '_')}`);
        const stage = new VlanPush('vlan-push', { ttl: true });
        runCapture({ file: input, profile: 'grow', stages: [stage], write: out, batchSize, timing: false });
        expect(stage.pushed).toBeGreaterThan(0);
        return out;
      });
      const bytes = readFileSync(outs[2]!);
      expect(readFileSync(outs[0]!).equals(bytes), '--batch 1').toBe(true);
      expect(readFileSync(outs[1]!).equals(bytes), '--batch 7').toBe(true);
      const F = ['frame.len', 'vlan.id', 'ip.ttl', 'ipv6.hlim', 'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'ip.src', 'ipv6.src'];
      const before = tsharkFields(input, F);
      const after = tsharkFields(outs[2]!, F);
      expect(after.length).toBe(before.length);
      let pushed = 0;
      after.forEach((a, k) => {
        const o = before[k]!;
        // Packets already tagged, or not IP, or not Ethernet, are untouched.
        if (a[1] !== '42' || o[1] === '42') { expect(a, `packet ${k + 1}`).toEqual(o); return; }
        pushed++;
        expect(Number(a[0]), `packet ${k + 1} length`).toBe(Number(o[0]) + 4);
        if (o[2]) expect(Number(a[2]!.split(',')[0])).toBe(Math.max(0, Number(o[2]!.split(',')[0]) - 1));
        if (o[3]) expect(Number(a[3]!.split(',')[0])).toBe(Math.max(0, Number(o[3]!.split(',')[0]) - 1));
        expect(a.slice(4), `packet ${k + 1}: checksums and addresses`).toEqual(o.slice(4));
      });
      expect(pushed).toBeGreaterThan(0);
    });
  }

  it('in a fan-out, the pipeline after it still sees every packet as read', () => {
    const input = join(CAPTURES, FILES[0]!);
    const recorder = (rec: string[]): Stage => ({
      name: 'rec', reasons: [], report: () => ({}),
      process: (b: Batch) => { for (let i = 0; i < b.count; i++) rec.push(`${b.num[i]} ${b.verdict[i]} ${b.grown[i]} ${b.l3[i]! - b.off[i]!} ${b.ttl[i]}`); },
    });
    const a: string[] = [];
    const b0: string[] = [];
    const grow = new Pipeline([new VlanPush('vlan-push', { ttl: true })], { timing: false });
    const after = new Pipeline([...buildStages(loadProfile('ebpf')), recorder(a)], { timing: false });
    const alone = new Pipeline([...buildStages(loadProfile('ebpf')), recorder(b0)], { timing: false });
    const fan = new Fanout([grow, after], false);
    const feed = (each: (b: Batch) => void): void => {
      const src = openCapture(input);
      const b = new Batch();
      while (src.fill(b) > 0) { each(b); src.release(b); }
      src.close();
    };
    feed((b) => fan.process(b));
    feed((b) => alone.process(b));
    expect(a).toEqual(b0);
  });
});
