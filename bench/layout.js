// What a batch's memory layout costs per packet, before anyone rewrites dplab's Batch to find out.
//
// dplab's Batch keeps each per-packet field in a typed array of its own (`b.sport[i]`, `b.proto[i]`:
// "structure of arrays"). In V8's optimised code every such access loads the array from the batch,
// then the array's length, base and data pointer, then bounds-checks: ~7 instructions for one byte
// or word (DESIGN.md "Fifth pass", "Seventh pass"), and the loads are not shared between fields.
// The other layout is one Int32Array with a fixed number of words per packet ("array of
// structures", as DPDK's rte_mbuf or VPP's vlib_buffer_t keep a packet's metadata together):
// `b.w[i * S + SPORT]`, one array whose pointers a loop loads once.
//
// Both layouts run the same two loops on 256-packet batches built from the same bytes: a
// decode-like loop that writes 18 fields from the packet bytes, and a stage-like loop that reads 9
// and writes 3 (a table lookup by hash, as conntrack does). With --call, the stage loop also makes a
// call per packet that V8 does not inline (node is started with --max-inlined-bytecode-size=0 for
// that run), as dplab's conntrack does: a call ends what the compiler knows about loaded pointers.
// The layouts take turns; the first two rounds warm up; medians of ns/packet and their ratio.
//
//   node bench/layout.js [--rounds 12] [--json FILE]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '12' }, json: { type: 'string' }, call: { type: 'boolean', default: false },
    // Options bench/run.js passes every benchmark that mean nothing here.
    packets: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('node bench/layout.js [--rounds 12] [--json FILE]\n');
  process.exit(0);
}
const rounds = Math.max(3, Number(values.rounds));

if (!values.call) {
  // The parent: the plain run here, the --call run in a child with inlining off.
  const plain = measure(false);
  const child = spawnSync(process.execPath, ['--max-inlined-bytecode-size=0', fileURLToPath(import.meta.url), '--call', '--rounds', String(rounds)], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`layout.js --call failed (${child.status}): ${child.stderr.slice(-400)}`);
  const called = JSON.parse(child.stdout);
  const rows = [{ id: 'inlined', ...plain }, { id: 'call per packet', ...called }];
  process.stdout.write(`Batch layout, 256-packet batches, median of ${rounds - 2} rounds (ns/packet, decode-like + stage-like loop):\n`);
  for (const r of rows) {
    process.stdout.write(`  ${r.id.padEnd(16)} one array per field ${r.soa.toFixed(2).padStart(6)}  one Int32Array, 24 words a packet ${r.aos.toFixed(2).padStart(6)}  ${(r.soa / r.aos).toFixed(2)}x\n`);
  }
  if (values.json) writeFileSync(values.json, JSON.stringify({ date: new Date().toISOString(), rounds, rows }, null, 2) + '\n');
} else {
  process.stdout.write(JSON.stringify(measure(true)));
}

function measure(call) {
  const N = 256;
  const S = 24;
  const bytes = new Uint8Array(N * 128);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const table = new Uint32Array(1 << 16);
  for (let i = 0; i < table.length; i++) table[i] = i * 7;

  // Fields assigned in the constructor, as tsc emits dplab's with useDefineForClassFields off.
  class Fields {
    constructor() {
      this.off = new Int32Array(N); this.capLen = new Int32Array(N); this.l3 = new Int32Array(N); this.l4 = new Int32Array(N);
      this.proto = new Uint8Array(N); this.family = new Uint8Array(N); this.sport = new Uint16Array(N); this.dport = new Uint16Array(N);
      this.seq = new Uint32Array(N); this.ack = new Uint32Array(N); this.flags = new Uint8Array(N); this.win = new Uint16Array(N);
      this.src = new Uint32Array(N * 4); this.dst = new Uint32Array(N * 4); this.hash = new Uint32Array(N); this.ttl = new Uint8Array(N);
      this.verdict = new Uint8Array(N); this.flow = new Int32Array(N); this.dir = new Uint8Array(N); this.ctInfo = new Uint8Array(N);
    }
  }
  class Words {
    constructor() { this.w = new Int32Array(N * S); this.dir = new Uint8Array(N); this.ctInfo = new Uint8Array(N); }
  }
  const touchFields = (b, i) => b.ttl[i];
  const touchWords = (b, k) => b.w[k + 21];

  function decodeFields(b) {
    for (let i = 0; i < N; i++) {
      const p = i * 128;
      const q = p + 14;
      b.off[i] = p; b.capLen[i] = 100; b.l3[i] = q; b.l4[i] = q + 20; b.proto[i] = 6; b.family[i] = 4;
      b.sport[i] = (bytes[q + 20] << 8) | bytes[q + 21]; b.dport[i] = (bytes[q + 22] << 8) | bytes[q + 23];
      b.seq[i] = (bytes[q + 24] << 24) | bytes[q + 25]; b.ack[i] = bytes[q + 28]; b.flags[i] = bytes[q + 33]; b.win[i] = bytes[q + 34];
      const w = i << 2;
      b.src[w] = bytes[q + 12] | (bytes[q + 13] << 8); b.dst[w] = bytes[q + 16] | (bytes[q + 17] << 8);
      b.hash[i] = Math.imul(b.src[w] ^ b.dst[w], 0x9e3779b1) ^ b.sport[i]; b.ttl[i] = bytes[q + 8]; b.verdict[i] = 0;
    }
  }
  function stageFields(b) {
    let sum = 0;
    for (let i = 0; i < N; i++) {
      if (b.verdict[i] !== 0 || b.family[i] !== 4 || b.proto[i] !== 6) continue;
      const w = i << 2;
      const e = table[(b.hash[i] ^ b.sport[i] ^ b.dport[i]) & 0xffff];
      if (e === (b.src[w] ^ b.dst[w])) sum++;
      if (call) sum += touchFields(b, i);
      b.flow[i] = e & 0xfff; b.dir[i] = b.flags[i] & 1; b.ctInfo[i] = b.win[i] & 3;
    }
    return sum;
  }
  function decodeWords(b) {
    const x = b.w;
    for (let i = 0; i < N; i++) {
      const k = i * S;
      const p = i * 128;
      const q = p + 14;
      x[k] = p; x[k + 1] = 100; x[k + 2] = q; x[k + 3] = q + 20; x[k + 4] = 6; x[k + 5] = 4;
      const sp = (bytes[q + 20] << 8) | bytes[q + 21];
      x[k + 6] = sp; x[k + 7] = (bytes[q + 22] << 8) | bytes[q + 23];
      x[k + 8] = (bytes[q + 24] << 24) | bytes[q + 25]; x[k + 9] = bytes[q + 28]; x[k + 10] = bytes[q + 33]; x[k + 11] = bytes[q + 34];
      const s = bytes[q + 12] | (bytes[q + 13] << 8);
      const d = bytes[q + 16] | (bytes[q + 17] << 8);
      x[k + 12] = s; x[k + 16] = d;
      x[k + 20] = Math.imul(s ^ d, 0x9e3779b1) ^ sp; x[k + 21] = bytes[q + 8]; x[k + 22] = 0;
    }
  }
  function stageWords(b) {
    let sum = 0;
    for (let i = 0; i < N; i++) {
      const k = i * S;
      if (b.w[k + 22] !== 0 || b.w[k + 5] !== 4 || b.w[k + 4] !== 6) continue;
      const e = table[(b.w[k + 20] ^ b.w[k + 6] ^ b.w[k + 7]) & 0xffff];
      if (e === (b.w[k + 12] ^ b.w[k + 16])) sum++;
      if (call) sum += touchWords(b, k);
      b.w[k + 23] = e & 0xfff; b.dir[i] = b.w[k + 10] & 1; b.ctInfo[i] = b.w[k + 11] & 3;
    }
    return sum;
  }

  const fields = new Fields();
  const words = new Words();
  const R = 20000;
  const time = (decode, stage, b) => {
    const t = process.hrtime.bigint();
    let sum = 0;
    for (let r = 0; r < R; r++) { decode(b); sum += stage(b); }
    const ns = Number(process.hrtime.bigint() - t) / (R * N);
    return { ns, sum };
  };
  const soa = [];
  const aos = [];
  for (let k = 0; k < rounds; k++) {
    // The layouts take turns going first.
    let c;
    let b;
    if (k % 2 === 0) { c = time(decodeFields, stageFields, fields); b = time(decodeWords, stageWords, words); }
    else { b = time(decodeWords, stageWords, words); c = time(decodeFields, stageFields, fields); }
    if (c.sum !== b.sum) throw new Error(`the layouts disagree: ${c.sum} against ${b.sum}`);
    if (k >= 2) { soa.push(c.ns); aos.push(b.ns); }
  }
  const median = (xs) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  return { soa: median(soa), aos: median(aos) };
}
