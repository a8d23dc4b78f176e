/**
 * Memory: telling an allocation the system refused from a bug (see cli/main.ts reportError, exit
 * 6), and asking for huge pages under the flow tables' big buffers.
 */
import { readFileSync } from 'node:fs';
import { loadLibc } from '../live/libc.js';

/**
 * Whether `e` says the process ran out of memory: V8's RangeError when the system refuses an
 * ArrayBuffer ("Array buffer allocation failed": a flow table or batch growing past ulimit -v or
 * the machine), or a worker stopped at its heap limit. Not a bug in dplab: the run needed more
 * memory than it was given, and the user can give more or ask the stages to hold less.
 */
export function isOutOfMemory(e: unknown): boolean {
  if (e instanceof RangeError && /allocation failed/i.test(e.message)) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ERR_WORKER_OUT_OF_MEMORY' || code === 'ERR_MEMORY_ALLOCATION_FAILED';
}

/** Buffers smaller than this are left alone: one this big holds a whole 2 MiB page wherever it starts. */
export const HUGE_PAGE_MIN = 4 << 20;
const PAGE = 4096n;
/** MADV_HUGEPAGE (include/uapi/asm-generic/mman-common.h). */
const MADV_HUGEPAGE = 14;

/**
 * Why big buffers get no huge-page advice in this process, or null when they do. Transparent huge
 * pages cut the TLB misses of a flow table's random reads (the expiry sweep's, the slots'): on the
 * project's VM, in a plain process, conntrack's row ran ~118 -> ~95 ns a packet with 1,000 flows
 * active, ~248 -> ~186 with 100k and ~358 -> ~266 with 1M (DESIGN.md "Fourteenth pass"), what
 * bin/dplab.js's launcher line already gave the command line. They only need asking for
 * when the kernel gives them on request (`madvise` in /sys/kernel/mm/transparent_hugepage/enabled;
 * `always` gives them anyway, `never` not at all), and not when glibc already asks for all of
 * malloc's memory (`glibc.malloc.hugetlb` 1 or 2, as bin/dplab.js's launcher line sets it: the
 * last setting in GLIBC_TUNABLES is the one glibc keeps).
 */
export function hugePageRefusal(platform: string, thpEnabled: string | null, tunables: string | undefined): string | null {
  if (platform !== 'linux') return `not Linux (${platform})`;
  if (thpEnabled === null) return 'no /sys/kernel/mm/transparent_hugepage/enabled';
  const mode = /\[(\w+)\]/.exec(thpEnabled)?.[1] ?? thpEnabled.trim();
  if (mode !== 'madvise') return `transparent huge pages are "${mode}", not "madvise"`;
  const hugetlb = [...(tunables ?? '').matchAll(/(?:^|:)glibc\.malloc\.hugetlb=(\d+)/g)].pop()?.[1];
  if (hugetlb !== undefined && hugetlb !== '0') return `glibc advises malloc's memory itself (GLIBC_TUNABLES glibc.malloc.hugetlb=${hugetlb})`;
  return null;
}

interface HugePageState {
  refusal: string | null;
  /** Loaded with the first buffer advised. */
  calls: { madvise(addr: bigint, length: number, advice: number): number; address(b: ArrayBuffer): bigint } | null;
}
let hugePages: HugePageState | null = null;

/** The kernel's transparent huge page modes, the one in force bracketed; null where there are none. */
export function thpEnabled(): string | null {
  try { return readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'); } catch { return null; }
}

function hugePageState(): HugePageState {
  return (hugePages ??= { refusal: hugePageRefusal(process.platform, thpEnabled(), process.env.GLIBC_TUNABLES), calls: null });
}

/** What adviseHugePages has done in this thread: for tests and `bench/`. */
export const hugePageAdvice = { buffers: 0, bytes: 0 };

/**
 * Ask for transparent huge pages under `buf` (madvise MADV_HUGEPAGE over the pages it occupies,
 * through koffi, loaded on first use: ~9 ms), before its pages are first written. Does nothing for a
 * buffer under HUGE_PAGE_MIN or where hugePageRefusal says so; a failure (no koffi for this
 * platform, madvise refused) turns it off for the thread. Only speed changes, never a result.
 */
export function adviseHugePages(buf: ArrayBuffer): void {
  if (buf.byteLength < HUGE_PAGE_MIN) return;
  const state = hugePageState();
  if (state.refusal !== null) return;
  try {
    if (state.calls === null) {
      const { koffi, madvise } = loadLibc();
      state.calls = { madvise, address: (b) => koffi.address(b) };
    }
    // The 4 KiB pages the buffer occupies, its first and last included (malloc's header shares
    // the first): where its mapping starts on a 2 MiB boundary, the 2 MiB page the buffer starts
    // in is advised whole and can be huge too. (The mappings calloc made here did not start on
    // one: a 4 MiB slot array, 16 bytes into its mapping, got one huge page of its two.)
    const at = state.calls.address(buf);
    const start = at & ~(PAGE - 1n);
    const end = (at + BigInt(buf.byteLength) + PAGE - 1n) & ~(PAGE - 1n);
    if (state.calls.madvise(start, Number(end - start), MADV_HUGEPAGE) !== 0) throw new Error(`madvise: errno ${loadLibc().errno()}`);
    hugePageAdvice.buffers++;
    hugePageAdvice.bytes += Number(end - start);
  } catch (e) {
    state.refusal = `advice through koffi failed: ${(e as Error).message}`;
  }
}

/** Why this thread gives big buffers no huge-page advice, or null when it does. */
export function hugePageStatus(): string | null {
  return hugePageState().refusal;
}
