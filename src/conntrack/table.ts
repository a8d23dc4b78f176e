/**
 * The flow table: conntrack entries in typed arrays, indexed by entry number (batch.flow[i]).
 *
 * Lookup is open addressing with linear probing over a power-of-two slot array of (hash, entry)
 * pairs, so a probe compares hashes without touching entries; entries never move (a number stays
 * valid while the flow lives) and deletion shifts the probe run back instead of leaving
 * tombstones. Keys are the original-direction tuple; a packet matches it either as is (original
 * direction) or reversed (reply). A flow whose reply is not the mirror of its original tuple (after
 * DNAT: client -> VIP, then backend -> client) gets a second slot for its reply tuple
 * (`setReply`), as the kernel hashes both tuples of a conntrack; removal frees both. Entry numbers
 * come from a free list; `gen` counts reuses.
 *
 * A removed entry leaves the lookup at once but its number is *held* until the batch ends
 * (`release()`): later stages still look at this batch's packets through their entry numbers
 * (policy's cached decision, and NAT bindings and L7 state next), so a number must not name a new
 * flow while packets of the old one are in flight. The kernel does the same by reference count:
 * an skb keeps its conntrack entry alive until the packet has left the stack. Without it a flow
 * that ended inside a batch (a SYN answered by an RST) handed its number, and its decision, to
 * the next new flow of the same batch, so verdicts changed with the batch size. The table has
 * `HELD_MAX` spare entries beyond its capacity so that held numbers never make it look full.
 *
 * Walks that must not depend on entry numbers (the expiry sweep, the end-of-input flush, and so
 * the flow log's order) go through the slot array, whose layout depends only on the sequence of
 * inserts and removals: the same for any batch size.
 *
 * Layout: what one packet needs of its entry sits together, because with hundreds of thousands
 * of flows every separate array is a cache miss (measured: a struct-of-arrays table spent ~600 ns
 * per lookup on 95k flows here). Key, state, times and counters are one 128-byte record, two
 * adjacent cache lines (the CPU fetches the pair): with the counters in an array of their own,
 * every packet of a flow not in cache paid one more miss (conntrack 338 -> 256 ns/packet with 100k
 * flows active, 569 -> 456 with 1M; with 1,000 active the same within the noise, bench/ab.js).
 *
 *   rec (u32 x32): 0 hash | 1 family | proto << 8 | 2 sport << 16 | dport | 3..6 src | 7..10 dst
 *                  | 11 state | status << 8 | 12..13 expires (f64) | 14..15 last (f64)
 *                  | 16..23 counters (f64 x4: packets orig, packets reply, bytes orig, bytes reply)
 *                  | 24..25 first (f64) | 26 gen | 27 born (sample point) | 28..31 unused
 *
 * What every flow writes (its first packet's time, its sample point, its generation at removal)
 * sits in the record too, not in arrays of its own: the memory a table first writes is its cost
 * on a VM (a page first written is a page fault, and with huge pages each array's first write
 * clears 2 MB of its own), and a flow now writes one record where it wrote a record and three
 * arrays (DESIGN.md "Eighth pass").
 */

import { ipToString } from '../packet/format.js';
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import * as layoutModule from './layout.js';
import { adviseHugePages } from '../pipeline/memory.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Verdict } = batchModule;
const { HELD_MAX, REC, REP, RF_CTR, RF_EXPIRES, RF_FIRST, RF_LAST, RF_SHIFT, R_BORN, R_DST, R_FAMPROTO, R_GEN, R_HASH, R_PORTS, R_SRC, R_STATE, Status } = layoutModule;
export {
  Destroy, DESTROY_NAMES, HELD_MAX, REC, REP, RF_CTR, RF_EXPIRES, RF_FIRST, RF_LAST, RF_SHIFT, R_BORN, R_DST, R_FAMPROTO, R_GEN, R_HASH, R_PORTS, R_SRC, R_STATE,
  Status, SWEEP_EVERY, SWEEP_SLOTS,
} from './layout.js';

export type FlowColumn = Uint8Array | Uint16Array | Int32Array | Uint32Array | Float64Array;
export type FlowEndListener = (table: FlowTable, entry: number, why: number) => void;
/** Packet i created `entry`, at the time in the table's clock. */
export type FlowCreateListener = (b: Batch, i: number, entry: number) => void;

/**
 * A slot's value names an entry and which of its tuples the slot hashes: ((e + 1) << 1) | which,
 * which = 0 for the original tuple, 1 for the reply tuple. 0 is an empty slot.
 */
const slotValue = (e: number, which: number): number => ((e + 1) << 1) | which;

/** Slots a table starts with (it doubles as flows arrive, up to what its capacity needs). */
const FIRST_SLOTS = 1024;
/** The recent cache has as many slots as the table, up to this many (256 KB). */
const RECENT_MAX = 32768;
/**
 * Entries a table's arrays hold at first; past them the table takes its whole size (see grow).
 * Small: each of compare's 28 pipelines builds its tables, and every 4 KB of them that malloc's
 * heap zeroes is a page fault (~13 us here); 4,096 entries were ~0.8 MB a table.
 */
export const FIRST_ENTRIES = 512;
/** Held numbers the table has room for at first (it doubles, up to HELD_MAX). */
const FIRST_HELD = 256;

/**
 * Above this many bytes the per-entry arrays double instead of taking the table's whole size at
 * once (see grow): a 16Mi-entry table would need ~3 GB in one buffer.
 */
const ARENA_MOST = 1 << 30;

/** A typed array type a column can be: a view of the table's memory is made with it. */
export type FlowColumnType<A extends FlowColumn> = { new (buffer: ArrayBuffer, offset: number, length: number): A; new (length: number): A; readonly BYTES_PER_ELEMENT: number };

/** A per-entry array, the table's own or a stage's column: `width` values of `type` per entry; `set` is told when it moves. */
interface EntryArray { array: FlowColumn; width: number; type: FlowColumnType<FlowColumn>; set: (array: FlowColumn) => void }

function entryArray<A extends FlowColumn>(type: FlowColumnType<A>, array: A, width: number, set: (array: A) => void): EntryArray {
  return { array, width, type: type as unknown as FlowColumnType<FlowColumn>, set: set as (array: FlowColumn) => void };
}

/** A copy of `a`, `length` long (the rest zeros). */
function grown<A extends FlowColumn>(a: A, length: number): A {
  const b = new (a.constructor as new (n: number) => A)(length);
  b.set(a as ArrayLike<number> & A);
  return b;
}

const align8 = (bytes: number): number => Math.ceil(bytes / 8) * 8;

function allZero(a: FlowColumn): boolean {
  for (let k = 0; k < a.length; k++) if (a[k] !== 0) return false;
  return true;
}

export class FlowTable {
  /** Live entries at most (nf_conntrack_max). */
  readonly capacity: number;
  /** Entry numbers there can be: capacity plus the spares for held numbers. */
  readonly size: number;
  /**
   * Entries the per-entry arrays hold now: FIRST_ENTRIES at first, then `size` (see grow; or
   * doubling, for a table whose whole size would pass ARENA_MOST). As separate arrays sized for
   * `size` from the start, every table faulted in ~65 MB of zeroed memory whatever it held.
   */
  private allocated: number;
  /** One past the highest entry number ever handed out: walks over entries stop here. */
  hi = 0;
  /** Entries in use. */
  count = 0;

  /**
   * Flows live at fixed moments (sample points 1..samples, taken by sample()), for the report's
   * peak: an entry counts at a sample point from the first one after its creation until its
   * removal or until the clock passes its timeout, whichever comes first. Expired entries the
   * sweep has not reached yet do not count, so the figure does not depend on the sweep's pace
   * (which differs between one table and a worker's share of the flows) and the workers' series
   * add up, point by point, to one pipeline's. Kept as a difference array: +1 at the point where
   * an entry starts to count, -1 where it stops.
   */
  samples = 0;
  private sampleClock = new Float64Array(1024);
  private liveDelta = new Int32Array(1024);

  /**
   * A small direct-mapped cache in front of the slots: (hash, slot value) of the flow last found
   * with that hash's low bits. The slots span megabytes, so every probe of them is a cache miss;
   * this holds the flows active right now (conntrack ~306 -> ~257 ns/packet median on 1M
   * generated packets, bench/pipeline.js). The hash is kept beside the value so that a miss
   * (another flow in the cache slot: most lookups once far more flows are active than it holds)
   * is seen without reading that flow's record, a cache miss of its own. What it holds changes
   * only the speed: a lookup it cannot answer probes the slots.
   *
   * It grows with the slots up to RECENT_MAX: at a fixed 8,192, lookups of 1,000 flows active at
   * once collided in it on 6% of packets and of 100,000 on 80%, each a probe of the slots (181k
   * and 2.41M of the 3M lookups on the capture; 47k and 1.75M at 32,768). A small table
   * keeps a small one: 8 KB at first, not 64 (DESIGN.md "Speed").
   */
  private recent: Uint32Array;
  private recentMask: number;
  /** (hash, slot value) pairs; a value of 0 is an empty slot. */
  private slots: Uint32Array;
  private mask: number;
  /** The most slots (see sizeSlots), tuples linked in them now, and how often they doubled. */
  private maxSlots = 0;
  private linked = 0;
  grows = 0;
  /** Reply tuples (REP words per entry), once a stage has asked for them. */
  private rep: Uint32Array = new Uint32Array(0);

  /** The records (see the layout above), as u32 and as f64 over one buffer. */
  rec: Uint32Array;
  recF: Float64Array;

  // --- cold, per entry ---
  /**
   * Per direction (2 * entry + dir): TCP packets the state machine ignored (let through, not
   * counted). Most flows never have one, so these arrays are written only when one comes (and
   * cleared only where not 0): their pages stay unwritten.
   */
  ignored: Float64Array;
  ignoredBytes: Float64Array;

  /**
   * Numbers freed by removals, reused last in first out; when none is free, the lowest number
   * never used (fresh). The same order as a list that started full (size - 1 .. 0), without
   * writing that list at construction: 360k entries in cold code, ~20 ms of every command's
   * start for each table (conntrack's, ctlb's sockets).
   */
  private freeList: Int32Array;
  private freeTop = 0;
  private fresh = 0;
  /** Numbers removed during the current batch, and why: free again at release(). */
  private held: Int32Array;
  private heldWhy: Uint8Array;
  private heldTop = 0;
  /** Per-flow columns stages asked for, zeroed when an entry is handed out, and who holds each. */
  private readonly columns: EntryArray[] = [];
  private readonly endListeners: FlowEndListener[] = [];
  private createListeners: FlowCreateListener[] = [];
  /**
   * The time (seconds) insert() stamps a new entry with and the create listeners see: the caller
   * sets it before insert. Not a parameter: a double handed to a call V8 does not inline is boxed,
   * a heap number per new flow, and in a SYN flood every packet makes one (the iptables profile
   * allocated 24 bytes a packet on an 80% flood, 20 of them here).
   */
  readonly clock = new Float64Array(1);

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 24) throw new RangeError(`flow table capacity must be 1..${1 << 24}`);
    this.capacity = capacity;
    this.size = capacity + HELD_MAX;
    this.slots = new Uint32Array(0);
    this.mask = 0;
    this.sizeSlots(1);
    this.recentMask = Math.min(RECENT_MAX, this.mask + 1) - 1;
    this.recent = new Uint32Array((this.recentMask + 1) * 2);
    const n = this.allocated = Math.min(this.size, FIRST_ENTRIES);
    const buf = new ArrayBuffer(n * REC * 4);
    this.rec = new Uint32Array(buf);
    this.recF = new Float64Array(buf);
    this.ignored = new Float64Array(n * 2);
    this.ignoredBytes = new Float64Array(n * 2);
    this.freeList = new Int32Array(n);
    this.held = new Int32Array(FIRST_HELD);
    this.heldWhy = new Uint8Array(FIRST_HELD);
  }

  /**
   * The slots' most: room for `tuplesPerEntry` tuples per entry of a full table at a load factor
   * of at most 1/2 (short probe runs); held entries are unlinked, so they need none. The array
   * starts small and doubles as tuples are linked (grow), keeping that load: its size follows the
   * flows actually live, not the capacity. Sized for the capacity from the start, a 512Ki table's
   * slots spanned 8 MB whatever it held, so a new flow's probe was a cache miss even with a few
   * thousand flows (bench/ab.js; DESIGN.md "Speed").
   */
  private sizeSlots(tuplesPerEntry: number): void {
    let n = 2;
    while (n < this.capacity * 2 * tuplesPerEntry) n <<= 1;
    this.maxSlots = n;
    const start = Math.min(n, FIRST_SLOTS);
    this.slots = new Uint32Array(start * 2);
    this.mask = start - 1;
  }

  /** Make room for one more tuple: double the slots when it would pass a load of 1/2. */
  private room(): void {
    const n = this.mask + 1;
    if ((this.linked + 1) * 2 <= n || n >= this.maxSlots) return;
    const old = this.slots;
    const buf = new ArrayBuffer(n * 4 * Uint32Array.BYTES_PER_ELEMENT);
    adviseHugePages(buf);
    this.slots = new Uint32Array(buf);
    this.mask = n * 2 - 1;
    // In slot order: the new layout depends only on the old one, as the old one did only on the
    // sequence of inserts and removals (so the sweep and the flush still walk the flows in an
    // order no batch size changes).
    for (let s = 0; s < n; s++) {
      const v = old[(s << 1) | 1]!;
      if (v === 0) continue;
      const h = old[s << 1]!;
      let t = h & this.mask;
      while (this.slots[(t << 1) | 1] !== 0) t = (t + 1) & this.mask;
      this.slots[t << 1] = h;
      this.slots[(t << 1) | 1] = v;
    }
    this.grows++;
    if (this.recentMask < RECENT_MAX - 1) this.growRecent();
  }

  /** The recent cache doubles with the slots (up to RECENT_MAX), keeping what it holds. */
  private growRecent(): void {
    const old = this.recent;
    const mask = this.recentMask * 2 + 1;
    const recent = new Uint32Array((mask + 1) * 2);
    for (let k = 0; k < old.length; k += 2) {
      if (old[k + 1] === 0) continue;
      const ri = (old[k]! & mask) << 1;
      recent[ri] = old[k]!;
      recent[ri + 1] = old[k + 1]!;
    }
    this.recent = recent;
    this.recentMask = mask;
  }

  /**
   * Let entries have a reply tuple of their own (setReply), for a stage that translates addresses.
   * Doubles the slots, so call it while the table is empty (when the pipeline is built).
   */
  allowReplyTuples(): void {
    if (this.rep.length > 0) return;
    if (this.count > 0) throw new RangeError('reply tuples must be allowed before the first flow');
    this.sizeSlots(2);
    this.rep = new Uint32Array(this.allocated * REP);
  }

  /**
   * Make the per-entry arrays (and the stages' columns) hold more entries, keeping what they hold:
   * the first time the FIRST_ENTRIES run out, they take the table's whole size at once, all in one
   * buffer (up to ARENA_MOST bytes; past that they double). A buffer that big comes straight from
   * the kernel (mmap), whose pages are only given memory when first written: an entry costs memory
   * when a flow first uses it, and nothing is copied again. Doubling (as before) wrote every page
   * twice, once fresh and once when copied into the next buffer, and a first write to a page is a
   * page fault, ~13 us each on this VM: 142,500 flows into a 512Ki table took 20.4k faults and
   * 305-457 ms doubling, 8.9k and 159-195 ms now (DESIGN.md "Speed"). Separate full-size arrays of a
   * few MB each would come from malloc's heap instead, which zeroes them: every page faulted in,
   * used or not (compare ran 3x slower so).
   */
  private grow(): void {
    const arrays = this.entryArrays();
    const bytes = (n: number): number => arrays.reduce((sum, c) => sum + align8(n * c.width * c.type.BYTES_PER_ELEMENT), 0);
    let n = this.size;
    if (bytes(n) > ARENA_MOST) n = Math.min(this.size, this.allocated * 2);
    let buf: ArrayBuffer;
    try {
      buf = new ArrayBuffer(bytes(n));
    } catch {
      // No address space for it at once (a strict overcommit setting): double as before.
      n = Math.min(this.size, this.allocated * 2);
      buf = new ArrayBuffer(bytes(n));
    }
    // Before the copies below write its first pages (pipeline/memory.ts).
    adviseHugePages(buf);
    let at = 0;
    for (const c of arrays) {
      const a = new c.type(buf, at, n * c.width);
      // An array still all 0 (the ignored counts, a stage's column no flow has set yet) is not
      // copied: the copy would be its first write, a fault for nothing (see the layout above).
      if (!allZero(c.array)) a.set(c.array as ArrayLike<number> & FlowColumn);
      at += align8(a.byteLength);
      c.array = a;
      c.set(a);
    }
    this.allocated = n;
  }

  /** Every per-entry array: the table's own (the records first) and the stages' columns. */
  private entryArrays(): EntryArray[] {
    const own = [
      entryArray(Uint32Array, this.rec, REC, (a) => { this.rec = a; this.recF = new Float64Array(a.buffer, a.byteOffset, a.length >> 1); }),
      entryArray(Float64Array, this.ignored, 2, (a) => { this.ignored = a; }),
      entryArray(Float64Array, this.ignoredBytes, 2, (a) => { this.ignoredBytes = a; }),
      entryArray(Int32Array, this.freeList, 1, (a) => { this.freeList = a; }),
    ];
    if (this.rep.length > 0) own.push(entryArray(Uint32Array, this.rep, REP, (a) => { this.rep = a; }));
    return [...own, ...this.columns];
  }

  /**
   * Give entry e a reply tuple that is not the mirror of its original one, as the reply will be on
   * the wire (after DNAT: backend -> client), hashed `h`; the entry is found by it too (dir 1 as
   * given, dir 0 reversed), as the kernel hashes both tuples of a conntrack. Once per entry.
   * Returns false, changing nothing, when another entry already owns that tuple (either way round):
   * the kernel's NAT finds no unique tuple then. The check walks the probe run the link walks
   * anyway, so a new binding costs one probe, not a find and then a link.
   */
  setReply(e: number, h: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number): boolean {
    if (this.rep.length === 0) throw new RangeError('setReply needs allowReplyTuples() when the pipeline is built');
    const k = e * REC + R_STATE;
    if ((this.rec[k]! & (Status.REPLY_TUPLE << 8)) !== 0) throw new RangeError(`flow entry ${e} has a reply tuple already`);
    const used = (this.rec[k]! & (Status.USED << 8)) !== 0;
    if (used) this.room();
    const slots = this.slots;
    const mask = this.mask;
    let s = h & mask;
    if (used) {
      const fp = this.rec[e * REC + R_FAMPROTO]!;
      const fwd = (sp << 16) | dp;
      const rev = (dp << 16) | sp;
      for (let v = slots[(s << 1) | 1]!; v !== 0; s = (s + 1) & mask, v = slots[(s << 1) | 1]!) {
        if ((slots[s << 1]! | 0) !== (h | 0)) continue;
        const other = (v >>> 1) - 1;
        const hit = (v & 1) === 0 ? this.match(other, fp, fwd, rev, S, so, D, dof) : this.matchReply(other, fp, fwd, rev, S, so, D, dof);
        if (hit >= 0) return false;
      }
    }
    const rep = this.rep;
    const w = e * REP;
    rep[w] = h;
    rep[w + 1] = (sp << 16) | dp;
    rep[w + 2] = S[so]!; rep[w + 3] = S[so + 1]!; rep[w + 4] = S[so + 2]!; rep[w + 5] = S[so + 3]!;
    rep[w + 6] = D[dof]!; rep[w + 7] = D[dof + 1]!; rep[w + 8] = D[dof + 2]!; rep[w + 9] = D[dof + 3]!;
    this.rec[k] = this.rec[k]! | (Status.REPLY_TUPLE << 8);
    // An entry already removed (its number held) keeps the words for the flow log, but no slot:
    // nothing would unlink it. Otherwise s is the empty slot ending h's probe run.
    if (used) {
      const v = slotValue(e, 1);
      slots[s << 1] = h;
      slots[(s << 1) | 1] = v;
      this.linked++;
      this.remember(h, v);
    }
    return true;
  }

  /**
   * A per-flow column for a stage's own state, as the kernel's conntrack extensions (nf_ct_ext):
   * `width` values per entry (entry e owns [e * width, (e + 1) * width)), all 0 when a flow gets
   * the entry. A value belongs to the flow holding the entry; it is never seen by another flow,
   * since numbers are reused only after the batch in which their flow ended.
   *
   * `type` is the typed array (Uint8Array, Int32Array, ...): the table makes the column, at first
   * on its own and, once the table grows, as a view of the buffer that holds the records.
   * The column grows with the table: `set` gets the array now and a longer one (holding the same
   * values) each time the table grows, which happens only while a flow is created. So a stage
   * keeps the array in a field that `set` assigns, and reads that field after anything that can
   * create a flow in this table (a stage may keep it in a local for a loop that creates none).
   */
  column<A extends FlowColumn>(type: FlowColumnType<A>, width: number, set: (array: A) => void): void {
    const array = new type(this.allocated * width);
    this.columns.push(entryArray(type, array, width, set));
    set(array);
  }

  /**
   * Call `listener(table, e, why)` as each flow ends: at the end of the batch in which it ended,
   * when no stage will look at its packets any more. The entry still reads as it was (tuple,
   * state, counters, columns) until the listener returns. Heap state a stage keeps per flow
   * (keyed by entry number) is freed here.
   */
  onEnd(listener: FlowEndListener): void {
    this.endListeners.push(listener);
  }

  /**
   * Call `listener(b, i, e)` when packet i creates entry e (at the time in `clock`), before the next packet is looked up:
   * a NAT binding must exist (its reply tuple linked) before the flow's reply arrives, and in a
   * batch conntrack looks up every packet before the stages after it run. The kernel binds NAT at
   * the first packet's nat hook for the same reason. Called by the tracker; never per packet.
   */
  onCreate(listener: FlowCreateListener): void {
    this.createListeners = [...this.createListeners, listener];
  }

  /** Entry e was just created by packet i (the tracker calls this after insert). */
  created(b: Batch, i: number, e: number): void {
    const l = this.createListeners;
    for (let k = 0; k < l.length; k++) l[k]!(b, i, e);
  }

  /**
   * Find the entry for a tuple seen in either direction. Returns entry * 2 + direction
   * (0 original, 1 reply), or -1.
   */
  find(h: number, family: number, proto: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number): number {
    // The common case alone, small enough for V8 to inline into the caller's per-packet loop: an
    // original tuple, found through the recent cache. Everything else is probe()'s. (As one
    // function, ~315 instructions a packet were a call with nine arguments; DESIGN.md "Speed".)
    // The hash as int32 (h may come as a uint32): a uint32 of 2^31 or more is a double, boxed as
    // a heap number whenever it is handed to a call V8 does not inline.
    h |= 0;
    if (family === 4) {
      const r = this.recent4(h, proto, S[so]!, D[dof]!, sp, dp);
      if (r >= 0) return r;
    } else {
      const ri = (h & this.recentMask) << 1;
      const c = this.recent[ri + 1]!;
      if ((c & 1) === 0 && c !== 0 && (this.recent[ri]! | 0) === h) {
        const r = this.match((c >>> 1) - 1, family | (proto << 8), (sp << 16) | dp, (dp << 16) | sp, S, so, D, dof);
        if (r >= 0) return r;
      }
    }
    return this.probe(h, family, proto, S, so, D, dof, sp, dp);
  }

  /**
   * find()'s common case for an IPv4 tuple (addresses s and d, word 0 of each: see match), at the
   * recent cache's first look only: entry * 2 + direction, or -1 when the cache does not name it
   * there (find() then walks the slots). Small enough to inline into the tracker's fast path.
   * Its compare is match()'s IPv4 branch written again on purpose: the two sharing one helper
   * counted 2,556 instructions a packet in ebpf against 2,480/2,486 (bench/count.js), the extra
   * level tipping V8's inlining budget.
   */
  recent4(h: number, proto: number, s: number, d: number, sp: number, dp: number): number {
    const ri = (h & this.recentMask) << 1;
    const c = this.recent[ri + 1]!;
    if ((c & 1) !== 0 || c === 0 || (this.recent[ri]! | 0) !== h) return -1;
    const e = (c >>> 1) - 1;
    const rec = this.rec;
    const w = e * REC;
    if (rec[w + R_FAMPROTO] !== (4 | (proto << 8))) return -1;
    const ports = rec[w + R_PORTS]! | 0;
    if (ports === ((sp << 16) | dp) && rec[w + R_SRC] === s && rec[w + R_DST] === d) return e << 1;
    if (ports === ((dp << 16) | sp) && rec[w + R_SRC] === d && rec[w + R_DST] === s) return (e << 1) | 1;
    return -1;
  }

  /** find() past its common case: a reply tuple in the recent cache, else the slots' probe run. */
  private probe(h: number, family: number, proto: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number): number {
    const fp = family | (proto << 8);
    const fwd = (sp << 16) | dp;
    const rev = (dp << 16) | sp;
    const ri = (h & this.recentMask) << 1;
    const c = this.recent[ri + 1]!;
    if ((c & 1) === 1 && (this.recent[ri]! | 0) === h) {
      const r = this.matchReply((c >>> 1) - 1, fp, fwd, rev, S, so, D, dof);
      if (r >= 0) return r;
    }
    const slots = this.slots;
    const mask = this.mask;
    let s = h & mask;
    for (;;) {
      const v = slots[(s << 1) | 1]!;
      if (v === 0) return -1;
      if ((slots[s << 1]! | 0) === h) {
        const r = (v & 1) === 0 ? this.match((v >>> 1) - 1, fp, fwd, rev, S, so, D, dof) : this.matchReply((v >>> 1) - 1, fp, fwd, rev, S, so, D, dof);
        if (r >= 0) {
          this.remember(h, v);
          return r;
        }
      }
      s = (s + 1) & mask;
    }
  }

  /**
   * Read ahead, without using them, the memory find() will read first for each packet of a batch
   * that is still passing: the recent cache's slot for its hash and the record that slot names,
   * else the hash's home slot and its record. Nothing changes; the sum is returned only so that
   * the reads are not optimised away.
   *
   * With far more flows than the caches hold, each packet's record is a miss to memory (~150 ns
   * here), and the per-packet loop takes them one at a time: every lookup's result decides the
   * next step, so the CPU cannot run ahead. These reads do not depend on one another, so the CPU
   * overlaps them, and the loop then finds the lines in cache: conntrack 398 -> 296 ns/packet with
   * 100,000 flows active and 574 -> 413 with 1M (per-round ratios 0.67-0.82); with 1,000 active,
   * when everything is in cache anyway, within the noise (DESIGN.md "Speed").
   */
  readAhead(hash: Uint32Array, verdict: Uint8Array, n: number): number {
    const recent = this.recent;
    const rmask = this.recentMask;
    const slots = this.slots;
    const mask = this.mask;
    const rec = this.rec;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      if (verdict[i] !== Verdict.PASS) continue;
      const h = hash[i]! | 0;
      const ri = (h & rmask) << 1;
      let v = recent[ri + 1]!;
      if (v === 0 || (recent[ri]! | 0) !== h) v = slots[((h & mask) << 1) | 1]!;
      if (v === 0) continue;
      // Both lines of the record: the key and state, then the times and counters.
      const w = ((v >>> 1) - 1) * REC;
      sum = (sum + rec[w + R_FAMPROTO]! + rec[w + 2 * RF_EXPIRES]!) | 0;
    }
    return sum;
  }

  /**
   * Read ahead, without using them, the records named by `count` slots from slot `from` (wrapping):
   * the line that holds an entry's state and timeout, and the one after it (its generation). For
   * walks of the slots, as readAhead is for a batch's lookups: the end-of-input flush reads each
   * entry's timeout, and by then its record has long left the caches (the capture's bytes streamed
   * through them since), so every entry was a miss to memory taken one at a time (three quarters of
   * the flush's samples sat on that load). The sum is returned only so that the reads are kept.
   */
  readSlots(from: number, count: number): number {
    const slots = this.slots;
    const mask = this.mask;
    const rec = this.rec;
    let sum = 0;
    for (let k = 0, s = from & mask; k < count; k++, s = (s + 1) & mask) {
      const v = slots[(s << 1) | 1]!;
      if (v === 0) continue;
      const w = ((v >>> 1) - 1) * REC;
      sum = (sum + rec[w + R_STATE]! + rec[w + R_GEN]!) | 0;
    }
    return sum;
  }

  /**
   * Entry e's reply tuple against a tuple: as on the wire is the reply (dir 1), reversed the
   * original (dir 0). The same compare as match() over the reply words: one shared tuple compare
   * measured 2-4 ns/packet slower in conntrack (bench/ab.js), so the hot one stays written out.
   */
  private matchReply(e: number, fp: number, fwd: number, rev: number, S: Uint32Array, so: number, D: Uint32Array, dof: number): number {
    if (this.rec[e * REC + R_FAMPROTO] !== fp) return -1;
    const rep = this.rep;
    const w = e * REP;
    const ports = rep[w + 1]! | 0;
    if ((fp & 0xff) === 4) {
      // IPv4: the three words after each address are zero on both sides (see match).
      const s = S[so]!;
      const d = D[dof]!;
      if (ports === fwd && rep[w + 2] === s && rep[w + 6] === d) return (e << 1) | 1;
      if (ports === rev && rep[w + 2] === d && rep[w + 6] === s) return e << 1;
      return -1;
    }
    if (ports === fwd
      && rep[w + 2] === S[so] && rep[w + 3] === S[so + 1] && rep[w + 4] === S[so + 2] && rep[w + 5] === S[so + 3]
      && rep[w + 6] === D[dof] && rep[w + 7] === D[dof + 1] && rep[w + 8] === D[dof + 2] && rep[w + 9] === D[dof + 3]) {
      return (e << 1) | 1;
    }
    if (ports === rev
      && rep[w + 2] === D[dof] && rep[w + 3] === D[dof + 1] && rep[w + 4] === D[dof + 2] && rep[w + 5] === D[dof + 3]
      && rep[w + 6] === S[so] && rep[w + 7] === S[so + 1] && rep[w + 8] === S[so + 2] && rep[w + 9] === S[so + 3]) {
      return e << 1;
    }
    return -1;
  }

  /**
   * Entry e against a tuple: e * 2 + direction, or -1.
   *
   * An IPv4 address is word 0 of its four, the other three zero: the decoder zeroes every field of
   * a batch before it decodes, and a stage that writes an IPv4 address writes word 0 (encrypt's
   * outer header writes the zeros too). The entry's words are copies of a packet's. So with the
   * family equal (it is in fp) and IPv4, word 0 of each address decides: two loads and compares
   * where the full compare took eight, each with its own bounds and overflow checks (~240
   * instructions a call, most of a lookup; tests: decode-paths "IPv4 addresses leave words 1-3 zero").
   */
  private match(e: number, fp: number, fwd: number, rev: number, S: Uint32Array, so: number, D: Uint32Array, dof: number): number {
    const rec = this.rec;
    const w = e * REC;
    if (rec[w + R_FAMPROTO] !== fp) return -1;
    const ports = rec[w + R_PORTS]! | 0;
    if ((fp & 0xff) === 4) {
      const s = S[so]!;
      const d = D[dof]!;
      if (ports === fwd && rec[w + R_SRC] === s && rec[w + R_DST] === d) return e << 1;
      if (ports === rev && rec[w + R_SRC] === d && rec[w + R_DST] === s) return (e << 1) | 1;
      return -1;
    }
    if (ports === fwd
      && rec[w + 3] === S[so] && rec[w + 4] === S[so + 1] && rec[w + 5] === S[so + 2] && rec[w + 6] === S[so + 3]
      && rec[w + 7] === D[dof] && rec[w + 8] === D[dof + 1] && rec[w + 9] === D[dof + 2] && rec[w + 10] === D[dof + 3]) {
      return e << 1;
    }
    if (ports === rev
      && rec[w + 3] === D[dof] && rec[w + 4] === D[dof + 1] && rec[w + 5] === D[dof + 2] && rec[w + 6] === D[dof + 3]
      && rec[w + 7] === S[so] && rec[w + 8] === S[so + 1] && rec[w + 9] === S[so + 2] && rec[w + 10] === S[so + 3]) {
      return (e << 1) | 1;
    }
    return -1;
  }

  /** True when the table holds `capacity` live entries. */
  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Add an entry for the tuple as its original direction. The caller checked `full`. */
  insert(h: number, family: number, proto: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number): number {
    const now = this.clock[0]!;
    let e: number;
    // A number never handed out before has all its words at 0 (the arrays start zeroed and growing
    // copies them); only a reused one needs its counters and columns cleared. Not writing the zeros
    // keeps a new flow off pages it does not use yet (ignored counts, most columns): a first write
    // to a page is a page fault.
    let reused = false;
    if (this.freeTop > 0) {
      e = this.freeList[--this.freeTop]!;
      reused = true;
    } else {
      if (this.fresh === this.size) throw new RangeError(`flow table: more than ${HELD_MAX} entries removed within one batch`);
      if (this.fresh === this.allocated) this.grow();
      e = this.fresh++;
    }
    if (e >= this.hi) this.hi = e + 1;
    const rec = this.rec;
    const w = e * REC;
    rec[w + R_HASH] = h;
    rec[w + R_FAMPROTO] = family | (proto << 8);
    rec[w + R_PORTS] = (sp << 16) | dp;
    rec[w + 3] = S[so]!; rec[w + 4] = S[so + 1]!; rec[w + 5] = S[so + 2]!; rec[w + 6] = S[so + 3]!;
    rec[w + 7] = D[dof]!; rec[w + 8] = D[dof + 1]!; rec[w + 9] = D[dof + 2]!; rec[w + 10] = D[dof + 3]!;
    rec[w + R_STATE] = Status.USED << 8;
    const f = e << RF_SHIFT;
    const recF = this.recF;
    recF[f + RF_EXPIRES] = now;
    recF[f + RF_LAST] = now;
    recF[f + RF_FIRST] = now;
    if (reused) this.clear(e);
    this.room();
    this.link(h, slotValue(e, 0));
    this.count++;
    const born = this.samples + 1;
    rec[w + R_BORN] = born;
    this.liveDelta[born]!++;
    return e;
  }

  /** The recent cache holds slot value v for hash h. */
  private remember(h: number, v: number): void {
    const ri = (h & this.recentMask) << 1;
    this.recent[ri] = h;
    this.recent[ri + 1] = v;
  }

  /** Put slot value v in the first free slot of h's probe run. */
  private link(h: number, v: number): void {
    const slots = this.slots;
    let s = h & this.mask;
    while (slots[(s << 1) | 1] !== 0) s = (s + 1) & this.mask;
    slots[s << 1] = h;
    slots[(s << 1) | 1] = v;
    this.linked++;
    this.remember(h, v);
  }

  /** A reused entry's counters and columns start at 0 (out of insert's way: a loop over arrays of several types). */
  private clear(e: number): void {
    const recF = this.recF;
    const f = e << RF_SHIFT;
    recF[f + RF_CTR] = 0; recF[f + RF_CTR + 1] = 0; recF[f + RF_CTR + 2] = 0; recF[f + RF_CTR + 3] = 0;
    // Written only where not 0 already: a write is what gives a page memory (see the layout above).
    const ig = this.ignored;
    const igb = this.ignoredBytes;
    const d = e << 1;
    if (ig[d] !== 0 || ig[d + 1] !== 0 || igb[d] !== 0 || igb[d + 1] !== 0) { ig[d] = 0; ig[d + 1] = 0; igb[d] = 0; igb[d + 1] = 0; }
    const columns = this.columns;
    for (let k = 0; k < columns.length; k++) {
      const { array, width } = columns[k]!;
      for (let j = e * width, end = j + width; j < end; j++) if (array[j] !== 0) array[j] = 0;
    }
  }

  /**
   * Remove an entry (Destroy.* says why): it leaves the lookup at once (later members of its probe
   * run shift back, so no tombstone is needed); its number is held until release().
   */
  remove(e: number, why: number): void {
    const k = e * REC + R_STATE;
    this.unlink(this.rec[e * REC + R_HASH]!, slotValue(e, 0));
    if ((this.rec[k]! & (Status.REPLY_TUPLE << 8)) !== 0) this.unlink(this.rep[e * REP]!, slotValue(e, 1));
    // Not in use any more, but state and status stay readable for the end-of-flow listeners.
    this.rec[k] = this.rec[k]! & ~(Status.USED << 8);
    this.liveDelta[this.liveUntil(e)]!--;
    this.rec[e * REC + R_GEN]!++;
    if (this.heldTop === this.held.length) this.growHeld();
    this.heldWhy[this.heldTop] = why;
    this.held[this.heldTop++] = e;
    this.count--;
  }

  /** True when something listens for flows' ends (onEnd): a flow log, or a stage's per-flow heap state. */
  get watched(): boolean { return this.endListeners.length > 0; }

  /**
   * Remove every entry at once, when no packet follows and nothing listens for ends (see
   * `watched`): the end-of-input flush of a run without a flow log. Each entry leaves as remove()
   * and release() would take it (the live-flow series, its generation, the free list; every slot
   * emptied), but in entry order, reading the records one after another: the slot-by-slot walk
   * meets them in hash order, a miss to memory each once the capture has streamed through the
   * caches (136k entries took 25-35 ms that way; DESIGN.md "Eleventh pass"). Nobody sees the
   * order: the counts are sums, and the free list's order decides only which numbers later flows
   * get, which no output shows. Returns how many entries had expired by `now`; the rest ended
   * with the input. Only between batches (nothing held).
   */
  removeAll(now: number): number {
    if (this.watched || this.heldTop > 0) throw new Error('FlowTable.removeAll: flows are watched or numbers held');
    const rec = this.rec;
    const recF = this.recF;
    const delta = this.liveDelta;
    const free = this.freeList;
    let expired = 0;
    for (let e = 0; e < this.hi; e++) {
      const k = e * REC + R_STATE;
      if ((rec[k]! & (Status.USED << 8)) === 0) continue;
      if (recF[(e << RF_SHIFT) + RF_EXPIRES]! < now) expired++;
      delta[this.liveUntil(e)]!--;
      rec[k] = rec[k]! & ~(Status.USED << 8);
      rec[e * REC + R_GEN]!++;
      free[this.freeTop++] = e;
    }
    this.slots.fill(0);
    this.recent.fill(0);
    this.linked = 0;
    this.count = 0;
    return expired;
  }

  /** Room for twice the held numbers (a batch that ends many flows: up to HELD_MAX). */
  private growHeld(): void {
    const n = Math.min(HELD_MAX, this.held.length * 2);
    this.held = grown(this.held, n);
    this.heldWhy = grown(this.heldWhy, n);
  }

  /** Take slot value v of hash h out of the slots: later members of its probe run shift back. */
  private unlink(h: number, v0: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = h & mask;
    while (slots[(i << 1) | 1] !== v0) i = (i + 1) & mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = slots[(j << 1) | 1]!;
      if (v === 0) break;
      const home = slots[j << 1]! & mask;
      // Move j back into the hole at i unless its home lies cyclically in (i, j].
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!between) {
        slots[i << 1] = slots[j << 1]!;
        slots[(i << 1) | 1] = v;
        i = j;
      }
    }
    slots[i << 1] = 0;
    slots[(i << 1) | 1] = 0;
    this.linked--;
    const ri = ((h & this.recentMask) << 1) | 1;
    if (this.recent[ri] === v0) this.recent[ri] = 0;
  }

  /** The batch is over: numbers removed during it may name new flows from now on. */
  release(): void {
    const held = this.held;
    const free = this.freeList;
    const listeners = this.endListeners;
    for (let k = 0; k < this.heldTop; k++) {
      const e = held[k]!;
      for (let l = 0; l < listeners.length; l++) listeners[l]!(this, e, this.heldWhy[k]!);
      free[this.freeTop++] = e;
    }
    this.heldTop = 0;
  }

  /**
   * A sample point for the live-flow series at capture time `clock` (never decreasing): every
   * SWEEP_EVERY packet numbers, before that packet is tracked, and at the end of input. The
   * arrays grow by doubling, so a sample allocates nothing but now and then.
   */
  sample(clock: number): void {
    const k = ++this.samples;
    if (k + 2 > this.liveDelta.length) {
      this.sampleClock = grown(this.sampleClock, this.sampleClock.length * 2);
      this.liveDelta = grown(this.liveDelta, this.liveDelta.length * 2);
    }
    this.sampleClock[k] = clock;
  }

  /**
   * The first sample point at which entry e no longer counts: the first taken whose clock is
   * past its timeout, else the next one (it is being removed now). A binary search, only when
   * the entry had expired by the last point.
   */
  private liveUntil(e: number): number {
    const exp = this.expires(e);
    const clock = this.sampleClock;
    let hi = this.samples + 1;
    // Not expired by the last point (the usual removal: a flow that ended): no search.
    if (!(clock[hi - 1]! > exp)) return hi;
    let lo = this.rec[e * REC + R_BORN]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (clock[mid]! > exp) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /**
   * Flows live at each sample point taken so far (element k - 1 for point k). Entries still in
   * the table (a run that ended without its flush) count until their timeout. For the report.
   */
  liveSeries(): Float64Array {
    const n = this.samples;
    const delta = this.liveDelta.slice(0, n + 2);
    this.forEach((e) => { delta[this.liveUntil(e)]!--; });
    const out = new Float64Array(n);
    let live = 0;
    for (let k = 1; k <= n; k++) {
      live += delta[k]!;
      out[k - 1] = live;
    }
    return out;
  }

  /** Number of slots (a power of two); slot s holds entry slotEntry(s), or -1. */
  get slotCount(): number { return this.mask + 1; }
  slotEntry(s: number): number { return (this.slots[(s << 1) | 1]! >>> 1) - 1; }

  /**
   * A victim for a new flow when the table is full, as the kernel's early_drop: among the entries
   * in the probe neighbourhood of `h`, the least recently used one that is not assured (an entry
   * past its timeout counts as not assured, at the time in `clock`). -1 when every candidate is assured.
   */
  victim(h: number, scan: number): number {
    const now = this.clock[0]!;
    const slots = this.slots;
    const mask = this.mask;
    let best = -1;
    let bestLast = Infinity;
    let s = h & mask;
    for (let k = 0, seen = 0; k <= mask && seen < scan; k++, s = (s + 1) & mask) {
      const v = slots[(s << 1) | 1]!;
      if (v === 0) continue;
      seen++;
      const e = (v >>> 1) - 1;
      if (this.expires(e) < now) return e;
      if ((this.status(e) & Status.ASSURED) === 0 && this.last(e) < bestLast) { best = e; bestLast = this.last(e); }
    }
    return best;
  }

  // --- readers for reports and the flow log (not the per-packet path) ---
  inUse(e: number): boolean { return (this.status(e) & Status.USED) !== 0; }
  family(e: number): number { return this.rec[e * REC + R_FAMPROTO]! & 0xff; }
  proto(e: number): number { return (this.rec[e * REC + R_FAMPROTO]! >>> 8) & 0xff; }
  sport(e: number): number { return this.rec[e * REC + R_PORTS]! >>> 16; }
  dport(e: number): number { return this.rec[e * REC + R_PORTS]! & 0xffff; }
  /** Offset in `rec` of the entry's source address (4 words); the destination follows at +4. */
  srcAt(e: number): number { return e * REC + R_SRC; }
  dstAt(e: number): number { return e * REC + R_DST; }
  state(e: number): number { return this.rec[e * REC + R_STATE]! & 0xff; }
  status(e: number): number { return (this.rec[e * REC + R_STATE]! >>> 8) & 0xff; }
  expires(e: number): number { return this.recF[(e << RF_SHIFT) + RF_EXPIRES]!; }
  last(e: number): number { return this.recF[(e << RF_SHIFT) + RF_LAST]!; }
  /** The flow's first packet's time (seconds). */
  first(e: number): number { return this.recF[(e << RF_SHIFT) + RF_FIRST]!; }
  /** How often entry e was freed: a number seen again with the same gen names the same flow. */
  gen(e: number): number { return this.rec[e * REC + R_GEN]!; }
  packets(e: number, dir: number): number { return this.recF[(e << RF_SHIFT) + RF_CTR + dir]!; }
  bytes(e: number, dir: number): number { return this.recF[(e << RF_SHIFT) + RF_CTR + 2 + dir]!; }

  /**
   * Where a translated flow's reply comes from (its reply tuple's source, e.g. the DNAT backend) as
   * "address:port" text, or null when the reply is the mirror of the original tuple. For the flow log.
   */
  replyFrom(e: number): string | null {
    if ((this.status(e) & Status.REPLY_TUPLE) === 0) return null;
    const w = e * REP;
    const a = ipToString(this.family(e), this.rep, w + 2);
    const port = this.rep[w + 1]! >>> 16;
    return this.family(e) === 6 ? `[${a}]:${port}` : `${a}:${port}`;
  }

  /** Entries in use, for reports: a callback per entry (not on the packet path). */
  forEach(fn: (e: number) => void): void {
    for (let e = 0; e < this.hi; e++) if (this.inUse(e)) fn(e);
  }
}
