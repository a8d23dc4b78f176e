/**
 * The few libc calls dplab needs, through koffi (a prebuilt FFI: no compiler on the user's
 * machine): the AF_PACKET path's, and madvise for the flow tables' huge pages (pipeline/memory.ts).
 * Loaded on first use: `dplab replay` from the command line loads it only when a big flow table
 * wants huge pages that glibc has not already asked for (bin/dplab.js's launcher line does).
 */
import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

export interface Libc {
  koffi: Koffi;
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint32Array): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  close(fd: number): number;
  mmap(addr: null, length: number, prot: number, flags: number, fd: number, offset: number): unknown;
  munmap(addr: unknown, length: number): number;
  /** An address as a number (koffi.address gives a buffer's): it must be page-aligned. */
  madvise(addr: bigint, length: number, advice: number): number;
  if_nametoindex(name: string): number;
  strerror(errnum: number): string;
  /** errno of the last call made through koffi on this thread. */
  errno(): number;
}

let libc: Libc | null = null;

export function loadLibc(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  libc = {
    koffi,
    socket: lib.func('int socket(int, int, int)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    getsockopt: lib.func('int getsockopt(int, int, int, _Inout_ void *, _Inout_ void *)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    close: lib.func('int close(int)'),
    mmap: lib.func('void *mmap(void *, size_t, int, int, int, long)'),
    munmap: lib.func('int munmap(void *, size_t)'),
    madvise: lib.func('int madvise(uintptr_t, size_t, int)'),
    if_nametoindex: lib.func('unsigned int if_nametoindex(const char *)'),
    strerror: lib.func('const char *strerror(int)'),
    errno: () => koffi.errno(),
  };
  return libc;
}

/** Linux constants (include/uapi/linux/if_packet.h, socket.h, if_ether.h). */
export const AF_PACKET = 17;
export const SOCK_RAW = 3;
export const SOL_SOCKET = 1;
export const SO_BINDTODEVICE = 25;
export const SO_ERROR = 4;
export const SO_RCVBUFFORCE = 33;
export const SOL_PACKET = 263;
export const PACKET_ADD_MEMBERSHIP = 1;
export const PACKET_MR_PROMISC = 1;
export const PACKET_RX_RING = 5;
export const PACKET_STATISTICS = 6;
export const PACKET_VERSION = 10;
export const PACKET_FANOUT = 18;
export const TPACKET_V3 = 2;
export const PACKET_FANOUT_HASH = 0;
export const PACKET_FANOUT_FLAG_DEFRAG = 0x8000;
export const ETH_P_ALL = 0x0003;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const EPERM = 1;
export const EACCES = 13;
export const ENODEV = 19;
export const ENETDOWN = 100;

/** A 16-bit value in network byte order, as a little-endian host stores it. */
export function htons(v: number): number {
  return ((v & 0xff) << 8) | ((v >>> 8) & 0xff);
}
