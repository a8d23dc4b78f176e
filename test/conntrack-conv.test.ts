/**
 * Conntrack's flows against tshark's conversation statistics (test/golden/conv, made by
 * scripts/make-conv-golden.mjs): per TCP/UDP conversation, frames and bytes each way.
 *
 * A tshark conversation is a pair of endpoints; conntrack may split one into several flows (a UDP
 * flow times out and starts again, a TCP tuple is reopened after TIME_WAIT), so flows are summed
 * per endpoint pair. Packets conntrack does not count (INVALID ones, as the kernel's acct; e.g. a
 * capture that starts with a FIN) are added from the packets' own conntrack verdicts, and TCP
 * packets the state machine ignored from each flow's `ignored` counters; later IP
 * fragments, which conntrack follows into the flow but tshark (reassembly off) does not count,
 * are taken off.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CtInfo } from '../src/conntrack/info.js';
import { Frag, Verdict } from '../src/packet/batch.js';
import { ipToString } from '../src/packet/format.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { CAPTURES, ROOT, cleanCaptures } from './helpers.js';

interface Conv {
  proto: 'tcp' | 'udp'; a: string; aport: number; b: string; bport: number;
  framesAB: number; framesBA: number; bytesAB: number | { kB: number }; bytesBA: number | { kB: number };
}

const PROFILE = parseProfile('pipeline: conntrack\n[conntrack]\ninvalid: accept\ncapacity: 1m\n', 'test');

function key(proto: string, a: string, ap: number, b: string, bp: number): string {
  return `${proto} ${a}:${ap} ${b}:${bp}`;
}

/** Per directed endpoint pair: [frames, bytes]. */
type Counts = Map<string, [number, number]>;

function add(m: Counts, k: string, frames: number, bytes: number): void {
  const v = m.get(k) ?? [0, 0];
  v[0] += frames; v[1] += bytes;
  m.set(k, v);
}

/**
 * Conversations tshark finds inside a tunnel. dplab, like a dataplane, tracks the outer header
 * (here the L2TP-over-UDP flow), so the inner TCP conversation is not one of its flows.
 */
const TUNNELLED: Record<string, string> = {
  'tcp_http/dpkt_nb6-http.pcap': 'tcp 2a00:5e80:101:212d:504:7b1:2572:db22:37034 2606:f200:0:7:bad:f00d:d00d:1:80',
};

function measure(file: string): Counts {
  const counts: Counts = new Map();
  /** First fragments' ports by (src, dst, IP id), to put later fragments back under their tuple. */
  const firstFragment = new Map<string, [number, number]>();
  runCapture({
    file, profile: 'conntrack', stages: buildStages(PROFILE),
    onFlow: (r) => {
      const p = r.proto === 6 ? 'tcp' : r.proto === 17 ? 'udp' : null;
      if (!p) return;
      add(counts, key(p, r.src, r.sport, r.dst, r.dport), r.packets[0] + r.ignored[0], r.bytes[0] + r.ignoredBytes[0]);
      add(counts, key(p, r.dst, r.dport, r.src, r.sport), r.packets[1] + r.ignored[1], r.bytes[1] + r.ignoredBytes[1]);
    },
    onBatch: (b) => {
      for (let i = 0; i < b.count; i++) {
        const p = b.proto[i] === 6 ? 'tcp' : b.proto[i] === 17 ? 'udp' : null;
        if (!p || b.verdict[i] !== Verdict.PASS) continue;
        const w = i << 2;
        const k = key(p, ipToString(b.family[i]!, b.src, w), b.sport[i]!, ipToString(b.family[i]!, b.dst, w), b.dport[i]!);
        // INVALID packets are not counted by conntrack (nor by the kernel's acct), with or without an entry.
        if (b.ctInfo[i] === CtInfo.INVALID) add(counts, k, 1, b.wireLen[i]!);
        const id = `${ipToString(b.family[i]!, b.src, w)} ${ipToString(b.family[i]!, b.dst, w)} ${b.ipId[i]}`;
        if (b.frag[i] === Frag.FIRST) firstFragment.set(id, [b.sport[i]!, b.dport[i]!]);
        if (b.frag[i] === Frag.LATER && b.flow[i]! >= 0) {
          // Conntrack counts it in its first fragment's flow; tshark (reassembly off) does not.
          const [sp, dp] = firstFragment.get(id)!;
          add(counts, key(p, ipToString(b.family[i]!, b.src, w), sp, ipToString(b.family[i]!, b.dst, w), dp), -1, -b.wireLen[i]!);
        }
      }
    },
  });
  return counts;
}

function matches(expected: number | { kB: number }, actual: number): boolean {
  if (typeof expected === 'number') return expected === actual;
  return Math.abs(actual - expected.kB * 1000) <= 1000; // tshark shows bytes >= 10 kB rounded to kB
}

/** Captures of a link type dplab does not decode: their packets are counted as unsupported, not tracked. */
const UNSUPPORTED_LINK = new Set(['linktype/tcpdump_nflog.pcap']);

describe('conntrack flows equal tshark conversations', () => {
  for (const row of cleanCaptures()) {
    if (UNSUPPORTED_LINK.has(row.file)) continue;
    const golden = JSON.parse(readFileSync(join(ROOT, 'test/golden/conv', `${row.file}.json`), 'utf8')) as { conversations: Conv[] };
    if (golden.conversations.length === 0) continue;
    it(`${row.file}: ${golden.conversations.length} conversations`, () => {
      const got = measure(join(CAPTURES, row.file));
      const problems: string[] = [];
      for (const c of golden.conversations) {
        if (TUNNELLED[row.file] === key(c.proto, c.a, c.aport, c.b, c.bport)) continue;
        const ab = got.get(key(c.proto, c.a, c.aport, c.b, c.bport)) ?? [0, 0];
        const ba = got.get(key(c.proto, c.b, c.bport, c.a, c.aport)) ?? [0, 0];
        if (ab[0] !== c.framesAB || ba[0] !== c.framesBA || !matches(c.bytesAB, ab[1]) || !matches(c.bytesBA, ba[1])) {
          problems.push(`${key(c.proto, c.a, c.aport, c.b, c.bport)}: tshark ${c.framesAB}/${JSON.stringify(c.bytesAB)} -> ${c.framesBA}/${JSON.stringify(c.bytesBA)} <-, dplab ${ab[0]}/${ab[1]} -> ${ba[0]}/${ba[1]} <-`);
        }
      }
      expect(problems).toEqual([]);
    });
  }
});
