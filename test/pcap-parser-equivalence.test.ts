/**
 * dplab's pcap reader against an independent one: the npm package pcap-parser, on every clean
 * classic (microsecond) pcap capture. pcap-parser refuses nanosecond magic and pcapng, so those are
 * not compared here (decode-golden and capture-variants cover them against tshark and editcap).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import type { SourceOptions } from '../src/capture/source.js';
import { Batch } from '../src/packet/batch.js';
import { CAPTURES, cleanCaptures } from './helpers.js';

interface PcapParserPacket {
  header: { timestampSeconds: number; timestampMicroseconds: number; capturedLength: number; originalLength: number };
  data: Buffer;
}
interface PcapParser {
  on(event: 'packet', f: (p: PcapParserPacket) => void): void;
  on(event: 'error', f: (e: Error) => void): void;
  on(event: 'end', f: () => void): void;
}
const pcapParser = createRequire(import.meta.url)('pcap-parser') as { parse(input: NodeJS.ReadableStream): PcapParser };

/** One packet as text: timestamp, lengths and a digest of the captured bytes. */
function signature(sec: number, nsec: number, wireLen: number, bytes: Uint8Array): string {
  return `${sec}.${String(nsec).padStart(9, '0')} wire=${wireLen} cap=${bytes.length} md5=${createHash('md5').update(bytes).digest('hex')}`;
}

/**
 * Read a file with pcap-parser. It leaves its input stream open on errors, so the test owns the
 * stream and destroys it when the parser ends, whatever happened.
 */
function readWithPcapParser(path: string): Promise<{ packets: string[]; error: string | null }> {
  return new Promise((resolve) => {
    const stream = createReadStream(path);
    const packets: string[] = [];
    let error: string | null = null;
    const parser = pcapParser.parse(stream);
    parser.on('packet', (p) => {
      packets.push(signature(p.header.timestampSeconds, p.header.timestampMicroseconds * 1000, p.header.originalLength, p.data));
    });
    parser.on('error', (e) => { error = e.message; });
    parser.on('end', () => { stream.destroy(); resolve({ packets, error }); });
  });
}

function readWithDplab(path: string, opts?: SourceOptions): { packets: string[]; error: string | null } {
  const packets: string[] = [];
  const src = openCapture(path, opts);
  const b = new Batch();
  try {
    while (src.fill(b) > 0) {
      for (let i = 0; i < b.count; i++) {
        const off = b.off[i]!;
        packets.push(signature(b.tsSec[i]!, b.tsNsec[i]!, b.wireLen[i]!, b.bytes.subarray(off, off + b.capLen[i]!)));
      }
      src.release(b);
    }
  } finally {
    src.close();
  }
  return { packets, error: src.error?.message ?? null };
}

function firstDifference(ours: string[], reference: string[]): object | null {
  const k = ours.findIndex((p, j) => p !== reference[j]);
  return k === -1 ? null : { packet: k + 1, dplab: ours[k], pcapParser: reference[k] };
}

/** Classic microsecond pcap, as capinfos described it in INDEX.tsv. */
const classic = cleanCaptures().filter((r) => r.format.startsWith('pcap usec'));

describe('dplab reads classic pcap exactly as pcap-parser does', () => {
  it('compares most of the clean captures', () => {
    expect(classic.length).toBeGreaterThanOrEqual(70);
  });

  for (const row of classic) {
    it(`${row.file}: same packet count, bytes, lengths and timestamps`, async () => {
      const path = join(CAPTURES, row.file);
      const reference = await readWithPcapParser(path);
      const ours = readWithDplab(path);
      expect(reference.error).toBeNull();
      expect(ours.error).toBeNull();
      expect(ours.packets.length).toBe(reference.packets.length);
      expect(firstDifference(ours.packets, reference.packets)).toBeNull();
    });
  }

  // Records that straddle two reads are carried over to the next chunk; the smallest chunk (1 MiB)
  // and a single-chunk pool make that happen often in the large captures.
  for (const row of classic.filter((r) => r.file.startsWith('large/'))) {
    it(`${row.file}: the same when read in 1 MiB chunks`, async () => {
      const path = join(CAPTURES, row.file);
      const reference = await readWithPcapParser(path);
      const ours = readWithDplab(path, { chunkSize: 1 << 20, chunks: 1 });
      expect(ours.error).toBeNull();
      expect(ours.packets.length).toBe(reference.packets.length);
      expect(firstDifference(ours.packets, reference.packets)).toBeNull();
    });
  }
});
