/**
 * The end-of-input flush has two ways. Where something listens for flows' ends (a flow log, the
 * l7 stage's buffers), it walks the slots and removes the entries one by one, so the listeners
 * meet them in the same order for any batch size. Where nothing listens, FlowTable.removeAll
 * takes them all in entry order, reading the records one after another. Both must leave the same
 * counters, the same live-flow series and an empty table that works as before. Here the same
 * packets go through two trackers, one of them watched, and then through whole pipelines with and
 * without a flow log; the flow log's own records are the independent count of how the flows ended.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Destroy } from '../src/conntrack/layout.js';
import { Conntrack, defaultTimeouts, type Timeouts } from '../src/conntrack/tracker.js';
import { writeSynthPcap } from '../src/gen/synth.js';
import type { FlowRecord } from '../src/pipeline/flowlog.js';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { runCapture } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { CAPTURES, driveTrackers } from './helpers.js';
import { stagesOf } from './stage-run.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-flush-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const churn = join(dir, 'churn.pcap');
// 300 flows at once at 20,000 packets a second, some of them UDP, IPv6, reset or never answered.
writeSynthPcap(churn, { seed: 5, flows: 3000, packetsPerFlow: 12, ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, rstShare: 0.1, attackShare: 0.05, concurrency: 300, rate: 20000 });

/** Both trackers over a capture as the conntrack stage drives one; every packet's answer must agree. */
function feed(file: string, a: Conntrack, b: Conntrack, round: string): number {
  return driveTrackers(file, [a, b], (batch, i) => {
    // Entry numbers may differ after a flush (the free lists' orders do): the answers may not.
    const ra = a.track(batch, i);
    const got = [ra, batch.dir[i], batch.ctInfo[i]];
    const rb = b.track(batch, i);
    expect(got, `${round}: packet ${batch.num[i]}`).toEqual([rb, batch.dir[i], batch.ctInfo[i]]);
  });
}

/** The flows a table holds, by tuple and state (not by entry number), sorted. */
function flows(ct: Conntrack): string[] {
  const t = ct.table;
  const out: string[] = [];
  t.forEach((e) => { out.push([t.family(e), t.proto(e), t.sport(e), t.dport(e), t.state(e), t.status(e), t.expires(e)].join(' ')); });
  return out.sort();
}

describe('the flush without listeners leaves what the slot-by-slot flush leaves', () => {
  const short: Timeouts = defaultTimeouts();
  // Timeouts of about a flow's gap between packets: entries expire under the packets, the sweep
  // removes some, and at the end of input some have expired that the sweep has not reached.
  short.tcp.fill(0.02);
  short.udp = 0.02;
  short.udpStream = 0.02;
  const configs = [
    { what: 'default timeouts', timeouts: defaultTimeouts(), capacity: 65536 },
    { what: '20 ms timeouts', timeouts: short, capacity: 65536 },
    { what: '20 ms timeouts, a full table', timeouts: short, capacity: 200 },
  ];

  for (const c of configs) {
    it(`on generated traffic, ${c.what}, and again after it`, () => {
      const quiet = new Conntrack({ capacity: c.capacity, whenFull: 'evict', loose: true, timeouts: c.timeouts });
      const watched = new Conntrack({ capacity: c.capacity, whenFull: 'evict', loose: true, timeouts: c.timeouts });
      const seen = new Float64Array(5);
      watched.table.onEnd((_t, _e, why) => { seen[why]!++; });
      for (const round of ['first pass', 'second pass, on the flushed tables']) {
        const now = feed(churn, quiet, watched, `${c.what}, ${round}`);
        expect(flows(quiet), `${round}: flows before the flush`).toEqual(flows(watched));
        const live = quiet.table.count;
        const expiredNow = flows(quiet).filter((f) => Number(f.split(' ')[6]) < now).length;
        const before = [...watched.destroyed];
        quiet.table.sample(now);
        watched.table.sample(now);
        expect(quiet.table.watched).toBe(false);
        expect(watched.table.watched).toBe(true);
        quiet.flush(now);
        watched.flush(now);
        expect([...quiet.destroyed], `${round}: destroyed by reason`).toEqual([...watched.destroyed]);
        // What the flush itself ended, as the watched table's listener saw the flows go.
        expect(watched.destroyed[Destroy.END]! - before[Destroy.END]!).toBe(live - expiredNow);
        expect(watched.destroyed[Destroy.TIMEOUT]! - before[Destroy.TIMEOUT]!).toBe(expiredNow);
        expect([...seen], 'every removal reached the listener').toEqual([...watched.destroyed]);
        expect([...quiet.table.liveSeries()], `${round}: live-flow series`).toEqual([...watched.table.liveSeries()]);
        for (const t of [quiet.table, watched.table]) {
          expect(t.count).toBe(0);
          let linked = 0;
          for (let s = 0; s < t.slotCount; s++) if (t.slotEntry(s) >= 0) linked++;
          expect(linked, 'slots left linked').toBe(0);
          let used = 0;
          t.forEach(() => { used++; });
          expect(used, 'entries left in use').toBe(0);
        }
        // A number's generation moves on each time it is freed: as many moves on both tables, and
        // after the first pass (the same numbers, freed in a different order) the same ones.
        const gens = (ct: Conntrack) => { const g: number[] = []; for (let e = 0; e < ct.table.hi; e++) g.push(ct.table.gen(e)); return g; };
        const sum = (g: number[]) => g.reduce((x, y) => x + y, 0);
        expect(sum(gens(quiet)), `${round}: removals`).toBe(sum(gens(watched)));
        if (round === 'first pass') expect(gens(quiet), 'generations').toEqual(gens(watched));
        // Every number went back to the free list: the next pass hands out no more fresh ones.
        expect(quiet.table.hi, `${round}: numbers handed out`).toBe(watched.table.hi);
        expect(live, 'the flush had flows to end').toBeGreaterThan(c.capacity === 200 ? 100 : 250);
      }
      if (c.timeouts === short) expect(quiet.destroyed[Destroy.TIMEOUT]).toBeGreaterThan(1000);
    });
  }
});

/** Timeouts of 1 s: the flush ends flows both as timed out and as ended with the input. */
const SHORT_TIMEOUTS = 'timeout-tcp-time-wait: 1s\ntimeout-tcp-close: 1s\ntimeout-udp: 1s\ntimeout-udp-stream: 1s\n';
/** NAT bindings between two conntracks, each with short timeouts. */
const NAT_BETWEEN = `pipeline: conntrack -> dnat -> inner :: conntrack\n\n[conntrack]\n${SHORT_TIMEOUTS}\n[dnat]\nservices: ${join(CAPTURES, '..', 'profiles', 'rules', 'services.txt')}\n\n[inner]\n${SHORT_TIMEOUTS}`;

describe('a run reports the same with a flow log and without', () => {
  const profiles = [
    { name: 'ebpf', text: 'pipeline: xdp -> conntrack -> policy\n\n[conntrack]\ncapacity: 512Ki\n' },
    { name: 'short timeouts', text: `pipeline: conntrack\n\n[conntrack]\n${SHORT_TIMEOUTS}` },
    { name: 'NAT between two conntracks', text: NAT_BETWEEN },
  ];
  const inputs = [churn, join(CAPTURES, 'demo', 'node-ingress.pcap')];
  for (const p of profiles) {
    for (const file of inputs) {
      it(`${p.name} on ${file.split('/').pop()}`, () => {
        const records: FlowRecord[] = [];
        const logged = runCapture({ file, profile: 'inline', stages: stagesOf(p.text), timing: false, onFlow: (r) => records.push(r) }).report;
        const quiet = runCapture({ file, profile: 'inline', stages: stagesOf(p.text), timing: false }).report;
        expect(JSON.stringify(quiet.stageReports)).toBe(JSON.stringify(logged.stageReports));
        expect(quiet.verdicts).toEqual(logged.verdicts);
        // The flow log's records, counted by how each flow ended, against the quiet run's counters.
        const ended = records.filter((r) => r.end === 'end-of-input').length;
        const timedOut = records.filter((r) => r.end === 'timeout').length;
        let active = 0;
        let timeouts = 0;
        for (const [, rep] of Object.entries(quiet.stageReports)) {
          const r = rep as { activeAtEnd?: { total: number }; destroyed?: { timeout?: number } };
          if (r.activeAtEnd) { active += r.activeAtEnd.total; timeouts += r.destroyed?.timeout ?? 0; }
        }
        expect(ended).toBe(active);
        expect(timedOut).toBe(timeouts);
        expect(records.length).toBeGreaterThan(50);
      });
    }
  }
});

describe('without a flow log, the same report at every batch size and worker count', () => {
  // The quiet flush is what a plain replay runs, in each worker; the batch and worker tests
  // elsewhere run with a flow log (the slot walk). Short timeouts, so that the flush ends flows
  // both as timed out and as ended with the input, and NAT bindings between two conntracks.
  const file = join(dir, 'nat-between.profile');
  writeFileSync(file, NAT_BETWEEN);

  for (const capture of [churn, join(CAPTURES, 'demo', 'node-ingress.pcap')]) {
    it(`${capture.split('/').pop()}: --batch 1, 7, 256 and --workers 1, 2`, async () => {
      const base = runCapture({ file: capture, profile: 'inline', stages: stagesOf(NAT_BETWEEN), timing: false, batchSize: 256 }).report;
      const ct = base.stageReports.conntrack as { activeAtEnd: { total: number }; destroyed: { timeout?: number } };
      expect(ct.activeAtEnd.total, 'flows ended with the input').toBeGreaterThan(0);
      for (const batchSize of [1, 7]) {
        const r = runCapture({ file: capture, profile: 'inline', stages: stagesOf(NAT_BETWEEN), timing: false, batchSize }).report;
        expect(r.verdicts, `--batch ${batchSize}`).toEqual(base.verdicts);
        expect(r.stageReports, `--batch ${batchSize}`).toEqual(base.stageReports);
      }
      const pool = workerPool(2);
      try {
        for (const workers of [1, 2]) {
          const r = (await runParallel({ file: capture, profile: file, workers, batchSize: 7, pool, timing: false })).report;
          expect(r.verdicts, `--workers ${workers}`).toEqual(base.verdicts);
          expect(r.stageReports, `--workers ${workers}`).toEqual(base.stageReports);
        }
      } finally {
        await pool.destroy();
      }
    });
  }
});
