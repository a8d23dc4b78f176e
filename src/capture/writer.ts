import type { Batch } from '../packet/batch.js';
import { packetBytes, packetLength, packetStart, packetWireLength } from '../packet/wire.js';
import { outputFile, STDOUT_NAME, type OutputError, type OutputFile } from './outfile.js';
import { LinkType } from './linktype.js';
import { FILE_HEADER as PCAP_FILE_HEADER, writePcapHeader } from './pcap.js';
import { MAX_PACKET, type InterfaceInfo, type PacketSource } from './source.js';
import { commas } from '../packet/format.js';

/**
 * Writes packets out as a capture in the input's format: classic pcap at the input's timestamp
 * resolution (micro- or nanoseconds, so tools that expect one read the same file type), or pcapng with one interface per input interface at the input's own timestamp
 * resolution, so every timestamp round-trips exactly and tshark reads back the same packets.
 * Output is buffered in one 1 MiB block; nothing is allocated per packet.
 */
export class CaptureWriter {
  readonly format: 'pcap' | 'pcapng';
  packets = 0;
  /** Packets surely in the file: those of every flush that succeeded. */
  flushed = 0;
  /** A write failed: the file holds `flushed` packets and takes no more. */
  private failed = false;
  /** Where it goes: a path (opened here) or an output opened before the run. */
  readonly out: OutputFile;
  private readonly buf = new Uint8Array(1 << 20);
  private readonly dv = new DataView(this.buf.buffer);
  private at = 0;
  /** pcap: timestamps in microseconds (the input's were), else nanoseconds. */
  private micro = false;

  /** Interfaces of the input, a live list: pcapng sources discover interfaces as they read. */
  private readonly interfaces: readonly InterfaceInfo[];
  /** pcapng: interface description blocks written so far. */
  private written = 0;

  constructor(out: string | OutputFile, interfaces: readonly InterfaceInfo[], format: 'pcap' | 'pcapng') {
    const linkTypes = new Set(interfaces.map((f) => f.linkType));
    if (format === 'pcap' && linkTypes.size > 1) throw new RangeError('pcap holds one link type; write pcapng');
    this.format = format;
    this.interfaces = interfaces;
    this.out = outputFile('--write', out);
    if (this.format === 'pcap') {
      const f = interfaces[0];
      this.micro = f?.unitsPerSecond === 1e6;
      writePcapHeader(this.dv, 0, !this.micro, f && f.snapLen > 0 ? f.snapLen : MAX_PACKET, f ? f.linkType : LinkType.ETHERNET);
      this.at = PCAP_FILE_HEADER;
    } else {
      this.block(0x0a0d0d0a, 16, (p) => {
        this.dv.setUint32(p, 0x1a2b3c4d, true);
        this.dv.setUint16(p + 4, 1, true);
        this.dv.setUint16(p + 6, 0, true);
        this.dv.setInt32(p + 8, -1, true); // section length unknown
        this.dv.setInt32(p + 12, -1, true);
      });
    }
    // The header on its own first: if the disk fills later, the file is still a capture tshark reads.
    this.flush();
  }

  /**
   * pcapng: describe interfaces up to and including `k` (each once, in order, before use). A packet
   * can bring many at once, so each block makes room for itself.
   */
  private describeInterfaces(k: number): void {
    for (; this.written <= k; this.written++) {
      const f = this.interfaces[this.written];
      if (!f) throw new RangeError(`packet from interface ${k}, but the input has described ${this.interfaces.length}`);
      if (this.at + IDB_BYTES > this.buf.length) this.flush();
      // linktype, reserved, snaplen, if_tsresol, end of options
      this.block(1, IDB_BYTES - 12, (p) => {
        this.dv.setUint16(p, f.linkType, true);
        this.dv.setUint16(p + 2, 0, true);
        this.dv.setUint32(p + 4, f.snapLen, true);
        this.dv.setUint16(p + 8, 9, true);
        this.dv.setUint16(p + 10, 1, true);
        this.dv.setUint32(p + 12, tsresolByte(f.unitsPerSecond), true);
        this.dv.setUint32(p + 16, 0, true);
      });
    }
  }

  /** Append packet i of the batch, as the stages left it (from the output area if it grew). */
  write(b: Batch, i: number): void {
    const len = packetLength(b, i);
    const wireLen = packetWireLength(b, i);
    const pad = this.format === 'pcap' ? 0 : (4 - (len & 3)) & 3;
    // A packet that came without a time (a pcapng Simple Packet Block) leaves as one, so no tool
    // shows it a time it never had; an SPB belongs to interface 0 and its captured length is
    // implied (min of original length and snap length), so only such a packet can be one.
    const simple = this.format === 'pcapng' && b.noTime[i] === 1 && b.iface[i] === 0 && len === impliedCapLen(wireLen, this.interfaces[0]?.snapLen ?? 0);
    const need = (this.format === 'pcap' ? 16 : simple ? 16 : 32) + len + pad;
    if (this.format === 'pcapng' && b.iface[i]! >= this.written) this.describeInterfaces(b.iface[i]!);
    if (this.at + need > this.buf.length) this.flush();
    const dv = this.dv;
    let p = this.at;
    const sec = b.tsSec[i]!;
    const nsec = b.tsNsec[i]!;
    if (simple) {
      dv.setUint32(p, 3, true);
      dv.setUint32(p + 4, need, true);
      dv.setUint32(p + 8, wireLen, true);
      p += 12;
    } else if (this.format === 'pcap') {
      dv.setUint32(p, sec, true);
      // A microsecond input's timestamps are whole microseconds, so this division is exact.
      dv.setUint32(p + 4, this.micro ? Math.floor(nsec / 1000) : nsec, true);
      dv.setUint32(p + 8, len, true);
      dv.setUint32(p + 12, wireLen, true);
      p += 16;
    } else {
      dv.setUint32(p, 6, true);
      dv.setUint32(p + 4, need, true);
      dv.setUint32(p + 8, b.iface[i]!, true);
      // Back to a 64-bit count of the interface's units: sec * d + fraction, exactly, without
      // BigInt, by splitting sec into 16-bit pieces so every product stays below 2^53.
      const d = this.interfaces[b.iface[i]!]!.unitsPerSecond;
      const frac = d === 1e9 ? nsec : Math.ceil((nsec * d) / 1e9 - 1e-6);
      const s2 = Math.floor(sec / 4294967296);
      const s1 = Math.floor((sec - s2 * 4294967296) / 65536);
      const s0 = sec - s2 * 4294967296 - s1 * 65536;
      const x1 = s1 * d;
      const x1Hi = Math.floor(x1 / 65536);
      const low = s0 * d + frac + (x1 - x1Hi * 65536) * 65536;
      const carry = Math.floor(low / 4294967296);
      dv.setUint32(p + 12, s2 * d + x1Hi + carry, true);
      dv.setUint32(p + 16, low - carry * 4294967296, true);
      dv.setUint32(p + 20, len, true);
      dv.setUint32(p + 24, wireLen, true);
      p += 28;
    }
    const src = packetBytes(b, i);
    const from = packetStart(b, i);
    const out = this.buf;
    if (len <= 64) for (let k = 0; k < len; k++) out[p + k] = src[from + k]!;
    else out.set(src.subarray(from, from + len), p);
    p += len;
    if (this.format === 'pcapng') {
      for (let k = 0; k < pad; k++) out[p + k] = 0;
      p += pad;
      dv.setUint32(p, need, true);
      p += 4;
    }
    this.at = p;
    this.packets++;
  }

  get path(): string {
    return this.out.name;
  }

  /** Write out what is buffered: whole records only, so a failed write leaves a readable file. */
  flush(): void {
    if (this.failed) return;
    try {
      this.out.write(this.buf, 0, this.at);
    } catch (e) {
      this.failed = true;
      throw e;
    }
    this.at = 0;
    this.flushed = this.packets;
  }

  close(): void {
    try { this.flush(); } finally { this.out.close(); }
  }

  /** A whole block: type, total length, body of `body` bytes filled by `fill`, trailing length. */
  private block(type: number, body: number, fill: (p: number) => void): void {
    const total = 12 + body;
    this.dv.setUint32(this.at, type, true);
    this.dv.setUint32(this.at + 4, total, true);
    fill(this.at + 8);
    this.dv.setUint32(this.at + 8 + body, total, true);
    this.at += total;
  }
}

/** An Interface Description Block as written: header 8, link type, snap length, if_tsresol, end of options, trailer. */
const IDB_BYTES = 32;

/** if_tsresol for a resolution: 10^-n as n, 2^-n as 0x80 | n. */
/** What a reader takes as a Simple Packet Block's captured length: the original, cut at the snap length. */
function impliedCapLen(wireLen: number, snapLen: number): number {
  return snapLen > 0 && snapLen < wireLen ? snapLen : wireLen;
}

function tsresolByte(unitsPerSecond: number): number {
  for (let n = 0; n <= 18; n++) if (10 ** n === unitsPerSecond) return n;
  for (let n = 0; n < 64; n++) if (2 ** n === unitsPerSecond) return 0x80 | n;
  return 9;
}

/**
 * Forwarded packets to one capture, the others to another (either optional), in the source's
 * format. The files are opened (and so checked) here, before any packet; each capture's header
 * goes out with the first packet, when a pcapng source knows its first interfaces. A capture with
 * no packets still gets its (empty) files, so scripts can rely on them.
 */
export class SplitWriter {
  private readonly format: 'pcap' | 'pcapng';
  private fwd: CaptureWriter | null = null;
  private drop: CaptureWriter | null = null;
  private readonly forwarded?: OutputFile;
  private readonly dropped?: OutputFile;

  /**
   * `src` gives the format and the interfaces (a live list while a pcapng source reads): the source
   * of an inline run, or, when the main thread merges workers' parts, a worker's final list.
   */
  constructor(private readonly src: Pick<PacketSource, 'format' | 'interfaces'>, forwarded?: string | OutputFile, dropped?: string | OutputFile) {
    this.format = src.format.startsWith('pcapng') ? 'pcapng' : 'pcap';
    this.forwarded = forwarded === undefined ? undefined : outputFile('--write', forwarded);
    try {
      this.dropped = dropped === undefined ? undefined : outputFile('--write-dropped', dropped);
    } catch (e) {
      this.forwarded?.close();
      throw e;
    }
  }

  /** After a failed write to one of these captures: say in the error how many packets it holds. */
  explain(e: OutputError): void {
    if (e.file === STDOUT_NAME) return; // a pipe's reader went away: what it took is its business
    if (e.option === '--write') e.note = `it holds the first ${commas(this.fwd?.flushed ?? 0)} forwarded packets`;
    if (e.option === '--write-dropped') e.note = `it holds the first ${commas(this.drop?.flushed ?? 0)} dropped packets`;
  }

  get active(): boolean {
    return this.forwarded !== undefined || this.dropped !== undefined;
  }

  write(b: Batch, i: number, forwarded: boolean): void {
    if (forwarded) {
      if (this.forwarded === undefined) return;
      (this.fwd ??= new CaptureWriter(this.forwarded, this.src.interfaces, this.format)).write(b, i);
    } else {
      if (this.dropped === undefined) return;
      (this.drop ??= new CaptureWriter(this.dropped, this.src.interfaces, this.format)).write(b, i);
    }
  }

  close(): void {
    const ifaces = this.src.interfaces.length ? this.src.interfaces
      : [{ linkType: 1, snapLen: MAX_PACKET, name: 'eth', unitsPerSecond: 1e9, tsOffset: 0 }];
    // Close both even if one fails; the first failure is what is reported.
    let failure: unknown = null;
    try {
      if (this.forwarded !== undefined) (this.fwd ??= new CaptureWriter(this.forwarded, ifaces, this.format)).close();
    } catch (e) { failure = e; }
    try {
      if (this.dropped !== undefined) (this.drop ??= new CaptureWriter(this.dropped, ifaces, this.format)).close();
    } catch (e) { failure ??= e; }
    if (failure) throw failure;
  }
}
