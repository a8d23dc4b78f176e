/**
 * The summary's counts by link type and by L3 type against a plain count of the same packets: the
 * counters are a small table with probing and a Map behind it, so codes that fold to one slot
 * (0 and 0x0800: non-IP and IPv4), and more distinct codes than the table holds (a damaged capture
 * can have thousands of ethertypes), must still count each code exactly, in order of code.
 * Link types and ethertypes against tshark are in decode-golden.test.ts and capture-count.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Batch } from '../src/packet/batch.js';
import { l3Name } from '../src/packet/format.js';
import { TrafficSummary } from '../src/packet/summary.js';

/** Packets with these (link type, L3 type) codes, in batches of 256. */
function summarize(codes: [number, number][]): TrafficSummary {
  const s = new TrafficSummary();
  const b = new Batch(256);
  for (let at = 0; at < codes.length; at += 256) {
    const n = Math.min(256, codes.length - at);
    b.count = n;
    for (let i = 0; i < n; i++) {
      const [lt, et] = codes[at + i]!;
      b.linkType[i] = lt; b.l3Type[i] = et;
      b.malformed[i] = 0; b.family[i] = 0; b.vlan[i] = 0; b.frag[i] = 0;
      b.capLen[i] = 60; b.wireLen[i] = 60; b.noTime[i] = 0; b.tsSec[i] = 1; b.tsNsec[i] = 0;
    }
    s.add(b);
  }
  return s;
}

/** The plain count: every code's packets, keys in order of code. */
function expected(codes: number[], name: (k: number) => string): [string, number][] {
  const m = new Map<number, number>();
  for (const c of codes) m.set(c, (m.get(c) ?? 0) + 1);
  return [...m].sort((x, y) => x[0] - y[0]).map(([k, v]) => [name(k), v]);
}

describe('summary counts by code', () => {
  it('codes that fold to one slot each keep their own count (non-IP first, then IPv4)', () => {
    const codes: [number, number][] = [];
    for (let k = 0; k < 1000; k++) codes.push([1, k % 3 === 0 ? 0 : k % 3 === 1 ? 0x0800 : 0x86dd]);
    codes.push([1, 0x0808], [1, 0x0008]); // home slots 0 (as 0's) and 8 (as 0x0800's): taken, so they probe
    const l3 = summarize(codes).toJSON().l3;
    expect(Object.entries(l3)).toEqual(expected(codes.map((c) => c[1]), l3Name));
  });

  it('thousands of distinct ethertypes and link types are all counted', () => {
    const codes: [number, number][] = [];
    for (let k = 0; k < 5000; k++) codes.push([(k * 7) % 700, (k * 40503) & 0xffff]);
    for (let k = 0; k < 3000; k++) codes.push([1, (k % 50) * 1031]);
    const j = summarize(codes).toJSON();
    expect(Object.entries(j.l3)).toEqual(expected(codes.map((c) => c[1]), l3Name));
    expect(Object.entries(j.linkTypes).map(([k, v]) => [Number(k.split('/')[0]), v]))
      .toEqual(expected(codes.map((c) => c[0]), String).map(([k, v]) => [Number(k), v]));
    expect(j.packets).toBe(codes.length);
  });
});
