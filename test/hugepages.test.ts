/**
 * Huge pages under the flow tables' big buffers (pipeline/memory.ts): when the process asks for
 * them (transparent huge pages in "madvise" mode, glibc not already asking for all of malloc's
 * memory), and that the advice reaches the kernel. The kernel is the oracle: /proc/self/smaps
 * counts the huge pages (AnonHugePages) of the mapping that holds a buffer. The rules for when to
 * ask are the kernel's sysfs format (Documentation/admin-guide/mm/transhuge.rst: the mode in force
 * is the bracketed word) and glibc's tunables (the manual's "Memory Allocation Tunables":
 * glibc.malloc.hugetlb 0, 1 madvise, 2 hugetlbfs; a later setting of the same tunable replaces an
 * earlier one).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIRST_ENTRIES, FlowTable } from '../src/conntrack/table.js';
import { loadLibc } from '../src/live/libc.js';
import { adviseHugePages, hugePageAdvice, HUGE_PAGE_MIN, hugePageRefusal, hugePageStatus, thpEnabled } from '../src/pipeline/memory.js';

const MODES = 'always [madvise] never\n';

describe('when a process asks for huge pages', () => {
  it('asks only on Linux in madvise mode, and not where glibc already does', () => {
    expect(hugePageRefusal('linux', MODES, undefined)).toBeNull();
    expect(hugePageRefusal('linux', MODES, 'glibc.malloc.top_pad=33554432')).toBeNull();
    expect(hugePageRefusal('linux', '[always] madvise never\n', undefined)).toMatch(/"always"/);
    expect(hugePageRefusal('linux', 'always madvise [never]\n', undefined)).toMatch(/"never"/);
    expect(hugePageRefusal('linux', null, undefined)).toMatch(/transparent_hugepage/);
    expect(hugePageRefusal('darwin', MODES, undefined)).toMatch(/not Linux/);
    // The launcher's setting, then a user's own after it: the last one is glibc's.
    expect(hugePageRefusal('linux', MODES, 'glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432')).toMatch(/hugetlb=1/);
    expect(hugePageRefusal('linux', MODES, 'glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0')).toBeNull();
    expect(hugePageRefusal('linux', MODES, 'glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=2')).toMatch(/hugetlb=2/);
    // Another tunable whose name ends the same way is not glibc's malloc's.
    expect(hugePageRefusal('linux', MODES, 'x.glibc.malloc.hugetlb=1')).toBeNull();
  });
});

/**
 * AnonHugePages (kB) of the mappings over `buf`, from /proc/self/smaps. The advice splits a
 * mapping: the buffer's head before its first whole 2 MiB page stays a mapping of its own.
 */
function hugeKb(address: bigint, buf: ArrayBuffer): number {
  const end = address + BigInt(buf.byteLength);
  let over = false;
  let kb = 0;
  let seen = 0;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      over = BigInt(`0x${range[1]}`) < end && address < BigInt(`0x${range[2]}`);
      if (over) seen++;
      continue;
    }
    const m = over ? /^AnonHugePages:\s+(\d+) kB/.exec(line) : null;
    if (m) kb += Number(m[1]);
  }
  if (seen === 0) throw new Error(`no mapping in /proc/self/smaps holds 0x${address.toString(16)}`);
  return kb;
}

describe('huge pages in this process', () => {
  const why = hugePageStatus();

  it('the status is what the rules say for this machine and environment', () => {
    expect(why).toBe(hugePageRefusal(process.platform, thpEnabled(), process.env.GLIBC_TUNABLES));
  });

  it('a buffer advised gets huge pages once written, and one not advised gets none', () => {
    const { koffi } = loadLibc();
    // Above glibc's largest mmap threshold (32 MiB): fresh from the kernel, never written. A smaller
    // one may come from malloc's heap, zeroed by calloc before the advice, and stay in 4 KiB pages.
    const advised = new ArrayBuffer(40 << 20);
    const plain = new ArrayBuffer(40 << 20);
    const before = hugePageAdvice.buffers;
    adviseHugePages(advised);
    new Uint8Array(advised).fill(1);
    new Uint8Array(plain).fill(1);
    if (why !== null) {
      // This machine gives no advice (the reason is the rules', checked above): none was counted.
      expect(hugePageAdvice.buffers, why).toBe(before);
      return;
    }
    expect(hugePageAdvice.buffers).toBe(before + 1);
    // 40 MiB holds at least 19 whole 2 MiB pages. The kernel may fall short of free huge pages,
    // but not of every one of them on a machine with 24 GiB.
    expect(hugeKb(koffi.address(advised), advised)).toBeGreaterThanOrEqual(2048);
    expect(hugeKb(koffi.address(plain), plain)).toBe(0);
  });

  it('a small buffer is never advised', () => {
    const before = hugePageAdvice.buffers;
    adviseHugePages(new ArrayBuffer(HUGE_PAGE_MIN - 4096));
    expect(hugePageAdvice.buffers).toBe(before);
  });

  it('a flow table advises its whole-size buffer when its first entries run out, and its slots as they grow', () => {
    const before = hugePageAdvice.buffers;
    const t = new FlowTable(1 << 20);
    const src = new Uint32Array(4);
    const dst = new Uint32Array(4);
    let grewAt = -1;
    for (let k = 0; k < 200_000; k++) {
      src[0] = 0x0a000000 + k;
      dst[0] = 0xc0a80001;
      t.insert(Math.imul(k, 2654435761), 4, 6, src, 0, dst, 0, 1024 + (k & 0x7fff), 80);
      if (k === FIRST_ENTRIES && grewAt < 0) grewAt = hugePageAdvice.buffers - before;
    }
    if (why !== null) { expect(hugePageAdvice.buffers, why).toBe(before); return; }
    // The whole-size buffer (1Mi entries, well past HUGE_PAGE_MIN) at the first growth.
    expect(grewAt).toBe(1);
    // 200,000 entries at a load of 1/2 need 512Ki slots, an array of 4 MiB (two words a slot): that
    // doubling is advised, the smaller ones before it are not.
    expect(hugePageAdvice.buffers - before).toBeGreaterThanOrEqual(2);
    expect(t.count).toBe(200_000);
  });
});
