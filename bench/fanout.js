// Several profiles over the same packets: one read and one decode shared by every pipeline
// (pipeline/fanout.ts, restoring the batch's fields between pipelines), against reading and
// decoding the capture once per profile. For `compare`, which runs several profiles in one go.
//
// Input: the 1M-packet capture of pipeline.js. Contenders take turns within each round:
//   separate   each profile through its own Pipeline, the capture read and decoded each time
//   fanout     one read, one decode, the fields put back before each pipeline after the first
//   fanout+rw  the same with a byte-rewriting stage in the first pipeline (so bytes are saved and
//              put back too)
// Prints medians, the ratio, and what the save/restore costs per packet against decoding.
//
//   node bench/fanout.js [--rounds 5] [--profiles ebpf,iptables]
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DIST, median, synthCapture } from './lib/common.js';

const load = async (m) => import(pathToFileURL(join(DIST, m)).href);
const { openCapture } = await load('capture/open.js');
const { Batch, Verdict } = await load('packet/batch.js');
const { End, setTtl } = await load('packet/wire.js');
const { Fanout } = await load('pipeline/fanout.js');
const { loadProfile } = await load('pipeline/profile.js');
const { buildStages } = await load('pipeline/registry.js');
const { Pipeline } = await load('pipeline/runner.js');
await load('stages/index.js');

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, profiles: { type: 'string', default: 'ebpf,iptables' } } });
const rounds = Number(values.rounds);
const profiles = values.profiles.split(',');
const { file, summary } = synthCapture({ seed: 1, packets: 1000000, payloadSize: 16, packetsPerFlow: 10, ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, attackShare: 0.05 });
void End;

/** A stage that rewrites every packet's TTL: enough to make the fan-out save and restore bytes. */
const ttl = () => ({
  name: 'ttl', reasons: [], rewrites: true,
  process(b) { for (let i = 0; i < b.count; i++) if (b.verdict[i] === Verdict.PASS && b.family[i] !== 0 && b.ttl[i] > 0) setTtl(b, i, b.ttl[i] - 1); },
  report() { return {}; },
});

function feed(each) {
  const src = openCapture(file);
  const b = new Batch();
  while (src.fill(b) > 0) { each(b); src.release(b); }
  src.close();
}

const pipelines = (rw) => profiles.map((p, k) => new Pipeline([...(rw && k === 0 ? [ttl()] : []), ...buildStages(loadProfile(p))]));
let check = 0;
const contenders = {
  separate: () => { for (const p of pipelines(false)) { feed((b) => p.process(b)); p.finish(); check += p.counts().forwarded; } return 0; },
  fanout: () => { const f = new Fanout(pipelines(false)); feed((b) => f.process(b)); f.finish(); check += f.pipelines[0].counts().forwarded; return f.restoreNs; },
  'fanout+rw': () => { const f = new Fanout(pipelines(true)); feed((b) => f.process(b)); f.finish(); check += f.pipelines[0].counts().forwarded; return f.restoreNs; },
};
const names = Object.keys(contenders);
const times = Object.fromEntries(names.map((n) => [n, []]));
const restore = Object.fromEntries(names.map((n) => [n, []]));
let decodeNs = [];
for (let r = -1; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const n = names[(k + Math.max(r, 0)) % names.length];
    const t0 = process.hrtime.bigint();
    const ns = contenders[n]();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r < 0) continue; // warm-up round
    times[n].push(s);
    restore[n].push(ns / summary.packets);
  }
  if (r >= 0) {
    const p = pipelines(false)[0];
    feed((b) => p.process(b));
    decodeNs.push(p.runtime[0].ns / summary.packets);
  }
}
const base = median(times.separate);
process.stdout.write(`${summary.packets.toLocaleString('en-US')} packets, profiles ${profiles.join(' + ')}, ${rounds} rounds (medians)\n`);
process.stdout.write(`${'contender'.padEnd(10)} ${'seconds'.padStart(8)} ${'vs separate'.padStart(12)} ${'save+restore ns/packet'.padStart(24)}\n`);
for (const n of names) {
  process.stdout.write(`${n.padEnd(10)} ${median(times[n]).toFixed(3).padStart(8)} ${(median(times[n]) / base).toFixed(2).padStart(11)}x ${median(restore[n]).toFixed(1).padStart(24)}\n`);
}
process.stdout.write(`decoding costs ${median(decodeNs).toFixed(1)} ns/packet; reading and decoding once per profile is what fanout saves (check ${check > 0 ? 'ok' : 'FAILED'})\n`);
