/**
 * Part files: how a worker hands the packets it owns, as its stages left them, to the main thread,
 * which merges every worker's part in packet-number order into the real captures through the same
 * SplitWriter an inline run writes with (src/pipeline/parallel.ts), so the bytes are the same.
 *
 * A part is a run of records, in increasing packet number, with no file header (only the run that
 * wrote it reads it). Each record, little-endian:
 *
 *    0  f64  packet number (1-based, as Batch.num)
 *    8  f64  timestamp, seconds (Batch.tsSec)
 *   16  u32  nanoseconds (Batch.tsNsec)
 *   20  u32  original (wire) length, with what stages added (packetWireLength)
 *   24  u32  captured length: the bytes that follow the header (packetLength: a packet that grew
 *            is written from the batch's output area)
 *   28  u16  interface (Batch.iface)
 *   30  u8   flags: 1 forwarded (else dropped or malformed), 2 no timestamp (Batch.noTime)
 *   31  u8   0
 *   32  the captured bytes, then zeros up to a multiple of 4
 *
 * Both sides hold one 1 MiB block (a record is at most 32 + MAX_PACKET bytes, so one always fits);
 * the writer writes whole blocks of whole records, and nothing is allocated per packet.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { Batch } from '../packet/batch.js';
import { packetBytes, packetLength, packetStart, packetWireLength } from '../packet/wire.js';
import { OutputFile } from './outfile.js';

export const PART_HEADER = 32;
const BLOCK = 1 << 20;
const FORWARDED = 1;
const NO_TIME = 2;

/** What a worker writes to its part: where, which packets, and the option its errors name. */
export interface PartSpec {
  path: string;
  /** The output option a failure is reported under (the part sits next to that output). */
  option: string;
  /** Write forwarded packets (there is a --write). */
  forwarded: boolean;
  /** Write dropped and malformed packets (there is a --write-dropped). */
  dropped: boolean;
}

export class PartWriter {
  private readonly out: OutputFile;
  private readonly buf = new Uint8Array(BLOCK);
  private readonly dv = new DataView(this.buf.buffer);
  private at = 0;

  constructor(private readonly spec: PartSpec) {
    this.out = new OutputFile(spec.option, spec.path);
  }

  /** Append packet i of the batch, if its output is wanted, from wherever its bytes now are. */
  write(b: Batch, i: number, forwarded: boolean): void {
    if (forwarded ? !this.spec.forwarded : !this.spec.dropped) return;
    const len = packetLength(b, i);
    const need = PART_HEADER + ((len + 3) & ~3);
    if (this.at + need > BLOCK) this.flush();
    const dv = this.dv;
    const p = this.at;
    dv.setFloat64(p, b.num[i]!, true);
    dv.setFloat64(p + 8, b.tsSec[i]!, true);
    dv.setUint32(p + 16, b.tsNsec[i]!, true);
    dv.setUint32(p + 20, packetWireLength(b, i), true);
    dv.setUint32(p + 24, len, true);
    dv.setUint16(p + 28, b.iface[i]!, true);
    dv.setUint16(p + 30, (forwarded ? FORWARDED : 0) | (b.noTime[i] === 1 ? NO_TIME : 0), true);
    const out = this.buf;
    const src = packetBytes(b, i);
    const from = packetStart(b, i);
    const q = p + PART_HEADER;
    if (len <= 64) for (let k = 0; k < len; k++) out[q + k] = src[from + k]!;
    else out.set(src.subarray(from, from + len), q);
    for (let k = len; k < need - PART_HEADER; k++) out[q + k] = 0;
    this.at = p + need;
  }

  flush(): void {
    this.out.write(this.buf, 0, this.at);
    this.at = 0;
  }

  close(): void {
    try { this.flush(); } finally { this.out.close(); }
  }
}

/** Reads a part a record at a time; `load` puts the current record into packet 0 of a batch. */
export class PartReader {
  private readonly fd: number;
  private readonly buf = new Uint8Array(BLOCK);
  private readonly dv = new DataView(this.buf.buffer);
  private pos = 0;
  private end = 0;
  private eof = false;
  /** The current record's packet number; Infinity when the part is done. */
  num = Infinity;

  constructor(path: string) {
    this.fd = openSync(path, 'r');
    this.next();
  }

  /** Move to the next record (the first, from the constructor). */
  next(): void {
    if (this.num !== Infinity) this.pos += PART_HEADER + ((this.dv.getUint32(this.pos + 24, true) + 3) & ~3);
    if (!this.have(PART_HEADER) || !this.have(PART_HEADER + ((this.dv.getUint32(this.pos + 24, true) + 3) & ~3))) {
      if (this.end > this.pos) throw new Error('a worker\'s part file ends inside a record');
      this.num = Infinity;
      return;
    }
    this.num = this.dv.getFloat64(this.pos, true);
  }

  /** Make sure `n` bytes from pos are in the buffer (moving what is left to the front); false at the end. */
  private have(n: number): boolean {
    if (this.end - this.pos >= n) return true;
    if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.end);
      this.end -= this.pos;
      this.pos = 0;
    }
    while (!this.eof && this.end < n) {
      const got = readSync(this.fd, this.buf, this.end, BLOCK - this.end, null);
      if (got === 0) this.eof = true;
      this.end += got;
    }
    return this.end >= n;
  }

  /** The current record as packet 0 of `b` (its bytes stay in this reader's buffer); true if forwarded. */
  load(b: Batch): boolean {
    const dv = this.dv;
    const p = this.pos;
    b.bytes = this.buf;
    b.count = 1;
    b.num[0] = this.num;
    b.tsSec[0] = dv.getFloat64(p + 8, true);
    b.tsNsec[0] = dv.getUint32(p + 16, true);
    b.wireLen[0] = dv.getUint32(p + 20, true);
    b.capLen[0] = dv.getUint32(p + 24, true);
    b.iface[0] = dv.getUint16(p + 28, true);
    const flags = dv.getUint16(p + 30, true);
    b.noTime[0] = (flags & NO_TIME) !== 0 ? 1 : 0;
    b.off[0] = p + PART_HEADER;
    return (flags & FORWARDED) !== 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}
