/**
 * The decoder's fast path (Ethernet, one VLAN tag at most, IPv4 without options or IPv6 without
 * extension headers, a whole TCP/UDP header) writes exactly what the general path writes: on every
 * shipped capture, every field of every packet decoded by decodeBatch equals what decodePacket
 * alone gives. (The general path is itself checked against tshark by the golden tests.)
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { Batch, Verdict } from '../src/packet/batch.js';
import { decodeBatch, decodePacket } from '../src/packet/decode.js';
import { CAPTURES, captureIndex } from './helpers.js';

function opens(file: string): boolean {
  try { openCapture(file).close(); return true; } catch { return false; }
}

describe('fast path = general path, field by field', () => {
  let fastTotal = 0;
  for (const row of captureIndex()) {
    const file = join(CAPTURES, row.file);
    if (!opens(file)) continue;
    it(row.file, () => {
      const src = openCapture(file);
      const b = new Batch();
      let packets = 0;
      try {
        while (src.fill(b) > 0) {
          decodeBatch(b);
          const fast = b.decoded.slice();
          b.decoded.fill(0);
          for (let i = 0; i < b.count; i++) {
            decodePacket(b, i);
            if (b.malformed[i] !== 0) b.verdict[i] = Verdict.DROP;
          }
          if (!Buffer.from(fast).equals(Buffer.from(b.decoded))) {
            // Name the first packet and field that differ.
            const general = b.decoded.slice();
            b.decoded.set(fast);
            const again = new Batch(b.capacity);
            again.decoded.set(general);
            for (let i = 0; i < b.count; i++) {
              for (const f of ['malformed', 'l3Type', 'vlan', 'l3', 'l4', 'pay', 'l3End', 'family', 'proto', 'frag', 'ipId', 'ttl', 'sport', 'dport', 'tcpFlags', 'seq', 'ack', 'win', 'hash', 'verdict'] as const) {
                expect(b[f][i], `packet ${b.num[i]}: ${f}`).toBe(again[f][i]);
              }
              for (const f of ['src', 'dst'] as const) expect([...b[f].subarray(4 * i, 4 * i + 4)], `packet ${b.num[i]}: ${f}`).toEqual([...again[f].subarray(4 * i, 4 * i + 4)]);
            }
            expect.fail(`${row.file}: the paths differ in a field the test does not name`);
          }
          packets += b.count;
          src.release(b);
        }
      } finally {
        src.close();
      }
      fastTotal += packets;
      expect(packets).toBe(src.packets);
    });
  }
  it('covered packets in all', () => expect(fastTotal).toBeGreaterThan(50_000));
});

// The flow table compares only word 0 of an IPv4 address (FlowTable.match): it relies on words 1-3
// being zero in every decoded IPv4 packet, outer and quoted, even in a batch whose slots held IPv6
// packets before. decodeBatch zeroes every field first; this holds it to that.
describe('IPv4 addresses leave words 1-3 zero', () => {
  it('every shipped capture, one batch reused throughout', () => {
    const b = new Batch(64);
    let v4 = 0;
    let quoted = 0;
    let v6 = 0;
    for (const row of captureIndex()) {
      const file = join(CAPTURES, row.file);
      if (!opens(file)) continue;
      const src = openCapture(file);
      try {
        while (src.fill(b) > 0) {
          decodeBatch(b);
          for (let i = 0; i < b.count; i++) {
            const w = 4 * i;
            if (b.family[i] === 6) v6++;
            if (b.family[i] !== 4) continue;
            v4++;
            const words = [b.src[w + 1], b.src[w + 2], b.src[w + 3], b.dst[w + 1], b.dst[w + 2], b.dst[w + 3]];
            expect(words, `${row.file} packet ${b.num[i]}`).toEqual([0, 0, 0, 0, 0, 0]);
            if (b.inProto[i] !== 0) {
              quoted++;
              expect([b.inSrc[w + 1], b.inSrc[w + 2], b.inSrc[w + 3], b.inDst[w + 1], b.inDst[w + 2], b.inDst[w + 3]], `${row.file} packet ${b.num[i]} (quoted)`).toEqual([0, 0, 0, 0, 0, 0]);
            }
          }
          src.release(b);
        }
      } finally {
        src.close();
      }
    }
    // Both families went through the same slots, and ICMP errors were among them.
    expect(v4).toBeGreaterThan(10_000);
    expect(v6).toBeGreaterThan(1_000);
    expect(quoted).toBeGreaterThan(10);
  });
});
