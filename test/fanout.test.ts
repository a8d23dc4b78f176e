/**
 * Several pipelines over one decode (pipeline/fanout.ts) see the packets exactly as each would
 * alone: on every shipped capture, each of the ebpf, iptables and ipset pipelines gives every
 * packet the verdict (stage and reason) and the report it gives run on its own; and a pipeline
 * that rewrites packets (TTL, addresses, ports) changes nothing for the pipelines after it.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { Batch } from '../src/packet/batch.js';
import { Fanout } from '../src/pipeline/fanout.js';
import { loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { Pipeline } from '../src/pipeline/runner.js';
import type { Stage, StageReport } from '../src/pipeline/stage.js';
import '../src/stages/index.js';
import { CAPTURES, captureIndex } from './helpers.js';
import { Rewrite } from './stages.js';

/** Appended to a pipeline: what it decided for every packet, and the destination it saw. */
class Recorder implements Stage {
  readonly name = 'recorder';
  readonly reasons: readonly string[] = [];
  readonly seen: string[] = [];
  process(b: Batch): void {
    for (let i = 0; i < b.count; i++) {
      this.seen.push(`${b.num[i]} ${b.verdict[i]} ${b.stage[i]} ${b.reason[i]} ${b.dst[i << 2]} ${b.dport[i]} ${b.ttl[i]} ${b.bytes[b.off[i]! + 14] ?? ''}`);
    }
  }
  report(): StageReport {
    return {};
  }
}

function pipelineOf(profile: string, extra: Stage[] = []): { p: Pipeline; rec: Recorder } {
  const rec = new Recorder();
  return { p: new Pipeline([...extra, ...buildStages(loadProfile(profile)), rec], { timing: false }), rec };
}

/** Feed a capture to a function per batch. */
function feed(file: string, each: (b: Batch) => void): void {
  const src = openCapture(file);
  const b = new Batch();
  try {
    while (src.fill(b) > 0) { each(b); src.release(b); }
  } finally {
    src.close();
  }
}

function opens(file: string): boolean {
  try { openCapture(file).close(); return true; } catch { return false; }
}

const PROFILES = ['ebpf', 'iptables', 'ipset'];

describe('one decode, several pipelines, each as if alone', () => {
  for (const row of captureIndex()) {
    const file = join(CAPTURES, row.file);
    if (!opens(file)) continue;
    it(row.file, () => {
      // A rewriting pipeline first: the others must not see its rewrites.
      const rewriting = pipelineOf('ebpf', [new Rewrite('rewrite')]);
      const shared = PROFILES.map((name) => pipelineOf(name));
      const fan = new Fanout([rewriting.p, ...shared.map((x) => x.p)], false);
      feed(file, (b) => fan.process(b));
      fan.finish();
      for (let k = 0; k < PROFILES.length; k++) {
        const alone = pipelineOf(PROFILES[k]!);
        feed(file, (b) => alone.p.process(b));
        alone.p.finish();
        expect(shared[k]!.rec.seen, PROFILES[k]).toEqual(alone.rec.seen);
        expect(shared[k]!.p.counts(), PROFILES[k]).toEqual(alone.p.counts());
        expect(shared[k]!.p.reports(), PROFILES[k]).toEqual(alone.p.reports());
      }
      // And the rewriting pipeline did rewrite what it saw, as it would alone.
      const alone = pipelineOf('ebpf', [new Rewrite('rewrite')]);
      feed(file, (b) => alone.p.process(b));
      expect(rewriting.rec.seen).toEqual(alone.rec.seen);
    });
  }
});
