/**
 * Per-flow state owned by a stage (the engine's contract for NAT bindings and L7 parsers): a test
 * stage keeps heap state per flow, keyed by conntrack's entry number, and frees it when the table
 * says the flow ended. On every shipped capture and on a SYN scan (flows that begin and end inside
 * one batch): every flow conntrack created ends exactly once, no state is left at the end, no
 * packet ever finds another flow's state, and what the stage saw is the same at --batch 1, 7, 256.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { CtInfo } from '../src/conntrack/info.js';
import type { FlowTable } from '../src/conntrack/table.js';
import { writeSynthPcap } from '../src/gen/synth.js';
import { Frag, Verdict, type Batch } from '../src/packet/batch.js';
import { ipToString } from '../src/packet/format.js';
import { loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import type { Stage, StageReport } from '../src/pipeline/stage.js';
import type { ConntrackStage } from '../src/stages/conntrack.js';
import '../src/stages/index.js';
import { CAPTURES, captureIndex } from './helpers.js';

/** What the stage keeps per flow: the tuple it first saw, and the packets since. */
interface FlowState { tuple: string; packets: number }

/** A test stage (not shipped): heap state per flow, freed at the flow's end. */
class FlowHeap implements Stage {
  readonly name = 'flowheap';
  readonly reasons: readonly string[] = [];
  readonly state = new Map<number, FlowState>();
  /** One line per flow end: the tuple and the packets this stage saw of it. */
  readonly ended: string[] = [];
  /** A packet whose entry held state for a different tuple: another flow's state. */
  strays = 0;
  created = 0;

  constructor(table: FlowTable) {
    table.onEnd((_t, e) => {
      const s = this.state.get(e);
      if (s) this.ended.push(`${s.tuple} ${s.packets}`);
      this.state.delete(e);
    });
  }

  process(b: Batch): void {
    for (let i = 0; i < b.count; i++) {
      const info = b.ctInfo[i];
      if (b.verdict[i] !== Verdict.PASS || b.flow[i]! < 0 || (info !== CtInfo.NEW && info !== CtInfo.ESTABLISHED)) continue;
      const e = b.flow[i]!;
      const tuple = key(b, i);
      let s = this.state.get(e);
      if (!s) { s = { tuple, packets: 0 }; this.state.set(e, s); this.created++; }
      // A later fragment has no ports of its own: it follows its first fragment's flow.
      if (s.tuple !== tuple && b.frag[i] !== Frag.LATER) this.strays++;
      s.packets++;
    }
  }

  report(): StageReport {
    return { created: this.created };
  }
}

/** The packet's tuple, the same both ways. */
function key(b: Batch, i: number): string {
  const w = i << 2;
  const a = `${ipToString(b.family[i]!, b.src, w)}:${b.sport[i]}`;
  const z = `${ipToString(b.family[i]!, b.dst, w)}:${b.dport[i]}`;
  return `${b.proto[i]} ${a < z ? `${a} ${z}` : `${z} ${a}`}`;
}

function run(file: string, batchSize: number): { heap: FlowHeap; flowsCreated: number } {
  const stages = buildStages(loadProfile('conntrack-only'));
  const ct = stages.find((s) => s.name === 'conntrack') as ConntrackStage;
  const heap = new FlowHeap(ct.ct.table);
  const { report } = runCapture({ file, profile: 'conntrack-only', stages: [...stages, heap], batchSize, timing: false });
  return { heap, flowsCreated: report.stageReports.conntrack!.flowsCreated as number };
}

function opens(file: string): boolean {
  try { openCapture(file).close(); return true; } catch { return false; }
}

const dir = mkdtempSync(join(tmpdir(), 'dplab-flowstate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a stage\'s heap state per flow lives exactly as long as the flow', () => {
  const scan = join(dir, 'scan.pcap');
  writeSynthPcap(scan, { seed: 3, flows: 300, scanShare: 0.4, concurrency: 40 });
  const files = [scan, ...captureIndex().map((r) => join(CAPTURES, r.file)).filter(opens)];
  for (const file of files) {
    it(file === scan ? 'generated SYN scan' : file.slice(CAPTURES.length + 1), () => {
      const base = run(file, 256);
      expect(base.heap.strays, 'a packet found another flow\'s state').toBe(0);
      expect(base.heap.state.size, 'state left after the last flow ended').toBe(0);
      // Every flow that got state ended once (a flow whose packets were all INVALID gets none).
      expect(base.heap.ended.length).toBe(base.heap.created);
      expect(base.heap.created).toBeLessThanOrEqual(base.flowsCreated);
      for (const batch of [1, 7]) expect(run(file, batch).heap.ended, `--batch ${batch}`).toEqual(base.heap.ended);
    });
  }
});
