// What the batch's layout costs dplab's real decoder, before anyone rewrites Batch to find out
// (bench/layout.js measured a decode-like loop; this one runs the decoder itself).
//
// The capture's first packets are read into memory once. Both sides then decode the same batches of
// 256 packets, taking turns round by round:
//   - dplab's decodeBatch, as it is: one typed array per field (`b.sport[i]`);
//   - the same fast path (Ethernet, at most one 802.1Q tag, IPv4 without options or IPv6 without
//     extension headers, not a fragment, whole TCP or UDP header; its checks and its writes, the
//     flow hash included) writing the same values into one Int32Array of S words a packet, with a
//     Uint32Array view of the same memory for the unsigned words (`w[i * S + SPORT]`).
// Both first write the capture's fields (offset, lengths, link type) into their layout, as the
// reader does, and zero the decoded fields. The words' decode is checked against decodeBatch's
// fields for every packet before timing. Packets the fast path leaves to the slow one are counted
// and skipped by the words' side (they are rare in a generated capture: the count is printed).
//
//   node bench/decode-layout.js [--file CAPTURE] [--packets 1000000] [--rounds 9] [--json FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadDist, median, synthCapture } from './lib/common.js';

const { values } = parseArgs({
  options: {
    file: { type: 'string' }, packets: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '9' },
    json: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('node bench/decode-layout.js [--file CAPTURE] [--packets 1000000] [--rounds 9] [--json FILE]\n');
  process.exit(0);
}
const { Batch } = await loadDist('packet/batch.js');
const { decodeBatch } = await loadDist('packet/decode.js');
const { symHash } = await loadDist('packet/hash.js');

const want = Number(values.packets);
const rounds = Math.max(3, Number(values.rounds));
const file = values.file ?? synthCapture({ seed: 1, packets: Math.max(want, 1000), packetsPerFlow: 20, payloadSize: 64, concurrency: 1000 }).file;

// --- the capture's records, in memory (pcap, microseconds or nanoseconds, either byte order) ---
const bytes = new Uint8Array(readFileSync(file));
const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
/** One line and exit 1: a wrong input is the caller's to fix, not a stack trace to read. */
const fail = (msg) => { process.stderr.write(`decode-layout.js: ${msg}\n`); process.exit(1); };
if (bytes.length < 24) fail(`${file}: ${bytes.length} bytes, shorter than a pcap file header`);
const magic = dv.getUint32(0, true);
const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
if (!le && dv.getUint32(0, false) !== 0xa1b2c3d4 && dv.getUint32(0, false) !== 0xa1b23c4d) fail(`${file}: not a pcap file (pcapng is not read here)`);
if (dv.getUint32(20, le) !== 1) fail(`${file}: link type ${dv.getUint32(20, le)}; this bench reads Ethernet (1) captures`);
const offs = new Uint32Array(want);
const caps = new Uint32Array(want);
const wires = new Uint32Array(want);
let count = 0;
for (let p = 24; p + 16 <= bytes.length && count < want; count++) {
  const incl = dv.getUint32(p + 8, le);
  if (p + 16 + incl > bytes.length) break;
  offs[count] = p + 16; caps[count] = incl; wires[count] = dv.getUint32(p + 12, le);
  p += 16 + incl;
}

// --- the words: S per packet; offsets of each field in a packet's words ---
const S = 32;
const OFF = 0, CAPLEN = 1, WIRELEN = 2, LINK = 3, L3 = 4, L3TYPE = 5, VLAN = 6, PROTO = 7, L4 = 8, L3END = 9, SPORT = 10, DPORT = 11;
const SEQ = 12, ACK = 13, FLAGS = 14, WIN = 15, PAY = 16, FAMILY = 17, TTL = 18, IPID = 19, HASH = 20, SRC = 21, DST = 25, SLOW = 29;
const N = 256;
const words = new Int32Array(N * S);
const wordsU = new Uint32Array(words.buffer);
const viewOf = (x) => new DataView(x.buffer, x.byteOffset, x.byteLength);
const v = viewOf(bytes);

function fillFields(b, from, n) {
  for (let i = 0; i < n; i++) { b.off[i] = offs[from + i]; b.capLen[i] = caps[from + i]; b.wireLen[i] = wires[from + i]; }
  b.linkType.fill(1, 0, n);
  b.count = n;
}

/** The reader's part: the whole batch's words zeroed in one sweep (as decodeBatch zeroes its decoded fields), then the capture's. */
function fillWords(w, from, n) {
  w.fill(0, 0, n * S);
  for (let i = 0; i < n; i++) { const k = i * S; w[k + OFF] = offs[from + i]; w[k + CAPLEN] = caps[from + i]; w[k + WIRELEN] = wires[from + i]; w[k + LINK] = 1; }
}

/** decodeBatch's fast path, over the words. Returns the packets it left to the slow path. */
function decodeWords(w, u, x, n) {
  let slow = 0;
  for (let i = 0; i < n; i++) {
    const k = i * S;
    fast: {
      const p = w[k + OFF];
      const end = p + w[k + CAPLEN];
      if (w[k + LINK] !== 1 || end - p < 14 + 20) break fast;
      let q = p + 14;
      let et = v.getUint16(p + 12);
      let tag = 0;
      if (et === 0x8100) {
        if (end - q < 4 + 20) break fast;
        tag = v.getUint16(q) & 0x0fff;
        et = v.getUint16(q + 2);
        q += 4;
      }
      let l4; let ipEnd; let pr;
      if (et === 0x0800) {
        if (x[q] !== 0x45) break fast;
        const total = v.getUint16(q + 2);
        if (total < 20 || q + total > end) break fast;
        if ((v.getUint16(q + 6) & 0x3fff) !== 0) break fast;
        pr = x[q + 9];
        l4 = q + 20;
        ipEnd = q + total;
      } else if (et === 0x86dd) {
        if (end - q < 40 || x[q] >> 4 !== 6) break fast;
        pr = x[q + 6];
        l4 = q + 40;
        ipEnd = l4 + v.getUint16(q + 4);
        if (ipEnd > end) break fast;
      } else break fast;
      const avail = ipEnd - l4;
      let doff = 0;
      let ulen = 0;
      if (pr === 6) {
        if (avail < 20) break fast;
        doff = (x[l4 + 12] >> 4) << 2;
        if (doff < 20 || doff > avail) break fast;
      } else if (pr === 17) {
        if (avail < 8) break fast;
        ulen = v.getUint16(l4 + 4);
        if (ulen < 8 || ulen > avail) break fast;
      } else break fast;
      w[k + L3] = q;
      w[k + L3TYPE] = et;
      w[k + VLAN] = tag;
      w[k + PROTO] = pr;
      w[k + L4] = l4;
      w[k + L3END] = ipEnd;
      const sp = v.getUint16(l4);
      const dp = v.getUint16(l4 + 2);
      w[k + SPORT] = sp;
      w[k + DPORT] = dp;
      if (pr === 6) {
        u[k + SEQ] = v.getUint32(l4 + 4);
        u[k + ACK] = v.getUint32(l4 + 8);
        w[k + FLAGS] = x[l4 + 13];
        w[k + WIN] = v.getUint16(l4 + 14);
        w[k + PAY] = l4 + doff;
      } else {
        w[k + PAY] = l4 + 8;
        if (ulen < avail) w[k + L3END] = l4 + ulen;
      }
      if (et === 0x0800) {
        w[k + FAMILY] = 4;
        u[k + SRC] = v.getUint32(q + 12);
        u[k + DST] = v.getUint32(q + 16);
        w[k + TTL] = x[q + 8];
        w[k + IPID] = v.getUint16(q + 4);
      } else {
        w[k + FAMILY] = 6;
        for (let j = 0; j < 16; j += 4) {
          u[k + SRC + (j >> 2)] = v.getUint32(q + 8 + j);
          u[k + DST + (j >> 2)] = v.getUint32(q + 24 + j);
        }
        w[k + TTL] = x[q + 7];
      }
      u[k + HASH] = symHash(pr, u, k + SRC, u, k + DST, sp, dp);
      continue;
    }
    w[k + SLOW] = 1;
    slow++;
  }
  return slow;
}

// --- check: the words hold what decodeBatch's fields hold, for every fast-path packet ---
const b = new Batch(N);
b.bytes = bytes;
let slowTotal = 0;
for (let from = 0; from < count; from += N) {
  const n = Math.min(N, count - from);
  fillFields(b, from, n);
  decodeBatch(b);
  fillWords(words, from, n);
  slowTotal += decodeWords(words, wordsU, bytes, n);
  for (let i = 0; i < n; i++) {
    const k = i * S;
    if (words[k + SLOW] === 1) continue;
    const got = [words[k + L3], words[k + L3TYPE], words[k + VLAN], words[k + PROTO], words[k + L4], words[k + L3END], words[k + SPORT], words[k + DPORT],
      wordsU[k + SEQ], wordsU[k + ACK], words[k + FLAGS], words[k + WIN], words[k + PAY], words[k + FAMILY], words[k + TTL], words[k + IPID], wordsU[k + HASH],
      wordsU[k + SRC], wordsU[k + SRC + 3], wordsU[k + DST], wordsU[k + DST + 3]];
    const w4 = i << 2;
    const exp = [b.l3[i], b.l3Type[i], b.vlan[i], b.proto[i], b.l4[i], b.l3End[i], b.sport[i], b.dport[i], b.seq[i], b.ack[i], b.tcpFlags[i], b.win[i],
      b.pay[i], b.family[i], b.ttl[i], b.ipId[i], b.hash[i], b.src[w4], b.src[w4 + 3], b.dst[w4], b.dst[w4 + 3]];
    for (let j = 0; j < got.length; j++) {
      if (got[j] !== exp[j]) throw new Error(`packet ${from + i + 1}: field ${j} is ${got[j]} in the words, ${exp[j]} in decodeBatch's fields`);
    }
  }
}

// --- timing, the two taking turns; the first two rounds warm up ---
function timeFields() {
  const t = process.hrtime.bigint();
  for (let from = 0; from < count; from += N) {
    const n = Math.min(N, count - from);
    fillFields(b, from, n);
    decodeBatch(b);
  }
  return Number(process.hrtime.bigint() - t) / count;
}
function timeWords() {
  const t = process.hrtime.bigint();
  let slow = 0;
  for (let from = 0; from < count; from += N) {
    const n = Math.min(N, count - from);
    fillWords(words, from, n);
    slow += decodeWords(words, wordsU, bytes, n);
  }
  if (slow !== slowTotal) throw new Error('the words decoded differently from one round to the next');
  return Number(process.hrtime.bigint() - t) / count;
}
const soa = [];
const aos = [];
for (let r = 0; r < rounds; r++) {
  const a = r % 2 === 0 ? timeFields() : null;
  const w = timeWords();
  const f = a ?? timeFields();
  if (r >= 2) { soa.push(f); aos.push(w); }
}
const row = { file, packets: count, leftToSlowPath: slowTotal, soa: median(soa), aos: median(aos) };
row.ratio = row.soa / row.aos;
process.stdout.write(`dplab's decoder on ${count.toLocaleString('en-US')} packets of ${file} (${slowTotal} left to the slow path), 256-packet batches, median of ${rounds - 2} rounds:\n`);
process.stdout.write(`  one typed array per field (decodeBatch)   ${row.soa.toFixed(2).padStart(6)} ns/packet\n`);
process.stdout.write(`  one Int32Array, ${S} words a packet        ${row.aos.toFixed(2).padStart(6)} ns/packet   ${row.ratio.toFixed(2)}x\n`);
if (values.json) writeFileSync(values.json, JSON.stringify({ date: new Date().toISOString(), rounds, ...row }, null, 2) + '\n');
