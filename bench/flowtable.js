// The flow table: dplab's typed-array FlowTable against lru-cache and a plain Map, as the issue asks
// before choosing ("measure lru-cache against the typed-array flow table and record the figures").
//
// Each capture is read and decoded once, untimed, into typed arrays of 5-tuples and symmetric flow
// hashes (TCP and UDP packets). Then each contender replays those keys as conntrack would: find the
// packet's flow in either direction, and insert it as a new flow when it is not there. Only that
// loop is timed; each run starts from an empty table built before the clock starts.
//
//   flowtable      src/conntrack/table.ts: find() + insert(), open addressing over (hash, entry)
//                  pairs, a 64-byte record per entry with the full key, a small recent-flow cache
//   lru string     lru-cache 11 keyed by a string of the 5-tuple (endpoints in a fixed order, so
//                  both directions make the same string); the value says which way it was created
//   lru number     lru-cache 11 keyed by the symmetric hash (an int32); the value is an entry
//                  number whose full key sits in typed arrays, checked on every hit, with a chain
//                  for the (rare) hash collisions
//   map number     a plain Map with the same numeric keys and the same collision check
// lru-cache gets its `max` (the table's capacity), so it preallocates and never evicts here:
// evicting by hand with keys().next() per insert is ~100x slower (design.md).
//
// Every contender must find the same flows: the same number of inserts (the capture's distinct
// 5-tuples) and the same checksum of (entry number, direction) over every packet; entries are
// numbered in insertion order in all four, so any lookup that returned the wrong flow shows.
//
//   node bench/flowtable.js [--rounds 7] [--json FILE]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { LRUCache } from 'lru-cache';
import { median, synthCapture } from './lib/common.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = resolve(process.env.DPLAB_DIST ?? join(HERE, '../dist'));
const load = async (m) => import(pathToFileURL(join(DIST, m)).href);
const { openCapture } = await load('capture/open.js');
const { Batch } = await load('packet/batch.js');
const { decodeBatch } = await load('packet/decode.js');
const { FlowTable } = await load('conntrack/table.js');
const OUT = join(HERE, 'out');
const LRU_VERSION = JSON.parse(readFileSync(join(HERE, '../node_modules/lru-cache/package.json'), 'utf8')).version;

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(`node bench/flowtable.js [--rounds N] [--json FILE]

  --rounds N   rounds; every contender runs once per round per input, in rotating order (default 7)
  --json FILE  also write the results as JSON
`);
  process.exit(0);
}
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds wants a whole number from 1, got ${args.rounds}`);

/** Entries every table is built for (the iptables profile's conntrack capacity, 256Ki). */
const CAPACITY = 262_144;

const BASE = { seed: 1, packets: 1_000_000, payloadSize: 16, packetsPerFlow: 10, ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, attackShare: 0.05 };
const INPUTS = [
  {
    id: '95k flows', gen: BASE,
    what: 'the pipeline bench capture: 95,000 flows of 10 packets + 50,000 one-packet attack SYNs, 1,000 flows active at once',
  },
  {
    id: '200k flows', gen: { ...BASE, packetsPerFlow: 5, attackShare: 0 },
    what: '200,000 flows of 5 packets, 1,000 active at once (the generator\'s default)',
  },
  {
    id: '200k flows, 100k active', gen: { ...BASE, packetsPerFlow: 5, attackShare: 0, concurrency: 100_000 },
    what: '200,000 flows of 5 packets, 100,000 active at once: lookups spread over the whole table',
  },
];

// --- inputs: generated once into bench/out/, named by their parameters ---


/** Decode the capture once into typed arrays: one row per TCP/UDP packet. */
function decodeKeys(file) {
  const src = openCapture(file);
  const b = new Batch();
  let cap = 1 << 20;
  let n = 0;
  let H = new Uint32Array(cap); let FAM = new Uint8Array(cap); let PROTO = new Uint8Array(cap);
  let SP = new Uint16Array(cap); let DP = new Uint16Array(cap);
  let SRC = new Uint32Array(cap * 4); let DST = new Uint32Array(cap * 4);
  const grow = () => {
    cap *= 2;
    const g = (a, k = 1) => { const x = new a.constructor(cap * k); x.set(a); return x; };
    H = g(H); FAM = g(FAM); PROTO = g(PROTO); SP = g(SP); DP = g(DP); SRC = g(SRC, 4); DST = g(DST, 4);
  };
  try {
    while (src.fill(b) > 0) {
      decodeBatch(b);
      for (let i = 0; i < b.count; i++) {
        const p = b.proto[i];
        if (b.malformed[i] !== 0 || (b.family[i] !== 4 && b.family[i] !== 6) || (p !== 6 && p !== 17)) continue;
        if (n === cap) grow();
        H[n] = b.hash[i]; FAM[n] = b.family[i]; PROTO[n] = p; SP[n] = b.sport[i]; DP[n] = b.dport[i];
        for (let k = 0; k < 4; k++) { SRC[n * 4 + k] = b.src[i * 4 + k]; DST[n * 4 + k] = b.dst[i * 4 + k]; }
        n++;
      }
      src.release(b);
    }
  } finally {
    src.close();
  }
  if (src.error) throw new Error(`${file}: ${src.error.message}`);
  return { n, H, FAM, PROTO, SP, DP, SRC, DST };
}

// --- the contenders: each returns { inserts, replies, acc }; acc sums entry * 2 + direction ---

/** dplab's FlowTable, as the tracker uses it: find in either direction, else insert. */
function runFlowTable(k, t) {
  const { n, H, FAM, PROTO, SP, DP, SRC, DST } = k;
  let inserts = 0; let replies = 0; let acc = 0;
  for (let i = 0; i < n; i++) {
    const w = i << 2;
    let r = t.find(H[i], FAM[i], PROTO[i], SRC, w, DST, w, SP[i], DP[i]);
    if (r < 0) {
      r = t.insert(H[i], FAM[i], PROTO[i], SRC, w, DST, w, SP[i], DP[i]) << 1;
      inserts++;
    }
    replies += r & 1;
    acc += r;
  }
  return { inserts, replies, acc };
}

/**
 * lru-cache keyed by the 5-tuple as a string. The endpoints are written in a fixed order (the
 * smaller (address, port) first) so both directions make one key; the value is entry * 2 + 1 when
 * the creating packet had its endpoints swapped, so the direction of later packets is known.
 */
function runLruString(k, c) {
  const { n, FAM, PROTO, SP, DP, SRC, DST } = k;
  let inserts = 0; let replies = 0; let acc = 0; let next = 0;
  for (let i = 0; i < n; i++) {
    const w = i << 2;
    const s0 = SRC[w]; const d0 = DST[w]; const sp = SP[i]; const dp = DP[i];
    let key;
    let swap;
    if (FAM[i] === 4) {
      swap = s0 > d0 || (s0 === d0 && sp > dp);
      key = swap ? `${PROTO[i]}:${d0}:${dp}>${s0}:${sp}` : `${PROTO[i]}:${s0}:${sp}>${d0}:${dp}`;
    } else {
      const s1 = SRC[w + 1]; const s2 = SRC[w + 2]; const s3 = SRC[w + 3];
      const d1 = DST[w + 1]; const d2 = DST[w + 2]; const d3 = DST[w + 3];
      swap = s0 !== d0 ? s0 > d0 : s1 !== d1 ? s1 > d1 : s2 !== d2 ? s2 > d2 : s3 !== d3 ? s3 > d3 : sp > dp;
      key = swap
        ? `${PROTO[i]}:${d0},${d1},${d2},${d3}:${dp}>${s0},${s1},${s2},${s3}:${sp}`
        : `${PROTO[i]}:${s0},${s1},${s2},${s3}:${sp}>${d0},${d1},${d2},${d3}:${dp}`;
    }
    let v = c.get(key);
    if (v === undefined) {
      v = (next++ << 1) | (swap ? 1 : 0);
      c.set(key, v);
      inserts++;
    }
    const r = (v & ~1) | ((v & 1) ^ (swap ? 1 : 0));
    replies += r & 1;
    acc += r;
  }
  return { inserts, replies, acc };
}

/**
 * Entries for the numeric-key contenders: the full key of each entry in typed arrays (as the
 * FlowTable keeps it), and a chain of entries sharing a hash.
 */
function entryStore() {
  return {
    key: new Uint32Array(CAPACITY * 10), // family | proto << 8, sport << 16 | dport, src 4, dst 4
    next: new Int32Array(CAPACITY),
  };
}

/** Entry e against packet i: e * 2 + direction, or -1 (the same test as FlowTable's match). */
function matchEntry(key, e, k, i) {
  const w = i << 2;
  const o = e * 10;
  if (key[o] !== (k.FAM[i] | (k.PROTO[i] << 8))) return -1;
  const S = k.SRC; const D = k.DST;
  const ports = key[o + 1];
  const sp = k.SP[i]; const dp = k.DP[i];
  if (ports === (((sp << 16) | dp) >>> 0)
    && key[o + 2] === S[w] && key[o + 3] === S[w + 1] && key[o + 4] === S[w + 2] && key[o + 5] === S[w + 3]
    && key[o + 6] === D[w] && key[o + 7] === D[w + 1] && key[o + 8] === D[w + 2] && key[o + 9] === D[w + 3]) return e << 1;
  if (ports === (((dp << 16) | sp) >>> 0)
    && key[o + 2] === D[w] && key[o + 3] === D[w + 1] && key[o + 4] === D[w + 2] && key[o + 5] === D[w + 3]
    && key[o + 6] === S[w] && key[o + 7] === S[w + 1] && key[o + 8] === S[w + 2] && key[o + 9] === S[w + 3]) return (e << 1) | 1;
  return -1;
}

function storeEntry(key, e, k, i) {
  const w = i << 2;
  const o = e * 10;
  key[o] = k.FAM[i] | (k.PROTO[i] << 8);
  key[o + 1] = (k.SP[i] << 16) | k.DP[i];
  for (let j = 0; j < 4; j++) { key[o + 2 + j] = k.SRC[w + j]; key[o + 6 + j] = k.DST[w + j]; }
}

/** lru-cache or Map keyed by the symmetric hash (int32, a small integer to V8), full key checked. */
function runNumeric(k, { c, store }) {
  const { n, H } = k;
  const { key, next: chain } = store;
  let inserts = 0; let replies = 0; let acc = 0; let next = 0;
  for (let i = 0; i < n; i++) {
    const h = H[i] | 0;
    const head = c.get(h);
    let r = -1;
    for (let e = head === undefined ? -1 : head; e >= 0; e = chain[e]) {
      r = matchEntry(key, e, k, i);
      if (r >= 0) break;
    }
    if (r < 0) {
      const e = next++;
      storeEntry(key, e, k, i);
      chain[e] = head === undefined ? -1 : head;
      c.set(h, e);
      inserts++;
      r = e << 1;
    }
    replies += r & 1;
    acc += r;
  }
  return { inserts, replies, acc };
}

const CONTENDERS = [
  { id: 'flowtable', label: 'FlowTable find()+insert() (src/conntrack/table.ts)', make: () => new FlowTable(CAPACITY), run: runFlowTable },
  { id: 'lru-string', label: `lru-cache ${LRU_VERSION}, string 5-tuple key`, make: () => new LRUCache({ max: CAPACITY }), run: runLruString },
  { id: 'lru-number', label: `lru-cache ${LRU_VERSION}, numeric hash key + full-key check`, make: () => ({ c: new LRUCache({ max: CAPACITY }), store: entryStore() }), run: runNumeric },
  // A separate copy of runNumeric for the Map, so each has its own monomorphic call sites.
  { id: 'map-number', label: 'Map, numeric hash key + full-key check', make: () => ({ c: new Map(), store: entryStore() }), run: (k, s) => runNumericMap(k, s) },
];
const runNumericMap = new Function('matchEntry', 'storeEntry', `return ${runNumeric.toString()}`)(matchEntry, storeEntry);


function timeOne(c, keys) {
  const table = c.make();
  globalThis.gc?.();
  const t0 = performance.now();
  const r = c.run(keys, table);
  return { seconds: (performance.now() - t0) / 1000, result: r };
}

function printTable(head, cells) {
  const w = head.map((h, k) => Math.max(h.length, ...cells.map((c) => String(c[k]).length)));
  const line = (c) => c.map((x, k) => (k === 0 ? String(x).padEnd(w[k]) : String(x).padStart(w[k]))).join('  ');
  process.stdout.write(`${line(head)}\n${cells.map(line).join('\n')}\n`);
}

const int = (x) => Math.round(x).toLocaleString('en-US');

process.stdout.write(`bench/flowtable: ${CONTENDERS.length} flow tables over decoded 5-tuples, capacity ${int(CAPACITY)}, ${ROUNDS} rounds, `
  + `node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
const results = {
  bench: 'flowtable', capacity: CAPACITY, rounds: ROUNDS, node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model,
  loadAverageStart: loadavg(), lruCache: LRU_VERSION, dist: DIST, date: new Date().toISOString(), inputs: [],
};
for (const input of INPUTS) {
  const { file, summary } = synthCapture(input.gen);
  const keys = decodeKeys(file);
  const want = timeOne(CONTENDERS[0], keys).result;
  const flows = summary.tcpFlows + summary.udpFlows + summary.attackPackets;
  if (want.inserts !== flows) throw new Error(`${input.id}: FlowTable made ${want.inserts} flows, the generator wrote ${flows}`);
  const check = (c, r) => {
    if (r.inserts !== want.inserts || r.replies !== want.replies || r.acc !== want.acc) {
      throw new Error(`${input.id}, ${c.id}: found other flows than FlowTable: ${JSON.stringify(r)} vs ${JSON.stringify(want)}`);
    }
  };
  for (const c of CONTENDERS) check(c, timeOne(c, keys).result); // warm-up, checked
  const times = new Map(CONTENDERS.map((c) => [c.id, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < CONTENDERS.length; j++) {
      const c = CONTENDERS[(j + round) % CONTENDERS.length];
      const { seconds, result } = timeOne(c, keys);
      check(c, result);
      times.get(c.id).push(seconds);
    }
  }
  const base = median(times.get('flowtable'));
  const rows = CONTENDERS.map((c) => {
    const t = times.get(c.id);
    const med = median(t);
    return {
      id: c.id, label: c.label, runs: t, medianSeconds: med, minSeconds: Math.min(...t), maxSeconds: Math.max(...t),
      mpps: keys.n / med / 1e6, nsPerLookup: (med * 1e9) / keys.n, timeVsFlowTable: med / base,
    };
  });
  process.stdout.write(`\n${input.id}: ${input.what}\n  ${int(keys.n)} lookups, ${int(want.inserts)} inserts, ${int(want.replies)} reply-direction hits (${file.slice(file.lastIndexOf('/') + 1)})\n\n`);
  printTable(['contender', 'median s', 'min-max s', 'Mpps', 'ns/packet', 'time / FlowTable'], rows.map((r) => [
    r.label, r.medianSeconds.toFixed(3), `${r.minSeconds.toFixed(3)}-${r.maxSeconds.toFixed(3)}`, r.mpps.toFixed(2), r.nsPerLookup.toFixed(0), `${r.timeVsFlowTable.toFixed(2)}x`,
  ]));
  results.inputs.push({ id: input.id, what: input.what, generator: input.gen, file, lookups: keys.n, flows: want.inserts, replies: want.replies, contenders: rows });
}
results.loadAverageEnd = loadavg();
process.stdout.write(`\nA lookup here is find-or-insert of one packet's flow, nothing else (no state machine, no timeouts).\n`
  + `Load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}. Medians over the rounds; read the ratios, not the absolute times.\n`);
if (args.json) {
  mkdirSync(dirname(resolve(args.json)), { recursive: true });
  writeFileSync(args.json, JSON.stringify(results, null, 2) + '\n');
}
