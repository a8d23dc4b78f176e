/**
 * The AF_PACKET capture path: a TPACKET_V3 receive ring mapped into this process (through koffi),
 * read in place. The kernel fills blocks of packets (whole Ethernet frames, both directions, with
 * its own nanosecond timestamps) and hands a block over when it is full or `RETIRE_MS` after its
 * first packet; a batch takes packets straight from the ring (the batch's bytes are the ring: no
 * copy) and its blocks go back to the kernel when the batch is released. With several sockets in
 * one PACKET_FANOUT group (FANOUT_HASH) the kernel spreads flows over them by a symmetric hash.
 */
import { LinkType } from '../capture/linktype.js';
import type { Batch } from '../packet/batch.js';
import {
  AF_PACKET, EACCES, ENODEV, ENETDOWN, EPERM, ETH_P_ALL, MAP_SHARED, PACKET_ADD_MEMBERSHIP, PACKET_FANOUT,
  PACKET_FANOUT_FLAG_DEFRAG, PACKET_FANOUT_HASH, PACKET_MR_PROMISC, PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION,
  PROT_READ, PROT_WRITE, SOCK_RAW, SOL_PACKET, SOL_SOCKET, SO_ERROR, TPACKET_V3, htons, loadLibc, type Libc,
} from './libc.js';
import { LiveError, checkInterface, liveInterface, permissionError, type KernelCounts, type LiveOptions, type LiveSource } from './source.js';

export interface RingOptions extends LiveOptions {
  /** Bytes per ring block (a power of two, a multiple of the page size). */
  blockSize?: number;
  /** Blocks in the ring. */
  blocks?: number;
  /** Join this PACKET_FANOUT group (FANOUT_HASH): one socket per worker. */
  fanoutGroup?: number;
  /** Put the interface in promiscuous mode while capturing (default true, as tcpdump). */
  promiscuous?: boolean;
}

/**
 * 256 KiB blocks, 256 of them (64 MiB). The kernel hands a block over when full or RETIRE_MS after
 * its first packet, so while the reader stalls the ring holds at most blocks x RETIRE_MS of quiet
 * traffic (each block part-filled): many small blocks ride out a longer stall than a few large
 * ones (64 x 1 MiB overflowed a 1M-packet burst at 150k pps that 64 MiB of bytes would hold).
 */
export const DEFAULT_BLOCK_SIZE = 256 << 10;
export const DEFAULT_BLOCKS = 256;
/** The kernel hands over a block this long after its first packet even if not full. */
export const RETIRE_MS = 10;

const TP_STATUS_KERNEL = 0;
const TP_STATUS_USER = 1;
const TP_STATUS_VLAN_VALID = 0x10;
const TP_STATUS_VLAN_TPID_VALID = 0x40;
/** TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) + sizeof(struct sockaddr_ll): where the frame may start. */
const HDR_END = 48 + 20;

export class PacketRingSource implements LiveSource {
  readonly kind = 'packet' as const;
  readonly path: string;
  readonly format = 'pcap';
  readonly interfaces;
  readonly blocked = false;
  readonly error = null;
  readonly size = 0;
  done = false;
  packets = 0;
  stopReason: string | null = null;

  private readonly libc: Libc;
  private readonly fd: number;
  private readonly map: unknown;
  private readonly ringBytes: number;
  private readonly ring: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly u16: Uint16Array;
  private readonly blockSize: number;
  private readonly blocks: number;
  private readonly limit: number;
  /** The block being read, packets left in it, and the offset of the next packet. */
  private blk = 0;
  private left = 0;
  private at = 0;
  private open = false;
  /** Blocks read to the end, returned to the kernel when the batch holding their packets is released. */
  private readonly spent: Int32Array;
  private nSpent = 0;
  private readonly stats = new Uint8Array(12);
  private readonly statsLen = new Uint32Array(1);
  private readonly errBuf = new Uint8Array(4);
  private readonly errLen = new Uint32Array(1);
  private kernelDrops = 0;
  private kernelPackets = 0;
  private poller: { start(cb: (ev: unknown) => void): void; stop(): void; close(): void } | null = null;
  private waiting: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: RingOptions) {
    const name = opts.iface;
    checkInterface(name);
    this.path = name;
    this.interfaces = [liveInterface(name, LinkType.ETHERNET)];
    this.blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    this.blocks = opts.blocks ?? DEFAULT_BLOCKS;
    this.limit = opts.limit ?? Infinity;
    this.spent = new Int32Array(this.blocks);
    const c = this.libc = loadLibc();
    const ifindex = c.if_nametoindex(name);
    if (ifindex === 0) throw new LiveError(`no interface "${name}" here`, 'Pick one from "ip link"');
    // Protocol 0: nothing is queued until bind, so no other interface's packets slip in first.
    const fd = c.socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
      const e = c.errno();
      if (e === EPERM || e === EACCES) throw permissionError('an AF_PACKET socket');
      throw new LiveError(`cannot open an AF_PACKET socket: ${c.strerror(e)}`, 'Check that this kernel has AF_PACKET (CONFIG_PACKET)');
    }
    this.fd = fd;
    try {
      this.setInt(PACKET_VERSION, TPACKET_V3, 'TPACKET_V3');
      const req = new Uint32Array([this.blockSize, this.blocks, 2048, (this.blockSize / 2048) * this.blocks, RETIRE_MS, 0, 0]);
      if (c.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, new Uint8Array(req.buffer), 28) !== 0) {
        const e = c.errno();
        throw new LiveError(`cannot set up a ${this.ringMiB()} MiB receive ring on ${name}: ${c.strerror(e)}`,
          'Free some memory or ask for a smaller ring (--ring-mb), or use --capture raw');
      }
      this.ringBytes = this.blockSize * this.blocks;
      const map = c.mmap(null, this.ringBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (c.koffi.address(map) === 0xffffffffffffffffn || map === null) {
        const e = c.errno();
        throw new LiveError(`cannot map the ${this.ringMiB()} MiB receive ring: ${c.strerror(e)}`,
          'Free some memory or ask for a smaller ring (--ring-mb), or use --capture raw');
      }
      this.map = map;
      this.ring = new Uint8Array(c.koffi.view(map, this.ringBytes));
      this.u32 = new Uint32Array(this.ring.buffer, this.ring.byteOffset, this.ringBytes >>> 2);
      this.u16 = new Uint16Array(this.ring.buffer, this.ring.byteOffset, this.ringBytes >>> 1);
      const sll = new Uint8Array(20);
      const dv = new DataView(sll.buffer);
      dv.setUint16(0, AF_PACKET, true);
      dv.setUint16(2, htons(ETH_P_ALL), true);
      dv.setInt32(4, ifindex, true);
      if (c.bind(fd, sll, 20) !== 0) {
        const e = c.errno();
        if (e === ENETDOWN) throw new LiveError(`interface ${name} is down`, `Bring it up first: ip link set ${name} up`);
        if (e === ENODEV) throw new LiveError(`no interface "${name}" here`, 'Pick one from "ip link"');
        throw new LiveError(`cannot bind to ${name}: ${c.strerror(e)}`, '');
      }
      if (opts.promiscuous ?? true) {
        const mreq = new Uint8Array(16);
        const mv = new DataView(mreq.buffer);
        mv.setInt32(0, ifindex, true);
        mv.setUint16(4, PACKET_MR_PROMISC, true);
        c.setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq, 16); // best effort, as tcpdump
      }
      if (opts.fanoutGroup !== undefined) {
        this.setInt(PACKET_FANOUT, (opts.fanoutGroup & 0xffff) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16), 'PACKET_FANOUT');
      }
      this.kernel(); // start the kernel's counters from zero (reading them resets them)
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private ringMiB(): number {
    return (this.blockSize * this.blocks) / (1 << 20);
  }

  private setInt(opt: number, v: number, what: string): void {
    const c = this.libc;
    const b = new Uint8Array(new Uint32Array([v]).buffer);
    if (c.setsockopt(this.fd, SOL_PACKET, opt, b, 4) !== 0) {
      const e = c.errno();
      throw new LiveError(`the kernel refused ${what} on ${this.path}: ${c.strerror(e)}`, 'dplab live --capture packet needs Linux 3.2 or later; try --capture raw');
    }
  }

  fill(b: Batch): number {
    const u32 = this.u32;
    const u16 = this.u16;
    const ring = this.ring;
    let cap = b.capacity;
    if (this.limit - this.packets < cap) cap = this.limit - this.packets;
    let n = 0;
    if (!this.done) {
      while (n < cap) {
        if (!this.open) {
          // Read all the way round the ring in this batch: the next block is one of this batch's
          // own, not yet given back (and still marked as ours): stop here, or its packets come twice.
          if (this.nSpent > 0 && this.blk === this.spent[0]) break;
          const base = this.blk * this.blockSize;
          if ((u32[(base + 8) >>> 2]! & TP_STATUS_USER) === 0) break;
          this.left = u32[(base + 12) >>> 2]!;
          this.at = base + u32[(base + 16) >>> 2]!;
          this.open = true;
          if (this.left === 0) { this.retire(); continue; }
        }
        const p = this.at;
        const h = p >>> 2;
        const next = u32[h]!;
        let capLen = u32[h + 3]!;
        let wireLen = u32[h + 4]!;
        const status = u32[h + 5]!;
        let off = p + u16[(p + 24) >>> 1]!;
        if ((status & TP_STATUS_VLAN_VALID) !== 0 && off - p >= HDR_END + 4 && capLen >= 12) {
          // The kernel took the 802.1Q tag off the frame (it is in the header): put it back in
          // front of the ethertype, in the free bytes before the frame, as libpcap does.
          const tci = u32[(p + 32) >>> 2]! & 0xffff;
          const tpid = (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? u16[(p + 36) >>> 1]! : 0x8100;
          ring.copyWithin(off - 4, off, off + 12);
          off -= 4;
          ring[off + 12] = tpid >>> 8;
          ring[off + 13] = tpid & 0xff;
          ring[off + 14] = tci >>> 8;
          ring[off + 15] = tci & 0xff;
          capLen += 4;
          wireLen += 4;
        }
        b.off[n] = off;
        b.capLen[n] = capLen;
        b.wireLen[n] = wireLen;
        b.tsSec[n] = u32[h + 1]!;
        b.tsNsec[n] = u32[h + 2]!;
        b.noTime[n] = 0;
        b.linkType[n] = LinkType.ETHERNET;
        b.iface[n] = 0;
        b.num[n] = ++this.packets;
        n++;
        if (--this.left === 0) this.retire();
        else this.at = p + next;
      }
      if (this.packets >= this.limit) this.done = true;
    }
    b.count = n;
    b.bytes = ring;
    b.chunkId = n > 0 ? 0 : -1;
    return n;
  }

  /** The current block is read to its end: it goes back to the kernel with the batch. */
  private retire(): void {
    this.spent[this.nSpent++] = this.blk;
    this.open = false;
    this.blk = this.blk + 1 === this.blocks ? 0 : this.blk + 1;
  }

  release(b: Batch): void {
    const u32 = this.u32;
    for (let k = 0; k < this.nSpent; k++) u32[(this.spent[k]! * this.blockSize + 8) >>> 2] = TP_STATUS_KERNEL;
    this.nSpent = 0;
    b.chunkId = -1;
  }

  get position(): number {
    return 0;
  }

  wait(ms: number): Promise<void> {
    if (this.done || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.poller?.stop();
        this.waiting = null;
        resolve();
      };
      this.waiting = finish;
      this.timer = setTimeout(finish, ms);
      const koffi = this.libc.koffi;
      if (!this.poller) this.poller = koffi.node.poll(this.fd, { readable: true }, () => this.ready()) as never;
      else this.poller.start(() => this.ready());
    });
  }

  /**
   * The socket is readable: a block is ready, or the socket has an error (the interface went down
   * or was deleted: the kernel unhooks the socket and poll would say readable for ever). An error
   * ends the capture, with the reason.
   */
  private ready(): void {
    this.errBuf.fill(0);
    this.errLen[0] = 4;
    if (this.libc.getsockopt(this.fd, SOL_SOCKET, SO_ERROR, this.errBuf, this.errLen) === 0) {
      const err = this.errBuf[0]! | (this.errBuf[1]! << 8);
      if (err !== 0) {
        this.stopReason = `${this.path} went down or away (${this.libc.strerror(err)})`;
        this.done = true;
      }
    }
    this.waiting?.();
  }

  wake(): void {
    this.waiting?.();
  }

  end(): void {
    this.done = true;
    this.wake();
  }

  /** PACKET_STATISTICS: reading resets the kernel's counters, so they are added up here. */
  kernel(): KernelCounts {
    if (!this.closed) {
      this.statsLen[0] = 12;
      if (this.libc.getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.stats, this.statsLen) === 0) {
        const dv = new DataView(this.stats.buffer);
        this.kernelPackets += dv.getUint32(0, true);
        this.kernelDrops += dv.getUint32(4, true);
      }
    }
    return { drops: this.kernelDrops, packets: this.kernelPackets, source: 'PACKET_STATISTICS (ring full)' };
  }

  close(): void {
    if (this.closed) return;
    if (this.fd >= 0 && this.map !== undefined) this.kernel();
    this.closed = true;
    this.wake();
    this.poller?.close();
    this.poller = null;
    if (this.map !== undefined) this.libc.munmap(this.map, this.ringBytes);
    if (this.fd >= 0) this.libc.close(this.fd);
  }
}
