/**
 * xdp: the earliest verdict, before any flow state, as an XDP program at the driver: a packet
 * whose source or destination falls in a blocked prefix is dropped, and an optional per-source
 * rate limit drops what is over it. Its point is that a packet dropped here costs almost nothing
 * downstream. Packets that are not IP pass (malformed ones never get here: the decoder drops them).
 *
 * Blocks and allows share one longest-prefix-match table (an eBPF LPM map), so the longest prefix
 * holding an address decides: `allow` punches a hole in a shorter block, and a longer block inside
 * that hole blocks again. The source is looked up first, then the destination.
 *
 * Config ([xdp] section of a profile):
 *   block: 192.0.2.0/24, 2001:db8:bad::/48      prefixes to drop (repeatable)
 *   allow: 192.0.2.128/25                        exceptions inside blocked prefixes (repeatable)
 *   block-file: blocklist.txt                    one prefix per line, # comments (relative to the
 *                                                profile; repeatable)
 *   rate-limit: 1000/s burst 200                 per source address (also /m, /h); burst defaults
 *                                                to one second's worth
 *   rate-table: 64k                              source addresses the rate limiter tracks
 */
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { parseExactPrefix, prefixToString, type Prefix } from '../packet/cidr.js';
import { ipToString } from '../packet/format.js';
import { Lpm } from '../policy/lpm.js';
import { SourceRateLimiter } from '../policy/ratelimit.js';
import { readListFile } from '../pipeline/listfile.js';
import { parseCount, ProfileError, type Entry, type Section } from '../pipeline/profile.js';
import { registerStage } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Verdict } = batchModule;

/** Drop reasons (batch.reason). */
const Reason = { BLOCKED_SRC: 0, BLOCKED_DST: 1, RATE_LIMITED: 2 } as const;
const REASONS = ['blocked-src', 'blocked-dst', 'rate-limited'] as const;

/** What the stage did with a packet of the last batch, for explain(). */
const How = { NOT_SEEN: 0, PASSED: 1, NOT_IP: 2, BLOCKED_SRC: 3, BLOCKED_DST: 4, RATE_LIMITED: 5 } as const;

const BLOCK = 1;
const ALLOW = 2;

export interface ListedPrefix {
  /** A prefix of one family ("any" is listed as 0.0.0.0/0 and ::/0). */
  prefix: Prefix;
  kind: typeof BLOCK | typeof ALLOW;
  /** Where it was written: "web.profile:7", "blocklist.txt:12". */
  origin: string;
}

export interface XdpConfig {
  prefixes: ListedPrefix[];
  rateLimit: { rate: number; burst: number; text: string } | null;
  rateTable: number;
}

export class XdpStage implements Stage {
  readonly name: string;
  /** The rate limiter keeps state per source: with workers, every worker runs it on every packet. */
  readonly seesAllPackets: boolean;
  readonly reasons: readonly string[] = REASONS;
  private readonly lpm = new Lpm();
  /** LPM value -> BLOCK / ALLOW. */
  private readonly kind: Uint8Array;
  /** The prefixes; an LPM value is an index here. */
  private readonly listed: readonly ListedPrefix[];
  private readonly limiter: SourceRateLimiter | null;
  private readonly rateText: string;
  private readonly counts = new Float64Array(6);
  private how = new Uint8Array(0);
  private readonly blocked: number;
  private readonly allowed: number;

  constructor(cfg: XdpConfig, name = 'xdp') {
    this.name = name;
    this.blocked = cfg.prefixes.filter((p) => p.kind === BLOCK).length;
    this.allowed = cfg.prefixes.length - this.blocked;
    this.listed = cfg.prefixes;
    cfg.prefixes.forEach((p, v) => this.lpm.set(p.prefix, v));
    this.kind = Uint8Array.from(this.listed, (p) => p.kind);
    this.limiter = cfg.rateLimit ? new SourceRateLimiter(cfg.rateLimit.rate, cfg.rateLimit.burst, cfg.rateTable) : null;
    this.rateText = cfg.rateLimit?.text ?? '';
    this.seesAllPackets = this.limiter !== null;
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) this.how = new Uint8Array(b.capacity);
    const n = b.count;
    const how = this.how;
    const lpm = this.lpm;
    const kind = this.kind;
    const lists = this.listed.length > 0;
    const limiter = this.limiter;
    const counts = this.counts;
    for (let i = 0; i < n; i++) {
      // NOT_SEEN only where it stays: every path below gives a packet it sees its own answer.
      if (b.verdict[i] !== Verdict.PASS) { how[i] = How.NOT_SEEN; continue; }
      const fam = b.family[i]!;
      if (fam !== 4 && fam !== 6) { how[i] = How.NOT_IP; counts[How.NOT_IP]++; continue; }
      let h: number = How.PASSED;
      if (lists) {
        const w = i << 2;
        const s = lpm.lookup(fam, b.src, w);
        if (s >= 0 && kind[s] === BLOCK) h = How.BLOCKED_SRC;
        else {
          const d = lpm.lookup(fam, b.dst, w);
          if (d >= 0 && kind[d] === BLOCK) h = How.BLOCKED_DST;
        }
      }
      if (h === How.PASSED && limiter !== null && !limiter.take(fam, b.src, i << 2, b.tsSec[i]!, b.tsNsec[i]!)) h = How.RATE_LIMITED;
      how[i] = h;
      counts[h]++;
      if (h !== How.PASSED) {
        b.verdict[i] = Verdict.DROP;
        b.stage[i] = self;
        b.reason[i] = h === How.BLOCKED_SRC ? Reason.BLOCKED_SRC : h === How.BLOCKED_DST ? Reason.BLOCKED_DST : Reason.RATE_LIMITED;
      }
    }
  }

  report(): StageReport {
    const c = this.counts;
    const out: StageReport = {
      passed: c[How.PASSED]!,
      notIp: c[How.NOT_IP]!,
      'blocked-src': c[How.BLOCKED_SRC]!,
      'blocked-dst': c[How.BLOCKED_DST]!,
      'rate-limited': c[How.RATE_LIMITED]!,
    };
    const l = this.limiter;
    if (l) out.rateTable = { inUse: l.inUse, evictions: l.evictions, evictedActive: l.evictedActive };
    return out;
  }

  describe(): StageReport {
    const out: StageReport = { prefixes: { blocked: this.blocked, allowed: this.allowed, trieNodes: this.lpm.nodes } };
    if (this.limiter) out.rateTableCapacity = this.limiter.capacity;
    return out;
  }

  explain(b: Batch, i: number): string {
    const h = i < this.how.length ? this.how[i]! : How.NOT_SEEN;
    const fam = b.family[i]!;
    const w = i << 2;
    const at = (v: number): string => `${prefixToString(this.listed[v]!.prefix)} (${this.listed[v]!.origin})`;
    const s = this.lpm.lookup(fam, b.src, w);
    const d = this.lpm.lookup(fam, b.dst, w);
    switch (h) {
      case How.NOT_IP: return 'not IP: passed';
      case How.BLOCKED_SRC: return `source ${ipToString(fam, b.src, w)} is in blocked ${at(s)}: drop`;
      case How.BLOCKED_DST: return `destination ${ipToString(fam, b.dst, w)} is in blocked ${at(d)}: drop`;
      case How.RATE_LIMITED: return `source ${ipToString(fam, b.src, w)} is over its rate limit (${this.rateText}): drop`;
      case How.PASSED: {
        const holes = [s >= 0 ? `source in allowed ${at(s)}` : '', d >= 0 ? `destination in allowed ${at(d)}` : ''].filter((x) => x);
        const rate = this.limiter ? ', within its rate limit' : '';
        return `passed${holes.length ? ` (${holes.join(', ')})` : ''}${rate}`;
      }
      default: return 'not looked at (already dropped)';
    }
  }
}

/** Read and validate the [xdp] section; errors name the file and line of the offending value. */
export function xdpConfig(section: Section): XdpConfig {
  const prefixes: ListedPrefix[] = [];
  const seen = new Map<string, ListedPrefix>();
  const add = (text: string, kind: typeof BLOCK | typeof ALLOW, origin: string, fail: (msg: string) => Error): void => {
    let prefix: Prefix;
    try {
      prefix = parseExactPrefix(text);
    } catch (err) {
      throw fail((err as Error).message);
    }
    // "any" is the /0 of each family: each family's trie holds it at its root.
    for (const one of prefix.family === 0 ? [{ ...prefix, family: 4 as const }, { ...prefix, family: 6 as const }] : [prefix]) {
      const id = prefixToString(one);
      const before = seen.get(id);
      if (before) {
        if (before.kind !== kind) throw fail(`${id} is both blocked and allowed (also at ${before.origin})`);
        continue; // block lists overlap; the same prefix twice changes nothing
      }
      const p: ListedPrefix = { prefix: one, kind, origin };
      seen.set(id, p);
      prefixes.push(p);
    }
  };
  const list = (e: Entry, kind: typeof BLOCK | typeof ALLOW): void => {
    const items = e.value.split(',').map((x) => x.trim());
    if (items.some((x) => x === '')) throw section.error(e, `"${e.value}" has an empty item (list prefixes with commas: 192.0.2.0/24, 2001:db8::/32)`);
    for (const x of items) add(x, kind, `${e.file}:${e.line}`, (msg) => section.error(e, msg));
  };
  section.all('block');
  section.all('allow');
  section.all('block-file');
  // In profile order, so "also at" points back at the earlier line.
  for (const e of section.entries) {
    if (e.key === 'block') list(e, BLOCK);
    else if (e.key === 'allow') list(e, ALLOW);
    else if (e.key === 'block-file') {
      const file = readListFile(section, e);
      for (const { text, line } of file.lines) {
        add(text, BLOCK, `${file.shown}:${line}`,
          (msg) => new ProfileError(file.shown, line, `[xdp] block-file: ${msg} (in the block file of ${e.file}:${e.line})`));
      }
    }
  }
  const rl = section.get('rate-limit');
  return {
    prefixes,
    rateLimit: rl ? parseRateLimit(rl.value, (msg) => section.error(rl, msg)) : null,
    rateTable: section.integer('rate-table', 65536, 8, 1 << 24),
  };
}

/** "1000/s", "1000/s burst 200", "10k/s", "600/m", "3600/h". */
export function parseRateLimit(text: string, fail: (msg: string) => Error): { rate: number; burst: number; text: string } {
  const m = /^(\S+?)\s*\/\s*(s|m|h)(?:\s+burst\s+(\S+))?$/.exec(text.trim());
  if (!m) throw fail(`"${text}" is not a rate limit (packets per second as N/s, optionally "burst M": 1000/s burst 200)`);
  const n = parseCount(m[1]!);
  if (n === null || !(n > 0)) throw fail(`"${m[1]}" is not a positive number of packets`);
  const rate = n / (m[2] === 's' ? 1 : m[2] === 'm' ? 60 : 3600);
  let burst = Math.max(1, Math.ceil(rate));
  if (m[3] !== undefined) {
    const b = parseCount(m[3]);
    if (b === null || !Number.isInteger(b) || b < 1) throw fail(`burst "${m[3]}" is not a whole number of packets >= 1`);
    burst = b;
  }
  return { rate, burst, text: `${m[1]}/${m[2]} burst ${burst}` };
}

registerStage('xdp', 'early drop before any flow state: CIDR block lists (longest prefix match), per-source rate limits',
  (section: Section) => new XdpStage(xdpConfig(section), section.name));
