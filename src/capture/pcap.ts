import type { Batch } from '../packet/batch.js';
import { linkTypeName } from './linktype.js';
import { ChunkedFileSource, Refill, type InterfaceInfo, type SourceOptions } from './source.js';
import * as sourceModule from './source.js';
// The per-packet code reads only module consts: V8 reads an imported or exported binding through
// its module cell at every use, even in the module that declares it (src/conntrack/layout.ts).
const { MAX_PACKET } = sourceModule;

/**
 * Classic libpcap files: microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d) magic, either byte
 * order. https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/
 */
export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;

export const FILE_HEADER = 24;
/** Bytes before each record's data (fill() reads the private copy: see the imports). */
const RECORD_BYTES = 16;
export const RECORD_HEADER = RECORD_BYTES;

/** Write a classic pcap file header (little-endian, version 2.4) at `at`: micro- or nanosecond timestamps. */
export function writePcapHeader(dv: DataView, at: number, nano: boolean, snapLen: number, linkType: number): void {
  dv.setUint32(at, nano ? PCAP_MAGIC_NS : PCAP_MAGIC_US, true);
  dv.setUint16(at + 4, 2, true);
  dv.setUint16(at + 6, 4, true);
  dv.setUint32(at + 8, 0, true); // thiszone
  dv.setUint32(at + 12, 0, true); // sigfigs
  dv.setUint32(at + 16, snapLen, true);
  dv.setUint32(at + 20, linkType, true);
}
/** Link-type field: bits 16..25 are reserved and must be zero; bits 26..31 describe the FCS. */
const LINKTYPE_RESERVED = 0x03ff0000;
/**
 * Before version 2.3 a record header had its two lengths the other way round (original, then
 * captured), and some 2.3 files were written either way: libpcap (sf-pcap.c) and Wireshark
 * (wiretap/libpcap.c) swap them always below 2.3, and in 2.3 when "captured" exceeds "original".
 */
const enum Lengths { NORMAL, SWAPPED, MAYBE_SWAPPED }

export class PcapReader extends ChunkedFileSource {
  readonly format: string;
  readonly interfaces: InterfaceInfo[] = [];
  private readonly le: boolean;
  private readonly nano: boolean;
  private readonly linkType: number;
  private readonly lengths: Lengths;

  constructor(path: string, fd: number, opts?: SourceOptions) {
    super(path, fd, opts);
    if (this.ensure(FILE_HEADER) !== Refill.OK) {
      this.le = true; this.nano = false; this.linkType = 0; this.lengths = Lengths.NORMAL; this.format = 'pcap';
      // Unless the read itself failed (then the error says so).
      if (this.error === null) {
        this.fail(0, `file header is cut short (${this.size} bytes, a pcap header needs ${FILE_HEADER})`,
          'The file is truncated; recapture or copy it again');
      }
      return;
    }
    const dv = this.c.dv;
    const magicBE = dv.getUint32(0, false);
    const magicLE = dv.getUint32(0, true);
    this.le = magicLE === PCAP_MAGIC_US || magicLE === PCAP_MAGIC_NS;
    const magic = this.le ? magicLE : magicBE;
    this.nano = magic === PCAP_MAGIC_NS;
    this.format = `pcap ${this.nano ? 'nsec' : 'usec'} ${this.le ? 'LE' : 'BE'}`;
    const major = dv.getUint16(4, this.le);
    const minor = dv.getUint16(6, this.le);
    const snapLen = dv.getUint32(16, this.le);
    const ltField = dv.getUint32(20, this.le);
    this.linkType = ltField & 0xffff;
    this.lengths = minor < 3 ? Lengths.SWAPPED : minor === 3 ? Lengths.MAYBE_SWAPPED : Lengths.NORMAL;
    this.pos = FILE_HEADER;
    if (magic !== PCAP_MAGIC_US && magic !== PCAP_MAGIC_NS) {
      this.fail(0, 'not a pcap file (bad magic number)', 'dplab reads pcap and pcapng captures');
      return;
    }
    if (major !== 2) {
      this.fail(4, `pcap version ${major}.${minor} is not supported (only 2.x exists)`, 'The file is corrupt or not a pcap');
      return;
    }
    if ((ltField & LINKTYPE_RESERVED) !== 0) {
      this.fail(20, `link-type field 0x${ltField.toString(16)} has reserved bits set`, 'The file header is corrupt');
      return;
    }
    this.interfaces.push({
      linkType: this.linkType, snapLen, name: linkTypeName(this.linkType),
      unitsPerSecond: this.nano ? 1e9 : 1e6, tsOffset: 0, at: 20,
    });
  }

  fill(b: Batch): number {
    b.count = 0;
    if (this.done) return 0;
    const cap = b.capacity;
    const le = this.le;
    const mul = this.nano ? 1 : 1000;
    const inclAt = this.lengths === Lengths.SWAPPED ? 12 : 8;
    const origAt = 20 - inclAt;
    const maybeSwapped = this.lengths === Lengths.MAYBE_SWAPPED;
    let n = 0;
    let seen = this.packets;
    for (;;) {
      const c = this.c;
      const dv = c.dv;
      const len = c.len;
      let pos = this.pos;
      while (n < cap && pos + RECORD_BYTES <= len) {
        let incl = dv.getUint32(pos + inclAt, le);
        let orig = dv.getUint32(pos + origAt, le);
        if (maybeSwapped && incl > orig) { const t = incl; incl = orig; orig = t; }
        if (incl > MAX_PACKET) {
          this.pos = pos;
          this.fail(c.fileOffset + pos, `record ${seen + n + 1} claims ${incl} bytes (the most a packet can have is ${MAX_PACKET})`,
            'The file is corrupt from here on; the packets before this record were read');
          return this.handOut(b, n);
        }
        const end = pos + RECORD_BYTES + incl;
        if (end > len) break;
        b.tsSec[n] = dv.getUint32(pos, le);
        b.tsNsec[n] = dv.getUint32(pos + 4, le) * mul;
        b.off[n] = pos + RECORD_BYTES;
        b.capLen[n] = incl;
        b.wireLen[n] = orig;
        b.num[n] = seen + n + 1;
        n++;
        pos = end;
      }
      this.pos = pos;
      if (n === cap) return this.handOut(b, n);
      // The next record is not complete in this chunk. A batch never spans chunks, so hand out what
      // we have before moving on.
      if (n > 0) return this.handOut(b, n);
      seen = this.packets;
      const r = this.refill();
      if (r === Refill.BLOCKED || r === Refill.FAILED) return 0;
      if (r === Refill.EOF) {
        const left = this.avail();
        if (left > 0) {
          const at = this.position;
          const need = left >= RECORD_BYTES ? RECORD_BYTES + this.recordLength(this.c.dv, this.pos) : RECORD_BYTES;
          this.fail(at, `record ${this.packets + 1} is cut short: it needs ${need} bytes, the file has ${left} left`,
            'The capture was probably cut off while being written; the packets before it were read');
        }
        this.done = true;
        return 0;
      }
    }
  }

  /**
   * What a pcap file's records share, written once a batch (typed-array fill) instead of at every
   * record: one link type, interface 0, every record timed (ebpf 2,718/2,724 -> 2,691/2,695
   * instructions a packet, bench/count.js).
   */
  protected override handOut(b: Batch, n: number): number {
    if (n > 0) {
      b.linkType.fill(this.linkType, 0, n);
      b.iface.fill(0, 0, n);
      b.noTime.fill(0, 0, n);
    }
    return super.handOut(b, n);
  }

  /** Captured length of the record whose header is at `pos` (outside the hot loop). */
  private recordLength(dv: DataView, pos: number): number {
    const a = dv.getUint32(pos + 8, this.le);
    const b = dv.getUint32(pos + 12, this.le);
    if (this.lengths === Lengths.SWAPPED) return b;
    return this.lengths === Lengths.MAYBE_SWAPPED && a > b ? b : a;
  }
}
