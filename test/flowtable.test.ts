/**
 * The flow table against a plain model (a Map from tuple strings to entries), with fast-check
 * driving random sequences of inserts, reply tuples (as NAT sets them), removals, batch ends and
 * lookups; and the rules stages rely on: numbers held until the batch ends, columns zeroed for a
 * new flow, end-of-flow listeners told at the batch end with the entry still readable.
 */
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Destroy, FIRST_ENTRIES, FlowTable, HELD_MAX, RF_EXPIRES, RF_SHIFT, Status, SWEEP_SLOTS } from '../src/conntrack/table.js';
import { Conntrack, defaultTimeouts } from '../src/conntrack/tracker.js';

/** A tuple: addresses as 4 words each (IPv4 in word 0), ports. */
interface Tuple { s: number; d: number; sp: number; dp: number }

const A = new Uint32Array(4);
const B = new Uint32Array(4);

/** Any hash will do for the table (it compares full tuples); a weak one makes collisions likely. */
function weakHash(t: Tuple): number {
  return ((t.s ^ t.d) + (t.sp ^ t.dp)) & 7;
}

/** A symmetric hash with all 32 bits used, for tables big enough to grow their slots. */
function wideHash(t: Tuple): number {
  const x = Math.imul(t.s ^ t.d, 0x9e3779b1) ^ Math.imul((t.sp ^ t.dp) + 1, 0x85ebca77);
  return (x ^ (x >>> 15)) >>> 0;
}

let hash = weakHash;

function find(table: FlowTable, t: Tuple): number {
  A[0] = t.s; B[0] = t.d;
  return table.find(hash(t), 4, 6, A, 0, B, 0, t.sp, t.dp);
}

function insert(table: FlowTable, t: Tuple): number {
  A[0] = t.s; B[0] = t.d;
  table.clock[0] = 0;
  return table.insert(hash(t), 4, 6, A, 0, B, 0, t.sp, t.dp);
}

function setReply(table: FlowTable, e: number, t: Tuple): boolean {
  A[0] = t.s; B[0] = t.d;
  return table.setReply(e, hash(t), A, 0, B, 0, t.sp, t.dp);
}

const mirror = (t: Tuple): Tuple => ({ s: t.d, d: t.s, sp: t.dp, dp: t.sp });
const key = (t: Tuple): string => `${t.s} ${t.d} ${t.sp} ${t.dp}`;

describe('a flow found by either of two tuples', () => {
  const client = { s: 10, d: 100, sp: 40000, dp: 80 }; // client -> VIP
  const reply = { s: 200, d: 10, sp: 8080, dp: 40000 }; // backend -> client, after DNAT

  it('finds the entry by its original tuple, its reply tuple, and each one reversed', () => {
    const t = new FlowTable(8);
    t.allowReplyTuples();
    const e = insert(t, client);
    setReply(t, e, reply);
    expect(find(t, client)).toBe(e * 2);
    expect(find(t, mirror(client))).toBe(e * 2 + 1); // VIP -> client: a reply seen before DNAT
    expect(find(t, reply)).toBe(e * 2 + 1);
    expect(find(t, mirror(reply))).toBe(e * 2); // client -> backend: the original seen after DNAT
    expect(t.status(e) & Status.REPLY_TUPLE).toBe(Status.REPLY_TUPLE);
  });

  it('removal frees both tuples', () => {
    const t = new FlowTable(8);
    t.allowReplyTuples();
    const e = insert(t, client);
    setReply(t, e, reply);
    t.remove(e, Destroy.TIMEOUT);
    expect([find(t, client), find(t, reply), find(t, mirror(reply))]).toEqual([-1, -1, -1]);
    expect(t.count).toBe(0);
  });

  it('reply tuples must be allowed before the first flow, and set once', () => {
    const t = new FlowTable(8);
    const e = insert(t, client);
    expect(() => setReply(t, e, reply)).toThrow(/allowReplyTuples/);
    expect(() => t.allowReplyTuples()).toThrow(/before the first flow/);
    const u = new FlowTable(8);
    u.allowReplyTuples();
    const f = insert(u, client);
    setReply(u, f, reply);
    expect(() => setReply(u, f, reply)).toThrow(/already/);
  });
});

describe('numbers, columns and listeners', () => {
  it('a number removed in a batch is not handed out again before the batch ends', () => {
    const t = new FlowTable(2);
    const a = insert(t, { s: 1, d: 2, sp: 1, dp: 2 });
    t.remove(a, Destroy.RESET);
    const b = insert(t, { s: 3, d: 4, sp: 3, dp: 4 });
    expect(b).not.toBe(a);
    t.release();
    t.remove(b, Destroy.RESET);
    t.release();
    const seen = new Set([insert(t, { s: 5, d: 6, sp: 5, dp: 6 }), insert(t, { s: 7, d: 8, sp: 7, dp: 8 })]);
    expect(seen.has(a) || seen.has(b)).toBe(true);
  });

  it('a column is zero for every new flow; listeners hear of a flow\'s end at release, with its state readable', () => {
    const t = new FlowTable(4);
    let col = new Int32Array(0);
    t.column(Int32Array, 2, (a) => { col = a; });
    const ended: string[] = [];
    t.onEnd((table, e, why) => ended.push(`${e} ${why} ${table.sport(e)} ${col[e * 2 + 1]}`));
    const e = insert(t, { s: 1, d: 2, sp: 7, dp: 9 });
    col[e * 2] = 5; col[e * 2 + 1] = 6;
    // Its counters (in the record) and ignored counts too: a reused number must not bring them along.
    for (let c = 0; c < 4; c++) t.recF[(e << 4) + 8 + c] = 100 + c;
    t.ignored[e << 1] = 3; t.ignoredBytes[(e << 1) | 1] = 300;
    t.remove(e, Destroy.EVICTED);
    expect(ended).toEqual([]);
    t.release();
    expect(ended).toEqual([`${e} ${Destroy.EVICTED} 7 6`]);
    const numbers = new Set<number>();
    for (let k = 0; k < 3; k++) {
      const f = insert(t, { s: 10 + k, d: 2, sp: 7, dp: 9 });
      numbers.add(f);
      expect([col[f * 2], col[f * 2 + 1]]).toEqual([0, 0]);
      expect(Array.from(t.recF.subarray((f << 4) + 8, (f << 4) + 12))).toEqual([0, 0, 0, 0]);
      expect([t.ignored[f << 1], t.ignored[(f << 1) | 1], t.ignoredBytes[f << 1], t.ignoredBytes[(f << 1) | 1]]).toEqual([0, 0, 0, 0]);
    }
    expect(numbers.has(e), 'the ended flow\'s number was handed out again').toBe(true);
  });

  it('holds every number removed in one batch, past the room it starts with, and frees them at release', () => {
    const before = hash;
    hash = wideHash;
    onTestFinished(() => { hash = before; });
    const t = new FlowTable(5000);
    const ended: string[] = [];
    t.onEnd((_table, e, why) => ended.push(`${e}/${why}`));
    const entries = Array.from({ length: 3000 }, (_, k) => insert(t, { s: 1 + k, d: 2, sp: 1000 + k, dp: 80 }));
    const expected = entries.map((e, k) => { const why = k % 2 === 0 ? Destroy.END : Destroy.RESET; t.remove(e, why); return `${e}/${why}`; });
    expect(ended).toEqual([]);
    expect(t.count).toBe(0);
    t.release();
    expect(ended).toEqual(expected);
    // Released numbers are reused (last freed first) before any fresh one.
    expect(insert(t, { s: 9, d: 9, sp: 9, dp: 9 })).toBe(entries[entries.length - 1]);
  });
});

describe('the per-entry arrays grow with the flows', () => {
  // A table starts with FIRST_ENTRIES (512) entries; past them it takes its whole size (capacity + the spares for
  // held numbers) in one buffer whose pages the kernel gives as they are first written, or doubles
  // when that buffer would pass 1 GiB (a 16Mi-entry table: ~3 GB); either way records, cold arrays
  // and columns share one buffer.
  const cases = [
    { capacity: 20000, lengths: [FIRST_ENTRIES, 20000 + HELD_MAX] },
    { capacity: 1 << 24, lengths: [512, 1024, 2048, 4096, 8192, 16384, 32768] },
  ];
  it.each(cases)('keeps every flow, its record, its reply tuple and its columns while growing past its first 512 entries (capacity $capacity)', ({ capacity, lengths: expected }) => {
    const before = hash;
    hash = wideHash; // 20,000 flows: the weak hash's collisions would make every probe run long
    onTestFinished(() => { hash = before; });
    const t = new FlowTable(capacity);
    t.allowReplyTuples();
    let col = new Float64Array(0);
    let sets = 0;
    t.column(Float64Array, 3, (a) => { col = a; sets++; });
    const lengths = [col.length];
    const flows: { e: number; t: Tuple; reply: Tuple }[] = [];
    for (let k = 0; k < 20000; k++) {
      const tuple = { s: 1 + (k % 997), d: 1000 + Math.floor(k / 997), sp: 1 + (k % 60000), dp: 80 };
      const e = insert(t, tuple);
      if (col.length !== lengths[lengths.length - 1]) lengths.push(col.length);
      const reply = { s: 50000 + k, d: tuple.s, sp: 8080, dp: tuple.sp };
      expect(setReply(t, e, reply)).toBe(true);
      col[e * 3] = k; col[e * 3 + 2] = -k;
      t.recF[(e << 4) + 8] = k * 2; // a counter, in the record
      // Ignored counts on a few flows before the first growth: growing copies only arrays that hold something.
      if (k % 101 === 0 && k < FIRST_ENTRIES) t.ignoredBytes[(e << 1) | 1] = k + 1;
      flows.push({ e, t: tuple, reply });
    }
    expect(lengths.map((n) => n / 3)).toEqual(expected);
    expect(sets).toBe(lengths.length);
    expect(col.buffer, 'each growth puts records and columns in one buffer').toBe(t.rec.buffer);
    flows.forEach(({ e, t: tuple, reply }, k) => {
      expect(find(t, tuple), `flow ${k}`).toBe(e << 1);
      expect(find(t, reply), `reply ${k}`).toBe((e << 1) | 1);
      expect([col[e * 3], col[e * 3 + 1], col[e * 3 + 2], t.recF[(e << 4) + 8]]).toEqual([k, 0, -k, k * 2]);
      expect([t.ignored[e << 1], t.ignoredBytes[e << 1], t.ignoredBytes[(e << 1) | 1]], `ignored counts of flow ${k}`)
        .toEqual([0, 0, k % 101 === 0 && k < FIRST_ENTRIES ? k + 1 : 0]);
    });
  });

  it('a flow\'s first time and its number\'s generation live in its record, and survive growth and reuse', () => {
    const before = hash;
    hash = wideHash;
    onTestFinished(() => { hash = before; });
    const t = new FlowTable(4000);
    const at = (k: number): Tuple => ({ s: 1 + k, d: 2, sp: 1000 + k, dp: 80 });
    const add = (k: number, now: number): number => { A[0] = at(k).s; B[0] = at(k).d; t.clock[0] = now; return t.insert(hash(at(k)), 4, 6, A, 0, B, 0, at(k).sp, at(k).dp); };
    // Ten flows, the first removed and its number reused twice, all before the first growth.
    const e0 = add(0, 1.5);
    expect([t.first(e0), t.gen(e0)]).toEqual([1.5, 0]);
    for (let round = 1; round <= 2; round++) {
      t.remove(e0, Destroy.TIMEOUT);
      t.release();
      expect(add(100 + round, 10 + round), 'a freed number is reused first').toBe(e0);
      expect([t.first(e0), t.gen(e0)]).toEqual([10 + round, round]);
    }
    for (let k = 1; k < 3000; k++) add(k, 20 + k / 1000);
    expect(t.rec.length / 32, 'the table grew past its first entries').toBeGreaterThan(FIRST_ENTRIES);
    expect([t.first(e0), t.gen(e0)]).toEqual([12, 2]);
    const e5 = find(t, at(5)) >> 1;
    expect([t.first(e5), t.gen(e5)]).toEqual([20.005, 0]);
  });
});

describe('the table behaves as a map of tuples (model-based, fast-check)', () => {
  const small = fc.integer({ min: 1, max: 6 });
  const tuple = fc.record({ s: small, d: small, sp: small, dp: small });
  const op = fc.oneof(
    fc.record({ kind: fc.constant('insert' as const), t: tuple, reply: fc.option(tuple, { nil: undefined }) }),
    fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('release' as const) }),
    fc.record({ kind: fc.constant('find' as const), t: tuple }),
  );

  it('every lookup gives what the model gives, through collisions, removals and batch ends', () => {
    hash = weakHash;
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => { againstModel(ops, 16); }), { numRuns: 300, seed: 14 });
  });

  // The slots start at 1,024 and double as flows arrive (up to what the capacity needs): lookups,
  // removals and the slot walk must not notice, and the walk's order depends only on the operations.
  it('the same while the slots grow', () => {
    hash = wideHash;
    const wide = fc.integer({ min: 1, max: 400 });
    const many = fc.record({ s: wide, d: wide, sp: small, dp: small });
    const bigOp = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('insert' as const), t: many, reply: fc.option(many, { nil: undefined }) }), weight: 6 },
      { arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('release' as const) }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('find' as const), t: many }), weight: 2 },
    );
    fc.assert(fc.property(fc.array(bigOp, { minLength: 5000, maxLength: 8000 }), (ops) => {
      const t = againstModel(ops, 4096);
      expect(t.grows, 'the slots grew').toBeGreaterThan(0);
      // The walk's order: the same operations give the same order.
      const order = (x: FlowTable) => Array.from({ length: x.slotCount }, (_, s) => x.slotEntry(s)).join(',');
      expect(order(againstModel(ops, 4096))).toBe(order(t));
    }), { numRuns: 4, seed: 15, endOnFailure: true });
  });
});

// The expiry sweep looks at `budget` slots a call, from where the last call stopped: an entry past
// its timeout goes (and its slot is looked at again, as a later entry shifts back into it), any
// other slot is passed. The tracker's sweep looks ahead before removing anything (for speed); here
// it is held to that definition, walked slot by slot over a second table built the same way.
describe('the expiry sweep', () => {
  function tables(flows: { t: Tuple; expires: number }[]): { ct: Conntrack; ref: FlowTable } {
    hash = wideHash;
    const ct = new Conntrack({ capacity: 4096, whenFull: 'evict', loose: true, timeouts: defaultTimeouts() });
    const ref = new FlowTable(4096);
    const seen = new Set<string>();
    for (const f of flows) {
      if (seen.has(key(f.t)) || seen.has(key(mirror(f.t)))) continue;
      seen.add(key(f.t));
      for (const t of [ct.table, ref]) {
        const e = insert(t, f.t); // first: an insert can grow the table, and recF with it
        t.recF[(e << RF_SHIFT) + RF_EXPIRES] = f.expires;
      }
    }
    return { ct, ref };
  }
  const layout = (t: FlowTable) => Array.from({ length: t.slotCount }, (_, s) => t.slotEntry(s)).join(',');

  it('removes what a slot-by-slot walk removes, call after call', () => {
    const wide = fc.integer({ min: 1, max: 3000 });
    const flow = fc.record({ t: fc.record({ s: wide, d: wide, sp: fc.integer({ min: 1, max: 9 }), dp: fc.integer({ min: 1, max: 9 }) }), expires: fc.integer({ min: 0, max: 20 }) });
    const call = fc.record({ budget: fc.constantFrom(SWEEP_SLOTS, SWEEP_SLOTS, 1, 5, SWEEP_SLOTS * 3), dt: fc.integer({ min: 0, max: 3 }) });
    let total = 0;
    fc.assert(fc.property(fc.array(flow, { minLength: 1, maxLength: 2500, size: 'max' }), fc.array(call, { minLength: 1, maxLength: 60, size: 'max' }), (flows, calls) => {
      const { ct, ref } = tables(flows);
      expect(layout(ct.table)).toBe(layout(ref));
      let at = 0;
      let now = 8;
      let removed = 0;
      for (const c of calls) {
        now += c.dt;
        ct.sweep(now, c.budget);
        const n = ref.slotCount;
        for (let k = 0; k < c.budget; k++) {
          const e = ref.slotEntry(at);
          if (e >= 0 && ref.expires(e) < now) { ref.remove(e, Destroy.TIMEOUT); removed++; continue; }
          if (++at === n) at = 0;
        }
        ct.table.release();
        ref.release();
        expect(layout(ct.table), `after a sweep of ${c.budget} at ${now}`).toBe(layout(ref));
        expect(ct.destroyed[Destroy.TIMEOUT]).toBe(removed);
      }
      total += removed;
    }), { numRuns: 60, seed: 21 });
    // The runs did remove things (thousands of entries, over slots the walk passed through).
    expect(total).toBeGreaterThan(5000);
  });

  it('a full pass over the slots leaves no entry past its timeout and every other one', () => {
    const flows = Array.from({ length: 1500 }, (_, k) => ({ t: { s: k + 1, d: 7, sp: 1 + (k % 5), dp: 80 }, expires: k % 3 === 0 ? 5 : 50 }));
    const { ct } = tables(flows);
    const t = ct.table;
    // Each removal uses a slot's look without moving on: twice the slots, and the removals, is past a full pass.
    for (let k = 0; k * SWEEP_SLOTS < 2 * t.slotCount + 1500; k++) { ct.sweep(10, SWEEP_SLOTS); t.release(); }
    expect(ct.destroyed[Destroy.TIMEOUT]).toBe(500);
    expect(t.count).toBe(1000);
    t.forEach((e) => expect(t.expires(e)).toBe(50));
  });
});

type Op = { kind: 'insert'; t: Tuple; reply?: Tuple } | { kind: 'remove'; pick: number } | { kind: 'release' } | { kind: 'find'; t: Tuple };

/** Run the operations on a table of `capacity` and on the model, checking every step; returns the table. */
function againstModel(ops: Op[], capacity: number): FlowTable {
  const t = new FlowTable(capacity);
  t.allowReplyTuples();
  /** tuple key -> [entry, direction] for every tuple a live flow is found by. */
  const model = new Map<string, [number, number]>();
  const live: { e: number; keys: string[] }[] = [];
  const held = new Set<number>();
  for (const o of ops) {
    if (o.kind === 'insert') {
      const keys = [key(o.t), key(mirror(o.t))];
      const replyKeys = o.reply ? [key(o.reply), key(mirror(o.reply))] : [];
      // The model's rule: a flow is only added when its tuple is free; its reply tuple is set
      // only when that is free too (setReply says false, changing nothing, when it is taken).
      if (t.full || keys.some((k) => model.has(k))) continue;
      if (o.reply && replyKeys.some((k) => keys.includes(k))) continue;
      const clash = replyKeys.some((k) => model.has(k));
      const e = insert(t, o.t);
      expect(held.has(e), 'a held number was handed out').toBe(false);
      // A tuple that reads the same both ways (a host talking to itself) is found as given.
      model.set(keys[1]!, [e, 1]);
      model.set(keys[0]!, [e, 0]);
      if (o.reply) {
        expect(setReply(t, e, o.reply), 'setReply refuses a taken tuple, and only then').toBe(!clash);
      }
      if (o.reply && !clash) {
        model.set(replyKeys[1]!, [e, 0]);
        model.set(replyKeys[0]!, [e, 1]);
      }
      live.push({ e, keys: [...keys, ...(clash ? [] : replyKeys)] });
    } else if (o.kind === 'remove') {
      if (live.length === 0) continue;
      const [f] = live.splice(o.pick % live.length, 1);
      t.remove(f!.e, Destroy.TIMEOUT);
      held.add(f!.e);
      for (const k of f!.keys) model.delete(k);
    } else if (o.kind === 'release') {
      t.release();
      held.clear();
    } else {
      const m = model.get(key(o.t));
      expect(find(t, o.t)).toBe(m ? m[0] * 2 + m[1] : -1);
    }
    expect(t.count).toBe(live.length);
  }
  // Every tuple the model knows is found, and the sweep's slot walk sees each live entry.
  for (const [k, [e, dir]] of model) {
    const [s, d, sp, dp] = k.split(' ').map(Number) as [number, number, number, number];
    expect(find(t, { s, d, sp, dp })).toBe(e * 2 + dir);
  }
  const inSlots = new Set<number>();
  for (let s = 0; s < t.slotCount; s++) if (t.slotEntry(s) >= 0) inSlots.add(t.slotEntry(s));
  expect([...inSlots].sort((x, y) => x - y)).toEqual(live.map((f) => f.e).sort((x, y) => x - y));
  return t;
}
