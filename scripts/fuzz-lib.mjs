/**
 * Property-based fuzzing of the capture readers and the decoder, through the path the tool uses:
 * openCapture -> fill batches -> decodeBatch -> a profile's stages (runCapture). Shared by
 * test/fuzz.test.ts (on src/, a few hundred cases) and scripts/fuzz.mjs (on dist/, long runs), so
 * the code under test is passed in rather than imported.
 *
 * Inputs: random bytes, random records behind a valid pcap or pcapng header, and mutations of the
 * shipped clean captures (bit flips, byte overwrites, truncations, corrupted record / block
 * lengths, wrong magic, huge snap length, zero lengths). Properties, for every input:
 *  - the run ends, well within a time bound, in a report: complete, or with one CaptureError that
 *    names the file and a byte offset inside it; nothing else is thrown;
 *  - packets in = forwarded + dropped (by stage and reason) + malformed, and packets in = the
 *    packets the reader delivered = the packets seen batch by batch;
 *  - the packets whose records lie wholly before the first damaged byte are still delivered and
 *    decode as they do in the intact file; a truncated capture delivers exactly those, and its
 *    error points at the record the cut went through.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Run in a child with a capture on its standard input: runCapture({ file: '-' }) on dist/. */
const STDIN_RUNNER = `
const [dist, profile, batchSize] = process.argv.slice(1);
const { runCapture } = await import(dist + '/pipeline/run.js');
const { buildStages } = await import(dist + '/pipeline/registry.js');
const { loadProfile } = await import(dist + '/pipeline/profile.js');
await import(dist + '/stages/index.js');
const { report, source } = runCapture({ file: '-', profile, stages: buildStages(loadProfile(profile)), batchSize: Number(batchSize), timing: false });
const v = report.verdicts;
process.stdout.write(JSON.stringify({ packets: v.packets, forwarded: v.forwarded, dropped: v.dropped, malformed: v.malformed, complete: report.complete,
  error: source.error && { offset: source.error.offset, message: source.error.message } }));
`;

/** Read `bytes` as standard input (for regression cases); returns the child's summary. */
export function runStdin(distDir, bytes, profile, batchSize = 256) {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', STDIN_RUNNER, pathToFileURL(distDir).href, profile, String(batchSize)],
    { input: bytes, maxBuffer: 16 << 20, timeout: 30_000, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`the run on standard input failed (status ${child.status}): ${child.stderr}`);
  return JSON.parse(child.stdout);
}

const PCAP_MAGICS = [0xa1b2c3d4, 0xa1b23c4d];
const BT_SHB = 0x0a0d0d0a;
/** Link types dplab decodes, and a few it does not. */
const LINK_TYPES = [0, 1, 1, 1, 12, 101, 108, 113, 228, 229, 276, 239, 0xffff];
/** Length values that sit on or near a boundary some reader check uses. */
const NASTY_U32 = [0, 1, 3, 4, 11, 12, 13, 15, 16, 17, 20, 28, 31, 32, 33, 0x3fff_fffc, 262143, 262144, 262145, 4 << 20, (4 << 20) + 4, 0x7fff_ffff, 0x8000_0000, 0xffff_fffc, 0xffff_ffff];

/**
 * The records of a well-formed capture, in file order: { start, end, packet }. Written here from
 * the formats' specifications, not taken from dplab's readers.
 */
export function layout(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  if (bytes.length < 4) return out;
  if (dv.getUint32(0, false) === BT_SHB) {
    let le = true;
    for (let p = 0; p + 12 <= bytes.length;) {
      const type = dv.getUint32(p, le);
      if (type === BT_SHB) le = dv.getUint32(p + 8, true) === 0x1a2b3c4d;
      const blen = dv.getUint32(p + 4, le);
      if (blen < 12 || p + blen > bytes.length) break;
      out.push({ start: p, end: p + blen, packet: type === 6 || type === 3 || type === 2, type });
      p += blen;
    }
    return out;
  }
  const le = PCAP_MAGICS.includes(dv.getUint32(0, true));
  const minor = bytes.length >= 8 ? dv.getUint16(6, le) : 4;
  out.push({ start: 0, end: 24, packet: false, type: -1 });
  for (let p = 24; p + 16 <= bytes.length;) {
    let incl = dv.getUint32(p + 8, le);
    const orig = dv.getUint32(p + 12, le);
    if (minor < 3 || (minor === 3 && incl > orig)) incl = orig;
    if (p + 16 + incl > bytes.length) break;
    out.push({ start: p, end: p + 16 + incl, packet: true, type: 0 });
    p += 16 + incl;
  }
  return out;
}

/** Packets wholly before byte `at`, and the start of the record byte `at` falls in (or at). */
function prefixAt(recs, at) {
  let packets = 0;
  for (const r of recs) {
    // A cut between two records leaves a whole capture (an empty file is not one).
    if (r.end > at) return { packets, cutRecord: r.start >= at && at > 0 ? -1 : r.start };
    if (r.packet) packets++;
  }
  return { packets, cutRecord: -1 };
}

const u32 = (v, le) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, le); return b; };

/** Apply one mutation to a copy of `bytes`; returns the bytes and the first byte it changed. */
function mutate(bytes, m, recs, le) {
  const n = bytes.length;
  if (n === 0) return { bytes, at: 0 };
  const out = new Uint8Array(bytes);
  const put = (at, b) => { for (let k = 0; k < b.length && at + k < n; k++) out[at + k] = b[k]; return at; };
  const rec = recs.length ? recs[m.rec % recs.length] : { start: 0, end: n, packet: false, type: -1 };
  const pcapng = n >= 4 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, false) === BT_SHB;
  switch (m.kind) {
    case 'flip': { const at = m.pos % n; out[at] ^= 1 << m.bit; return { bytes: out, at }; }
    case 'overwrite': { const at = m.pos % n; put(at, m.data); return { bytes: out, at }; }
    case 'truncate': { const at = m.pos % (n + 1); return { bytes: out.subarray(0, at), at }; }
    case 'magic': return { bytes: out, at: put(0, u32(m.value, false)) };
    case 'length': {
      // A record's length fields: pcap incl / orig; pcapng block length (either end), EPB incl.
      let at;
      if (!pcapng) at = rec.type === -1 ? 16 : rec.start + (m.field % 2 === 0 ? 8 : 12);
      else if (m.field % 3 === 0) at = rec.start + 4;
      else if (m.field % 3 === 1) at = rec.end - 4;
      else at = rec.start + 20;
      // 'near': just off the true value (a pcap record's captured length, a pcapng block's length).
      const v = m.value === 'near' ? (rec.end - rec.start) - (pcapng || rec.type === -1 ? 0 : 16) + m.delta : m.value;
      return { bytes: out, at: put(at, u32(v, le)) };
    }
    case 'snaplen': {
      // pcap: the file header's snap length; pcapng: the first IDB's.
      let at = 16;
      if (pcapng) { const idb = recs.find((r) => r.type === 1); if (!idb) return { bytes: out, at: n }; at = idb.start + 12; }
      return { bytes: out, at: put(at, u32(m.value, le)) };
    }
    case 'zero': {
      // Zero a record's captured (and original) length, leaving its block length alone.
      if (!rec.packet) return { bytes: out, at: n };
      const at = pcapng ? rec.start + 20 : rec.start + 8;
      put(at, u32(0, le));
      if (m.both) put(at + 4, u32(0, le));
      return { bytes: out, at };
    }
    case 'time': {
      // Timestamps from the far past or future, running backwards, or with an out-of-range fraction.
      if (!rec.packet || (pcapng && rec.type === 3)) return { bytes: out, at: n };
      const at = rec.start + (pcapng ? 12 : 0);
      put(at + 4 * (m.field % 2), u32(m.value, le));
      return { bytes: out, at: at + 4 * (m.field % 2) };
    }
    case 'header': {
      // Damage a packet's own headers (link, IP, L4), leaving its record intact: the decoder's turn.
      if (!rec.packet) return { bytes: out, at: n };
      const data = rec.start + (!pcapng ? 16 : rec.type === 3 ? 12 : 28);
      const at = Math.min(data + m.off, rec.end - 1);
      if (m.data.length === 0) out[at] ^= 1 << m.bit;
      else put(at, m.data.subarray(0, Math.max(1, rec.end - at)));
      return { bytes: out, at };
    }
    default: throw new Error(`unknown mutation ${m.kind}`);
  }
}

/** A pcap file header + records with random lengths and random (or random-ish IP) contents. */
function buildPcap(c) {
  const parts = [];
  const h = new DataView(new ArrayBuffer(24));
  h.setUint32(0, PCAP_MAGICS[c.nano ? 1 : 0], c.le);
  h.setUint16(4, 2, c.le); h.setUint16(6, c.minor, c.le);
  h.setUint32(16, c.snap, c.le); h.setUint32(20, c.linkType, c.le);
  parts.push(new Uint8Array(h.buffer));
  for (const r of c.records) {
    const rh = new DataView(new ArrayBuffer(16));
    rh.setUint32(0, r.sec, c.le); rh.setUint32(4, r.frac, c.le);
    rh.setUint32(8, r.data.length, c.le); rh.setUint32(12, r.data.length + r.extra, c.le);
    parts.push(new Uint8Array(rh.buffer), r.data);
  }
  return concat(parts);
}

/** A pcapng SHB + IDBs + packet (or other) blocks, with options that may be odd. */
function buildPcapng(c) {
  const le = c.le;
  const block = (type, body) => {
    const pad = (4 - (body.length % 4)) % 4;
    const len = 12 + body.length + pad;
    const b = new Uint8Array(len);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, type, le); dv.setUint32(4, len, le); b.set(body, 8); dv.setUint32(len - 4, len, le);
    return b;
  };
  const parts = [];
  const shb = new DataView(new ArrayBuffer(16));
  shb.setUint32(0, 0x1a2b3c4d, le); shb.setUint16(4, 1, le); shb.setUint16(6, 0, le);
  shb.setInt32(8, -1, le); shb.setInt32(12, -1, le);
  parts.push(block(BT_SHB, new Uint8Array(shb.buffer)));
  for (const i of c.ifaces) {
    const body = new DataView(new ArrayBuffer(8 + 12 + 12));
    body.setUint16(0, i.linkType, le); body.setUint32(4, i.snap, le);
    body.setUint16(8, 9, le); body.setUint16(10, 1, le); body.setUint8(12, i.tsresol); // if_tsresol
    let o = 16;
    if (i.tsoffset !== null) { body.setUint16(o, 14, le); body.setUint16(o + 2, 8, le); body.setBigInt64(o + 4, i.tsoffset, le); o += 12; }
    body.setUint16(o, 0, le); body.setUint16(o + 2, 0, le); // opt_endofopt
    parts.push(block(1, new Uint8Array(body.buffer)));
  }
  for (const r of c.records) {
    if (r.kind === 3) {
      const body = new Uint8Array(4 + r.data.length);
      new DataView(body.buffer).setUint32(0, r.data.length + r.extra, le);
      body.set(r.data, 4);
      parts.push(block(3, body));
    } else if (r.kind === 6) {
      const body = new Uint8Array(20 + r.data.length);
      const dv = new DataView(body.buffer);
      dv.setUint32(0, r.iface, le); dv.setUint32(4, r.hi, le); dv.setUint32(8, r.lo, le);
      dv.setUint32(12, r.data.length, le); dv.setUint32(16, r.data.length + r.extra, le);
      body.set(r.data, 20);
      parts.push(block(6, body));
    } else {
      parts.push(block(r.kind, r.data));
    }
  }
  return concat(parts);
}

/**
 * Repeat a seed's packet records (pcap) or the whole file (pcapng: a file of several sections) up
 * to `target` bytes, with one big record (pcap) or big unknown block (pcapng) among them.
 */
function grow(s, c) {
  const bytes = s.bytes;
  const recs = s.recs;
  const parts = [];
  let size = 0;
  const add = (p) => { parts.push(p); size += p.length; };
  const pcapng = recs.length > 0 && recs[0].type === BT_SHB;
  const le = s.le;
  let bigDone = false;
  const big = () => {
    if (pcapng) {
      // An unknown block type (0x0bad): readers skip it, even when it is larger than a chunk.
      const len = 12 + ((c.bigBlock + 3) & ~3);
      const b = new Uint8Array(len); const dv = new DataView(b.buffer);
      dv.setUint32(0, 0x0bad, le); dv.setUint32(4, len, le); dv.setUint32(len - 4, len, le);
      return b;
    }
    const b = new Uint8Array(16 + c.big); const dv = new DataView(b.buffer);
    dv.setUint32(8, c.big, le); dv.setUint32(12, c.big, le);
    const minor = new DataView(bytes.buffer, bytes.byteOffset).getUint16(6, le);
    if (minor < 3) { dv.setUint32(8, c.big, le); dv.setUint32(12, c.big, le); }
    return b;
  };
  if (pcapng) {
    const whole = bytes.subarray(0, recs.length ? recs[recs.length - 1].end : 0);
    while (size < c.target) {
      add(whole);
      if (!bigDone && size >= (c.bigAt % c.target)) {
        // After a whole copy, a block may sit between sections: put it after the next SHB instead.
        parts.push(whole.subarray(0, recs[0].end)); size += recs[0].end;
        add(big()); bigDone = true;
        parts.push(whole.subarray(recs[0].end)); size += whole.length - recs[0].end;
      }
    }
  } else {
    add(bytes.subarray(0, 24));
    const packets = recs.filter((r) => r.packet);
    if (packets.length === 0) add(big());
    while (size < c.target && packets.length > 0) {
      for (const r of packets) {
        add(bytes.subarray(r.start, r.end));
        if (!bigDone && size >= (c.bigAt % c.target)) { add(big()); bigDone = true; }
      }
    }
  }
  return concat(parts);
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * @param deps { fc, runCapture, buildStages, loadProfile, builtinProfiles, CaptureError }
 * @param seeds [{ name, bytes }]: well-formed captures to mutate
 * @param dir a directory to write each case to (openCapture reads files)
 */
export function createFuzz(deps, seeds, dir, opts = {}) {
  const { fc, runCapture, buildStages, loadProfile, builtinProfiles, CaptureError, openCapture, Pipeline, Batch, decodeBatch, decodePacket } = deps;
  // A runaway guard, not a speed test: generous, since a loaded 2-core machine (CI shares it) runs a
  // small case several times slower than an idle one.
  const timeLimitMs = opts.timeLimitMs ?? 3000;
  const profiles = builtinProfiles();
  const seedInfo = seeds.map((s) => {
    const dv = new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
    const pcapng = dv.getUint32(0, false) === BT_SHB;
    const le = pcapng ? dv.getUint32(8, true) === 0x1a2b3c4d : PCAP_MAGICS.includes(dv.getUint32(0, true));
    return { ...s, recs: layout(s.bytes), le, intact: null };
  });

  // --- arbitraries ---
  // A well-formed Ethernet + IPv4 + TCP/UDP/ICMP packet with random addresses from a small set (so
  // flows repeat), random ports, flags and payload: the stages get work, in random order and time.
  const validPacket = fc.record({
    proto: fc.constantFrom(6, 6, 17, 1), src: fc.nat({ max: 3 }), dst: fc.nat({ max: 3 }), sport: fc.constantFrom(80, 443, 53, 1024, 40000),
    dport: fc.constantFrom(80, 443, 53, 1024, 40000), flags: fc.nat({ max: 255 }), seq: fc.nat(), data: fc.uint8Array({ maxLength: 40 }),
  }).map((c) => {
    const l4 = c.proto === 6 ? 20 : 8;
    const ipLen = 20 + l4 + c.data.length;
    const b = new Uint8Array(14 + ipLen);
    const dv = new DataView(b.buffer);
    dv.setUint16(12, 0x0800);
    b[14] = 0x45; dv.setUint16(16, ipLen); b[22] = 64; b[23] = c.proto;
    dv.setUint32(26, 0x0a000001 + c.src); dv.setUint32(30, 0x0a000001 + c.dst);
    dv.setUint16(34, c.sport); dv.setUint16(36, c.dport);
    if (c.proto === 6) { dv.setUint32(38, c.seq); b[46] = 0x50; b[47] = c.flags; dv.setUint16(48, 1024); }
    else if (c.proto === 17) dv.setUint16(38, 8 + c.data.length);
    else { b[34] = c.flags % 2 === 0 ? 8 : 3; b[35] = 0; }
    b.set(c.data, 14 + 20 + l4);
    return b;
  });
  const payload = fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 96 }) },
    { weight: 3, arbitrary: validPacket },
    // Plausible IPv4 / IPv6 starts, so the decoder gets past its first checks more often.
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x40), fc.uint8Array({ minLength: 0, maxLength: 80 }))
      .map(([v, rest]) => Uint8Array.of(v, ...rest)) },
    { weight: 2, arbitrary: fc.tuple(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.constantFrom([8, 0], [0x86, 0xdd], [0x81, 0], [0x88, 0xa8], [0x88, 0x47], [0x88, 0x64], [8, 6]), fc.constantFrom(0x45, 0x46, 0x60), fc.uint8Array({ maxLength: 80 }))
      .map(([mac, et, v, rest]) => Uint8Array.of(...mac, ...et, v, ...rest)) },
  );
  const pcapCase = fc.record({
    le: fc.boolean(), nano: fc.boolean(), minor: fc.constantFrom(4, 3, 2, 1),
    snap: fc.oneof(fc.constantFrom(0, 65535, 262144, 0xffffffff), fc.nat()),
    linkType: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...LINK_TYPES) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
    records: fc.array(fc.record({ sec: fc.nat(), frac: fc.nat(), data: payload, extra: fc.constantFrom(0, 0, 4, 100) }), { maxLength: 12 }),
  }).map((c) => ({ kind: 'pcap', bytes: buildPcap(c) }));
  const pcapngCase = fc.record({
    le: fc.boolean(),
    ifaces: fc.array(fc.record({
      linkType: fc.constantFrom(...LINK_TYPES), snap: fc.constantFrom(0, 64, 65535, 0xffffffff),
      tsresol: fc.oneof(fc.constantFrom(6, 9, 0x80 | 10, 0, 19, 0x80 | 63, 255), fc.nat({ max: 255 })),
      tsoffset: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
    }), { maxLength: 3 }),
    records: fc.array(fc.record({
      kind: fc.constantFrom(6, 6, 6, 3, 2, 4, 5, 0x0bad), iface: fc.constantFrom(0, 0, 1, 2, 7), hi: fc.nat(), lo: fc.nat(), data: payload, extra: fc.constantFrom(0, 0, 4),
    }), { maxLength: 12 }),
  }).map((c) => ({ kind: 'pcapng', bytes: buildPcapng(c) }));
  const randomBytes = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    // Random bytes behind a valid magic, so the readers' later checks see them.
    fc.tuple(fc.constantFrom(
      [0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4], [0x4d, 0x3c, 0xb2, 0xa1], [0x0a, 0x0d, 0x0d, 0x0a],
    ), fc.uint8Array({ maxLength: 600 })).map(([m, rest]) => Uint8Array.of(...m, ...rest)),
  ).map((bytes) => ({ kind: 'random', bytes }));
  const mutation = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip'), pos: fc.nat(), bit: fc.nat({ max: 7 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('overwrite'), pos: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('truncate'), pos: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('magic'), value: fc.oneof(fc.constantFrom(0, 0xd4c3b2a1, 0xa1b2c3d5, 0x1f8b0800, 0x0a0d0d0b, 0x4d3cb2a1), fc.nat()) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('length'), rec: fc.nat(), field: fc.nat(), value: fc.oneof(fc.constantFrom(...NASTY_U32), fc.constant('near'), fc.nat()), delta: fc.constantFrom(-8, -4, -1, 1, 4, 8) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('snaplen'), value: fc.constantFrom(0, 1, 14, 262145, 0x7fffffff, 0xffffffff) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero'), rec: fc.nat(), both: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('time'), rec: fc.nat(), field: fc.nat(), value: fc.oneof(fc.constantFrom(0, 1, 999999, 1000000, 999999999, 1000000000, 0x7fffffff, 0xffffffff), fc.nat()) }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('header'), rec: fc.nat(), off: fc.nat({ max: 80 }), bit: fc.nat({ max: 7 }), data: fc.uint8Array({ maxLength: 4 }) }) },
  );
  const mutated = fc.record({ seed: fc.nat({ max: seedInfo.length - 1 }), mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }) })
    .map((c) => {
      const s = seedInfo[c.seed];
      let bytes = s.bytes;
      let at = Infinity;
      for (const m of c.mutations) {
        const r = mutate(bytes, m, s.recs, s.le);
        bytes = r.bytes;
        at = Math.min(at, r.at);
      }
      return { kind: 'mutated', seed: c.seed, name: s.name, mutations: c.mutations, bytes, firstChange: at };
    });
  const truncated = fc.record({ seed: fc.nat({ max: seedInfo.length - 1 }), at: fc.nat() })
    .map((c) => {
      const s = seedInfo[c.seed];
      const at = c.at % (s.bytes.length + 1);
      return { kind: 'truncated', seed: c.seed, name: s.name, bytes: s.bytes.subarray(0, at), firstChange: at, truncatedAt: at };
    });
  // Captures larger than the reader's chunk (1 MiB here): a seed's records repeated, with a big
  // record or a big unknown block somewhere, damaged near a chunk boundary or anywhere. This is
  // where records are carried from one chunk to the next and oversized blocks are skipped.
  const MiB = 1 << 20;
  /** Captures of `min`..`max` chunks (of `chunk` bytes), with an unknown pcapng block up to `bigMax`. */
  const grown = (chunk, min, max, bigMax) => fc.record({
    seed: fc.nat({ max: seedInfo.length - 1 }), target: fc.integer({ min: Math.round(min * chunk), max: Math.round(max * chunk) }),
    big: fc.integer({ min: 1000, max: 262144 }), bigBlock: fc.integer({ min: 1, max: bigMax }), bigAt: fc.nat(),
    damage: fc.oneof(
      fc.record({ kind: fc.constant('none') }),
      fc.record({ kind: fc.constantFrom('flip', 'truncate', 'length'), near: fc.integer({ min: 1, max: Math.floor(max) }), delta: fc.integer({ min: -300, max: 300 }), rec: fc.nat(), field: fc.nat(), bit: fc.nat({ max: 7 }) }),
      mutation.map((m) => ({ ...m, near: 0 })),
    ),
    chunks: fc.integer({ min: 1, max: 3 }),
  }).map((c) => {
    const s = seedInfo[c.seed];
    const base = grow(s, c);
    const recs = layout(base);
    let m = c.damage;
    if (m.kind === 'none') return { kind: 'large', name: s.name, base, recs, bytes: base, firstChange: base.length, chunks: c.chunks };
    if (m.near > 0) {
      const pos = Math.max(0, m.near * chunk + m.delta);
      const rec = recs.findIndex((r) => r.end > pos);
      m = { ...m, pos, rec: rec < 0 ? recs.length - 1 : rec, value: 'near', delta: 4 };
    }
    const r = mutate(base, m, recs, s.le);
    return { kind: m.kind === 'truncate' ? 'truncated' : 'large', name: s.name, damage: c.damage, base, recs, bytes: r.bytes, firstChange: r.at, truncatedAt: m.kind === 'truncate' ? r.at : undefined, chunks: c.chunks };
  });
  const large = grown(MiB, 1.125, 2.5, 1600 * 1024);
  // For standard input, read in the default 4 MiB chunks: up to 6 MiB, blocks to skip up to 6 MiB.
  const streamed = grown(4 * MiB, 0.1, 1.5, 6 * MiB).map((c) => ({ ...c, chunks: undefined }));

  /**
   * A capture read from standard input (a pipe: sequential reads, size unknown until its end) gives
   * the same report as the same bytes read from a file: packets, verdicts, and the same error at
   * the same offset. The pipe is fed to a child process running runCapture on dist/.
   */
  function checkStream(c, r) {
    if (!opts.distDir) return;
    const got = runStdin(opts.distDir, c.input.bytes, c.profile, c.batchSize);
    const v = r.report.verdicts;
    const want = { packets: v.packets, forwarded: v.forwarded, dropped: v.dropped, malformed: v.malformed, complete: r.error === null, offset: r.error?.offset };
    // The wording may differ: a pipe's size is unknown until its end, so a block claiming more
    // than a chunk is "more than dplab reads at once" there and "more than the file has" here.
    const message = got.error?.message;
    check(JSON.stringify({ ...got, error: undefined, offset: got.error?.offset }) === JSON.stringify(want), 'standard input reads as the file does',
      { stdin: got, file: { ...want, message: r.error?.message } });
    if (got.error) check(message.startsWith(`standard input at byte ${got.error.offset}: `), 'the message names standard input and the offset', message);
  }

  // Single packets for the decoder alone: a seed's packet (pcap seeds, whose link type is in the
  // file header) or generated bytes, cut to a random length and maybe damaged in its headers.
  const pcapSeeds = seedInfo.map((x, k) => k).filter((k) => seedInfo[k].recs[0]?.type === -1 && seedInfo[k].recs.length > 1);
  const packetCase = fc.oneof(
    fc.record({ seed: fc.constantFrom(...pcapSeeds), rec: fc.nat(), cut: fc.nat(), keepWire: fc.boolean(), hdr: fc.option(fc.record({ off: fc.nat({ max: 80 }), data: fc.uint8Array({ minLength: 1, maxLength: 4 }) })) })
      .map((c) => {
        const s = seedInfo[c.seed];
        const dv = new DataView(s.bytes.buffer, s.bytes.byteOffset);
        const recs = s.recs.filter((r) => r.packet);
        const r = recs[c.rec % recs.length];
        const data = new Uint8Array(s.bytes.subarray(r.start + 16, r.end));
        if (c.hdr) for (let k = 0; k < c.hdr.data.length && c.hdr.off + k < data.length; k++) data[c.hdr.off + k] = c.hdr.data[k];
        const capLen = c.cut % (data.length + 1);
        return { name: s.name, linkType: dv.getUint32(20, s.le) & 0xffff, data: data.subarray(0, capLen), wireLen: c.keepWire ? data.length : capLen };
      }),
    fc.record({ linkType: fc.constantFrom(...LINK_TYPES), data: payload, extra: fc.constantFrom(0, 0, 10) })
      .map((c) => ({ linkType: c.linkType, data: c.data, wireLen: c.data.length + c.extra })),
  );

  /**
   * The decoder reads nothing beyond a packet's captured length: the same packet followed by zeros,
   * by 0xff, or by the end of the buffer decodes to the same fields, and never throws.
   */
  function decodeAlone(p) {
    const out = [];
    for (const tail of [0x00, 0xff, -1]) {
      const buf = new Uint8Array(p.data.length + (tail < 0 ? 0 : 64)).fill(tail < 0 ? 0 : tail);
      buf.set(p.data, 0);
      const b = new Batch(1);
      b.bytes = buf; b.count = 1;
      b.off[0] = 0; b.capLen[0] = p.data.length; b.wireLen[0] = p.wireLen; b.linkType[0] = p.linkType; b.num[0] = 1;
      decodeBatch(b);
      out.push(b.decoded.slice());
    }
    for (let k = 0; k < out[0].length; k++) {
      check(out[1][k] === out[0][k] && out[2][k] === out[0][k], `the decoded fields do not depend on bytes after the packet (byte ${k} of the fields)`);
    }
    if (decodePacket) {
      // The general path alone gives the same fields as decodeBatch (whose fast path may have taken it).
      const b = new Batch(1);
      b.bytes = new Uint8Array(p.data); b.count = 1;
      b.off[0] = 0; b.capLen[0] = p.data.length; b.wireLen[0] = p.wireLen; b.linkType[0] = p.linkType; b.num[0] = 1;
      b.decoded.fill(0);
      decodePacket(b, 0);
      if (b.malformed[0] !== 0) b.verdict[0] = 1;
      for (let k = 0; k < out[0].length; k++) check(b.decoded[k] === out[0][k], `the fast path and the general path decode alike (byte ${k} of the fields)`);
    }
  }

  const withRun = (input) => fc.record({ input, profile: fc.constantFrom(...profiles), batchSize: fc.oneof(fc.constant(256), fc.integer({ min: 1, max: 64 })) });

  // --- running one case ---
  let caseNo = 0;
  /** What the cases came to (for the long-run script's summary). */
  const stats = { outcomes: {}, malformed: {}, packets: 0, forwarded: 0, slowestMs: 0, slowest: '' };
  function run(c) {
    const ext = c.bytes.length >= 4 && c.bytes[0] === 0x0a && c.bytes[1] === 0x0d ? 'pcapng' : 'pcap';
    const file = join(dir, `case-${caseNo++ % 4}.${ext}`);
    writeFileSync(file, c.bytes);
    opts.onCase?.(file, c);
    const size = c.bytes.length;
    const prints = [];
    let seen = 0;
    let result;
    let thrown = null;
    const t0 = performance.now();
    try {
      if (c.chunks) result = runSmallChunks(file, c, (b) => {
        seen += b.count;
        for (let i = 0; i < b.count; i++) prints.push(fingerprint(b, i));
        if (seen > size / 12 + 1) throw new Error(`runaway reader: ${seen} packets from ${size} bytes`);
      });
      else result = runCapture({
        // The fingerprints are taken as decoded, before any stage runs: stages that rewrite
        // packets (ctlb, dnat) change the fields they print.
        file, profile: c.profile, stages: [{ name: 'fingerprint', reasons: [], report: () => ({}),
          process: (b) => { for (let i = 0; i < b.count; i++) prints.push(fingerprint(b, i)); } }, ...buildStages(loadProfile(c.profile))],
        batchSize: c.batchSize, timing: false,
        onBatch: (b) => {
          seen += b.count;
          // Every record takes at least 12 bytes of the file: more packets than that is a reader
          // going round in circles (stop it here rather than hang).
          if (seen > size / 12 + 1) throw new Error(`runaway reader: ${seen} packets from ${size} bytes`);
        },
      });
    } catch (e) {
      thrown = e;
    }
    const ms = performance.now() - t0;
    if (thrown) {
      // openCapture throws only when the file cannot be opened at all, which these files can.
      const what = thrown instanceof Error ? `${thrown.name}: ${thrown.message}\n${thrown.stack}` : String(thrown);
      throw new Error(`the run threw instead of reporting (${what})`);
    }
    if (ms > stats.slowestMs) { stats.slowestMs = ms; stats.slowest = `${c.kind ?? 'intact'} ${c.bytes.length} bytes, ${c.profile}, batch ${c.batchSize}`; }
    if (ms > timeLimitMs) throw new Error(`the run took ${ms.toFixed(0)} ms (limit ${timeLimitMs})`);
    const { report, source } = result;
    const v = report.verdicts;
    const sum = (r) => Object.values(r).reduce((a, b) => a + b, 0);
    check(v.forwarded + v.dropped + v.malformed === v.packets, 'in = forwarded + dropped + malformed', v);
    check(sum(v.dropsByReason) === v.dropped, 'drops by reason add up to dropped', v);
    check(sum(v.malformedByReason) === v.malformed, 'malformed by reason add up to malformed', v);
    check(v.packets === source.packets, `packets in (${v.packets}) = packets the reader delivered (${source.packets})`);
    check(seen === source.packets, `packets seen in batches (${seen}) = packets the reader delivered (${source.packets})`);
    if (report.capture) check(report.capture.packets === v.packets && report.capture.malformed === v.malformed, 'the capture summary counts the same packets', report.capture);
    const [decode, ...stages] = report.stages;
    check(decode.packets === v.packets && decode.dropped === v.malformed, 'decode saw every packet and dropped the malformed', decode);
    let alive = v.packets - v.malformed;
    for (const s of stages) {
      check(s.packets === alive, `stage ${s.name} was given what the stage before let through`, s);
      alive -= s.dropped;
    }
    check(alive === v.forwarded, 'what the last stage let through was forwarded');
    for (let k = 0; k < prints.length; k++) check(prints[k].startsWith(`${k + 1}:`), `packet numbers run 1, 2, 3 ... (${prints[k]})`);
    // One clear error, or none.
    const err = source.error;
    check(report.complete === (err === null), 'complete exactly when there is no error');
    if (err !== null) {
      check(err instanceof CaptureError, `the error is a CaptureError (${err?.constructor?.name})`);
      check(err.file === file, 'the error names the file');
      check(Number.isInteger(err.offset) && err.offset >= 0 && err.offset <= size, `the error's byte offset ${err.offset} is inside the file (${size} bytes)`);
      check(err.message.includes(`at byte ${err.offset}`), 'the message gives the byte offset', err.message);
      if (report.error !== undefined) check(report.error.offset === err.offset && report.error.message === err.message, 'the report carries the error', report.error);
    }
    if (c.kind) {
      const k = `${c.kind}: ${err ? 'damaged' : 'complete'}`;
      stats.outcomes[k] = (stats.outcomes[k] ?? 0) + 1;
      for (const [why, n] of Object.entries(v.malformedByReason)) stats.malformed[why] = (stats.malformed[why] ?? 0) + n;
      stats.packets += v.packets; stats.forwarded += v.forwarded;
    }
    return { report, source, prints, error: err, ms };
  }

  /**
   * runCapture's loop with the reader's smallest chunk (1 MiB), so a capture of a few MiB crosses
   * chunk boundaries: openCapture -> fill -> Pipeline.process (decode + stages) -> release.
   */
  function runSmallChunks(file, c, onBatch) {
    const src = openCapture(file, { chunkSize: MiB, chunks: c.chunks });
    const pipeline = new Pipeline(buildStages(loadProfile(c.profile)), { timing: false });
    const b = new Batch(c.batchSize);
    try {
      while (src.fill(b) > 0) {
        pipeline.process(b);
        onBatch(b);
        src.release(b);
      }
      check(!src.blocked, 'the reader is not blocked once every batch is released');
      pipeline.finish();
    } finally {
      src.close();
    }
    return { report: { verdicts: pipeline.counts(), stages: pipeline.runtime, complete: src.error === null }, source: src };
  }

  function intact(k) {
    const s = seedInfo[k];
    if (!s.intact) {
      s.intact = run({ bytes: s.bytes, profile: profiles[0], batchSize: 256 });
      check(s.intact.error === null && s.intact.prints.length === s.recs.filter((x) => x.packet).length,
        `the seed ${s.name} reads cleanly (${s.intact.error?.message}), every packet record delivered`);
    }
    return s.intact;
  }

  /** Damage at `firstChange` leaves the packets wholly before it as they were. */
  function checkPrefix(c, r) {
    let base; let recs;
    if (c.input.base) {
      // A grown capture: its intact run is made here, with the same reader settings.
      base = run({ bytes: c.input.base, profile: c.profile, batchSize: c.batchSize, chunks: c.input.chunks });
      recs = c.input.recs;
      check(base.error === null, `the grown capture reads cleanly (${base.error?.message})`);
      check(base.prints.length === recs.filter((x) => x.packet).length, 'the grown capture delivers every packet record');
    } else {
      base = intact(c.input.seed);
      recs = seedInfo[c.input.seed].recs;
    }
    const { packets, cutRecord } = prefixAt(recs, c.input.firstChange);
    check(r.prints.length >= packets, `the ${packets} packets before the first changed byte ${c.input.firstChange} are delivered (got ${r.prints.length})`);
    for (let k = 0; k < packets; k++) check(r.prints[k] === base.prints[k], `packet ${k + 1} before the damage decodes as in the intact file`, { got: r.prints[k], want: base.prints[k] });
    // Damage is never reported before the record the first changed byte is in.
    const changedRecord = recs.find((x) => x.end > c.input.firstChange)?.start ?? -1;
    if (r.error && changedRecord > 0) check(r.error.offset >= changedRecord, `the error at byte ${r.error.offset} is not before the first damaged record (byte ${changedRecord})`);
    if (c.input.truncatedAt !== undefined) {
      const at = c.input.truncatedAt;
      check(r.prints.length === packets, `a capture cut at byte ${at} delivers exactly the ${packets} packets before the cut (got ${r.prints.length})`);
      if (cutRecord < 0) check(r.error === null, `a cut at a record boundary (${at}) is a complete capture (${r.error?.message})`);
      else check(r.error !== null && r.error.offset === cutRecord, `a cut at byte ${at} is reported at the start of the record it cuts (${cutRecord}), got ${r.error?.offset}`);
    }
  }

  const property = (arb, extra) => fc.property(withRun(arb), (c) => {
    const r = run({ ...c, kind: c.input.kind, bytes: c.input.bytes, chunks: c.input.chunks });
    extra?.(c, r);
  });

  return {
    seeds: seedInfo,
    stats,
    arbitraries: { pcapCase, pcapngCase, randomBytes, mutated, truncated },
    run,
    properties: {
      random: () => property(fc.oneof(randomBytes, pcapCase, pcapngCase)),
      mutated: () => property(mutated, checkPrefix),
      truncated: () => property(truncated, checkPrefix),
      large: () => property(large, checkPrefix),
      decoder: () => fc.property(packetCase, decodeAlone),
      stream: () => property(streamed, (c, r) => { checkPrefix(c, r); checkStream(c, r); }),
    },
    /** The bytes of a case (for saving a counterexample). */
    bytesOf: (c) => c.input.bytes,
  };
}

function check(ok, what, detail) {
  if (!ok) throw new Error(`property broken: ${what}${detail === undefined ? '' : ` ${JSON.stringify(detail)}`}`);
}

/** What the decoder made of packet i: enough to tell a change in any layer. */
function fingerprint(b, i) {
  return `${b.num[i]}:${b.capLen[i]}/${b.wireLen[i]}:${b.tsSec[i]}.${b.tsNsec[i]}:lt${b.linkType[i]}:m${b.malformed[i]}:${b.l3Type[i]}:${b.family[i]}:${b.proto[i]}:${b.frag[i]}:${b.src[4 * i]}>${b.dst[4 * i]}:${b.sport[i]}>${b.dport[i]}:${b.tcpFlags[i]}:${b.l4[i] ? b.l4[i] - b.off[i] : -1}:${b.pay[i] ? b.pay[i] - b.off[i] : -1}`;
}
