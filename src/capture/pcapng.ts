import type { Batch } from '../packet/batch.js';
import { linkTypeName } from './linktype.js';
import { ChunkedFileSource, MAX_PACKET, Refill, type InterfaceInfo, type SourceOptions } from './source.js';

/**
 * pcapng (https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/): sections of either byte
 * order, several per file; interfaces with their own link type, if_tsresol and if_tsoffset;
 * Enhanced, Simple and (obsolete) Packet Blocks. Other blocks are skipped.
 */
export const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 1;
const BT_OPB = 2;
const BT_SPB = 3;
const BT_EPB = 6;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const OPT_END = 0;
const OPT_IF_NAME = 2;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;

/** Per-interface timestamp conversion, precomputed when the IDB is read. */
interface Iface extends InterfaceInfo {
  /** Position in the file's list of interfaces (all sections). */
  index: number;
  /** Multiply the remainder by this to get nanoseconds (0 when the division is inexact). */
  nsMul: number;
  /** Resolution too fine for exact double arithmetic: take the BigInt path. */
  wide: boolean;
}

const TWO32 = 4294967296;

export class PcapngReader extends ChunkedFileSource {
  readonly format = 'pcapng';
  /** Every interface of every section, in file order. */
  readonly interfaces: Iface[] = [];
  /** Interfaces of the current section (EPB interface ids index this). */
  private section: Iface[] = [];
  private le = true;
  private sections = 0;
  /** The time of the last packet handed out, for a Simple Packet Block that starts a batch. */
  private lastSec = 0;
  private lastNsec = 0;

  constructor(path: string, fd: number, opts?: SourceOptions) {
    super(path, fd, opts);
    if (this.ensure(12) !== Refill.OK && this.error === null) {
      this.fail(0, `file is too short to be pcapng (${this.size} bytes)`, 'The file is truncated; recapture or copy it again');
    }
  }

  fill(b: Batch): number {
    b.count = 0;
    if (this.done) return 0;
    const cap = b.capacity;
    const { off, capLen, wireLen, tsSec, tsNsec, linkType, iface, noTime, num } = b;
    let n = 0;
    for (;;) {
      const c = this.c;
      const dv = c.dv;
      const len = c.len;
      let pos = this.pos;
      let le = this.le;
      // Fast path: Enhanced Packet Blocks that are wholly in this chunk.
      while (n < cap && pos + 12 <= len) {
        const type = dv.getUint32(pos, le);
        const blen = dv.getUint32(pos + 4, le);
        if (type !== BT_EPB || blen < 32 || (blen & 3) !== 0 || pos + blen > len) break;
        const ifId = dv.getUint32(pos + 8, le);
        const incl = dv.getUint32(pos + 20, le);
        const ifc = this.section[ifId];
        if (ifc === undefined || incl > MAX_PACKET || 28 + incl + 4 > blen || dv.getUint32(pos + blen - 4, le) !== blen) break;
        this.timestamp(ifc, dv.getUint32(pos + 12, le), dv.getUint32(pos + 16, le), tsSec, tsNsec, n);
        off[n] = pos + 28;
        capLen[n] = incl;
        wireLen[n] = dv.getUint32(pos + 24, le);
        linkType[n] = ifc.linkType;
        iface[n] = ifc.index;
        noTime[n] = 0;
        num[n] = this.packets + n + 1;
        n++;
        pos += blen;
      }
      this.pos = pos;
      if (n === cap) return this.handOut(b, n);
      // Anything else: a block header or block not wholly here, another block type, or damage.
      if (this.pos + 12 <= len) {
        const type = dv.getUint32(pos, le);
        const blen = type === BT_SHB ? this.shbLength(pos) : dv.getUint32(pos + 4, le);
        if (blen < 0) return this.handOut(b, n);
        if (blen < 12 || (blen & 3) !== 0) {
          this.fail(c.fileOffset + pos, `block of type 0x${type.toString(16)} has an invalid length ${blen}`,
            'The file is corrupt from here on; the packets before this block were read');
          return this.handOut(b, n);
        }
        if (this.pos + blen <= len) {
          if (type !== BT_SHB && dv.getUint32(pos + blen - 4, this.le) !== blen) {
            this.fail(c.fileOffset + pos, `block of type 0x${type.toString(16)} (${blen} bytes) has a trailing length that does not match`,
              'The file is corrupt from here on; the packets before this block were read');
            return this.handOut(b, n);
          }
          if (type === BT_EPB || type === BT_SPB || type === BT_OPB) {
            if (!this.packetBlock(type, blen, b, n)) return this.handOut(b, n);
            n++;
          } else {
            // Section and interface blocks change how later packets read; hand out what we have so
            // a batch's packets all come from one state of the file.
            if (n > 0 && (type === BT_SHB || type === BT_IDB)) return this.handOut(b, n);
            if (!this.metaBlock(type, blen)) return this.handOut(b, n);
            le = this.le;
          }
          this.pos += blen;
          if (n === cap) return this.handOut(b, n);
          continue;
        }
        // The block does not fit in what is in memory.
        if (blen > this.remainingInFile()) {
          if (n > 0) return this.handOut(b, n);
          this.fail(c.fileOffset + pos, `block of type 0x${type.toString(16)} claims ${blen} bytes, the file has ${this.remainingInFile()} left`,
            'The capture was probably cut off while being written, or is corrupt; the packets before it were read');
          return 0;
        }
        if (blen > c.buf.length) {
          if (type === BT_EPB || type === BT_SPB || type === BT_OPB || type === BT_SHB || type === BT_IDB) {
            if (n > 0) return this.handOut(b, n);
            this.fail(c.fileOffset + pos, `block of type 0x${type.toString(16)} claims ${blen} bytes, more than dplab reads at once`,
              'The block is corrupt or the file is not pcapng; the packets before it were read');
            return 0;
          }
          const at = c.fileOffset + pos;
          this.skip(blen);
          if (this.done) return this.handOut(b, n); // the read failed (skip says where)
          // A stream's size is known only at its end: the skip may have found it inside the block.
          if (this.remainingInFile() < 0) {
            this.fail(at, `block of type 0x${type.toString(16)} claims ${blen} bytes, the file has ${this.size - at} left`,
              'The capture was probably cut off while being written, or is corrupt; the packets before it were read');
            return this.handOut(b, n);
          }
          continue;
        }
      }
      if (n > 0) return this.handOut(b, n);
      const r = this.refill();
      if (r === Refill.BLOCKED || r === Refill.FAILED) return 0;
      if (r === Refill.EOF) {
        const left = this.avail();
        if (left >= 12) {
          // A stream's end is found only here, after a block that did not fit: say what it claims.
          const type = this.c.dv.getUint32(this.pos, this.le);
          const blen = type === BT_SHB ? this.shbLength(this.pos) : this.c.dv.getUint32(this.pos + 4, this.le);
          if (blen >= 0) {
            this.fail(this.position, `block of type 0x${type.toString(16)} claims ${blen} bytes, the file has ${left} left`,
              'The capture was probably cut off while being written, or is corrupt; the packets before it were read');
          }
        } else if (left > 0) {
          this.fail(this.position, `last block is cut short (${left} bytes left, a block needs at least 12)`,
            'The capture was probably cut off while being written; the packets before it were read');
        }
        this.done = true;
        return 0;
      }
    }
  }

  /**
   * Read a Section Header Block's byte order and length. Returns -1 after reporting damage, or
   * sets this.le for the new section.
   */
  private shbLength(pos: number): number {
    const dv = this.c.dv;
    const bom = dv.getUint32(pos + 8, true);
    if (bom === BYTE_ORDER_MAGIC) this.le = true;
    else if (bom === 0x4d3c2b1a) this.le = false;
    else {
      this.fail(this.c.fileOffset + pos, 'section header has no valid byte-order magic',
        this.sections === 0 ? 'The file is not pcapng or is corrupt' : 'The file is corrupt from here on; the packets before it were read');
      return -1;
    }
    return dv.getUint32(pos + 4, this.le);
  }

  /** SHB, IDB and blocks dplab does not use. Returns false after reporting damage. */
  private metaBlock(type: number, blen: number): boolean {
    const pos = this.pos;
    const dv = this.c.dv;
    const le = this.le;
    const at = this.c.fileOffset + pos;
    if (type === BT_SHB) {
      if (blen < 28) return this.damaged(at, `section header is too short (${blen} bytes)`);
      if (dv.getUint32(pos + blen - 4, le) !== blen) return this.damaged(at, 'section header has a trailing length that does not match');
      const major = dv.getUint16(pos + 12, le);
      const minor = dv.getUint16(pos + 14, le);
      if (major !== 1 || (minor !== 0 && minor !== 2)) {
        this.fail(at + 12, `pcapng version ${major}.${minor} is not supported (1.0 and 1.2 are)`,
          'The file is corrupt or was written by a tool dplab cannot read');
        return false;
      }
      if (!this.options(pos + 24, pos + blen - 4, null)) return false;
      this.sections++;
      this.section = [];
      return true;
    }
    if (this.sections === 0) {
      this.fail(at, 'file does not start with a pcapng section header', 'The file is not a pcapng capture');
      return false;
    }
    if (type === BT_IDB) {
      if (blen < 20) return this.damaged(at, `interface description is too short (${blen} bytes)`);
      const lt = dv.getUint16(pos + 8, le);
      const ifc: Iface = {
        index: this.interfaces.length, linkType: lt, snapLen: dv.getUint32(pos + 12, le), name: '', unitsPerSecond: 1e6, tsOffset: 0, at, nsMul: 1000, wide: false,
      };
      if (!this.options(pos + 16, pos + blen - 4, ifc)) return false;
      if (ifc.name === '') ifc.name = `if${this.interfaces.length} (${linkTypeName(lt)})`;
      this.section.push(ifc);
      this.interfaces.push(ifc);
      return true;
    }
    return true; // NRB, ISB, DSB, custom, systemd journal ...: not needed to replay packets
  }

  /** Walk an options list; record the interface options dplab needs. Returns false after reporting damage. */
  private options(from: number, to: number, ifc: Iface | null): boolean {
    const dv = this.c.dv;
    const le = this.le;
    let p = from;
    while (p + 4 <= to) {
      const code = dv.getUint16(p, le);
      const olen = dv.getUint16(p + 2, le);
      if (code === OPT_END) break;
      const v = p + 4;
      if (v + olen > to) return this.damaged(this.c.fileOffset + p, `option ${code} claims ${olen} bytes, more than its block holds`);
      if (ifc) {
        if (code === OPT_IF_NAME) ifc.name = Buffer.from(this.c.buf.buffer, this.c.buf.byteOffset + v, olen).toString('utf8').replace(/\0+$/, '');
        else if (code === OPT_IF_TSRESOL && olen >= 1) setResolution(ifc, this.c.buf[v]!);
        else if (code === OPT_IF_TSOFFSET && olen >= 8) ifc.tsOffset = Number(dv.getBigInt64(v, le));
      }
      p = v + ((olen + 3) & ~3);
    }
    return true;
  }

  /** EPB, SPB or OPB at `pos` (known to be wholly in memory) into slot n. */
  private packetBlock(type: number, blen: number, b: Batch, n: number): boolean {
    const pos = this.pos;
    const dv = this.c.dv;
    const le = this.le;
    const at = this.c.fileOffset + pos;
    let ifId: number; let hi = 0; let lo = 0; let incl: number; let orig: number; let data: number;
    if (type === BT_SPB) {
      if (blen < 16) return this.damaged(at, `simple packet block is too short (${blen} bytes)`);
      ifId = 0;
      orig = dv.getUint32(pos + 8, le);
      data = pos + 12;
      incl = Math.min(orig, blen - 16);
      const snap = this.section[0]?.snapLen ?? 0;
      if (snap > 0) incl = Math.min(incl, snap);
    } else {
      const head = 28; // EPB and OPB both put the packet after 28 bytes of header
      if (blen < head + 4) return this.damaged(at, `packet block is too short (${blen} bytes)`);
      ifId = type === BT_EPB ? dv.getUint32(pos + 8, le) : dv.getUint16(pos + 8, le);
      hi = dv.getUint32(pos + 12, le);
      lo = dv.getUint32(pos + 16, le);
      incl = dv.getUint32(pos + 20, le);
      orig = dv.getUint32(pos + 24, le);
      data = pos + head;
      if (incl > blen - head - 4) return this.damaged(at, `packet block says ${incl} captured bytes but holds only ${blen - head - 4}`);
    }
    if (incl > MAX_PACKET) return this.damaged(at, `packet block claims ${incl} bytes (the most a packet can have is ${MAX_PACKET})`);
    const ifc = this.section[ifId];
    if (ifc === undefined) {
      return this.damaged(at, `packet refers to interface ${ifId}, but the section describes ${this.section.length}`);
    }
    if (type === BT_SPB) {
      // No timestamp: the last one the file gave stands in for whatever needs a clock (batch.ts).
      b.tsSec[n] = n > 0 ? b.tsSec[n - 1]! : this.lastSec;
      b.tsNsec[n] = n > 0 ? b.tsNsec[n - 1]! : this.lastNsec;
      b.noTime[n] = 1;
    } else {
      this.timestamp(ifc, hi, lo, b.tsSec, b.tsNsec, n);
      b.noTime[n] = 0;
    }
    b.off[n] = data;
    b.capLen[n] = incl;
    b.wireLen[n] = orig;
    b.linkType[n] = ifc.linkType;
    b.iface[n] = ifc.index;
    b.num[n] = this.packets + n + 1;
    return true;
  }

  protected override handOut(b: Batch, n: number): number {
    if (n > 0) { this.lastSec = b.tsSec[n - 1]!; this.lastNsec = b.tsNsec[n - 1]!; }
    return super.handOut(b, n);
  }

  /** Split a 64-bit count of interface units into seconds and nanoseconds, exactly. */
  private timestamp(ifc: Iface, hi: number, lo: number, tsSec: Float64Array, tsNsec: Uint32Array, n: number): void {
    const d = ifc.unitsPerSecond;
    if (ifc.wide) {
      const t = (BigInt(hi) << 32n) | BigInt(lo);
      const D = BigInt(d);
      tsSec[n] = Number(t / D) + ifc.tsOffset;
      tsNsec[n] = Number(((t % D) * 1000000000n) / D);
      return;
    }
    // Long division of hi:lo by d in 16-bit steps keeps every intermediate below 2^53.
    const qh = Math.floor(hi / d);
    let r = hi - qh * d;
    let x = r * 65536 + (lo >>> 16);
    const q1 = Math.floor(x / d);
    r = x - q1 * d;
    x = r * 65536 + (lo & 0xffff);
    const q2 = Math.floor(x / d);
    r = x - q2 * d;
    tsSec[n] = qh * TWO32 + q1 * 65536 + q2 + ifc.tsOffset;
    tsNsec[n] = ifc.nsMul > 0 ? r * ifc.nsMul : Math.floor((r * 1e9) / d);
  }

  private damaged(at: number, problem: string): false {
    this.fail(at, problem, 'The file is corrupt from here on; the packets before it were read');
    return false;
  }
}

/** if_tsresol: high bit clear = 10^-v, set = 2^-(v & 0x7f). */
function setResolution(ifc: Iface, v: number): void {
  const exp = v & 0x7f;
  const binary = (v & 0x80) !== 0;
  const d = binary ? 2 ** exp : 10 ** exp;
  ifc.unitsPerSecond = d;
  // Exact in doubles while d < 2^32 (the long division) and r * 1e9 stays below 2^53.
  ifc.wide = d >= TWO32 || (!(1e9 % d === 0) && d * 1e9 >= 2 ** 53);
  ifc.nsMul = d <= 1e9 && 1e9 % d === 0 ? 1e9 / d : 0;
}
