/**
 * The flow table's constants: the record's words, entry status bits, why entries go away, the
 * expiry sweep's pace. They live here, not in table.ts, so that the table's own per-packet code
 * can read them as plain module consts: V8 reads a module's *exported* bindings through a cell,
 * with a check for the temporal dead zone, at every use, even inside the module that declares
 * them, and cannot fold them into the code (e * REC was a multiply with an overflow check, not a
 * shift). table.ts re-exports them; its users and it destructure them into consts, which V8 folds.
 * (The record layout itself is drawn in table.ts's header.)
 */
import * as batchModule from '../packet/batch.js';

const { MAX_BATCH_SIZE } = batchModule;

/**
 * Entry status bits (as the kernel's IPS_* bits that matter here). REPLY_TUPLE: the flow's reply
 * is not the mirror of its original tuple (a NAT stage said so), and the entry has a second slot.
 */
export const Status = { SEEN_REPLY: 1, ASSURED: 2, USED: 4, REPLY_TUPLE: 8 } as const;

/** Why an entry went away, for flow records and counters. */
export const Destroy = { TIMEOUT: 0, EVICTED: 1, REOPENED: 2, END: 3, RESET: 4 } as const;
export const DESTROY_NAMES = ['timeout', 'evicted', 'reopened', 'end-of-input', 'reset-before-reply'] as const;

/** Words of a record (rec) and f64 slots of it (recF = f64 view of the same buffer). */
export const REC = 32;
export const R_HASH = 0;
export const R_FAMPROTO = 1;
export const R_PORTS = 2;
export const R_SRC = 3;
export const R_DST = 7;
export const R_STATE = 11;
/** How often the entry was freed (word), and the live-flow series' first sample point it counts at (word). */
export const R_GEN = 26;
export const R_BORN = 27;
/** Record e starts at f64 index e << RF_SHIFT; f64 indexes within a record: */
export const RF_SHIFT = 4;
export const RF_EXPIRES = 6;
export const RF_LAST = 7;
/** The counters: RF_CTR + dir packets, RF_CTR + 2 + dir bytes. */
export const RF_CTR = 8;
/** The flow's first packet's time. */
export const RF_FIRST = 12;
/** Words of a reply tuple (rep, u32 x10): 0 hash | 1 sport << 16 | dport | 2..5 src | 6..9 dst, as the reply is on the wire. */
export const REP = 10;

/**
 * Spare entries for numbers held until the end of a batch: at most one removal per packet (a
 * flow that ends or times out, or an eviction) plus what the expiry sweeps of the batch remove
 * (SWEEP_SLOTS every SWEEP_EVERY packets), for the largest batch (MAX_BATCH_SIZE).
 */
export const SWEEP_EVERY = 256;
export const SWEEP_SLOTS = 128;
export const HELD_MAX = MAX_BATCH_SIZE + (MAX_BATCH_SIZE / SWEEP_EVERY + 1) * SWEEP_SLOTS;
