/** Helpers for the stage tests: run a profile over a shipped capture, or over hand-made packets. */
import { join } from 'node:path';
import { LinkType } from '../src/capture/linktype.js';
import { Batch } from '../src/packet/batch.js';
import { parsePrefix } from '../src/packet/cidr.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture, type RunResult } from '../src/pipeline/run.js';
import type { Stage } from '../src/pipeline/stage.js';
import { CAPTURES, ROOT } from './helpers.js';

/** The stages of a profile written inline (errors name `file`, by default test/inline.profile). */
export function stagesOf(text: string, file = join(ROOT, 'test', 'inline.profile')): Stage[] {
  return buildStages(parseProfile(text, file));
}

/** Run a profile over a capture in captures/. */
export function runProfile(text: string, capture: string): RunResult {
  return runCapture({ file: join(CAPTURES, capture), profile: 'inline', stages: stagesOf(text), timing: false });
}

export interface RawPacket {
  src: string;
  dst: string;
  /** Time in milliseconds since the epoch (whole ms keep the arithmetic exact). */
  ms?: number;
  proto?: number;
  sport?: number;
  dport?: number;
}

/**
 * A batch of real raw-IP packets (LINKTYPE_RAW): IPv4 or IPv6 headers and an 8-byte UDP/TCP-port
 * stub, for the pipeline to decode like any capture.
 */
export function rawBatch(pkts: RawPacket[]): Batch {
  const b = new Batch(Math.max(1, pkts.length));
  const bytes = new Uint8Array(pkts.length * 64);
  let at = 0;
  pkts.forEach((p, i) => {
    const s = parsePrefix(p.src);
    const d = parsePrefix(p.dst);
    const proto = p.proto ?? 17;
    const l4 = proto === 6 ? 20 : 8;
    const o = at;
    let q: number;
    if (s.family === 4) {
      const total = 20 + l4;
      bytes.set([0x45, 0, total >> 8, total & 255, 0, 1, 0, 0, 64, proto, 0, 0], o);
      put32(bytes, o + 12, s.words[0]);
      put32(bytes, o + 16, d.words[0]);
      q = o + 20;
    } else {
      bytes.set([0x60, 0, 0, 0, 0, l4, proto, 64], o);
      for (let k = 0; k < 4; k++) { put32(bytes, o + 8 + 4 * k, s.words[k]!); put32(bytes, o + 24 + 4 * k, d.words[k]!); }
      q = o + 40;
    }
    const sport = p.sport ?? 40000;
    const dport = p.dport ?? 53;
    bytes.set([sport >> 8, sport & 255, dport >> 8, dport & 255], q);
    if (proto === 6) bytes[q + 12] = 0x50;
    else bytes.set([0, l4], q + 4);
    const len = q + l4 - o;
    b.off[i] = o;
    b.capLen[i] = len;
    b.wireLen[i] = len;
    b.linkType[i] = LinkType.RAW;
    const ms = p.ms ?? 0;
    b.tsSec[i] = Math.floor(ms / 1000);
    b.tsNsec[i] = (ms % 1000) * 1e6;
    b.num[i] = i + 1;
    at += 64;
  });
  b.bytes = bytes;
  b.count = pkts.length;
  return b;
}

function put32(x: Uint8Array, o: number, v: number): void {
  x[o] = v >>> 24; x[o + 1] = (v >>> 16) & 255; x[o + 2] = (v >>> 8) & 255; x[o + 3] = v & 255;
}
