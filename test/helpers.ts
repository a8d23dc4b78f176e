/** Shared test helpers: the shipped captures and their INDEX rows (counts from capinfos). */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCapture } from '../src/capture/open.js';
import type { PacketSource } from '../src/capture/source.js';
import { SWEEP_EVERY, SWEEP_SLOTS } from '../src/conntrack/layout.js';
import type { Conntrack } from '../src/conntrack/tracker.js';
import { Batch, Verdict } from '../src/packet/batch.js';
import { decodeBatch } from '../src/packet/decode.js';

export const ROOT = join(import.meta.dirname, '..');
export const CAPTURES = join(ROOT, 'captures');

/** Run this folder's dplab command line (bin/dplab.js, so dist/) with these arguments. */
export function dplab(...args: string[]) {
  return spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
}

export interface IndexRow {
  file: string;
  format: string;
  linktype: string;
  /** capinfos' packet count; `readError` when capinfos stopped early. */
  packets: number;
  readError: boolean;
}

export function captureIndex(): IndexRow[] {
  const lines = readFileSync(join(CAPTURES, 'INDEX.tsv'), 'utf8').trim().split('\n');
  const head = lines[0]!.split('\t');
  const col = (name: string): number => head.indexOf(name);
  return lines.slice(1).map((l) => {
    const c = l.split('\t');
    const pk = c[col('packets')]!;
    return { file: c[col('file')]!, format: c[col('format')]!, linktype: c[col('linktype')]!, packets: parseInt(pk, 10), readError: pk.includes('read error') };
  });
}

/** Captures outside fuzz/ and malformed/: the ones every tool should read cleanly. */
export function cleanCaptures(): IndexRow[] {
  return captureIndex().filter((r) => !r.file.startsWith('fuzz/') && !r.file.startsWith('malformed/'));
}

/** Read a whole capture, calling `each` for every decoded batch. Returns the source (closed). */
export function readAll(path: string, each?: (b: Batch) => void, batchSize?: number): PacketSource {
  const src = openCapture(path);
  const b = new Batch(batchSize);
  try {
    while (src.fill(b) > 0) {
      decodeBatch(b);
      each?.(b);
      src.release(b);
    }
  } finally {
    src.close();
  }
  return src;
}

/**
 * Trackers over a capture as the conntrack stage drives its one: the clock is the latest packet
 * time so far, every SWEEP_EVERY packet numbers a sample point and an expiry sweep, `each(b, i)`
 * for each packet still passing (where the stage calls track()), the held numbers released at each
 * batch's end. Returns the clock at the end of input.
 */
export function driveTrackers(path: string, trackers: readonly Conntrack[], each: (b: Batch, i: number) => void): number {
  let clock = 0;
  let nextSweep = SWEEP_EVERY;
  readAll(path, (b) => {
    for (let i = 0; i < b.count; i++) {
      const t = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
      if (t > clock) clock = t;
      if (b.num[i]! >= nextSweep) {
        for (const ct of trackers) { ct.table.sample(clock); ct.sweep(clock, SWEEP_SLOTS); }
        nextSweep = (Math.floor(b.num[i]! / SWEEP_EVERY) + 1) * SWEEP_EVERY;
      }
      if (b.verdict[i] === Verdict.PASS) each(b, i);
    }
    for (const ct of trackers) ct.table.release();
  });
  return clock;
}

/** tshark preferences that make it check IP, TCP and UDP checksums (it reports ICMPv6's anyway). */
const CHECKSUMS = ['-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'];

/**
 * tshark's view of a capture: the given fields (`tshark -T fields`), one row per packet, with
 * checksum validation on. pcapng section headers, which tshark 4 lists as frames of no
 * encapsulation, are not packets and are left out.
 */
export function tsharkFields(file: string, fields: string[]): string[][] {
  const r = spawnSync('tshark', ['-r', file, ...CHECKSUMS, '-T', 'fields', ...['frame.encap_type', ...fields].flatMap((f) => ['-e', f])], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error || r.status !== 0) throw new Error(`tshark could not read ${file} (${r.error?.message ?? r.stderr}): install it, e.g. apt-get install tshark`);
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t')).filter((row) => row[0] !== '').map((row) => row.slice(1));
}

/** How many packets tshark reads in a capture. */
export function tsharkCount(file: string): number {
  return tsharkFields(file, ['frame.number']).length;
}
