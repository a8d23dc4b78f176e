/**
 * The raw-socket capture path: one AF_INET SOCK_RAW socket per IP protocol (npm raw-socket),
 * bound to the interface (SO_BINDTODEVICE) with a large receive buffer (SO_RCVBUFFORCE). The
 * kernel gives each socket a copy of every IPv4 packet of its protocol that this host receives on
 * the interface, IPv4 header included: no Ethernet header, no VLAN tag, no ARP, nothing sent by
 * this host, nothing addressed to another host, and no kernel timestamp (the time of reading is
 * used). IPv6 raw sockets would give the payload without its header, so this path is IPv4 only.
 *
 * raw-socket reads one packet into one shared buffer per socket and calls back with a view of it:
 * every packet is copied at once into a 4 MiB chunk, with its length and the time it was read, and
 * batches take packets from the chunk.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LinkType } from '../capture/linktype.js';
import type { Batch } from '../packet/batch.js';
import { SOL_SOCKET, SO_BINDTODEVICE, SO_RCVBUFFORCE } from './libc.js';
import { LiveError, checkInterface, liveInterface, permissionError, type KernelCounts, type LiveOptions, type LiveSource } from './source.js';

/** The protocols read (one socket each): ICMP, IGMP, TCP, UDP, GRE, ESP, AH, SCTP. */
export const RAW_PROTOCOLS = [1, 2, 6, 17, 47, 50, 51, 132];
const SO_RCVBUF = 8;
const CHUNK = 4 << 20;
/** Largest IPv4 packet. */
const MAX_IP = 65535;
/** Packets held between batches (a batch is run as soon as the loop gets the packets). */
const MAX_PENDING = 65536;

interface RawWrap {
  recv(buffer: Buffer, cb: (buffer: Buffer, bytes: number, source: string) => void): void;
  on(event: string, fn: (...a: unknown[]) => void): void;
  removeAllListeners(event: string): void;
}
interface RawSocket {
  wrap: RawWrap;
  buffer: Buffer;
  setOption(level: number, option: number, value: Buffer | number, length?: number): void;
  close(): void;
  on(event: string, fn: (...a: unknown[]) => void): void;
}
interface RawSocketModule {
  createSocket(opts: { protocol: number; addressFamily?: number; bufferSize?: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
}

export interface RawOptions extends LiveOptions {
  /** Receive buffer per socket (SO_RCVBUFFORCE), bytes. */
  rcvbuf?: number;
}

export class RawSocketSource implements LiveSource {
  readonly kind = 'raw' as const;
  readonly path: string;
  readonly format = 'pcap';
  readonly interfaces;
  readonly blocked = false;
  readonly error = null;
  readonly size = 0;
  done = false;
  packets = 0;
  readonly stopReason = null;

  private readonly sockets: RawSocket[] = [];
  private readonly inodes: string[] = [];
  private readonly limit: number;
  /** Packets read and not yet in a batch: chunk offset, length, time. */
  private readonly buf = new Uint8Array(CHUNK);
  private readonly pOff = new Uint32Array(MAX_PENDING);
  private readonly pLen = new Uint32Array(MAX_PENDING);
  private readonly pSec = new Float64Array(MAX_PENDING);
  private readonly pNsec = new Uint32Array(MAX_PENDING);
  private head = 0;
  private tail = 0;
  private used = 0;
  private waiting: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly onPacket: (buffer: Buffer, bytes: number) => void;
  private last: KernelCounts | null = null;

  constructor(opts: RawOptions) {
    const name = opts.iface;
    checkInterface(name);
    this.path = name;
    this.interfaces = [liveInterface(name, LinkType.RAW)];
    this.limit = opts.limit ?? Infinity;
    const raw = createRequire(import.meta.url)('raw-socket') as RawSocketModule;
    const before = socketInodes();
    const want = opts.rcvbuf ?? 32 << 20;
    let forced = true;
    this.onPacket = (buffer, bytes) => this.take(buffer, bytes);
    try {
      for (const protocol of RAW_PROTOCOLS) {
        let s: RawSocket;
        try {
          s = raw.createSocket({ protocol, addressFamily: raw.AddressFamily.IPv4, bufferSize: MAX_IP });
        } catch (e) {
          if (/not permitted|permission/i.test((e as Error).message)) throw permissionError('a raw socket');
          throw new LiveError(`cannot open a raw socket: ${(e as Error).message}`, '');
        }
        this.sockets.push(s);
        const dev = Buffer.from(`${name}\0`);
        try { s.setOption(SOL_SOCKET, SO_BINDTODEVICE, dev, dev.length); } catch (e) {
          throw new LiveError(`cannot bind a raw socket to ${name}: ${(e as Error).message}`, 'Check the name with "ip link"');
        }
        if (forced) {
          try { s.setOption(SOL_SOCKET, SO_RCVBUFFORCE, want); } catch { forced = false; }
        }
        if (!forced) try { s.setOption(SOL_SOCKET, SO_RCVBUF, want); } catch { /* the default, then */ }
        // Read on readiness ourselves: drain every packet ready (raw-socket would read one per event).
        s.wrap.removeAllListeners('recvReady');
        s.wrap.on('recvReady', () => this.drain(s));
        s.on('error', () => { /* a failed read is reported through the kernel's counters */ });
      }
    } catch (e) {
      this.close();
      throw e;
    }
    const after = socketInodes();
    for (const i of after) if (!before.has(i)) this.inodes.push(i);
  }

  /** Read every packet this socket has ready (raw-socket's recv throws EAGAIN when it has none). */
  private drain(s: RawSocket): void {
    for (let k = 0; k < 4096 && !this.closed; k++) {
      if (this.tail - this.head >= MAX_PENDING || this.used + MAX_IP > CHUNK) {
        if (this.head === this.tail) { this.head = this.tail = 0; this.used = 0; } else break;
      }
      try {
        s.wrap.recv(s.buffer, this.onPacket);
      } catch {
        break;
      }
    }
    this.waiting?.();
  }

  private take(buffer: Buffer, bytes: number): void {
    if (this.done) return;
    const k = this.tail % MAX_PENDING;
    const at = this.used;
    if (bytes <= 64) for (let i = 0; i < bytes; i++) this.buf[at + i] = buffer[i]!;
    else this.buf.set(buffer.subarray(0, bytes), at);
    const t = performance.timeOrigin + performance.now();
    const sec = Math.floor(t / 1000);
    this.pOff[k] = at;
    this.pLen[k] = bytes;
    this.pSec[k] = sec;
    this.pNsec[k] = Math.floor((t - sec * 1000) * 1e6);
    this.used = (at + bytes + 7) & ~7;
    this.tail++;
  }

  fill(b: Batch): number {
    let n = 0;
    if (!this.done) {
      let cap = b.capacity;
      if (this.limit - this.packets < cap) cap = this.limit - this.packets;
      while (n < cap && this.head < this.tail) {
        const k = this.head % MAX_PENDING;
        b.off[n] = this.pOff[k]!;
        b.capLen[n] = this.pLen[k]!;
        b.wireLen[n] = this.pLen[k]!;
        b.tsSec[n] = this.pSec[k]!;
        b.tsNsec[n] = this.pNsec[k]!;
        b.noTime[n] = 0;
        b.linkType[n] = LinkType.RAW;
        b.iface[n] = 0;
        b.num[n] = ++this.packets;
        this.head++;
        n++;
      }
      if (this.packets >= this.limit) this.done = true;
    }
    b.count = n;
    b.bytes = this.buf;
    b.chunkId = n > 0 ? 0 : -1;
    return n;
  }

  release(b: Batch): void {
    // Every packet handed out has been run: the chunk starts again from the front when empty.
    if (this.head === this.tail) { this.head = this.tail = 0; this.used = 0; }
    b.chunkId = -1;
  }

  get position(): number {
    return 0;
  }

  wait(ms: number): Promise<void> {
    if (this.done || this.closed || this.head < this.tail) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.waiting = null;
        resolve();
      };
      this.waiting = finish;
      this.timer = setTimeout(finish, ms);
    });
  }

  wake(): void {
    this.waiting?.();
  }

  end(): void {
    this.done = true;
    this.wake();
  }

  /** The sockets' drop counts, from /proc/net/raw (the "drops" column) by socket inode. */
  kernel(): KernelCounts {
    if (this.last) return this.last;
    let drops = 0;
    try {
      const want = new Set(this.inodes);
      for (const line of readFileSync('/proc/net/raw', 'utf8').split('\n').slice(1)) {
        const t = line.trim().split(/\s+/);
        if (t.length >= 13 && want.has(t[9]!)) drops += Number(t[12]) || 0;
      }
    } catch { /* no procfs: none known */ }
    return { drops, source: '/proc/net/raw drops (receive buffer full)' };
  }

  close(): void {
    if (this.closed) return;
    this.last = this.kernel();
    this.closed = true;
    this.wake();
    for (const s of this.sockets) try { s.close(); } catch { /* closing anyway */ }
  }
}

/** Inodes of this process's sockets (socket:[N] in /proc/self/fd). */
function socketInodes(): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
        if (m) out.add(m[1]!);
      } catch { /* closed meanwhile */ }
    }
  } catch { /* no procfs */ }
  return out;
}
