/**
 * dplab's reader and decoder against tshark, packet by packet, on every clean capture (and the
 * synthetic fixtures). The expected values are test/golden/*.tsv, written by
 * scripts/make-golden.mjs from tshark's own dissection; that script's header says how each column
 * is derived. Nothing here comes from dplab.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Frag, type Batch } from '../src/packet/batch.js';
import { Malformed, MALFORMED_NAMES } from '../src/packet/decode.js';
import { ipToString, packetTime, protoName } from '../src/packet/format.js';
import { addSummaries, TrafficSummary, type SummaryJson } from '../src/packet/summary.js';
import { CAPTURES, ROOT, cleanCaptures, readAll } from './helpers.js';

const GOLDEN = join(ROOT, 'test', 'golden');

type GoldenRow = Record<string, string>;

function readGolden(file: string): GoldenRow[] {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  const head = lines[0]!.split('\t');
  return lines.slice(1).map((l) => {
    const cells = l.split('\t');
    return Object.fromEntries(head.map((h, k) => [h, cells[k] ?? '']));
  });
}

/** The first layer of tshark's frame.protocols for each link type dplab decodes (README). */
const DECODED_LINKS = new Set(['eth', 'sll', 'null', 'raw', 'ip', 'ipv6']);

/**
 * tshark layers whose problems are problems of the headers dplab decodes: link, VLAN/MPLS/PPPoE,
 * the outer IP header and its extension headers, the outer L4 header. A problem deeper in the
 * packet (DNS, HTTP, the packet an ICMP error quotes, "icmp/ip") is none of dplab's business, and
 * neither is a snap length that cut only the transport payload (", after the whole header").
 */
const HEADER_LAYERS = new Set(['eth', 'ethertype', 'vlan', 'ieee8021ad', 'mpls', 'pppoes', 'ppp', 'sll', 'null', 'raw',
  'ip', 'ipv6', 'ipv6.hopopts', 'ipv6.routing', 'ipv6.dstopts', 'ipv6.fraghdr', 'tcp', 'udp', 'sctp', 'icmp', 'icmpv6']);

function headerProblem(problems: string): boolean {
  if (problems === '') return false;
  return problems.split(' / ').some((p) => HEADER_LAYERS.has(p.slice(0, p.indexOf(': '))) && !p.endsWith(', after the whole header'));
}

const FRAG = { none: Frag.NONE, first: Frag.FIRST, later: Frag.LATER } as Record<string, number>;

/** A field tshark leaves empty is 0 in the batch (the batch has no "absent"). */
const num = (s: string): number => (s === '' ? 0 : Number(s));

/** An address as text; IPv4 only when words 1..3 are zero, so a family mix-up shows. */
function addr(family: number, words: Uint32Array, w: number): string {
  if (family === 0) return '';
  if (family === 4 && (words[w + 1] !== 0 || words[w + 2] !== 0 || words[w + 3] !== 0)) return `not-ipv4:${ipToString(6, words, w)}`;
  return ipToString(family, words, w);
}

interface Row {
  num: number; time: string; len: number; caplen: number;
  family: number; src: string; dst: string; proto: number; sport: number; dport: number; vlan: number; frag: number;
  malformed: string;
}

interface InnerRow { num: number; proto: number; src: string; dst: string; sport: number; dport: number }

function expectedRow(g: GoldenRow): Row {
  const frame = {
    num: Number(g.num),
    // pcapng Simple Packet Blocks carry no timestamp: tshark prints nothing, and so does dplab.
    time: g.time!,
    len: Number(g.len), caplen: Number(g.caplen),
  };
  if (!DECODED_LINKS.has(g.link!)) {
    // A link type dplab does not decode (NFLOG, NETLINK): tshark finds IP inside, dplab counts the
    // packet as unsupported-link-type and decodes nothing.
    return { ...frame, family: 0, src: '', dst: '', proto: 0, sport: 0, dport: 0, vlan: 0, frag: 0, malformed: 'unsupported-link-type' };
  }
  return {
    ...frame,
    family: num(g.family!), src: g.src!, dst: g.dst!, proto: num(g.proto!), sport: num(g.sport!), dport: num(g.dport!),
    vlan: num(g.vlan!), frag: g.frag === '' ? Frag.NONE : FRAG[g.frag!]!,
    malformed: headerProblem(g.problems!) ? 'malformed' : 'ok',
  };
}

function actualRow(b: Batch, i: number): Row {
  const w = i << 2;
  const fam = b.family[i]!;
  const m = b.malformed[i]!;
  return {
    num: b.num[i]!, time: packetTime(b, i), len: b.wireLen[i]!, caplen: b.capLen[i]!,
    family: fam, src: addr(fam, b.src, w), dst: addr(fam, b.dst, w), proto: fam === 0 ? 0 : b.proto[i]!,
    sport: b.sport[i]!, dport: b.dport[i]!, vlan: b.vlan[i]!, frag: b.frag[i]!,
    malformed: m === Malformed.OK ? 'ok' : m === Malformed.UNSUPPORTED_LINK ? MALFORMED_NAMES[m]! : 'malformed',
  };
}

function expectedInner(g: GoldenRow): InnerRow {
  return { num: Number(g.num), proto: num(g.in_proto!), src: g.in_src!, dst: g.in_dst!, sport: num(g.in_sport!), dport: num(g.in_dport!) };
}

function actualInner(b: Batch, i: number, family: number): InnerRow {
  const w = i << 2;
  const none = b.inProto[i] === 0 && b.inSrc.subarray(w, w + 4).every((x) => x === 0);
  return {
    num: b.num[i]!, proto: b.inProto[i]!,
    src: family === 0 ? (none ? '' : `unexpected:${ipToString(6, b.inSrc, w)}`) : addr(family, b.inSrc, w),
    dst: family === 0 ? (none ? '' : `unexpected:${ipToString(6, b.inDst, w)}`) : addr(family, b.inDst, w),
    sport: b.inSport[i]!, dport: b.inDport[i]!,
  };
}

interface Compared { rows: number; packets: number; error: string | null; outer: unknown[]; inner: unknown[]; quoted: number }

/** Decode `capture` and compare every packet with its golden rows; keeps the first few mismatches. */
function compare(capture: string, golden: string): Compared {
  const want = readGolden(golden);
  const outer: unknown[] = [];
  const inner: unknown[] = [];
  let k = 0;
  let quoted = 0;
  const src = readAll(capture, (b) => {
    for (let i = 0; i < b.count; i++, k++) {
      const g = want[k];
      if (!g) continue;
      const e = expectedRow(g);
      const a = actualRow(b, i);
      if (outer.length < 5 && JSON.stringify(e) !== JSON.stringify(a)) outer.push({ expected: e, actual: a, tsharkProblems: g.problems });
      const ie = expectedInner(g);
      const ia = actualInner(b, i, num(g.in_family!));
      if (g.in_family !== '') quoted++;
      if (inner.length < 5 && JSON.stringify(ie) !== JSON.stringify(ia)) inner.push({ expected: ie, actual: ia });
    }
  });
  return { rows: want.length, packets: src.packets, error: src.error?.message ?? null, outer, inner, quoted };
}

/** Every clean capture, and the synthetic fixtures make-golden.mjs covers (scripts/make-fixtures.mjs). */
const jobs = [
  ...cleanCaptures().map((r) => ({ name: r.file, capture: join(CAPTURES, r.file), golden: join(GOLDEN, `${r.file}.tsv`) })),
  ...readdirSync(join(GOLDEN, 'fixtures')).filter((n) => n.endsWith('.tsv')).sort().map((n) => ({
    name: `fixtures/${n.slice(0, -4)}`, capture: join(ROOT, 'test', 'fixtures', n.slice(0, -4)), golden: join(GOLDEN, 'fixtures', n),
  })),
];

describe('decoding matches tshark packet by packet', () => {
  const results = new Map<string, Compared>();
  const result = (job: (typeof jobs)[number]): Compared => {
    let r = results.get(job.name);
    if (!r) { r = compare(job.capture, job.golden); results.set(job.name, r); }
    return r;
  };

  it('has a golden file for every clean capture (run scripts/make-golden.mjs after adding captures)', () => {
    expect(jobs.filter((j) => !existsSync(j.golden)).map((j) => j.name)).toEqual([]);
    expect(jobs.filter((j) => j.name.startsWith('fixtures/')).length).toBeGreaterThanOrEqual(3);
  });

  for (const job of jobs) {
    it(`${job.name}: number, time, lengths, outer addresses, protocol, ports, VLAN, fragment state and malformed verdict`, () => {
      const r = result(job);
      expect(r.error).toBeNull();
      expect(r.packets).toBe(r.rows);
      expect(r.outer).toEqual([]);
    });
  }

  it('ICMP and ICMPv6 errors: the quoted packet\'s protocol, addresses and ports match tshark\'s inner IP layer', () => {
    const quoted: Record<string, number> = {};
    const mismatches: Record<string, unknown[]> = {};
    for (const job of jobs) {
      const r = result(job);
      if (r.quoted > 0) quoted[job.name] = r.quoted;
      if (r.inner.length > 0) mismatches[job.name] = r.inner;
    }
    expect(mismatches).toEqual({});
    // tshark finds ICMP errors in icmp/, ipv6/arkime_v6.pcap and tcp_http/dpkt_nb6-http.pcap (33
    // packets, ICMP and ICMPv6, quoting TCP, UDP and ICMP); without them this test proves nothing.
    expect(Object.keys(quoted).length).toBeGreaterThanOrEqual(4);
    expect(Object.values(quoted).reduce((a, n) => a + n, 0)).toBeGreaterThanOrEqual(30);
  });

  it('prints IPv6 addresses exactly as tshark does (every zero-run and embedded-IPv4 form)', () => {
    const g = readGolden(join(GOLDEN, 'fixtures', 'ipv6-address-forms.pcap.tsv'));
    const printed: string[] = [];
    readAll(join(ROOT, 'test', 'fixtures', 'ipv6-address-forms.pcap'), (b) => {
      for (let i = 0; i < b.count; i++) printed.push(ipToString(6, b.src, i << 2));
    });
    expect(g.length).toBe(24);
    expect(printed).toEqual(g.map((r) => r.src));
  });
});

/**
 * The capture summary's counts from the same golden rows: packets, bytes on the wire and captured,
 * packets cut by the snap length, malformed packets, and of the well-formed ones IPv4 and IPv6 by
 * L4 protocol, VLAN-tagged and fragments. The summary counts most packets from what the decoder
 * tallied on its fast path (TrafficSummary.addDecoded), so this holds those tallies to tshark.
 */
function goldenSummary(rows: GoldenRow[]): Partial<SummaryJson> {
  const l3: Record<string, number> = {};
  const l4: Record<string, number> = {};
  let bytes = 0; let capturedBytes = 0; let cut = 0; let malformed = 0; let vlanTagged = 0; let fragments = 0;
  for (const g of rows) {
    const e = expectedRow(g);
    bytes += e.len; capturedBytes += e.caplen;
    if (e.caplen < e.len) cut++;
    if (e.malformed !== 'ok') { malformed++; continue; }
    if (e.family !== 0) {
      l3[`ipv${e.family}`] = (l3[`ipv${e.family}`] ?? 0) + 1;
      const k = `ipv${e.family}/${protoName(e.proto)}`;
      l4[k] = (l4[k] ?? 0) + 1;
    }
    if (e.vlan !== 0) vlanTagged++;
    if (e.frag !== Frag.NONE) fragments++;
  }
  return { packets: rows.length, bytes, capturedBytes, snaplenTruncated: cut, malformed, l3, l4, vlanTagged, fragments };
}

/** The parts goldenSummary has (L3 only for IPv4 and IPv6: the golden rows name no other ethertype). */
function comparable(s: SummaryJson): Partial<SummaryJson> {
  const l3 = Object.fromEntries(Object.entries(s.l3).filter(([k]) => k === 'ipv4' || k === 'ipv6'));
  const { packets, bytes, capturedBytes, snaplenTruncated, malformed, l4, vlanTagged, fragments } = s;
  return { packets, bytes, capturedBytes, snaplenTruncated, malformed, l3, l4, vlanTagged, fragments };
}

describe('the capture summary matches tshark\'s counts', () => {
  const sorted = (o: Partial<SummaryJson>): string => JSON.stringify(o, (_k, v: unknown) => (
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v));
  let fastTaken = 0;
  let slowTaken = 0;
  const shareCounted = [0, 0, 0];
  for (const job of jobs) {
    it(`${job.name}: counted from the decoder's tallies, field by field, and as three workers' shares, at batch sizes 7 and 256`, () => {
      const want = sorted(goldenSummary(readGolden(job.golden)));
      for (const batchSize of [7, 256]) {
        const tallied = new TrafficSummary();
        const fields = new TrafficSummary();
        readAll(job.capture, (b) => {
          tallied.addDecoded(b);
          fields.add(b);
          fastTaken += b.count - b.slowCount;
          slowTaken += b.slowCount;
        }, batchSize);
        // Ranges of 10 packets, so batches fall across ranges and wholly in one; each worker reads
        // in batches of its own size, so a share cannot lean on the workers' batches lining up.
        const shares = [0, 1, 2].map((me) => new TrafficSummary({ me, of: 3 }, 10));
        shares.forEach((s, me) => readAll(job.capture, (b) => s.addDecoded(b), [batchSize, 13, 4][me]));
        expect(sorted(comparable(tallied.toJSON())), `--batch ${batchSize}`).toBe(want);
        expect(fields.toJSON()).toEqual(tallied.toJSON());
        expect(shares.map((s) => s.toJSON()).reduce(addSummaries)).toEqual(tallied.toJSON());
        shares.forEach((s, me) => { shareCounted[me]! += s.packets; });
      }
    });
  }

  it('every route was taken: most packets by the fast path\'s tallies, thousands one by one, each worker\'s share', () => {
    expect(fastTaken).toBeGreaterThan(50_000);
    expect(slowTaken).toBeGreaterThan(4_000);
    for (const n of shareCounted) expect(n).toBeGreaterThan(20_000);
  });
});
