/**
 * The same packets in three container formats decode identically. test/fixtures/variants/ holds
 * editcap's nanosecond-pcap and pcapng rewrites of a few diverse clean captures
 * (scripts/make-variants.sh); dplab must read the same bytes and timestamps from each and decode
 * them to the same fields as the original.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Batch } from '../src/packet/batch.js';
import { CAPTURES, ROOT, readAll } from './helpers.js';

const VARIANTS = join(ROOT, 'test', 'fixtures', 'variants');
const SOURCES = readFileSync(join(VARIANTS, 'SOURCES'), 'utf8').trim().split('\n');

/** Per-packet fields that do not depend on where in the file the packet sits. */
const FIELDS = ['num', 'tsSec', 'tsNsec', 'wireLen', 'capLen', 'linkType', 'malformed', 'l3Type', 'vlan', 'family', 'proto', 'frag',
  'ipId', 'ttl', 'sport', 'dport', 'tcpFlags', 'seq', 'ack', 'win', 'icmpType', 'icmpCode', 'icmpId', 'inProto', 'inSport', 'inDport',
  'hash'] as const;
const WORDS = ['src', 'dst', 'inSrc', 'inDst'] as const;
/** Header offsets, relative to the packet's first byte (-1 when not set). */
const OFFSETS = ['l3', 'l4', 'pay', 'l3End'] as const;

interface Read { format: string; error: string | null; packets: Record<string, unknown>[] }

function read(path: string): Read {
  const packets: Record<string, unknown>[] = [];
  const src = readAll(path, (b: Batch) => {
    for (let i = 0; i < b.count; i++) {
      const p: Record<string, unknown> = {};
      for (const f of FIELDS) p[f] = b[f][i];
      for (const f of WORDS) p[f] = Array.from(b[f].subarray(i * 4, i * 4 + 4));
      const off = b.off[i]!;
      for (const f of OFFSETS) p[f] = b[f][i] === 0 ? -1 : b[f][i]! - off;
      p.bytes = Buffer.from(b.bytes.subarray(off, off + b.capLen[i]!)).toString('hex');
      packets.push(p);
    }
  });
  return { format: src.format, error: src.error?.message ?? null, packets };
}

describe('pcap, nanosecond pcap and pcapng versions of a capture decode identically', () => {
  it('covers a varied set of captures', () => {
    expect(SOURCES.length).toBeGreaterThanOrEqual(10);
  });

  for (const source of SOURCES) {
    const name = source.split('/').pop()!.replace(/\.pcap$/, '');
    it(`${source}: same packets, bytes, timestamps and decoded fields from all three`, () => {
      const original = read(join(CAPTURES, source));
      const ns = read(join(VARIANTS, `${name}.ns.pcap`));
      const ng = read(join(VARIANTS, `${name}.pcapng`));
      expect([original.error, ns.error, ng.error]).toEqual([null, null, null]);
      // The files really are the three formats (editcap wrote little-endian nanosecond pcap).
      expect(ns.format).toBe('pcap nsec LE');
      expect(ng.format).toBe('pcapng');
      expect(original.packets.length).toBeGreaterThan(0);
      expect(ns.packets).toEqual(original.packets);
      expect(ng.packets).toEqual(original.packets);
    });
  }
});
